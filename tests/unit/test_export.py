"""The export stage's files: onnxruntime and TorchScript give PyTorch's outputs within 1e-4 on generated images fed
through the project's own preprocessing, for the scratch convnet, a transfer net and a cached-features head (both
on a random-weight base), and preprocessing.json alone is enough to feed them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import timm
import torch
from helpers.study import LIMITS, config, save_checkpoint
from PIL import Image

from smallvision import networks
from smallvision.data.images import Resize, load_resized
from smallvision.data.preprocess import network_input
from smallvision.data.synthetic import generate
from smallvision.errors import ConfigError
from smallvision.export import ONNX_FILE, PREPROCESSING_FILE, TORCHSCRIPT_FILE, export_checkpoint
from smallvision.files import OUTPUT_MARKER as MARKER
from smallvision.models import backbones
from smallvision.models.heads import TransferNet

CLASSES = ["circle", "square", "triangle"]
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.load. is deprecated:FutureWarning")


def write_checkpoint(path: Path, technique: str, *overrides: str) -> tuple[torch.nn.Module, dict]:
    """A checkpoint as training writes it (the spec and the network's weights under `net.`), untrained."""
    cfg = config(*overrides)
    tech, bb = cfg.techniques[technique], cfg.backbone
    dim = None
    if tech.kind != "scratch":
        base = backbones.create_backbone(bb.model_dump(), allow_random=True)
        dim = backbones.feature_dim(base, tech.image_size, tech.head.pool)
    spec = networks.make_spec(tech, bb, CLASSES, dim)
    torch.manual_seed(0)
    net = networks.build_net(spec, pretrained=False).eval()
    # untrained logits can be tiny (1e-3 on the random test base): scale the last layer so they spread like a
    # trained network's, or a 1e-4 tolerance would compare nothing
    size = spec["image_size"]
    probe = network_input(np.random.default_rng(0).integers(0, 256, (8, size, size, 3), np.uint8), [0.5] * 3, [0.5] * 3)
    whole = (
        net if spec["network"] != "head" else TransferNet(backbones.create_backbone(bb.model_dump()), net, spec["pool"])
    )
    with torch.no_grad():
        spread = whole(probe).std()
        last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight /= spread
        last.bias /= spread
    save_checkpoint(net, spec, path)
    return net, spec


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Generated shapes on varied backgrounds, some wider than tall and all larger than the input (so resized)."""
    root = tmp_path_factory.mktemp("photos")
    generate(root, classes=CLASSES, per_class=4, image_size=96, seed=3)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for i, f in enumerate(files[::3]):
        Image.open(f).convert("RGB").resize((96 + 8 * i, 72)).save(f)
    return files


@pytest.fixture(scope="module")
def exported(tmp_path_factory, photos) -> dict[str, tuple[Path, torch.nn.Module, dict]]:
    """technique -> (export folder, the PyTorch network, its spec) for the scratch convnet, a transfer net and a
    cached-features head. The transfer nets' base is timm's tiny test_efficientnet with random weights, read from a
    file as pretrained weights are (a head checkpoint is put back on its base that way)."""
    root = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    base = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    torch.save(base.state_dict(), root / "base.pth")
    tiny = ["backbone.name=test_efficientnet", "backbone.timm_name=test_efficientnet", "backbone.weights.source=file"]
    tiny += [f"backbone.weights.file={root / 'base.pth'}", "backbone.weights.match=name"]
    tiny += ["backbone.mean=[0.5,0.5,0.5]", "backbone.std=[0.5,0.5,0.5]"]  # stated (null: timm's, ImageNet's here)
    found = {}
    for technique in ("baseline", "fine_tune", "feature_extract"):
        net, spec = write_checkpoint(root / f"{technique}.ckpt", technique, *([] if technique == "baseline" else tiny))
        if spec["network"] == "head":
            net, spec = networks.load_checkpoint(root / f"{technique}.ckpt")  # the head on its base
        out = root / technique
        export_checkpoint(
            root / f"{technique}.ckpt", out, photos[:4], technique=technique, opset=20, tolerance=1e-4, limits=LIMITS
        )
        found[technique] = (out, net.eval(), spec)
    return found


@pytest.mark.parametrize("technique", ["baseline", "fine_tune", "feature_extract"])
def test_exported_files_match_pytorch(exported, photos, technique):
    out, net, spec = exported[technique]
    assert sorted(p.name for p in out.iterdir()) == sorted([ONNX_FILE, TORCHSCRIPT_FILE, PREPROCESSING_FILE, MARKER])
    assert (out / MARKER).read_text() == "export\n"  # the stage's own folder: its next run may replace it

    # images the export never saw, a batch size it was not traced with, through the project's preprocessing
    images = np.stack([load_resized(p, spec["image_size"], LIMITS) for p in photos[4:9]])
    x = network_input(images, spec["mean"], spec["std"])
    with torch.no_grad():
        logits = net(x).numpy()
    probabilities = networks.class_probabilities(torch.from_numpy(logits)).numpy()
    session = onnxruntime.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    onnx_logits, onnx_probabilities = session.run(["logits", "probabilities"], {"image": x.numpy()})
    scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
    with torch.no_grad():
        ts_logits, ts_probabilities = (t.numpy() for t in scripted(x))
    assert logits.shape == (5, 3)  # one logit per class (three classes: softmax)
    assert np.ptp(logits, axis=0).min() > 1e-2  # different images, different outputs: a real comparison
    for got in (onnx_logits, ts_logits):
        np.testing.assert_allclose(got, logits, rtol=0, atol=1e-4)
    for got in (onnx_probabilities, ts_probabilities):
        np.testing.assert_allclose(got, probabilities, rtol=0, atol=1e-4)

    # the opset is recorded, and is the one the file declares
    model = onnx.load(str(out / ONNX_FILE))
    (declared,) = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    described = json.loads((out / PREPROCESSING_FILE).read_text())
    assert described["onnx_opset"] == declared == 20
    assert described["classes"] == CLASSES and described["technique"] == technique
    assert described["parity"]["images"] == 4 and max(described["parity"]["max_abs_difference"].values()) <= 1e-4
    if technique != "baseline":  # a head checkpoint too: the base's convolutions are in the file
        assert described["network"] == "test_efficientnet"
        assert sum(n.op_type == "Conv" for n in model.graph.node) > 5


def test_preprocessing_json_is_enough_to_feed_the_network(exported, photos):
    """What a user without this project does (README "Export"): PIL and numpy, from preprocessing.json alone; the
    pretrained base's photos are cropped as it was trained (the photos are wider than tall), the scratch convnet's
    squashed."""
    for technique, mode in (("fine_tune", "crop"), ("baseline", "squash")):
        out, _, _ = exported[technique]
        pre = json.loads((out / PREPROCESSING_FILE).read_text())["preprocessing"]
        r, size = pre["resize"], pre["image_size"]
        assert r["mode"] == mode and r["size"] == size
        if technique == "fine_tune":  # the backbone's stated normalisation, not ImageNet's
            assert pre["mean"] == [0.5, 0.5, 0.5] and pre["std"] == [0.5, 0.5, 0.5]
        pixels = []
        for photo in photos:  # the README's example, line by line
            image, resample = Image.open(photo).convert("RGB"), getattr(Image.Resampling, r["interpolation"].upper())
            if r["mode"] == "crop":
                short, (w, h) = math.floor(size / r["crop_pct"]), image.size
                image = image.resize((short, int(short * h / w)) if w <= h else (int(short * w / h), short), resample)
                left, top = round((image.width - size) / 2), round((image.height - size) / 2)
                image = image.crop((left, top, left + size, top + size))
            else:
                image = image.resize((size, size), resample)
            pixels.append(np.asarray(image, np.float32))
        by_hand = ((np.stack(pixels) / 255 - np.array(pre["mean"])) / np.array(pre["std"])).transpose(0, 3, 1, 2)
        ours = network_input(np.stack([load_resized(p, Resize(**r), LIMITS) for p in photos]), pre["mean"], pre["std"])
        np.testing.assert_allclose(by_hand, ours.numpy(), rtol=0, atol=1e-5)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match=r"export.opset=11 must be a whole number >= 18"):
        config("export.opset=11")
    with pytest.raises(ConfigError, match=r"export.tolerance=0 must be a number in \(0, 1\]"):
        config("export.tolerance=0")
    with pytest.raises(ConfigError, match=r"export.technique='nope' is unknown"):
        config("export.technique=nope")
