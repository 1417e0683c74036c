"""What the networks learned (filter patterns really excite their filter, Grad-CAM points at the evidence), and
every figure of the visualize stage has the expected panels, titles and colour bars, none of them blank."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.container import BarContainer
from matplotlib.text import Text

from smallvision.data.augmentation import AffineConfig
from smallvision.models.convnet import SmallConvNet
from smallvision.predict import probabilities
from smallvision.runs import HISTORY_COLUMNS, PredictionRow
from smallvision.visualize import activations, augmentation_preview, comparison, curves, filters, gradcam
from smallvision.visualize import mistakes as mistakes_mod
from smallvision.visualize.filters import target_patterns
from smallvision.visualize.gradcam import gradcam_maps
from smallvision.visualize.layers import activation_layers, cam_layer, filter_layers

SIZE = 96


def test_gradient_ascent_increases_the_filters_activation():
    torch.manual_seed(0)
    net = SmallConvNet(SIZE, 1).eval()
    name, module = net.conv_layers()[2]  # conv2d_2
    patterns = target_patterns(
        net,
        [(name, module, i) for i in range(4)],
        image_size=SIZE,
        mean=[0, 0, 0],
        std=[1, 1, 1],
        steps=10,
        step_size=2.0,
        noise=20.0,
        seed=0,
    )
    alive = [p for p in patterns if not p.dead]
    assert alive, "every filter dead on a fresh network"
    for p in alive:
        assert p.final > p.start
        assert p.image.shape == (SIZE, SIZE, 3) and p.image.dtype == np.uint8


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


# --------------------------------------------------------------------------- every figure has the expected panels
# Each figure is built from a tiny network or generated images, then drawn (Agg): the test counts the axes that
# show an image, reads their titles, and checks every drawn panel has content (never a blank or black square).

TINY = 64  # the small convnet's last pool is 2 x 2 here (at 46-53 px it is 1 x 1: every channel constant)
CLASSES = ["cat", "dog"]
BUILD_TIMES: dict[str, tuple[float, float]] = {}  # seconds per figure builder (with its drawing), printed with -s


def _scene(seed: int, size: int = TINY) -> np.ndarray:
    """A uint8 RGB image with structure: a gradient background, a bright disc and a dark bar, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([60 + 80 * xx, 40 + 60 * yy, 90 - 40 * xx], axis=-1)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    image[(yy - cy) ** 2 + (xx - cx) ** 2 < 0.04] = rng.uniform(170, 250, 3)
    r = rng.integers(0, size - 6)
    image[r : r + 4, :] = 10
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the scratch net's input (Keras rescale 1/255)."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / 255).permute(0, 3, 1, 2).contiguous()


def _net(seed: int = 0) -> SmallConvNet:
    torch.manual_seed(seed)
    return SmallConvNet(TINY, 1).eval()


def _draw(fig, dpi: int = 40) -> np.ndarray:
    """Render the figure with Agg (constrained layout runs here) and return its RGB pixels; every text drawn
    (titles, labels, notes) lies inside the figure, none cut off at an edge."""
    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer, (width, height) = canvas.get_renderer(), canvas.get_width_height()
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels(which="both")}
    for text in fig.findobj(Text):  # tick labels outside the view limits are laid out but never drawn: skipped
        if text.get_visible() and text.get_text().strip() and id(text) not in ticks:
            box = text.get_window_extent(renderer)
            assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, (
                f"{text.get_text()!r} runs off the figure ({box.bounds} in {width}x{height})"
            )
    return np.asarray(canvas.buffer_rgba())[..., :3].astype(float)


def _flat(text: str) -> str:
    """A title with its line breaks (titles are wrapped to the figure's width) as single spaces."""
    return " ".join(text.split())


def _image_panels(fig) -> list:
    """The axes that show an image, in the order they were added."""
    return [ax for ax in fig.axes if ax.images]


def _colorbars(fig) -> list:
    return [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def _panel_pixels(pixels: np.ndarray, ax) -> np.ndarray:
    """The drawn pixels of the axes' image (inside the axes frame)."""
    box = ax.images[0].get_window_extent().intersection(ax.images[0].get_window_extent(), ax.get_window_extent())
    h = pixels.shape[0]
    top, bottom = int(np.ceil(h - box.y1)) + 1, int(np.floor(h - box.y0)) - 1
    left, right = int(np.ceil(box.x0)) + 1, int(np.floor(box.x1)) - 1
    crop = pixels[max(top, 0) : bottom, max(left, 0) : right]
    assert crop.size, f"panel {ax.get_title()!r} has no drawn pixels"
    return crop


def _assert_not_blank(pixels: np.ndarray, ax) -> None:
    """Both the array the panel shows and what was drawn of it vary, and the drawing is not black."""
    data = np.asarray(ax.images[0].get_array(), dtype=float)
    label = ax.get_title() or ax.get_title(loc="left")
    assert np.nanstd(data) > 0, f"panel {label!r} shows a constant array"
    crop = _panel_pixels(pixels, ax)
    assert crop.std() > 2, f"panel {label!r} is drawn blank (std {crop.std():.2f})"
    assert crop.mean() > 10, f"panel {label!r} is drawn (almost) black"


def _timed(name: str, build):
    """Build and draw a figure, noting the time (not asserted: the CPU may be shared with other jobs)."""
    start = time.perf_counter()
    fig = build()
    built = time.perf_counter()
    pixels = _draw(fig)
    BUILD_TIMES[name] = (built - start, time.perf_counter() - built)
    print(f"{name}: built in {built - start:.2f} s, drawn in {time.perf_counter() - built:.2f} s")
    return fig, pixels


def test_activation_figure_has_the_input_then_one_labelled_mosaic_per_layer():
    net = _net()
    with torch.no_grad():  # filters 0-3 of conv2d_1 are dead: zero kernels, zero bias -> ReLU output 0 everywhere
        net.features[0].weight[:4] = 0
        net.features[0].bias[:4] = 0
    image = _scene(1)
    layers = activation_layers(net)
    names = [name for name, _ in layers]
    assert names == [f"{kind}_{i}" for i in range(1, 5) for kind in ("conv2d", "max_pooling2d")]
    acts = activations.layer_activations(net, _tensor(image[None]), layers, max_channels=16)
    fig, pixels = _timed(
        "activation_figure", lambda: activations.activation_figure(image, acts, "Activations of tiny", columns=8)
    )

    panels = _image_panels(fig)
    assert len(panels) == 1 + len(layers)
    assert panels[0].get_title() == f"input ({TINY}x{TINY} px)"
    assert np.array_equal(panels[0].images[0].get_array(), image)
    assert fig.get_suptitle() == "Activations of tiny"
    for ax, (name, _), act in zip(panels[1:], layers, acts):
        title = ax.get_title(loc="left")
        assert title.startswith(f"{name}: 16 of {act.channels} channels, "), title
        _, h, w = act.maps.shape
        assert f", {w}x{h}" in title
        assert (f"; {len(act.blank)} blank on this image (grey)" in title) == bool(act.blank)
    _assert_not_blank(pixels, panels[0])
    for ax, act in zip(panels[1:], acts):
        if len(act.blank) < len(act.maps):
            _assert_not_blank(pixels, ax)
        else:  # every shown channel constant: the title says so (above) and the mosaic is drawn grey, not black
            assert np.allclose(_panel_pixels(pixels, ax).mean(axis=(0, 1)), 255 * 0.75, atol=3)

    # the dead filters are labelled, drawn grey (the colour map's "bad" colour), never as black squares
    conv1 = acts[0]
    assert conv1.blank[:4] == [0, 1, 2, 3]
    assert "4 blank on this image (grey)" in panels[1].get_title(loc="left")
    mosaic = panels[1].images[0].get_array()
    tile = mosaic.shape[1] // 8
    assert np.ma.getmaskarray(mosaic)[: conv1.maps.shape[1], : 4 * tile].all()  # NaN tiles are masked
    assert tuple(panels[1].images[0].get_cmap().get_bad()[:3]) == to_rgb("0.75")


def test_activation_figure_of_a_fully_dead_layer_says_every_channel_is_blank():
    net = _net()
    with torch.no_grad():  # conv2d_2 all zero: it and every layer after it are constant on any image
        net.features[3].weight.zero_()
        net.features[3].bias.zero_()
    image = _scene(2)
    layers = activation_layers(net)
    acts = activations.layer_activations(net, _tensor(image[None]), layers, max_channels=8)
    fig = activations.activation_figure(image, acts, "dead", columns=8)
    _draw(fig)
    panels = _image_panels(fig)
    titles = [ax.get_title(loc="left") for ax in panels[1:]]
    assert "blank" not in titles[0] and "blank" not in titles[1]  # conv2d_1, max_pooling2d_1 alive
    for title in titles[2:]:
        assert "8 blank on this image (grey)" in title, title


def test_filters_figure_has_one_panel_per_filter_and_labels_a_dead_layer():
    net = _net()
    with torch.no_grad():
        net.features[0].bias.fill_(1.0)  # conv2d_1 responds everywhere: every filter gets a gradient
        net.features[3].weight.zero_()  # conv2d_2 is dead: no gradient reaches the input from it
        net.features[3].bias.zero_()
    chosen = filter_layers(net, ["conv2d_1", "conv2d_2"], "visualize.filters.scratch_layers")
    patterns = {
        name: filters.target_patterns(
            net,
            [(name, module, i) for i in range(5)],
            image_size=TINY,
            mean=[0, 0, 0],
            std=[1, 1, 1],
            steps=3,
            step_size=2.0,
            noise=20.0,
            seed=0,
        )
        for name, module in chosen
    }
    assert not any(p.dead for p in patterns["conv2d_1"])
    assert all(p.dead for p in patterns["conv2d_2"])
    fig, pixels = _timed(
        "filters_figure", lambda: filters.filters_figure(patterns, "Filter patterns of tiny", columns=4)
    )

    assert fig.get_suptitle() == "Filter patterns of tiny"
    assert [_flat(sub.get_suptitle()) for sub in fig.subfigs] == [
        "layer conv2d_1",
        "layer conv2d_2 (5 of 5 dead: no gradient reaches the input)",
    ]
    for sub, (name, shown) in zip(fig.subfigs, patterns.items()):
        panels = [ax for ax in sub.axes if ax.images]
        assert len(panels) == 5 and len(sub.axes) == 8  # 5 filters in a 2 x 4 grid, 3 empty cells
        for ax, p in zip(panels, shown):
            if p.dead:
                assert ax.get_title() == f"#{p.index} dead"
                assert ax.title.get_color() == "firebrick"
            else:
                assert re.fullmatch(rf"#{p.index}: \S+ -> \S+", ax.get_title()), ax.get_title()
                assert p.final > p.start
            assert np.array_equal(ax.images[0].get_array(), p.image)
            _assert_not_blank(pixels, ax)
    assert len(_image_panels(fig)) == 10


def test_gradcam_figure_titles_give_the_prediction_its_probability_and_the_truth_with_a_colour_bar():
    net = _net()
    images = np.stack([_scene(10 + i) for i in range(6)])
    x = _tensor(images)
    predicted = probabilities(net, x).argmax(1).tolist()
    actual = [p if i < 3 else 1 - p for i, p in enumerate(predicted)]  # 3 right, 3 wrong
    name, layer = cam_layer(net)
    assert name == "conv2d_4"
    explained = gradcam.explain(net, layer, images, x, actual, [f"test/{i}.jpg" for i in range(6)])
    assert [e.correct for e in explained] == [True] * 3 + [False] * 3
    explained[1] = replace(explained[1], heatmap=np.zeros_like(explained[1].heatmap))  # nothing speaks for the class
    groups = {"correct": explained[:3], "wrong": explained[3:5]}  # one short: its empty cell says so
    fig, pixels = _timed(
        "gradcam_figure", lambda: gradcam.gradcam_figure(groups, CLASSES, "Grad-CAM, tiny (layer conv2d_4)", columns=3)
    )

    panels = _image_panels(fig)
    assert len(panels) == 5
    shown = groups["correct"] + groups["wrong"]
    for ax, e in zip(panels, shown):
        title = ax.get_title()
        assert title.startswith(f"pred {CLASSES[e.predicted]} {e.probability:.2f}\ntrue {CLASSES[e.actual]}"), title
        assert 0.5 <= e.probability <= 1
        assert ("(no positive evidence)" in title) == (not e.has_evidence)
        assert ax.title.get_color() == ("black" if e.correct else "firebrick")
        _assert_not_blank(pixels, ax)
    assert "(no positive evidence)" in panels[1].get_title()
    assert [ax.get_ylabel() for ax in panels if ax.get_ylabel()] == ["correct", "wrong"]
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "only 2 wrong" in texts
    (bar,) = _colorbars(fig)
    assert (bar.norm.vmin, bar.norm.vmax) == (0, 1) and bar.cmap.name == "jet"
    assert "Grad-CAM" in bar.ax.get_ylabel()


# the history below smoothed by hand with factor 0.5 (s_1 = v_1, s_t = 0.5 s_(t-1) + 0.5 v_t), the book's smooth_curve
SMOOTHED = {
    "train_acc": [0.5, 0.55, 0.625, 0.7125, 0.80625, 0.878125],
    "val_acc": [0.5, 0.54, 0.6, 0.65, 0.665, 0.6675],
    "train_loss": [0.7, 0.65, 0.575, 0.4875, 0.39375, 0.296875],
    "val_loss": [0.7, 0.675, 0.6375, 0.61875, 0.619375, 0.6396875],
}


def test_curves_figure_has_accuracy_and_loss_with_both_splits_and_the_best_epoch():
    history = {
        "epoch": np.arange(1, 7, dtype=float),
        "train_acc": np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95]),
        "val_acc": np.array([0.5, 0.58, 0.66, 0.7, 0.68, 0.67]),
        "train_loss": np.array([0.7, 0.6, 0.5, 0.4, 0.3, 0.2]),
        "val_loss": np.array([0.7, 0.65, 0.6, 0.6, 0.62, 0.66]),
    }
    fig, pixels = _timed("curves_figure", lambda: curves.curves_figure(history, "baseline", smoothing=0.5))
    assert fig.get_suptitle() == "baseline: training and validation (smoothed, factor 0.5)"
    assert not _image_panels(fig)
    acc, loss = fig.axes
    assert (acc.get_title(), loss.get_title()) == ("accuracy", "loss")
    assert (acc.get_xlabel(), loss.get_ylabel()) == ("epoch", "loss")
    for ax, metric in ((acc, "acc"), (loss, "loss")):
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:2] == ["training", "validation"]
        smoothed = [line for line in ax.lines if line.get_label() in ("training", "validation")]
        for line, split in zip(smoothed, ("train", "val")):
            y = np.asarray(line.get_ydata(), dtype=float)
            assert np.allclose(y, SMOOTHED[f"{split}_{metric}"]), (split, metric, y)
        assert len(ax.lines) == 4 + (metric == "acc")  # raw points + smoothed line per split, the best-epoch star
    star = acc.lines[-1]
    assert star.get_label() == "best val 0.700" and list(star.get_xdata()) == [4.0]
    assert pixels.std() > 10


def test_curves_figure_of_a_single_epoch_draws_points():
    one = {c: np.array([v]) for c, v in zip(HISTORY_COLUMNS, (1.0, 0.7, 0.5, 0.69, 0.52))}
    fig = curves.curves_figure(one, "fine_tune")
    _draw(fig)
    acc, _ = fig.axes
    assert acc.lines[0].get_marker() == "o" and acc.lines[0].get_linestyle() == "None"


def test_curves_figure_shows_the_starting_weights_at_epoch_zero():
    """fine-tune's history.csv starts with epoch 0: its starting weights, validated before training (no training
    values); the start is marked, and a tie for the best validation accuracy marks the start (the kept model)."""
    history = {
        "epoch": np.array([0.0, 1.0, 2.0]),
        "train_acc": np.array([np.nan, 0.9, 0.95]),
        "val_acc": np.array([0.96, 0.94, 0.96]),
        "train_loss": np.array([np.nan, 0.3, 0.2]),
        "val_loss": np.array([0.1, 0.15, 0.12]),
    }
    fig = curves.curves_figure(history, "fine_tune")
    _draw(fig)
    acc, loss = fig.axes
    for ax, value in ((acc, 0.96), (loss, 0.1)):
        (start,) = [line for line in ax.lines if line.get_label() == "start (before training)"]
        assert (list(start.get_xdata()), list(start.get_ydata())) == ([0], [value])
        validation = next(line for line in ax.lines if line.get_label() == "validation")
        assert list(validation.get_xdata()) == [0.0, 1.0, 2.0]
    star = acc.lines[-1]
    assert star.get_label() == "best val 0.960" and list(star.get_xdata()) == [0.0]


def test_augmentation_figure_shows_the_original_then_each_copy():
    image = _scene(3)
    cfg = AffineConfig(
        rotation_range=40,
        width_shift_range=0.2,
        height_shift_range=0.2,
        shear_range=0.2,
        zoom_range=0.2,
        horizontal_flip=True,
        fill_mode="nearest",
    )
    copies = augmentation_preview.augmented_copies(image, cfg, 5, seed=0)
    assert copies.shape == (5, TINY, TINY, 3) and copies.dtype == np.uint8
    fig, pixels = _timed(
        "augmentation_figure",
        lambda: augmentation_preview.augmentation_figure(image, copies, cfg, 3, "train/cat/0.jpg"),
    )
    assert _flat(fig.get_suptitle()) == (
        "Augmentation preview: rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, "
        "shear_range=0.2, zoom_range=0.2, horizontal_flip, fill=nearest"
    )
    panels = _image_panels(fig)
    assert len(panels) == 6 == len(fig.axes)
    assert [ax.get_title() for ax in panels] == ["original: train/cat/0.jpg"] + [f"augmented #{k}" for k in range(1, 6)]
    assert np.array_equal(panels[0].images[0].get_array(), image)
    for ax, copy in zip(panels[1:], copies):
        assert np.array_equal(ax.images[0].get_array(), copy) and not np.array_equal(copy, image)
    for ax in panels:
        _assert_not_blank(pixels, ax)
    identity = augmentation_preview.augmentation_figure(image, copies[:2], AffineConfig(), 4)
    _draw(identity)
    assert identity.get_suptitle() == "Augmentation preview: no augmentation (identity)"
    assert len(_image_panels(identity)) == 3 and identity.axes[0].get_title() == "original"


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
    images = [_scene(20 + i) for i in range(3)]
    fig, pixels = _timed(
        "mistakes_figure", lambda: mistakes_mod.mistakes_figure(images, wrong, "augment", 4, 6, columns=2)
    )
    assert _flat(fig.get_suptitle()) == "Mistakes of augment: 4 of 6 test images wrong, the 3 most confident shown"
    panels = _image_panels(fig)
    assert len(panels) == 3 and len(fig.axes) == 4
    assert [ax.get_title() for ax in panels] == ["dog -> cat 0.97", "cat -> dog 0.83", "cat -> dog 0.61"]
    assert [ax.get_xlabel() for ax in panels] == ["3.jpg", "5.jpg", "1.jpg"]
    for ax in panels:
        _assert_not_blank(pixels, ax)

    none = mistakes_mod.mistakes_figure([], [], "fine_tune", 0, 6, columns=4)
    _draw(none)
    long = mistakes_mod.mistakes_figure(images, wrong, "feature_extract", 120, 1000, columns=8)  # a narrow figure
    assert "\n" in long.get_suptitle()
    _draw(long)
    assert not _image_panels(none)
    assert [t.get_text() for t in none.axes[0].texts] == ["no mistakes on the test split"]


def test_comparison_figure_has_one_bar_per_technique_with_its_interval_and_the_books_marks():
    rows = [
        {
            "technique": "baseline",
            "backbone": "small_convnet",
            "test_accuracy": 0.693,
            "ci95_low": 0.663,
            "ci95_high": 0.721,
            "test_images": 996,
        },
        {
            "technique": "augment",
            "backbone": "small_convnet",
            "test_accuracy": 0.672,
            "ci95_low": 0.642,
            "ci95_high": 0.700,
            "test_images": 996,
        },
        {
            "technique": "feature_extract",
            "backbone": "efficientnet_lite0",
            "test_accuracy": 0.982,
            "ci95_low": 0.972,
            "ci95_high": 0.989,
            "test_images": 996,
        },
        {
            "technique": "my_own",
            "backbone": "resnet50",
            "test_accuracy": 0.95,
            "ci95_low": 0.93,
            "ci95_high": 0.965,
            "test_images": 996,
        },
    ]
    table = comparison.comparison_table(rows, {"baseline": 0.71, "augment": 0.82, "feature_extract": 0.90})
    fig, pixels = _timed("comparison_figure", lambda: comparison.comparison_figure(table, "Chollet", chance=0.5))
    (ax,) = fig.axes
    assert ax.get_title() == "Test accuracy per technique" and ax.get_ylabel() == "test accuracy"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["baseline", "augment", "feature_extract", "my_own"]
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert np.allclose([b.get_height() for b in bars], [0.693, 0.672, 0.982, 0.95])
    assert [t.get_text() for t in ax.texts] == ["69.3 %", "67.2 %", "98.2 %", "95.0 %"]
    (marks,) = (
        ax.collections[-1:] if len(ax.collections) == 1 else [c for c in ax.collections if c.get_label() == "Chollet"]
    )
    assert np.allclose(marks.get_offsets(), [[0, 0.71], [1, 0.82], [2, 0.90]])  # no mark for my_own
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"test accuracy (95 % interval)", "Chollet", "chance (50 %)"} <= set(legend)
    assert ax.get_ylim()[0] <= 0.5 and ax.get_ylim()[1] > 0.989
    assert pixels.std() > 10
