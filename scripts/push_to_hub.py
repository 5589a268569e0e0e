"""Push Hub bundles to the Hugging Face Hub: one repo per config, at most one commit each.

    python scripts/push_to_hub.py DIR --repo-id NS/NAME [--private] [--revision BRANCH] [--create-pr]
    python scripts/push_to_hub.py --all BUNDLES_DIR [--dry-run] [--overwrite-card] [--collection TITLE]

The work is done by resnet_hub.hub.push (also `resnet-hub push`).
"""
import sys

from resnet_hub import commands
from resnet_hub.hub import push

if __name__ == "__main__":
    sys.exit(commands.main(push.add_arguments, push.run, description=push.__doc__.split("\n\n")[0]))
