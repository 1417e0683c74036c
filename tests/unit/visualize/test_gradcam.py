"""Grad-CAM (smallvision.visualize.gradcam) points at the class evidence, and its figure's titles give the
prediction, its probability and the truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from helpers.figures import (
    CLASSES,
    assert_not_blank,
    colorbar_axes,
    image_panels,
    timed_build,
    tiny_net,
    tiny_scene,
    tiny_tensor,
)

from smallvision.models.convnet import SmallConvNet
from smallvision.predict import probabilities
from smallvision.visualize import gradcam
from smallvision.visualize.gradcam import gradcam_maps
from smallvision.visualize.layers import cam_layer

SIZE = 96


def _evidence_images(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images; class 1 has a bright square somewhere in the top-left quadrant, class 0 does not."""
    x = rng.uniform(0, 0.4, (n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in np.flatnonzero(y):
        r, c = rng.integers(4, SIZE // 2 - 16, 2)
        x[i, :, r : r + 12, c : c + 12] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def test_gradcam_puts_its_maximum_where_the_class_evidence_is():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = SmallConvNet(SIZE, 1)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(40):
        x, y = _evidence_images(32, rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    x, y = _evidence_images(64, rng)
    with torch.no_grad():
        accuracy = ((net(x)[:, 0] > 0).long() == y).float().mean()
    assert accuracy > 0.9, f"the tiny net did not learn the evidence ({accuracy:.2f})"
    positives = x[y == 1][:8]
    maps = gradcam_maps(net, net.gradcam_layer(), positives, [1] * len(positives))
    assert maps.shape == (len(positives), SIZE, SIZE)
    for heatmap in maps:
        r, c = np.unravel_index(np.argmax(heatmap), heatmap.shape)
        assert r < SIZE // 2 + 8 and c < SIZE // 2 + 8  # the top-left quadrant (+ one cell of CAM blur)


def test_gradcam_figure_titles_give_the_prediction_its_probability_and_the_truth_with_a_colour_bar():
    net = tiny_net()
    images = np.stack([tiny_scene(10 + i) for i in range(6)])
    x = tiny_tensor(images)
    predicted = probabilities(net, x).argmax(1).tolist()
    actual = [p if i < 3 else 1 - p for i, p in enumerate(predicted)]  # 3 right, 3 wrong
    name, layer = cam_layer(net)
    assert name == "conv2d_4"
    explained = gradcam.explain(net, layer, images, x, actual, [f"test/{i}.jpg" for i in range(6)])
    assert [e.correct for e in explained] == [True] * 3 + [False] * 3
    explained[1] = replace(explained[1], heatmap=np.zeros_like(explained[1].heatmap))  # nothing speaks for the class
    groups = {"correct": explained[:3], "wrong": explained[3:5]}  # one short: its empty cell says so
    fig, pixels = timed_build(
        "gradcam_figure", lambda: gradcam.gradcam_figure(groups, CLASSES, "Grad-CAM, tiny (layer conv2d_4)", columns=3)
    )

    panels = image_panels(fig)
    assert len(panels) == 5
    shown = groups["correct"] + groups["wrong"]
    for ax, e in zip(panels, shown):
        title = ax.get_title()
        assert title.startswith(f"pred {CLASSES[e.predicted]} {e.probability:.2f}\ntrue {CLASSES[e.actual]}"), title
        assert 0.5 <= e.probability <= 1
        assert ("(no positive evidence)" in title) == (not e.has_evidence)
        assert ax.title.get_color() == ("black" if e.correct else "firebrick")
        assert_not_blank(pixels, ax)
    assert "(no positive evidence)" in panels[1].get_title()
    assert [ax.get_ylabel() for ax in panels if ax.get_ylabel()] == ["correct", "wrong"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "only 2 wrong" in texts
    (bar,) = colorbar_axes(fig)
    assert (bar.norm.vmin, bar.norm.vmax) == (0, 1) and bar.cmap.name == "jet"
    assert "Grad-CAM" in bar.ax.get_ylabel()


# the history below smoothed by hand with factor 0.5 (s_1 = v_1, s_t = 0.5 s_(t-1) + 0.5 v_t), the book's smooth_curve
