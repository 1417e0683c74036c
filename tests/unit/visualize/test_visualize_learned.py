"""The pictures of what convnets learn beyond activations and filter patterns: top-activating patches really are the
channel's maxima over the images, cut to the receptive field a hand computation gives; first-layer kernels,
filter/feature pairs, what fine-tuning changed and the confusion matrices have the expected panels and titles,
none of them blank."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.study import config, make_dataset, paths

from smallvision import schema, techniques
from smallvision.errors import ConfigError, DataError
from smallvision.models import backbones
from smallvision.models.convnet import SmallConvNet
from smallvision.networks import build_net, load_checkpoint
from smallvision.runs import CHECKPOINT, CONFUSION, Confusion, PredictionRow, read_confusion
from smallvision.training import train_technique
from smallvision.visualize import (
    activations,
    confusion,
    filters,
    finetuning,
    gradcam,
    kernels,
    pairs,
    patches,
    sections_learned,
)
from smallvision.visualize.layers import cam_layer, chosen_layers, depth_layers
from smallvision.visualize.receptive import Geometry, chain_geometry, layer_geometry, probed_geometry
from smallvision.visualize.stage import SECTIONS, enabled
from unit.visualize.test_visualize import (
    CLASSES,
    TINY,
    _assert_not_blank,
    _draw,
    _flat,
    _image_panels,
    _net,
    _scene,
    _tensor,
)

# --------------------------------------------------------------------------- receptive fields


def test_the_small_convnets_receptive_fields_are_the_hand_computed_ones():
    # conv3x3 valid: size += 2 * jump; pool2: size += jump, jump *= 2; nothing is padded, so offset stays 0
    # conv2d_1: 3, jump 1 | pool: 4, 2 | conv2d_2: 4 + 2*2 = 8 | pool: 10, 4 | conv2d_3: 10 + 2*4 = 18 | pool: 22, 8
    # conv2d_4: 22 + 2*8 = 38, jump 8
    net = SmallConvNet(96)
    layers = depth_layers(net)
    assert [name for name, _ in layers] == ["conv2d_1", "conv2d_2", "conv2d_3", "conv2d_4"]
    hand = {
        "conv2d_1": Geometry(3, 1, 0),
        "conv2d_2": Geometry(8, 2, 0),
        "conv2d_3": Geometry(18, 4, 0),
        "conv2d_4": Geometry(38, 8, 0),
    }
    assert layer_geometry(net, layers, 96) == hand  # the chain arithmetic
    assert probed_geometry(net, layers, 96) == hand  # the gradient probe agrees on the same network
    # padding moves the field's start before the image: a 3x3 conv with padding 1 starts at -1, and after a pool
    # and a second padded conv at -1 - 1 * 2 = -3
    padded = [torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 4, 3, padding=1)]
    assert chain_geometry(padded) == [Geometry(3, 1, -1), Geometry(4, 2, -1), Geometry(8, 2, -3)]
    with pytest.raises(TypeError, match="probed_geometry"):
        chain_geometry([torch.nn.Linear(3, 3)])


def test_a_patch_is_the_receptive_field_the_hand_computation_gives():
    rows, cols = np.mgrid[0:96, 0:96]
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.uint8)  # each pixel names its place
    # conv2d_4, position (2, 3): input rows 8*2 .. 8*2 + 38, columns 8*3 .. 8*3 + 38
    patch = patches.crop(image, Geometry(38, 8, 0), 2, 3)
    assert np.array_equal(patch, image[16:54, 24:62])
    # padding: row 0's field starts 3 px before the image, column 1's at -3 + 2 = -1; the field keeps its place
    # in the square, grey where it lies outside the image
    edge = patches.crop(image, Geometry(8, 2, -3), 0, 1)
    assert edge.shape == (8, 8, 3)
    assert (edge[:3] == patches.GREY).all() and (edge[:, 0] == patches.GREY).all()
    assert np.array_equal(edge[3:, 1:], image[0:5, 0:7])
    # a field wider than the image: the whole image
    assert np.array_equal(patches.crop(image, Geometry(288, 32, 0, exact=False), 1, 1), image)
    # the positions whose field lies inside the image: conv2d_4's 8 x 8 map at 96 px, all of them (the last starts
    # at 56 and ends at 94); with 3 px of padding and jump 2 in a 20 px image, positions 2 (field 1-9) to 7 (11-19)
    assert Geometry(38, 8, 0).interior(96) == slice(0, 8)
    assert Geometry(8, 2, -3).interior(20) == slice(2, 8)
    assert Geometry(30, 2, -3).interior(20) == Geometry(288, 32, 0, exact=False).interior(96) == slice(None)


def test_the_probe_finds_efficientnets_strides_and_fields():
    base = backbones.create_backbone(
        {"timm_name": "tf_efficientnet_lite0", "image_size": 96, "weights": {"source": "none"}}, allow_random=True
    )
    layers = [(info["module"], base.get_submodule(info["module"])) for info in base.feature_info]
    found = probed_geometry(base, layers, 96)
    # by hand: stem 3x3 s2 -> 3 (jump 2); blocks.0 dw3x3 -> 3 + 2*2 = 7; blocks.1 dw3x3 s2 then dw3x3 -> 19
    # (jump 4); blocks.2 two dw5x5 -> 19 + 4*4 + 4*8 = 67 (jump 8); blocks.4 is 339 px, wider than 3 x 96
    assert [found[n].size for n in ("blocks.0", "blocks.1", "blocks.2")] == [7, 19, 67]
    for info in base.feature_info[:3]:
        assert found[info["module"]].jump == info["reduction"]  # timm's own stride of each stage
    assert not found["blocks.4"].exact and not found["blocks.6"].exact
    assert found["blocks.0"].offset == -2  # TensorFlow "same" padding: the stem pads after, the 3x3 dw before


# --------------------------------------------------------------------------- top-activating patches


def _planted(count: int, where: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Dark noise images; image where[0] has a white 3 x 3 block with its corner at (where[1], where[2])."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (count, TINY, TINY, 3)).astype(np.uint8)
    i, r, c = where
    images[i, r : r + 3, c : c + 3] = 255
    return images


def test_the_top_patch_is_the_channels_argmax_over_all_images():
    net = _net()
    with torch.no_grad():  # conv2d_1 channel 0 sums its 3 x 3 x 3 field: the white block is its one strongest spot
        net.features[0].weight[0] = 1.0
        net.features[0].bias[0] = 0.0
    images = _planted(23, (13, 30, 41))
    layers = depth_layers(net)[:3]
    batches = [_tensor(images[i : i + 5]) for i in range(0, len(images), 5)]  # five batches: the top-k is merged
    tops = patches.top_activations(net, layers, batches, k=9)

    top = tops["conv2d_1"]
    assert (int(top.images[0, 0]), int(top.rows[0, 0]), int(top.cols[0, 0])) == (13, 30, 41)
    geometry = layer_geometry(net, layers, TINY)
    assert (patches.crop(images[13], geometry["conv2d_1"], 30, 41) == 255).all()  # the planted block, exactly
    # every channel of every layer: the top-9 are the 9 largest per-image maxima (ties: the earlier image), and
    # each sits at its image's argmax
    maps = activations.capture(net, _tensor(images), layers)
    for name, _ in layers:
        full = maps[name].numpy()
        n, c, h, w = full.shape
        flat = full.reshape(n, c, h * w)
        for ch in range(c):
            best = flat[:, ch].max(axis=1)
            expected = sorted(range(n), key=lambda i: (-best[i], i))[:9]
            assert top_list(tops[name].images[ch]) == expected, (name, ch)
            assert np.allclose(tops[name].values[ch].numpy(), best[expected])
            where = flat[expected, ch].argmax(axis=1)
            assert top_list(tops[name].rows[ch]) == list(where // w) and top_list(tops[name].cols[ch]) == list(
                where % w
            )


def test_only_the_given_region_of_a_map_is_ranked():
    net = _net()
    with torch.no_grad():
        net.features[0].weight[0] = 1.0
        net.features[0].bias[0] = 0.0
    images = _planted(6, (3, 30, 41))
    layers = depth_layers(net)[:1]
    region = (slice(2, 20), slice(5, 25))
    top = patches.top_activations(net, layers, [_tensor(images)], k=3, regions={"conv2d_1": region})["conv2d_1"]
    full = activations.capture(net, _tensor(images), layers)["conv2d_1"][:, 0, 2:20, 5:25].numpy()
    best = full.reshape(6, -1).max(axis=1)
    assert top_list(top.images[0]) == sorted(range(6), key=lambda i: (-best[i], i))[:3]  # the planted block is outside
    i = int(top.images[0, 0])
    r, c = np.unravel_index(full[i].argmax(), full[i].shape)
    assert (int(top.rows[0, 0]), int(top.cols[0, 0])) == (r + 2, c + 5)  # positions of the whole map


def top_list(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t]


def test_patches_figure_has_a_mosaic_per_channel_and_labels_a_silent_one():
    net = _net()
    with torch.no_grad():
        net.features[0].bias[2] = -1e3  # conv2d_1 channel 2 never fires
    images = np.stack([_scene(40 + i) for i in range(12)])
    layers = depth_layers(net)[:2]
    tops = patches.top_activations(net, layers, [_tensor(images)], k=9)
    geometry = layer_geometry(net, layers, TINY)
    shown = [patches.layer_patches(n, tops[n], [0, 1, 2, 3, 4], geometry[n], images.__getitem__) for n, _ in layers]
    assert shown[0].channels[2].silent and not shown[0].channels[0].silent
    assert shown[1].channels[0].patches[0].shape == (8, 8, 3)  # conv2d_2's 8 px field
    fig = patches.patches_figure(shown, "Top-activating patches of tiny", TINY, columns=3)
    pixels = _draw(fig)

    assert fig.get_suptitle() == "Top-activating patches of tiny"
    assert [_flat(sub.get_suptitle()) for sub in fig.subfigs] == [
        "layer conv2d_1: receptive field 3 px, stride 1 px",
        "layer conv2d_2: receptive field 8 px, stride 2 px",
    ]
    panels = _image_panels(fig)
    assert len(panels) == 9  # 5 channels per layer, the silent one without a picture
    assert [ax.get_title().split(":")[0] for ax in panels] == ["#0", "#1", "#3", "#4", "#0", "#1", "#2", "#3", "#4"]
    # a 3 x 3 mosaic of each layer's own field (3 px, then 8 px) with a 1 px gap between patches
    assert [ax.images[0].get_array().shape[:2] for ax in panels] == [(3 * 3 + 2,) * 2] * 4 + [(3 * 8 + 2,) * 2] * 5
    for ax in panels:
        _assert_not_blank(pixels, ax)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["#2: never above 0"]


# --------------------------------------------------------------------------- first-layer kernels


def test_kernel_tiles_are_normalised_per_kernel_and_drawn_beside_the_initialisation():
    trained, initial = _net(1), _net(2)
    with torch.no_grad():
        trained.features[0].weight[5] = 0.25  # a constant kernel: mid-grey
    name, conv = kernels.first_conv(trained)
    assert name == "features.0" and conv is trained.features[0]
    tiles = kernels.kernel_tiles(conv.weight)
    assert tiles.shape == (32, 3, 3, 3)
    for i, tile in enumerate(tiles):
        if i == 5:
            assert np.allclose(tile, 0.5)
        else:
            assert tile.min() == 0.0 and np.isclose(tile.max(), 1.0)
    sets = [
        kernels.KernelSet("after training (tiny)", conv.weight),
        kernels.KernelSet("initialisation (seed 2, as training began)", kernels.first_conv(initial)[1].weight),
    ]
    fig = kernels.kernels_figure(sets, "First-layer kernels of tiny (features.0)", columns=8)
    pixels = _draw(fig)
    panels = _image_panels(fig)
    assert len(panels) == 2
    assert [_flat(ax.get_title()) for ax in panels] == [
        "after training (tiny): 32 kernels 3x3",
        "initialisation (seed 2, as training began): 32 kernels 3x3",
    ]
    for ax in panels:
        assert ax.images[0].get_array().shape == (4 * 4 + 1, 8 * 4 + 1, 3)  # 4 x 8 tiles of 3 px, 1 px apart
        _assert_not_blank(pixels, ax)
    assert kernels.moved(conv.weight * 1.1, conv.weight) == "moved 10 % of its initial norm"
    with pytest.raises(ValueError, match="RGB kernels"):
        kernels.kernel_tiles(torch.zeros(4, 1, 3, 3))


# --------------------------------------------------------------------------- filter / feature pairs


def test_pairs_figure_shows_each_layers_strongest_channel_pattern_beside_its_map():
    net = _net()
    image = _scene(5)
    layers = depth_layers(net)
    maps = activations.capture(net, _tensor(image[None]), layers)
    features = [maps[name][0].numpy() for name, _ in layers]
    channels = [pairs.strongest_channel(feature) for feature in features]
    for feature, channel in zip(features, channels):
        assert feature[channel].mean() == feature.mean(axis=(1, 2)).max()
    # one batch for every layer's channel: each image climbs its own layer's objective
    found = filters.target_patterns(
        net,
        [(name, module, c) for (name, module), c in zip(layers, channels)],
        image_size=TINY,
        mean=[0] * 3,
        std=[1] * 3,
        steps=3,
        step_size=2.0,
        noise=20.0,
    )
    assert [(p.layer, p.index) for p in found] == [(name, c) for (name, _), c in zip(layers, channels)]
    assert all(p.final > p.start for p in found if not p.dead)
    shown = [pairs.Pair(p.layer, p, feature[p.index]) for p, feature in zip(found, features)]
    fig = pairs.pairs_figure(image, shown, "Filters and features of tiny on test image test/cat/0.jpg (cat)")
    pixels = _draw(fig)
    panels = _image_panels(fig)
    assert len(panels) == 3 * len(layers)
    for k, p in enumerate(shown):
        pattern_ax, map_ax, overlay_ax = panels[3 * k : 3 * k + 3]
        assert pattern_ax.get_title() == f"{p.layer} #{p.pattern.index}: pattern"
        h, w = p.feature.shape
        assert map_ax.get_title() == f"its map on the image ({w}x{h})"
        assert np.array_equal(map_ax.images[0].get_array(), p.feature)
        assert overlay_ax.images[0].get_array().shape == image.shape
        for ax in (pattern_ax, map_ax, overlay_ax):
            _assert_not_blank(pixels, ax)


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
    images = np.stack([_scene(60 + i) for i in range(4)])
    x = _tensor(images)
    explained = {}
    for name, seed in (("feature_extract", 0), ("fine_tune", 1)):
        net = _net(seed)
        explained[name] = gradcam.explain(
            net, cam_layer(net)[1], images, x, [0, 1, 0, 1], [f"test/{i}.jpg" for i in range(4)]
        )
    fig = finetuning.finetuning_figure(
        ("feature_extract", explained["feature_extract"]), ("fine_tune", explained["fine_tune"]), CLASSES
    )
    pixels = _draw(fig)
    panels = _image_panels(fig)
    assert len(panels) == 8
    assert [ax.get_ylabel() for ax in panels if ax.get_ylabel()] == ["feature_extract", "fine_tune"]
    for ax, e in zip(panels, explained["feature_extract"] + explained["fine_tune"]):
        assert ax.get_title().startswith(f"pred {CLASSES[e.predicted]} {e.probability:.2f}\ntrue {CLASSES[e.actual]}")
        _assert_not_blank(pixels, ax)
    for k, ax in enumerate(panels[4:]):
        same = explained["feature_extract"][k].predicted == explained["fine_tune"][k].predicted
        assert ax.get_xlabel() == f"{'agree' if same else 'DISAGREE'}\n{k}.jpg"
    assert "What fine-tuning changed" in _flat(fig.get_suptitle())


# --------------------------------------------------------------------------- confusion matrices


def test_confusion_json_is_read_back_and_a_malformed_one_names_the_fix(tmp_path):
    path = tmp_path / CONFUSION
    path.write_text(json.dumps({"classes": ["cat", "dog"], "matrix": [[40, 10], [5, 45]]}))
    assert read_confusion(path) == Confusion(["cat", "dog"], [[40, 10], [5, 45]])
    for bad in (
        {"classes": ["cat", "dog"], "matrix": [[1, 2]]},
        {"classes": ["cat", "dog"], "matrix": [[1, -2], [0, 1]]},
        [1],
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(DataError, match="rerun that technique's training stage"):
            read_confusion(path)


def test_confusion_figure_shows_counts_and_rates_per_true_class():
    fig = confusion.confusion_figure(Confusion(["cat", "dog"], [[40, 10], [5, 45]]), "augment")
    pixels = _draw(fig)
    assert _flat(fig.get_suptitle()) == "Confusion matrix of augment: 85 of 100 test images right (85.0 %)"
    counts, shares = _image_panels(fig)
    assert (counts.get_title(), shares.get_title()) == ("counts", "rate per true class")
    assert [t.get_text() for t in counts.texts] == ["40", "10", "5", "45"]
    assert [t.get_text() for t in shares.texts] == ["80.0%", "20.0%", "10.0%", "90.0%"]
    for ax in (counts, shares):
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
        assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog"]
        _assert_not_blank(pixels, ax)
    assert np.allclose(confusion.rates(np.array([[0, 0], [1, 3]])), [[0, 0], [0.25, 0.75]])


# --------------------------------------------------------------------------- the switches and their checks


def test_each_new_section_has_a_switch_and_its_settings_are_checked():
    settings = config().visualize
    v = settings.model_dump()

    def validate(visualize: dict) -> schema.Visualize:
        return schema.validate(schema.Visualize, visualize, "visualize")

    validate(v)
    for section in ("confusion", "finetuning", "pairs", "patches", "kernels"):
        assert section in SECTIONS and enabled(settings, section)
        assert not enabled(validate({**v, section: {**v[section], "enabled": False}}), section)
        with pytest.raises(ConfigError, match=rf"visualize\.{section}\.enabled='no' must be true or false"):
            validate({**v, section: {**v[section], "enabled": "no"}})
    with pytest.raises(ConfigError, match=r"visualize\.patches\.interior=1 must be true or false"):
        validate({**v, "patches": {**v["patches"], "interior": 1}})
    with pytest.raises(ConfigError, match=r"visualize\.patches\.top=0"):
        validate({**v, "patches": {**v["patches"], "top": 0}})
    with pytest.raises(ConfigError, match=r"visualize\.finetuning\.before='vgg'"):
        config("visualize.finetuning.before=vgg")  # the technique names: the whole settings know them
    with pytest.raises(ConfigError, match=r"visualize\.patches\.scratch_layers=\['conv9'\]"):
        chosen_layers(SmallConvNet(TINY), ["conv9"], "visualize.patches.scratch_layers")
    # named layers come back in the order the network runs them, whatever order the config lists them in
    net = SmallConvNet(TINY)
    assert [n for n, _ in chosen_layers(net, ["conv2d_3", "conv2d_1"], "x")] == ["conv2d_1", "conv2d_3"]


def test_the_scratch_initialisation_is_the_one_training_started_from(tmp_path, monkeypatch):
    started = {}

    def recording(spec, pretrained=True):
        net = build_net(spec, pretrained)
        started.setdefault("weight", kernels.first_conv(net)[1].weight.detach().clone())
        return net

    monkeypatch.setattr(techniques.networks, "build_net", recording)
    root = make_dataset(tmp_path, per_class=8)
    cfg = config("technique=baseline", "seed=7", "techniques.baseline.epochs=1")
    train_technique(cfg, paths(root, "baseline"), progress=False)
    spec = load_checkpoint(paths(root, "baseline").out / CHECKPOINT)[1]
    rebuilt = kernels.first_conv(sections_learned.scratch_initialisation(spec, 7))[1].weight
    assert torch.equal(rebuilt, started["weight"])
