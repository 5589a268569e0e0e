"""Training: recipes from timm pieces, data, the input pipelines, the Accelerate trainer, eval.

The trainer is ``trainer.run``, in parts: ``plan`` (the run's settings, resolved once), ``loop``
(``train_one_epoch``, ``finish_epoch``), ``run_dir`` (run.json, checkpoints, metrics, the bundle)
and ``evaluate`` (the eval loop, and ``resnet-hub eval``). ``python -m resnet_hub.train`` (and
``accelerate launch -m resnet_hub.train``) is ``resnet-hub train``.

Importing this package is light; the trainer's names (``build_train_step``, ``main``, ``run``, ...) load from
``resnet_hub.train.trainer`` on first use.
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
