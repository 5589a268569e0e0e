"""Bundles in transformers: TimmWrapper's AutoModel classes, its image processor and the pipeline.

transformers is a consumer we do not control, so these load bundles written by the bundle writer
(random weights, random BatchNorm statistics) exactly as a user would, from the folder, and
compare with plain timm loading the same folder. The CIFAR bundle's architecture comes from
``import resnet_hub``, as the card says.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
import transformers
from conftest import run_python
from convert_helpers import randomize_
from PIL import Image
from publish_helpers import release_provenance

import resnet_hub  # noqa: F401  (registers resnet18_cifar, which the CIFAR bundle names)
from resnet_hub import load_config
from resnet_hub.hub.bundle import transformers_problems, write_bundle
from resnet_hub.zoo.labels import label_names

STOCK = "resnet18_8xb32_in1k"  # plain timm resnet18
CIFAR = "resnet18_8xb16_cifar10"  # resnet18_cifar, from resnet_hub
# scikit-image's colour photographs (the eval transforms take RGB), several sizes and aspect ratios
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
pytestmark = pytest.mark.slow  # importing transformers and building models takes several seconds on 2 cores


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    out = {}
    for i, name in enumerate((STOCK, CIFAR)):
        model = randomize_(timm.create_model(name), seed=i)
        out[name] = write_bundle(model, load_config(name), tmp_path_factory.mktemp(name),
                                 provenance=release_provenance(name))
    return out


def _timm(bundle):
    return timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()


def _photos() -> list[np.ndarray]:
    import skimage.data

    return [getattr(skimage.data, p)() for p in PHOTOS]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("name", [STOCK, CIFAR])
def test_config_json_is_one_both_libraries_read(bundles, name):
    config = json.loads((bundles[name] / "config.json").read_text())
    assert transformers_problems(config) == []
    assert "num_classes" not in config["model_args"] and config["model_args"]["in_chans"] == 3
    tconfig = transformers.AutoConfig.from_pretrained(bundles[name])
    assert tconfig.model_type == "timm_wrapper" and tconfig.num_labels == load_config(name).num_classes


@pytest.mark.parametrize("name", [STOCK, CIFAR])
def test_logits_and_pooled_features_equal_timms(bundles, name):
    bundle, size = bundles[name], load_config(name).eval.input_size
    reference = _timm(bundle)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    classifier = transformers.AutoModelForImageClassification.from_pretrained(bundle).eval()
    backbone = transformers.AutoModel.from_pretrained(bundle).eval()
    with torch.no_grad():
        logits, expected = classifier(pixel_values=x).logits, reference(x)
        pooled = backbone(pixel_values=x).pooler_output
        expected_pooled = reference.forward_head(reference.forward_features(x), pre_logits=True)
    # the same timm module on the same input: measured 0.0 on AMD Zen 4; the bound is the 1e-5 relative
    assert logits.shape == expected.shape and _relative(logits, expected) <= 1e-5
    assert pooled.shape == expected_pooled.shape and _relative(pooled, expected_pooled) <= 1e-5


@pytest.mark.parametrize("name", [STOCK, CIFAR])
def test_image_processor_is_timms_eval_transform(bundles, name):
    bundle = bundles[name]
    processor = transformers.AutoImageProcessor.from_pretrained(bundle)
    model = _timm(bundle)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    photos = _photos()
    pixels = processor(photos)["pixel_values"]
    expected = torch.stack([transform(Image.fromarray(p)) for p in photos])
    # both run timm's transform on the same PIL image (transformers converts the array with
    # to_pil_image): measured difference 0.0 on AMD Zen 4, bound kept at 0
    assert pixels.shape == expected.shape and float((pixels - expected).abs().max()) == 0.0


@pytest.mark.parametrize("name", [STOCK, CIFAR])
def test_pipeline_names_the_configs_classes(bundles, name):
    bundle, cfg = bundles[name], load_config(name)
    classifier = transformers.pipeline("image-classification", model=str(bundle), device="cpu")
    photo = Image.fromarray(_photos()[1])
    predictions = classifier(photo, top_k=cfg.num_classes)
    assert {p["label"] for p in predictions} == set(label_names(cfg.labels))
    model = _timm(bundle)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        top = int(model(transform(photo)[None]).argmax())
    assert predictions[0]["label"] == label_names(cfg.labels)[top]


def test_a_new_head_for_fine_tuning(bundles):
    bundle = bundles[CIFAR]
    model = transformers.AutoModelForImageClassification.from_pretrained(bundle, num_labels=5,
                                                                         ignore_mismatched_sizes=True).eval()
    reference = _timm(bundle)
    assert model.config.num_labels == 5 and model.timm_model.fc.out_features == 5
    assert torch.equal(model.timm_model.conv1.weight, reference.conv1.weight)  # the backbone is the bundle's
    with torch.no_grad():
        assert model(pixel_values=torch.randn(3, 3, 32, 32)).logits.shape == (3, 5)


def test_cifar_bundle_without_import_resnet_hub_fails_naming_the_architecture(bundles):
    """Without resnet_hub, timm does not know resnet18_cifar, and TimmWrapper turns timm's "Unknown
    model" into "upgrade timm" (modeling_timm_wrapper._create_timm_model_with_error_handling): no
    field of the bundle reaches that message, so the card says `import resnet_hub` (next test)."""
    code = ("import sys\nfrom transformers import AutoModelForImageClassification\n"
            f"AutoModelForImageClassification.from_pretrained({str(bundles[CIFAR])!r})\n")
    proc = run_python(code, env={"PYTHONPATH": ""})  # resnet_hub not importable: a user without the package
    assert proc.returncode != 0
    assert "resnet18_cifar" in proc.stderr, proc.stderr[-2000:]


def test_readme_publishing_snippet_runs(tmp_path, monkeypatch, capsys):
    import ast
    import re

    from conftest import REPO
    from publish_helpers import make_bundle

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Publishing to the Hub\n"):]
    section = section[:section.find("\n## ", 1)]
    [python] = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    make_bundle(CIFAR, tmp_path / "out" / CIFAR)
    Image.fromarray(_photos()[1]).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    predictions = ast.literal_eval(out[1])
    assert out[0] == "True" and len(predictions) == 3
    assert {p["label"] for p in predictions} <= set(label_names("cifar10"))


def test_card_says_import_resnet_hub_for_transformers_only_where_needed(bundles):
    for name, needed in ((CIFAR, True), (STOCK, False)):
        text = (bundles[name] / "README.md").read_text()
        section = text[text.index("### With transformers"):text.index("### mmpretrain-style inference")]
        assert "pipeline(\"image-classification\"" in section and "AutoModelForImageClassification" in section
        assert ("import resnet_hub" in section) == needed


@pytest.mark.parametrize("name", [CIFAR, STOCK])
def test_the_cards_transformers_snippets_run_against_the_repo(bundles, name, tmp_path, local_hub):
    """The card's "With transformers" code, as written, on the bundle served under its repo id."""
    import ast
    import re

    from resnet_hub.zoo.configs import hub_repo_id

    bundle = bundles[name]
    local_hub.add(hub_repo_id(name), {p.name: p.read_bytes() for p in bundle.iterdir()})
    text = (bundle / "README.md").read_text()
    section = text[text.index("### With transformers"):text.index("### mmpretrain-style inference")]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))
    Image.fromarray(_photos()[0]).save(tmp_path / "image1.jpg")
    env = {"HF_ENDPOINT": local_hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = run_python(code + "\nprint(tuple(logits.shape), tuple(features.shape))\n", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config(name)
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"(1, {cfg.num_classes}) (1, 512)"
    predictions = ast.literal_eval(next(line for line in lines if line.startswith("[{")))
    assert len(predictions) == 5 and {p["label"] for p in predictions} <= set(label_names(cfg.labels))
