"""top-1/top-5 of a model on a dataset split with its config's eval transform (see resnet_hub/train/evaluate.py).

    accelerate launch scripts/eval.py --model local-dir:runs/resnet18_8xb16_cifar10/final --dataset digits
"""
import sys

from resnet_hub import commands
from resnet_hub.train import evaluate

if __name__ == "__main__":
    sys.exit(commands.main(evaluate.add_arguments, evaluate.run, evaluate.__doc__.split("\n\n")[0]))
