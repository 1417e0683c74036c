"""The augmentation preview (smallvision.visualize.augmentation_preview): the original, then each copy."""

from __future__ import annotations

import numpy as np
from helpers.figures import (
    TINY,
    assert_not_blank,
    draw_figure,
    flat_text,
    image_panels,
    timed_build,
    tiny_scene,
)

from smallvision.data.augmentation import AffineConfig
from smallvision.visualize import augmentation_preview


def test_augmentation_figure_shows_the_original_then_each_copy():
    image = tiny_scene(3)
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
    fig, pixels = timed_build(
        "augmentation_figure",
        lambda: augmentation_preview.augmentation_figure(image, copies, cfg, 3, "train/cat/0.jpg"),
    )
    assert flat_text(fig.get_suptitle()) == (
        "Augmentation preview: rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, "
        "shear_range=0.2, zoom_range=0.2, horizontal_flip, fill=nearest"
    )
    panels = image_panels(fig)
    assert len(panels) == 6 == len(fig.axes)
    assert [ax.get_title() for ax in panels] == ["original: train/cat/0.jpg"] + [f"augmented #{k}" for k in range(1, 6)]
    assert np.array_equal(panels[0].images[0].get_array(), image)
    for ax, copy in zip(panels[1:], copies):
        assert np.array_equal(ax.images[0].get_array(), copy) and not np.array_equal(copy, image)
    for ax in panels:
        assert_not_blank(pixels, ax)
    identity = augmentation_preview.augmentation_figure(image, copies[:2], AffineConfig(), 4)
    draw_figure(identity)
    assert identity.get_suptitle() == "Augmentation preview: no augmentation (identity)"
    assert len(image_panels(identity)) == 3 and identity.axes[0].get_title() == "original"
    own = augmentation_preview.augmentation_figure(image, copies[:2], cfg, 4, technique="modern")
    assert flat_text(own.get_suptitle()).startswith("Augmentation preview (modern): rotation_range=40,")
