"""House rules that hold across the package (STYLE.md): functions short enough to read at once."""
from __future__ import annotations

import ast

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
