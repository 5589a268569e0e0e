"""Fine-tuning pieces in-process: --pretrained loading (bundles, safetensors, hub:), the image-size line,
gradient clipping and the EMA (issue 18, items 1-3). The CLI journey is in test_finetune_journey.py."""
from __future__ import annotations

import json

import pytest
import torch
from hub_server import fill_hf_cache
from safetensors.torch import save, save_file

import resnet_hub  # noqa: F401  (registers the zoo's timm models)
from resnet_hub import load_config
from resnet_hub.hub.bundle import write_bundle
from resnet_hub.train import trainer
from resnet_hub.train.imagesize import describe_image_fit
from resnet_hub.train.pretrained import load_pretrained, parse_pretrained, source_facts

CIFAR = load_config("resnet18_8xb16_cifar10")
TINY = {"channels": (8, 16, 32, 64), "stem_width": 8}


def _tiny(num_classes: int = 10, cfg=CIFAR, **kwargs):
    return trainer.create_model(cfg, num_classes=num_classes, **TINY, **kwargs)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A 10-class tiny CIFAR bundle with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = _tiny()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    folder = tmp_path_factory.mktemp("b") / "digits_r18"
    write_bundle(model, CIFAR, folder, provenance={"repo_id": "me/digits_r18"},
                 model_args={k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
    return folder, {k: v.clone() for k, v in model.state_dict().items()}


def _load(source, num_classes):
    return load_pretrained(lambda **kw: _tiny(num_classes, **kw), source, cfg=CIFAR, num_classes=num_classes)


@pytest.mark.parametrize("form", ["local-dir:{}", "{}", "{}/model.safetensors"])
def test_bundle_forms_load_the_body_and_a_new_head(bundle, form):
    folder, want = bundle
    source = parse_pretrained(form.format(folder))
    model, lines = _load(source, 4)
    got = model.state_dict()
    body = [k for k in want if not k.startswith("fc.")]
    assert all(torch.equal(got[k], want[k]) for k in body) and len(body) > 50
    assert got["fc.weight"].shape == (4, 64) and "head: 10 -> 4 classes, new" in lines[-1]
    assert lines[0].startswith(f"pretrained: {source.description}") and str(folder.parent) not in "\n".join(lines)
    same, lines = _load(source, 10)  # the same classes: the head is loaded too
    assert all(torch.equal(same.state_dict()[k], v) for k, v in want.items()) and "head included" in lines[0]


def test_hub_name_loads_from_the_filled_cache_offline(bundle, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder, want = bundle
    fill_hf_cache(tmp_path / "hub", "someone/resnet18_8xb16_cifar10",
                  {"model.safetensors": (folder / "model.safetensors").read_bytes()})
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "someone")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    source = parse_pretrained("hub:resnet18_8xb16_cifar10")
    assert source_facts(source) == {"pretrained": "hub:resnet18_8xb16_cifar10",
                                    "base_model": "someone/resnet18_8xb16_cifar10"}
    model, lines = _load(source, 3)
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], want["layer1.0.conv1.weight"])
    assert "head: 10 -> 3 classes, new" in lines[-1]
    with pytest.raises(ConnectionError, match="could not get model.safetensors from the Hub repo someone/nothere"):
        _load(parse_pretrained("hf-hub:someone/nothere"), 3)


def test_weights_of_another_architecture_are_one_clear_error(tmp_path):
    other = trainer.create_model(load_config("resnet34_8xb16_cifar10"), num_classes=10, **TINY)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "r34.safetensors"))
    with pytest.raises(ValueError, match=r"does not fit this config's architecture \(unexpected: layer1.2"):
        _load(parse_pretrained(str(tmp_path / "r34.safetensors")), 4)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors is not a readable safetensors file"):
        _load(parse_pretrained(str(tmp_path / "junk.safetensors")), 4)


def test_base_model_of_local_weights_comes_from_their_metadata(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_HUB_NAMESPACE", "zoo")
    folder, _ = bundle
    assert source_facts(parse_pretrained(str(folder))) == {"pretrained": "local folder digits_r18",
                                                          "base_model": "me/digits_r18"}
    in1k = load_config("resnet18_8xb32_in1k")
    tensors = {"x": torch.zeros(1)}
    released_sha = in1k.checkpoint.sha256 or in1k.checkpoint.sha256_prefix
    for name, meta, base in [("release", {"config": in1k.name, "source_url": in1k.checkpoint.url},
                              f"zoo/{in1k.name}"),
                             ("other", {"config": in1k.name, "source_url": "https://example.com/x.pth"}, None),
                             # the release's URL, but a file of another sha256 (convert --no-verify): not the release
                             ("unverified", {"config": in1k.name, "source_url": in1k.checkpoint.url,
                                             "source_sha256": "0" * 64}, None),
                             ("local release", {"config": in1k.name, "source_file": "r18.pth",
                                                "source_sha256": released_sha},
                              f"zoo/{in1k.name}")]:
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(save(tensors, metadata=meta))
        assert source_facts(parse_pretrained(str(path))).get("base_model") == base


def test_images_much_larger_than_the_crop_get_one_line():
    line = describe_image_fit(CIFAR, [(128, 128)] * 5)
    assert line.startswith("note: training takes random 32x32 patches of 128x128 images")
    assert "eval resizes whole images to 32x32" in line and "--img-size 128" in line
    assert describe_image_fit(CIFAR, [(40, 40)]) is None  # about the crop's size: nothing to say
    assert describe_image_fit(load_config("resnet18_8xb32_in1k"), [(1024, 768)]) is None  # random-resized crop


def test_clip_grad_and_ema_follow_the_updates():
    from accelerate import Accelerator

    torch.manual_seed(0)
    model = _tiny()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    acc = Accelerator(cpu=True)
    step = trainer.build_train_step(CIFAR, acc, model, lr=0.5, iters_per_epoch=4, num_classes=10, clip_grad=1e-3,
                                    model_ema_decay=0.9)
    clipped = []
    original = acc.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        clipped.append((max_norm, float(original(params, max_norm, *a, **k))))
        return clipped[-1][1]

    acc.clip_grad_norm_ = spy  # the instance's method: what TrainStep calls
    for _ in range(3):
        step(torch.randint(0, 255, (4, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (4,)))
    assert [m for m, _ in clipped] == [1e-3] * 3 and all(norm > 1e-3 for _, norm in clipped)
    assert step.eval_model is step.ema.module and step.ema.module is not model
    key = "layer1.0.conv1.weight"
    ema, now, was = step.ema.module.state_dict()[key], model.state_dict()[key], start[key]
    assert not torch.equal(ema, now) and not torch.equal(ema, was)  # between the start and the weights now
    assert json.dumps(step.updates) == "3"


def test_the_readme_fine_tune_commands_parse():
    """Every `resnet-hub train` of the README's fine-tuning section is a command line the trainer takes."""
    import argparse
    import re
    import shlex

    from conftest import REPO

    text = (REPO / "README.md").read_text()
    start = text.index("## Fine-tune on your own images\n")
    section = text[start:text.index("\n## ", start + 1)]
    lines = " ".join(re.findall(r"```bash\n(.*?)```", section, flags=re.S)).replace("\\\n", " ").splitlines()
    commands = [shlex.split(line, comments=True) for line in lines]
    trains = [argv[2:] for argv in commands if argv[:2] == ["resnet-hub", "train"]]
    assert trains
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)
    for argv in trains:
        args = parser.parse_args(argv)
        assert args.pretrained and args.img_size


def test_a_resume_never_reads_the_starting_weights_again(bundle, tmp_path, monkeypatch, capsys):
    """--resume builds a fresh model (the checkpoint has every weight) and takes the card's facts from run.json."""
    import argparse

    from accelerate import Accelerator

    from resnet_hub.train import pretrained
    from resnet_hub.train.plan import resolve_plan

    folder, _ = bundle
    parser = argparse.ArgumentParser()
    trainer.add_arguments(parser)
    argv = ["--config", CIFAR.name, "--pretrained", str(folder), "--output-dir", str(tmp_path), "--num-classes", "4"]
    plan = resolve_plan(parser.parse_args([*argv, "--resume"]), CIFAR, world_size=1, device_type="cpu")

    def refuse(*a, **k):
        raise AssertionError("the starting weights were read on --resume")

    monkeypatch.setattr(pretrained, "load_pretrained", refuse)
    monkeypatch.setattr(pretrained, "source_facts", refuse)
    model = trainer._build_model(plan.recipe, plan, Accelerator(cpu=True))
    assert model.fc.out_features == 4
    assert "pretrained: local folder digits_r18 not read again: --resume restores" in capsys.readouterr().out
    (tmp_path / "run.json").write_text(json.dumps({"start": {"pretrained": "local folder digits_r18",
                                                             "dataset_name": "digits"}}))
    facts, note = trainer._start_facts(plan, plan.dataset, tmp_path)
    assert facts == {"pretrained": "local folder digits_r18", "dataset_name": "digits"} and note is None


def test_an_mmpretrain_pth_without_a_hash_in_its_name_needs_sha256_or_no_verify(tmp_path):
    """The issue's first wall: a user's own mmpretrain .pth. train now takes --sha256 / --no-verify as convert does,
    and loads the backbone through the converter's mapping (checkpoint_io: weights_only, nothing unpickled)."""
    from convert_helpers import checkpoint_dict, reference_model, sha256_of

    full = load_config("resnet18_8xb16_cifar10")
    reference = reference_model(full.name, seed=3)
    path = tmp_path / "mine.pth"
    torch.save(checkpoint_dict(reference, full.name, "mmpretrain-1.x"), path)

    def load(source):
        return load_pretrained(lambda **kw: trainer.create_model(full, num_classes=4, **kw), source, cfg=full,
                               num_classes=4)

    with pytest.raises(ValueError, match="--sha256"):
        load(parse_pretrained(str(path)))
    with pytest.raises(ValueError, match="sha256"):
        load(parse_pretrained(str(path), sha256="0" * 64))
    for source in (parse_pretrained(str(path), verify=False), parse_pretrained(str(path), sha256=sha256_of(path))):
        model, lines = load(source)
        got, want = model.state_dict(), reference.backbone.state_dict()
        assert all(torch.equal(got[k], v) for k, v in want.items()) and len(want) > 50
        assert lines == ["pretrained: backbone from mmpretrain checkpoint mine.pth (mmpretrain keys mapped by the "
                         "converter)", "new: fc (4 classes), freshly initialised"]
