"""mmpretrain's own test pipeline + data preprocessor, as the reference for our eval transform."""
from __future__ import annotations

import numpy as np
import torch

# scikit-image's sample photographs (shipped in the wheel): colour, grayscale, several aspect ratios
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def mmpretrain_eval_input(name: str):
    """A function giving the normalized (1, 3, H, W) tensor mmpretrain's config ``name`` feeds its model.

    Configs whose test pipeline loads files take an image path (read by OpenCV, BGR, as
    mmpretrain does); the CIFAR ones an RGB array, as mmpretrain's CIFAR dataset yields.
    """
    from mmengine.dataset import Compose
    from mmpretrain.registry import MODELS, TRANSFORMS
    from mmpretrain.utils import register_all_modules

    from resnet_hub.reference import load_mmpretrain_config

    register_all_modules(init_default_scope=True)
    cfg = load_mmpretrain_config(name)
    pipeline = Compose([TRANSFORMS.build(t) for t in cfg.test_pipeline])
    loads_files = cfg.test_pipeline[0]["type"] == "LoadImageFromFile"
    preprocessor = MODELS.build(dict(type="ClsDataPreprocessor", **cfg.data_preprocessor))

    def run(image) -> torch.Tensor:
        packed = pipeline(dict(img_path=str(image)) if loads_files else dict(img=np.array(image)))
        out = preprocessor({"inputs": [packed["inputs"]], "data_samples": [packed["data_samples"]]}, training=False)
        return out["inputs"].float()
    return run
