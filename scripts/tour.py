"""A quick tour of the zoo: every config, measured, and one model run on real digits.

    python scripts/tour.py [--config resnet18_8xb16_cifar10]

Lists the 22 configs with parameter counts measured from the built models (on the meta
device: no memory, no weights) next to the accuracy mmpretrain published, then runs one
config's eval transform and forward pass on scikit-learn's bundled handwritten digits.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import timm
import torch
from PIL import Image

import resnet_hub
from resnet_hub.commands import positive_int


def zoo_table() -> str:
    rows = ["| config | timm architecture | classes | params (M) | eval input | top-1 | top-5 |",
            "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for name in resnet_hub.list_configs():
        cfg = resnet_hub.load_config(name)
        with torch.device("meta"):
            model = timm.create_model(name)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        top5 = f"{cfg.results.top5:.2f}" if cfg.results.top5 is not None else "-"
        rows.append(f"| {name} | {cfg.architecture_name} | {cfg.num_classes} {cfg.labels} | {params:.2f} | "
                    f"{cfg.eval.input_size}px | {cfg.results.top1:.2f} | {top5} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="resnet18_8xb16_cifar10", help="config to run on the digits")
    parser.add_argument("--images", type=positive_int, default=8, help="how many digits to run")
    args = parser.parse_args(argv)
    from sklearn.datasets import load_digits

    print(zoo_table())
    model = timm.create_model(args.config).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    digits = load_digits()
    images = [Image.fromarray((digits.images[i] * (255 / 16)).astype(np.uint8)).convert("RGB")
              for i in range(args.images)]
    batch = torch.stack([transform(im) for im in images])
    with torch.inference_mode():
        logits = model(batch)
    print(f"\n{args.config}: {tuple(batch.shape)} digits -> logits {tuple(logits.shape)} "
          f"(random init; pretrained=True loads {model.pretrained_cfg['hf_hub_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
