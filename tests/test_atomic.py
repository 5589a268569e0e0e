"""resnet_hub.atomic (files whole or not at all) and resnet_hub.hashing (a file's sha256)."""
from __future__ import annotations

import hashlib
import json

import pytest

from resnet_hub.atomic import replacing, write_bytes, write_json, write_text
from resnet_hub.hashing import sha256_file


def test_writes_replace_the_whole_file_and_leave_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    assert write_json(path, {"top1": 91.5, "name": "é"}) == path
    assert path.read_text() == json.dumps({"top1": 91.5, "name": "é"}, indent=2) + "\n"
    write_text(tmp_path / "card.md", "ünïcode\n")
    assert (tmp_path / "card.md").read_bytes() == "ünïcode\n".encode()
    write_bytes(tmp_path / "w.bin", b"\x00\x01")
    assert (tmp_path / "w.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.md", "metrics.json", "w.bin"]


def test_a_writer_that_raises_leaves_the_old_file_untouched(tmp_path):
    path = tmp_path / "curves.png"
    path.write_bytes(b"the last good plot")
    with pytest.raises(RuntimeError, match="disk full"), replacing(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp != path  # savefig goes by the suffix
        tmp.write_bytes(b"half a pl")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"the last good plot"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # the temporary is gone

    with pytest.raises(TypeError):  # not serializable: nothing written at all
        write_json(path, {"x": object()})
    assert path.read_bytes() == b"the last good plot" and len(list(tmp_path.iterdir())) == 1


def test_sha256_file_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 9000 + b"tail"  # over 2 MB: several chunks, the last one short
    path = tmp_path / "checkpoint.pth"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
