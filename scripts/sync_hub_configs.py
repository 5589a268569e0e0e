"""Write hub_configs/NAME.yaml and resnet_hub/labels/ from mmpretrain itself.

The values come from mmpretrain's merged configs, metafile.yml and category lists, never from
memory (resnet_hub/reference.py does the derivation):

    pip install 'resnet_hub[test]'                # mmpretrain 1.2.0, mmengine, mmcv-lite
    python scripts/sync_hub_configs.py            # rewrite what differs
    python scripts/sync_hub_configs.py --check    # exit 1 if anything differs
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    from resnet_hub.reference import expected_files

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "hub_configs", help="where the YAML files go")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on any difference")
    args = parser.parse_args(argv)
    files = expected_files(args.out_dir, ROOT / "resnet_hub" / "zoo" / "labels")
    stale = [p for p, text in files.items() if not p.is_file() or p.read_text() != text]
    extra = sorted(set(args.out_dir.glob("*.yaml")) - set(files))
    for p in extra:
        print(f"not an mmpretrain config: {p}", file=sys.stderr)
    if args.check:
        for p in stale:
            print(f"differs from mmpretrain: {p}", file=sys.stderr)
        return 1 if stale or extra else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(files[p])
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
