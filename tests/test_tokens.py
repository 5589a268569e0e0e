"""No error message echoes a value that looks like a Hugging Face token (issue 22, case 8): a token typed in
every wrong place of every subcommand comes back as hf_***, in one line, never in a traceback."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from resnet_hub import cli
from resnet_hub.commands import redact

TOKEN = "hf_SECRETtokenTYPEDinTHEwrongPLACE0123"
CIFAR = "resnet18_8xb16_cifar10"


def _places(command: str, image: str, folder: str) -> list[list[str]]:
    """Wrong places for a token: a positional, a flag that does not exist (both spellings), and each command's
    own options that take a name, a path or a number."""
    common = [[TOKEN], ["--token", TOKEN], [f"--token={TOKEN}"], ["--no-such-flag", TOKEN], [f"-{TOKEN}"]]
    own = {
        "list": [["--dataset", TOKEN]],
        "info": [[TOKEN, "--json"]],
        "predict": [[TOKEN, image, "--random-init"], [CIFAR, TOKEN, "--random-init"],
                    [CIFAR, image, "--random-init", "--device", TOKEN], [CIFAR, image, "--topk", TOKEN],
                    [CIFAR, image, "--weights", TOKEN], [f"local-dir:{TOKEN}", image]],
        "convert": [["--config", TOKEN, "--checkpoint", "x.pth", "--output-dir", folder],
                    ["--config", CIFAR, "--checkpoint", TOKEN, "--output-dir", folder, "--no-parity"],
                    ["--config", CIFAR, "--checkpoint", "x.pth", "--output-dir", folder, "--sha256", TOKEN]],
        "push": [[folder, "--repo-id", TOKEN, "--dry-run"], [TOKEN, "--repo-id", "a/b", "--dry-run"],
                 ["--all", TOKEN, "--dry-run"]],
        "train": [["--config", TOKEN], ["--config", CIFAR, "--lr", TOKEN], ["--config", CIFAR, "--model-kwargs", TOKEN],
                  ["--config", CIFAR, "--precision", TOKEN]],
        "eval": [["--model", TOKEN], [CIFAR, "--split", "x", "--batch-size", TOKEN]],
        "bench": [["--only", TOKEN], ["--device", TOKEN]],
        "export": [[TOKEN, "--output", folder], [CIFAR, "--random-init", "--format", TOKEN, "--output", folder],
                   [CIFAR, "--weights", TOKEN, "--output", folder]],
        "embed": [[TOKEN, image, "--output", f"{folder}/e.npy"], [CIFAR, TOKEN, "--random-init", "--output", "e.npy"],
                  [CIFAR, image, "--random-init", "--batch-size", TOKEN, "--output", "e.npy"]],
    }
    return common + own.get(command, [])  # a new subcommand is tested in the common wrong places at least


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_a_token_in_any_wrong_place_is_never_echoed(command, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    (tmp_path / "out").mkdir()
    for argv in _places(command, str(image), str(tmp_path / "out")):
        try:
            code = cli.main([command, *argv])
        except SystemExit as e:  # argparse's exit after the error line
            code = e.code
        out, err = capsys.readouterr()
        assert code in (1, 2) and TOKEN not in out + err and TOKEN[:8] not in out + err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_top_level_and_redact(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main([TOKEN])
    assert TOKEN not in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "not_hf_shaped_secret")
    assert redact("x not_hf_shaped_secret hf_abcd1234 hf-hub:a/b hf_hub:c") == "x hf_*** hf_*** hf-hub:a/b hf_hub:c"
