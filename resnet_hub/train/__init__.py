"""Training: recipes from timm pieces, data, the input pipelines, the Accelerate trainer, eval.

Importing this package is light (``resnet_hub.inference`` uses its ``pipeline``); the trainer's
names (``build_train_step``, ``main``, ``run``, ...) load from ``resnet_hub.train.trainer`` on
first use.
"""
import importlib


def __getattr__(name):
    if name.startswith("__") or name == "trainer":
        raise AttributeError(name)
    trainer = importlib.import_module(".trainer", __name__)
    try:
        return getattr(trainer, name)
    except AttributeError:
        raise AttributeError(f"module 'resnet_hub.train' has no attribute {name!r}") from None
