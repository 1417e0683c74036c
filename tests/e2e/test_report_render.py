"""reports/index.html in a real browser: headless Chromium renders the page of a tiny generated study.

The study is generated, not trained: a split of generated images and, per technique, an untrained network saved
the way training saves it, with its real test predictions, a made-up history and metrics.json. The visualize
stage itself (`run_visualize`) then writes every figure and the page, as `dvc repro visualize` does.

The browser test is skipped where Chromium is not installed (CI does not install it); the page checks run
everywhere. To run it, and keep the screenshot to look at:

    apt-get install -y chromium
    REPORT_SCREENSHOT=/tmp/report_screenshot.png python -m pytest tests/e2e/test_report_render.py -s
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from helpers.browser import CHROMIUM_FLAGS, chromium
from helpers.study import LIMITS, config, make_dataset, save_checkpoint
from PIL import Image

from smallvision import provenance
from smallvision.data.images import load_resized
from smallvision.data.manifest import MANIFEST, load_manifest, manifest_digest
from smallvision.data.preprocess import network_input
from smallvision.models import backbones
from smallvision.networks import FROM_SCRATCH, build_net, make_spec, network_name, spec_resize
from smallvision.predict import probabilities
from smallvision.runs import write_outputs
from smallvision.schema import Settings
from smallvision.stats import wilson_interval
from smallvision.visualize.stage import run_visualize

WIDTH, HEIGHT = 1280, 4000
SECTIONS = [
    "comparison",
    "curves",
    "confusion",
    "gradcam",
    "finetuning",
    "activations",
    "filters",
    "pairs",
    "patches",
    "kernels",
    "augmentation",
    "mistakes",
    "audit",
    "lr_find",
]


def _fake_training(cfg: Settings, root: Path) -> None:
    """models/<technique>/: best.ckpt of an untrained net, its real test predictions, a history, metrics.json."""
    records, classes = load_manifest(root / cfg.paths.prepared)
    test_rows = [i for i, r in enumerate(records) if r.split == "test"]
    test = [records[i] for i in test_rows]
    truth = torch.tensor([classes.index(r.label) for r in test])
    rng = np.random.default_rng(0)
    for k, (name, tech) in enumerate(cfg.techniques.items()):
        in_features = None
        if tech.kind not in FROM_SCRATCH:
            bb = {**cfg.backbone.model_dump(), "weights": {"source": "none"}}
            base = backbones.create_backbone(bb, allow_random=True)
            in_features = backbones.feature_dim(base, tech.image_size, cfg.backbone.head_pool)
        spec = make_spec(tech, cfg.backbone, classes, in_features)
        if spec["network"] == "head":
            spec["network"] = "transfer"  # the whole net (random base): no pretrained weights needed to reload it
        torch.manual_seed(k)
        net = build_net(spec, pretrained=False).eval()
        out = root / cfg.paths.models / name
        save_checkpoint(net, spec, out / "best.ckpt")
        images = np.stack([load_resized(r.file, spec_resize(spec), LIMITS) for r in test])
        prob, predicted = probabilities(net, network_input(images, spec["mean"], spec["std"])).max(1)
        epochs = 5
        train_acc = np.linspace(0.5, 0.95, epochs)
        val_acc = np.clip(train_acc - np.linspace(0, 0.2, epochs) + rng.normal(0, 0.02, epochs), 0, 1)
        history = [
            {
                "epoch": e + 1,
                "train_loss": 1 - train_acc[e],
                "train_acc": train_acc[e],
                "val_loss": 1.1 - val_acc[e],
                "val_acc": val_acc[e],
            }
            for e in range(epochs)
        ]
        correct = int((predicted == truth).sum())
        low, high = wilson_interval(correct, len(test))
        metrics = {
            "technique": name,
            "kind": tech.kind,
            "backbone": network_name(tech, cfg.backbone),
            "test_accuracy": correct / len(test),
            "test_images": len(test),
            "test_correct": correct,
            "ci95_low": low,
            "ci95_high": high,
            "wall_time_s": 10.0 * (k + 1),
            **provenance.fields(cfg, manifest_digest(root / cfg.paths.prepared / MANIFEST), None),
        }
        # the files exactly as training writes them
        write_outputs(out, metrics, history, {"y": truth, "pred": predicted, "prob": prob}, records, test_rows, classes)


class _Sources(HTMLParser):
    """Every src/href of the page and the section ids in order."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "section":
            self.sections.append(a.get("id") or "")
        for key in ("src", "href"):
            if tag != "img" and a.get(key):
                self.links.append(a[key])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The tiny study's reports/index.html: the stage on five untrained nets (17-23 s measured on the 2-core CPU
    while other jobs shared it; the patches and pairs sections take most of the added time)."""
    root = make_dataset(tmp_path_factory.mktemp("study"), per_class=16)
    cfg = config(
        "visualize.dpi=60",
        "visualize.filters.steps=3",
        "visualize.filters.per_layer=4",
        "visualize.filters.columns=4",
        "visualize.activations.max_channels=32",
        "visualize.activations.columns=16",
        "visualize.mistakes.max_images=8",
        "visualize.gradcam.per_group=3",
        "visualize.threads=1",
    )  # one thread: no oversubscription on a CPU shared with other jobs
    _fake_training(cfg, root)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        out = run_visualize(cfg, root)
    finally:
        torch.set_num_threads(threads)  # the stage sets it for the process: give the other tests theirs back
    print(
        f"\nvisualize stage on the tiny study: {time.perf_counter() - started:.1f} s "
        f"({', '.join(f'{k} {s:.1f} s' for k, s in out.timings.items())})"
    )
    assert out.notes == []
    return out.index


def test_the_page_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    parsed = _Sources()
    parsed.feed(page)
    assert parsed.sections == SECTIONS  # the comparison first, then curves, Grad-CAM, activations, filters, ...
    # comparison 1 + curves 5 + confusion 5 + Grad-CAM 5 + fine-tuning 1 + activations 3 + filters 3 + pairs 3
    # + patches 3 + kernels 5 + augmentation 2 (the group's, modern's own) + mistakes 1
    assert len(parsed.images) == 37
    for src in parsed.images:
        if src.startswith("data:"):
            head, _, data = src.partition(",")
            assert head == "data:image/png;base64"
            assert base64.b64decode(data, validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
        else:  # a relative file next to the page
            assert not urlparse(src).scheme and not src.startswith("/"), src
            assert (report.parent / unquote(src)).is_file(), src
    for link in parsed.links:  # nothing fetched from elsewhere: only anchors within the page
        assert link.startswith("#"), link


def test_chromium_renders_the_page(report, tmp_path):
    screenshot = Path(os.environ.get("REPORT_SCREENSHOT") or tmp_path / "report.png")
    screenshot.unlink(missing_ok=True)
    cmd = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={screenshot}",
        report.resolve().as_uri(),
    ]
    started = time.perf_counter()
    result = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180)
    print(f"\nchromium: {time.perf_counter() - started:.1f} s, screenshot {screenshot}")
    assert result.returncode == 0 and screenshot.is_file(), f"chromium failed:\n{result.stderr[-3000:]}"

    shot = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert shot.shape == (HEIGHT, WIDTH, 3)
    colours = np.unique(shot.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))
    assert len(colours) > 2000, f"only {len(colours)} distinct colours: the figures did not render"
    # the top of the page holds the comparison: title, table and the bar chart (tab:blue bars, red marks)
    top = shot[:1600]  # (five rows in the table above the chart)
    assert top.std() > 20 and len(np.unique(top.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))) > 300
    bar_blue = np.array([31, 119, 180]) * 0.85 + 255 * 0.15  # tab:blue at alpha 0.85 on white
    assert (np.abs(top - bar_blue).max(axis=-1) < 12).sum() > 2000, "no comparison bars near the top of the page"
    # every band of the page down to the screenshot's end has content (no figure failed to decode into a blank)
    for start in range(0, HEIGHT, 500):
        band = shot[start : start + 500]
        assert band.std() > 5, f"rows {start}-{start + 500} of the screenshot are blank"
