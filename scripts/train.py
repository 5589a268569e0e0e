"""Train a config's recipe with Accelerate (see resnet_hub/train/trainer.py).

    accelerate launch scripts/train.py --config resnet18_8xb16_cifar10 --dataset digits --epochs 3
"""
import sys

from resnet_hub import commands, train

if __name__ == "__main__":
    sys.exit(commands.main(train.add_arguments, train.run, train.__doc__.split("\n\n")[0]))
