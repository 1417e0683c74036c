"""The drawing every figure shares: figures outside pyplot, saving, wrapped titles, image panels and grids."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, save, show_image, to_unit, wrapped


def test_a_figure_belongs_to_no_pyplot_state_and_is_saved_where_asked(tmp_path):
    before = plt.get_fignums()
    fig = new_figure(2, 1)
    assert plt.get_fignums() == before and fig.get_size_inches().tolist() == [2, 1]
    path = save(fig, tmp_path / "deep" / "figure.png", 50)
    assert path == tmp_path / "deep" / "figure.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_long_title_is_broken_at_spaces_into_lines_that_fit_the_width():
    text = "Grad-CAM of the last conv layer for each test image the network got wrong, with its probability"
    lines = wrapped(text, 3, 10).split("\n")
    assert len(lines) > 1 and " ".join(lines) == text
    assert max(map(len, lines)) <= int(3 * 72 / (0.55 * 10))
    assert wrapped("short", 3, 10) == "short"


def test_an_image_panel_has_no_ticks_and_an_empty_cell_says_why():
    fig = new_figure(2, 1)
    image_ax, empty_ax = fig.subplots(1, 2)
    show_image(image_ax, np.zeros((4, 4, 3), np.uint8), "cat 0.91")
    assert image_ax.get_title() == "cat 0.91" and not image_ax.get_xticks().size and not image_ax.get_yticks().size
    blank_axes(empty_ax, "no mistakes")
    assert not empty_ax.axison and [t.get_text() for t in empty_ax.texts] == ["no mistakes"]


def test_grid_shape_and_pixel_scale():
    assert [grid_shape(n, 4) for n in (0, 1, 4, 5, 9)] == [(1, 1), (1, 1), (1, 4), (2, 4), (3, 4)]
    unit = to_unit(np.array([[0, 51, 255]], np.uint8))
    assert unit.dtype == np.float32 and np.allclose(unit, [[0.0, 0.2, 1.0]])
