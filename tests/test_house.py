"""House rules that hold across the package (STYLE.md): functions short enough to read at once, files
replaced in one place, ``import resnet_hub`` light."""
from __future__ import annotations

import ast
import json
import subprocess
import sys

from conftest import REPO

MAX_FUNCTION_LINES = 80


def test_no_function_over_80_lines():
    long = []
    for path in sorted((REPO / "resnet_hub").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_files_are_replaced_in_one_place():
    """Atomic writes go through resnet_hub/atomic.py and file hashes through resnet_hub/hashing.py; the one other
    os.replace renames a complete checkpoint folder into place."""
    others = {}
    for path in sorted((REPO / "resnet_hub").rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(REPO))
        for needle in ("os.replace(", "hashlib.sha256()", "sha_fileobj"):
            if needle in text and name not in ("resnet_hub/atomic.py", "resnet_hub/hashing.py"):
                others.setdefault(needle, []).append(name)
    assert others == {"os.replace(": ["resnet_hub/train/run_dir.py"]}, others


def test_inference_import_does_not_load_the_trainer():
    """``import resnet_hub`` (which imports resnet_hub.inference) loads neither resnet_hub.train nor the
    training extras; checked in a fresh interpreter, where nothing else has imported them yet."""
    code = ("import json, sys, resnet_hub, resnet_hub.inference\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('resnet_hub', 'accelerate', 'datasets', 'mmpretrain', 'mmengine'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    loaded = json.loads(out.stdout)
    assert "resnet_hub.inference" in loaded  # the check saw the import it is about
    heavy = [m for m in loaded if m.startswith("resnet_hub.train") or not m.startswith("resnet_hub")]
    assert heavy == [], heavy
