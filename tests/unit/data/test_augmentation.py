"""Batched Keras-equivalent affine augmentation (smallvision.data.augmentation)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from helpers import ROOT
from omegaconf import OmegaConf

from smallvision.data.augmentation import AffineConfig, affine_matrices, apply_affine, random_affine, sample_params
from smallvision.errors import ConfigError
from smallvision.schema import validate
from smallvision.schema_techniques import Augmentation

CONF_DIR = ROOT / "conf" / "augmentation"
CHOLLET = AffineConfig(
    rotation_range=40,
    width_shift_range=0.2,
    height_shift_range=0.2,
    shear_range=0.2,
    zoom_range=0.2,
    horizontal_flip=True,
    fill_mode="nearest",
)
# One fixed transform with every component active, zx != zy so a row/column swap shows.
FIXED = {"theta": math.radians(30), "tx": 4.3, "ty": -6.7, "shear": 0.1, "zx": 0.85, "zy": 1.12}


def keras_transform_matrix(height, width, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0):
    """Reference: the matrix keras-preprocessing's ``apply_affine_transform`` builds.

    Same matrices, same composition order (rotation, shift, shear, zoom), same
    ``transform_matrix_offset_center`` (the pixel-grid centre). As in Keras 2.0's
    random_transform, ``theta`` and ``shear`` are in radians here.
    """
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shearing = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    matrix = rotation @ shift @ shearing @ zoom
    o_x, o_y = height / 2 - 0.5, width / 2 - 0.5
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    return offset @ matrix @ reset


def keras_apply_affine_transform(x, fill_mode="nearest", cval=0.0, order=1, **transform):
    """Reference: keras-preprocessing's scipy ``apply_affine_transform`` for a (C, H, W) image."""
    matrix = keras_transform_matrix(*x.shape[1:], **transform)
    return np.stack(
        [
            ndi.affine_transform(channel, matrix[:2, :2], matrix[:2, 2], order=order, mode=fill_mode, cval=cval)
            for channel in x
        ]
    )


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A (3, H, W) smooth random image in [0, 1]: bilinear interpolation is accurate on it."""
    img = ndi.gaussian_filter(np.random.default_rng(seed).random((3, height, width)), sigma=(0, 3, 3))
    return (img - img.min()) / (img.max() - img.min())


def as_params(values: dict[str, float], flip: bool = False) -> dict[str, torch.Tensor]:
    params = {k: torch.tensor([v], dtype=torch.float32) for k, v in values.items()}
    params["flip"] = torch.tensor([flip])
    return params


def outside_mask(img: np.ndarray, values: dict[str, float]) -> np.ndarray:
    """Pixels whose source lies outside the input (where the fill mode decides the value)."""
    return np.isnan(keras_apply_affine_transform(img, **values, fill_mode="constant", cval=np.nan))


# --- pixel-exact against the reference ---------------------------------------------------

# The reference works in float64, we in float32 (grid coordinates carry ~1e-5 px of rounding);
# on a smooth image in [0, 1] that moves a bilinear sample by ~1e-6. 1e-4 of the image range
# leaves 100x margin, while any real mistake (axis swap, wrong centre, order of composition,
# a sign) moves pixels by a large fraction of the range.
TOLERANCE = 1e-4


@pytest.mark.parametrize("height, width", [(40, 40), (64, 48)])
@pytest.mark.parametrize("fill_mode", ["nearest", "reflect", "constant"])
@pytest.mark.parametrize("flip", [False, True])
def test_fixed_transform_matches_keras_reference(height, width, fill_mode, flip):
    img = smooth_image(height, width)
    expected = keras_apply_affine_transform(img, **FIXED, fill_mode=fill_mode, cval=0.3)
    if flip:  # Keras flips after the affine transform
        expected = expected[:, :, ::-1]
    got = apply_affine(torch.from_numpy(img[None]).float(), as_params(FIXED, flip), fill_mode=fill_mode, cval=0.3)
    got = got[0].numpy()

    border = outside_mask(img, FIXED)
    if flip:
        border = border[:, :, ::-1]
    assert 0.05 < border.mean() < 0.5  # the transform really reaches outside, so the fill is tested
    diff = np.abs(got - expected)
    assert diff[~border].max() < TOLERANCE, "interior differs from Keras"
    assert diff[border].max() < TOLERANCE, f"border ({fill_mode} fill) differs from Keras"


def test_nearest_interpolation_matches_keras_2_0_order_0():
    """Keras 2.0 itself resampled with order=0; rounding ties may differ, nothing else."""
    img = smooth_image(64, 48)
    expected = keras_apply_affine_transform(img, **FIXED, order=0)
    got = apply_affine(torch.from_numpy(img[None]).float(), as_params(FIXED), interpolation="nearest")[0].numpy()
    assert np.mean(np.abs(got - expected) < 1e-6) > 0.99


def test_affine_matrices_is_keras_matrix():
    matrix = affine_matrices(as_params(FIXED), 64, 48)[0].double().numpy()
    np.testing.assert_allclose(matrix, keras_transform_matrix(64, 48, **FIXED), atol=1e-4)


# --- sampled parameters ---------------------------------------------------------------------


def test_sampled_parameters_follow_keras_distribution():
    n, height, width = 20_000, 150, 100  # non-square: tx scales with the height, ty with the width
    p = sample_params(n, CHOLLET, height, width, generator=torch.Generator().manual_seed(0))
    ranges = {
        "theta": math.radians(40),
        "tx": 0.2 * height,
        "ty": 0.2 * width,
        "shear": 0.2,  # radians, Keras 2.0
    }
    for key, r in ranges.items():
        v = p[key].double()
        assert v.abs().max() <= r + 1e-5 and v.abs().max() > 0.99 * r, key
        sd = r / math.sqrt(3)
        assert abs(v.mean()) < 4 * sd / math.sqrt(n), key
        assert v.var().item() == pytest.approx(r * r / 3, rel=0.04), key
    for key in ("zx", "zy"):
        v = p[key].double()
        assert v.min() >= 0.8 - 1e-6 and v.max() <= 1.2 + 1e-6 and v.max() > 1.198 and v.min() < 0.802
        assert abs(v.mean() - 1) < 4 * 0.2 / math.sqrt(3 * n)
        assert v.var().item() == pytest.approx(0.04 / 3, rel=0.04)
    continuous = torch.stack([p[k].double() for k in ("theta", "tx", "ty", "shear", "zx", "zy")])
    corr = torch.corrcoef(continuous)
    off_diagonal = corr - torch.eye(6, dtype=corr.dtype)
    assert off_diagonal.abs().max() < 0.03  # all independent; in particular zx and zy
    assert p["flip"].dtype == torch.bool
    assert p["flip"].float().mean().item() == pytest.approx(0.5, abs=0.015)


def test_disabled_ranges_sample_exact_identity():
    p = sample_params(1000, AffineConfig(), 32, 32)
    for key, value in {"theta": 0, "tx": 0, "ty": 0, "shear": 0, "zx": 1, "zy": 1}.items():
        assert torch.all(p[key] == value), key
    assert not p["flip"].any()


# --- random_affine on batches -----------------------------------------------------------


def test_identity_config_returns_input_unchanged():
    x = torch.rand(4, 3, 20, 24)
    assert AffineConfig().is_identity and not CHOLLET.is_identity
    assert torch.equal(random_affine(x, AffineConfig()), x)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_keeps_dtype_shape_and_device(dtype):
    x = (torch.rand(5, 3, 30, 20) * 255).to(dtype)
    y = random_affine(x, CHOLLET, generator=torch.Generator().manual_seed(1))
    assert y.dtype == dtype and y.shape == x.shape and y.device == x.device
    assert not torch.equal(y, x)
    if dtype == torch.uint8:  # resampling does not shift the intensity scale
        assert abs(y.float().mean() - x.float().mean()) < 10


def test_generator_makes_it_reproducible():
    x = torch.rand(6, 3, 24, 24)

    def run(seed: int) -> torch.Tensor:
        return random_affine(x, CHOLLET, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(7), run(7))
    assert not torch.allclose(run(7), run(8))


def test_each_sample_gets_its_own_transform():
    x = torch.rand(1, 3, 24, 24).expand(8, -1, -1, -1).contiguous()
    y = random_affine(x, CHOLLET, generator=torch.Generator().manual_seed(3))
    assert all(not torch.allclose(y[0], y[i]) for i in range(1, 8))


def test_flip_only_config_flips_about_half_exactly():
    x = torch.randint(0, 256, (64, 3, 10, 12), dtype=torch.uint8)
    y = random_affine(x, AffineConfig(horizontal_flip=True), generator=torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(y[i], x[i].flip(-1)) for i in range(64)])
    same = torch.tensor([torch.equal(y[i], x[i]) for i in range(64)])
    assert torch.all(flipped | same) and 16 < flipped.sum() < 48


# --- fill modes, direction of the shifts ------------------------------------------------


def shifted(x: torch.Tensor, tx: float = 0.0, ty: float = 0.0, **kwargs) -> torch.Tensor:
    values = {"theta": 0.0, "tx": tx, "ty": ty, "shear": 0.0, "zx": 1.0, "zy": 1.0}
    return apply_affine(x, as_params(values), **kwargs)


def test_nearest_fill_replicates_edges_and_tx_shifts_rows():
    x = torch.rand(1, 3, 16, 12)
    y = shifted(x, tx=5, fill_mode="nearest")  # output row r reads input row r + 5
    torch.testing.assert_close(y[..., :-5, :], x[..., 5:, :], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[..., -5:, :], x[..., -1:, :].expand(-1, -1, 5, -1), atol=1e-5, rtol=0)


def test_constant_fill_uses_cval_and_ty_shifts_columns():
    x = torch.rand(1, 3, 16, 12)
    y = shifted(x, ty=-4, fill_mode="constant", cval=0.7)  # output column c reads input column c - 4
    torch.testing.assert_close(y[..., 4:], x[..., :-4], atol=1e-5, rtol=0)
    assert torch.all(y[..., :4] == 0.7)


def test_reflect_fill_mirrors_about_the_edge():
    x = torch.rand(1, 2, 10, 9)
    y = shifted(x, ty=3, fill_mode="reflect")
    torch.testing.assert_close(y[..., -3:], x[..., -3:].flip(-1), atol=1e-5, rtol=0)


def test_constant_fill_on_uint8_clamps_cval():
    x = torch.full((1, 1, 8, 8), 100, dtype=torch.uint8)
    y = shifted(x, tx=3, fill_mode="constant", cval=300)
    assert torch.all(y[..., -3:, :] == 255) and torch.all(y[..., :-3, :] == 100)


# --- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_are_valid(path):
    written = OmegaConf.to_container(OmegaConf.load(path))
    cfg = AffineConfig.of(validate(Augmentation, written, "augmentation"))
    assert dataclasses.asdict(cfg) == written  # every value as the file writes it, none dropped or defaulted
    batch = torch.rand(4, 3, 16, 16)
    changed = not torch.equal(random_affine(batch, cfg, generator=torch.Generator().manual_seed(0)), batch)
    assert changed == (not cfg.is_identity)  # none.yaml leaves images alone, chollet.yaml transforms them


def test_chollet_config_is_the_book_generator():
    settings = validate(Augmentation, OmegaConf.to_container(OmegaConf.load(CONF_DIR / "chollet.yaml")), "augmentation")
    assert AffineConfig.of(settings) == CHOLLET


@pytest.mark.parametrize(
    "key, value",
    [
        ("rotation_range", -10),
        ("width_shift_range", -0.1),
        ("height_shift_range", float("nan")),
        ("shear_range", "0.2"),
        ("zoom_range", 1.0),
        ("zoom_range", -0.2),
        ("rotation_range", 200),  # degrees: at most 180
        ("fill_mode", "wrap"),
        ("interpolation", "cubic"),
        ("horizontal_flip", "yes"),
        ("cval", None),
    ],
)
def test_bad_config_values_name_the_key(key, value):
    chollet = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "chollet.yaml"))
    with pytest.raises(ConfigError) as err:
        validate(Augmentation, {**chollet, key: value}, "augmentation")
    assert f"augmentation.{key}={value!r}" in str(err.value)


def test_unknown_config_key_is_a_config_error():
    chollet = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "chollet.yaml"))
    with pytest.raises(ConfigError, match="augmentation.rotaton_range=40 is not a setting"):
        validate(Augmentation, {**chollet, "rotaton_range": 40}, "augmentation")


def test_bad_batch_shape_is_explained():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_affine(torch.rand(3, 20, 20), CHOLLET)


# --- GPU (runs only where there is one) ---------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = torch.rand(8, 3, 64, 48)
    params = sample_params(8, CHOLLET, 64, 48, generator=torch.Generator().manual_seed(0))
    cpu = apply_affine(x, params)
    gpu = apply_affine(x.cuda(), {k: v.cuda() for k, v in params.items()})
    assert (gpu.cpu() - x).abs().max() > 0.1  # the transforms moved pixels: the match below is not two identities
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)
    # a CPU generator gives the same transforms for a GPU batch
    xu = (x * 255).to(torch.uint8)
    a = random_affine(xu, CHOLLET, generator=torch.Generator().manual_seed(5))
    b = random_affine(xu.cuda(), CHOLLET, generator=torch.Generator().manual_seed(5))
    assert b.dtype == torch.uint8 and (a.int() - b.cpu().int()).abs().max() <= 1
