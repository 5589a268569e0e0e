"""Convert mmpretrain/mmcls ResNet checkpoints into Hub bundles (model.safetensors + config.json).

    python scripts/convert_weights.py --config resnet50_8xb32_in1k \
        --checkpoint https://download.openmmlab.com/.../resnet50_8xb32_in1k_20210831-ea4938fc.pth --output-dir out/
    python scripts/convert_weights.py --all --checkpoint-dir downloads/ --output-dir out/

The work is resnet_hub.hub.convert (convert_checkpoint); this only parses the command line.
"""
import sys

from resnet_hub import commands
from resnet_hub.hub import convert

if __name__ == "__main__":
    sys.exit(commands.main(convert.add_arguments, convert.run, __doc__.split("\n\n")[0]))
