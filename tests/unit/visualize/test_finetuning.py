"""What fine-tuning changed (smallvision.visualize.finetuning): the disagreements first, both rows on the same
images."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.figures import (
    CLASSES,
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
    tiny_net,
    tiny_scene,
    tiny_tensor,
)

from smallvision.runs import PredictionRow
from smallvision.visualize import (
    finetuning,
    gradcam,
)
from smallvision.visualize.layers import cam_layer

# --------------------------------------------------------------------------- what fine-tuning changed


def test_fine_tuning_pairs_put_the_disagreements_first():
    P = PredictionRow
    before = [
        P("test/cat/1.jpg", "cat", "cat", 0.90),
        P("test/cat/2.jpg", "cat", "dog", 0.60),
        P("test/dog/3.jpg", "dog", "dog", 0.99),
        P("test/dog/4.jpg", "dog", "cat", 0.70),
        P("test/dog/5.jpg", "dog", "dog", 0.55),
    ]
    after = [
        P("test/cat/1.jpg", "cat", "cat", 0.91),
        P("test/cat/2.jpg", "cat", "cat", 0.95),  # fixed: true class 0.40 -> 0.95
        P("test/dog/3.jpg", "dog", "cat", 0.51),  # broken: 0.99 -> 0.49
        P("test/dog/4.jpg", "dog", "cat", 0.75),  # wrong both times
        P("test/dog/5.jpg", "dog", "dog", 0.98),  # 0.55 -> 0.98
    ]
    chosen = finetuning.paired_images(before, after, 4)
    assert [b.path for _, b in chosen] == ["test/cat/2.jpg", "test/dog/3.jpg", "test/dog/5.jpg", "test/dog/4.jpg"]
    assert finetuning.truth_probability(before[1]) == pytest.approx(0.4)


def test_fine_tuning_figure_has_both_rows_on_the_same_images_and_says_where_they_disagree():
    images = np.stack([tiny_scene(60 + i) for i in range(4)])
    x = tiny_tensor(images)
    explained = {}
    for name, seed in (("feature_extract", 0), ("fine_tune", 1)):
        net = tiny_net(seed)
        explained[name] = gradcam.explain(
            net, cam_layer(net)[1], images, x, [0, 1, 0, 1], [f"test/{i}.jpg" for i in range(4)]
        )
    fig = finetuning.finetuning_figure(
        ("feature_extract", explained["feature_extract"]), ("fine_tune", explained["fine_tune"]), CLASSES
    )
    pixels = draw_figure(fig)
    panels = image_panels(fig)
    assert len(panels) == 8
    assert [ax.get_ylabel() for ax in panels if ax.get_ylabel()] == ["feature_extract", "fine_tune"]
    for ax, e in zip(panels, explained["feature_extract"] + explained["fine_tune"]):
        assert ax.get_title().startswith(f"pred {CLASSES[e.predicted]} {e.probability:.2f}\ntrue {CLASSES[e.actual]}")
        assert_not_blank(pixels, ax)
    for k, ax in enumerate(panels[4:]):
        same = explained["feature_extract"][k].predicted == explained["fine_tune"][k].predicted
        assert ax.get_xlabel() == f"{'agree' if same else 'DISAGREE'}\n{k}.jpg"
    assert "What fine-tuning changed" in flat_text(fig.get_suptitle())
