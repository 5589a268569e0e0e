"""``python -m resnet_hub.train`` and ``accelerate launch -m resnet_hub.train``: the installed trainer."""
import sys

from resnet_hub.train.trainer import main

sys.exit(main(prog="python -m resnet_hub.train"))
