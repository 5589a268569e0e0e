"""Train a config's recipe with Accelerate (resnet_hub/train/trainer.py; installed: ``resnet-hub train``).

    accelerate launch scripts/train.py --config resnet18_8xb16_cifar10 --dataset digits --epochs 3
"""
import sys

from resnet_hub.train.trainer import main

if __name__ == "__main__":
    sys.exit(main())
