"""The mistakes gallery (smallvision.visualize.mistakes): the most confident mistakes first."""

from __future__ import annotations

from helpers.figures import (
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
    timed_build,
    tiny_scene,
)

from smallvision.runs import PredictionRow
from smallvision.visualize import mistakes as mistakes_mod


def test_mistakes_figure_shows_the_most_confident_mistakes_first():
    P = PredictionRow
    rows = [
        P("test/cat/1.jpg", "cat", "dog", 0.61),
        P("test/cat/2.jpg", "cat", "cat", 0.99),
        P("test/dog/3.jpg", "dog", "cat", 0.97),
        P("test/dog/4.jpg", "dog", "cat", 0.55),
        P("test/cat/5.jpg", "cat", "dog", 0.83),
        P("test/dog/6.jpg", "dog", "dog", 0.90),
    ]
    wrong = mistakes_mod.most_confident_mistakes(rows, 3)
    assert [m.path for m in wrong] == ["test/dog/3.jpg", "test/cat/5.jpg", "test/cat/1.jpg"]
    images = [tiny_scene(20 + i) for i in range(3)]
    fig, pixels = timed_build(
        "mistakes_figure", lambda: mistakes_mod.mistakes_figure(images, wrong, "augment", 4, 6, columns=2)
    )
    assert flat_text(fig.get_suptitle()) == "Mistakes of augment: 4 of 6 test images wrong, the 3 most confident shown"
    panels = image_panels(fig)
    assert len(panels) == 3 and len(fig.axes) == 4
    assert [ax.get_title() for ax in panels] == ["dog -> cat 0.97", "cat -> dog 0.83", "cat -> dog 0.61"]
    assert [ax.get_xlabel() for ax in panels] == ["3.jpg", "5.jpg", "1.jpg"]
    for ax in panels:
        assert_not_blank(pixels, ax)

    none = mistakes_mod.mistakes_figure([], [], "fine_tune", 0, 6, columns=4)
    draw_figure(none)
    long = mistakes_mod.mistakes_figure(images, wrong, "feature_extract", 120, 1000, columns=8)  # a narrow figure
    assert "\n" in long.get_suptitle()
    draw_figure(long)
    assert not image_panels(none)
    assert [t.get_text() for t in none.axes[0].texts] == ["no mistakes on the test split"]
