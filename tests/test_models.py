"""Every config is a timm model with the whole timm model API, parametrized over the registry."""
from __future__ import annotations

import pytest
import timm
import torch
from conftest import requires_mmpretrain
from timm.data import create_transform, resolve_data_config
from timm.models import group_parameters

import resnet_hub
from resnet_hub.zoo.configs import load_config

NAMES = resnet_hub.list_configs()
CIFAR = [n for n in NAMES if load_config(n).architecture.stem == "cifar"]
STOCK = {  # the timm architecture each non-CIFAR config must equal
    "v1": "resnet{d}", "v1c": "resnet{d}c", "v1d": "resnet{d}d",
}


def _small_input(cfg, batch=2):
    size = 32 if cfg.architecture.stem == "cifar" else 64
    return torch.randn(batch, 3, size, size)


@pytest.mark.parametrize("name", NAMES)
def test_plain_and_hub_names_create_the_same_model(name):
    torch.manual_seed(0)
    a = timm.create_model(name)
    torch.manual_seed(0)
    b = timm.create_model(f"hub:{name}")
    assert type(a) is type(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert b.pretrained_cfg["hf_hub_id"] == f"{resnet_hub.DEFAULT_NAMESPACE}/{name}"


@pytest.mark.parametrize("name", [n for n in NAMES if n not in CIFAR])
def test_stock_configs_equal_timm_architectures(name):
    cfg = load_config(name)
    arch = STOCK[cfg.architecture.stem].format(d=cfg.architecture.depth)
    assert cfg.architecture_name == arch
    ours = timm.create_model(name, num_classes=cfg.num_classes)
    theirs = timm.create_model(arch, num_classes=cfg.num_classes)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@requires_mmpretrain
@pytest.mark.mmpretrain
@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_mmpretrain(name):
    from resnet_hub.reference import build_mmpretrain_model

    reference = build_mmpretrain_model(name)
    with torch.device("meta"):
        ours = timm.create_model(name)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference) - sum(p.numel() for p in reference.data_preprocessor.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_consistency(name):
    """As timm's test_model_default_cfgs: shapes at the config's own input size."""
    model = timm.create_model(name).eval()
    cfg = model.pretrained_cfg
    x = torch.randn(1, *cfg["input_size"])
    with torch.inference_mode():
        features = model.forward_features(x)
        assert features.shape == (1, model.num_features, *cfg["pool_size"])
        assert model.forward_head(features).shape == (1, cfg["num_classes"])
        assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
    params = dict(model.named_parameters())
    assert cfg["first_conv"] + ".weight" in params
    assert cfg["classifier"] == "fc" and cfg["label_names"] and len(cfg["label_names"]) == cfg["num_classes"]
    assert cfg["license"] == "apache-2.0" and cfg["paper_ids"] == ("arXiv:1512.03385",)


@pytest.mark.parametrize("name", NAMES)
def test_features_only_and_intermediates(name):
    cfg = load_config(name)
    reductions = [1, 2, 4, 8] if cfg.architecture.stem == "cifar" else [4, 8, 16, 32]
    x = _small_input(cfg)
    model = timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    assert model.feature_info.reduction() == reductions
    with torch.inference_mode():
        feats = model(x)
    assert [f.shape[-1] for f in feats] == [x.shape[-1] // r for r in reductions]
    assert [f.shape[1] for f in feats] == model.feature_info.channels()

    full = timm.create_model(name).eval()
    with torch.inference_mode():
        final, inter = full.forward_intermediates(x)
        torch.testing.assert_close(final, full.forward_features(x))
    assert [t.shape[-1] for t in inter[1:]] == [x.shape[-1] // r for r in reductions]


@pytest.mark.parametrize("name", NAMES)
def test_checkpointing_channels_last_grouping(name):
    cfg = load_config(name)
    x = _small_input(cfg)
    model = timm.create_model(name).eval()
    with torch.no_grad():
        ref = model(x)
    model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        out_cl = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out_cl, ref, rtol=1e-4, atol=1e-4)  # measured 8.6e-8 (AMD EPYC Zen 4, 1 and 2 threads)

    model.train()
    model.set_grad_checkpointing(True)
    assert model.grad_checkpointing
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())

    groups = group_parameters(model, model.group_matcher())
    assert sorted(n for names in groups.values() for n in names) == sorted(n for n, _ in model.named_parameters())


@pytest.mark.parametrize("name", NAMES)
def test_eval_transform_follows_the_config(name):
    cfg = load_config(name)
    model = timm.create_model(name)
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, cfg.eval.input_size, cfg.eval.input_size)
    assert data_cfg["mean"] == cfg.eval.mean and data_cfg["std"] == cfg.eval.std
    transform = create_transform(**data_cfg)
    resize, crop = transform.transforms[0], transform.transforms[1]
    if cfg.eval.resize is None:  # CIFAR: 32x32 in, nothing resized
        assert resize.size == cfg.eval.input_size and crop.size == (cfg.eval.input_size,) * 2
    elif cfg.eval.resize.mode == "shorter_edge":
        assert resize.size == cfg.eval.resize.size  # an int: the shorter edge
    else:
        assert resize.size == (cfg.eval.resize.size,) * 2  # CUB: squashed to a square
    if cfg.eval.resize is not None:
        assert resize.interpolation.value == cfg.eval.resize.interpolation
        assert crop.size == (cfg.eval.center_crop,) * 2


@pytest.mark.parametrize("name", [CIFAR[0], "resnetv1d50_8xb32_in1k"])
def test_num_classes_and_in_chans_overrides(name):
    model = timm.create_model(name, num_classes=7, in_chans=1).eval()
    size = model.pretrained_cfg["input_size"][-1]
    with torch.inference_mode():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 7)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    """Our CIFAR model traces as one graph (no graph breaks) and the compiled call equals eager.

    aot_eager runs dynamo and AOTAutograd, the parts that depend on our model code; inductor's C++
    codegen of the same architecture is tested by tests/test_train.py's compile fast path (compiling
    it a second time here cost 98 s of the suite on 2 cores).
    """
    model = timm.create_model(CIFAR[0]).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)  # inductor measured 1.7e-8 (Zen 4)


def test_list_models_finds_the_zoo():
    assert set(timm.list_models("*cifar10*")) == set(CIFAR)  # cifar10 and cifar100
    assert len(CIFAR) == 6
    assert set(NAMES) <= set(timm.list_models(pretrained=True))
    assert {f"resnet{d}_cifar" for d in (18, 34, 50, 101, 152)} <= set(timm.list_models("*_cifar"))


def test_unknown_plain_name_is_timm_error():
    with pytest.raises(RuntimeError, match="Unknown model"):
        timm.create_model("resnet50_8xb32_inik")
