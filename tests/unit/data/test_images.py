"""Decoding one image: every odd format comes out as upright 8-bit RGB, every broken file as a short reason."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from helpers.study import LIMITS
from PIL import Image

from smallvision.data.images import IMAGE_EXTENSIONS, BadImageError, ImageLimits, is_image_name, load_resized, load_rgb
from smallvision.errors import DataError

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def close_to(pixel, expected, tolerance=12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, expected))


def reason_of(path: Path, max_pixels: int | None = LIMITS.max_pixels) -> str:
    with pytest.raises(BadImageError) as caught:
        load_rgb(path, ImageLimits(max_pixels, LIMITS.max_bytes))
    return caught.value.reason


# --------------------------------------------------------------------------- broken files


def test_empty_file(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"")
    assert reason_of(tmp_path / "a.jpg") == "empty file"


def test_non_image_bytes_named_jpg(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"this is a text file, not a photo\n" * 20)
    assert reason_of(tmp_path / "a.jpg") == "not an image"


def test_truncated_jpeg(tmp_path, write_image):
    path = write_image(tmp_path / "a.jpg", size=(96, 96))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert reason_of(path) == "does not decode (truncated or corrupt)"


def test_decompression_bomb_is_refused_before_decoding(tmp_path, write_png_bomb):
    bomb = write_png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    assert reason_of(bomb).startswith("too large")


def test_pixel_limit_is_a_parameter(tmp_path, write_image):
    path = write_image(tmp_path / "a.png", size=(64, 64))
    assert load_rgb(path, LIMITS).size == (64, 64)
    assert reason_of(path, max_pixels=1000) == "too large (64x64 pixels, limit 1000)"


def test_bad_image_error_is_a_data_error_naming_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"x\.png: empty file") as caught:
        load_rgb(tmp_path / "x.png", LIMITS)
    copy = pickle.loads(pickle.dumps(caught.value))  # as it arrives from a worker process
    assert (copy.reason, str(copy)) == ("empty file", str(caught.value))


# --------------------------------------------------------------------------- odd but valid files


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # red in CMYK
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    image = load_rgb(tmp_path / "cmyk.jpg", LIMITS)
    assert image.mode == "RGB"
    assert close_to(image.getpixel((8, 8)), RED, tolerance=30)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = np.asarray(load_rgb(tmp_path / "deep.png", LIMITS))
    assert pixels.dtype == np.uint8 and pixels.shape == (8, 32, 3)
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255
    assert 100 < pixels[0, 16, 0] < 160  # the middle of the ramp is mid-grey, not white


def test_palette_png(tmp_path):
    image = Image.new("RGB", (16, 16), RED)
    image.paste(BLUE, (8, 0, 16, 16))
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "pal.png")
    assert Image.open(tmp_path / "pal.png").mode == "P"
    loaded = load_rgb(tmp_path / "pal.png", LIMITS)
    assert loaded.mode == "RGB"
    assert close_to(loaded.getpixel((2, 2)), RED) and close_to(loaded.getpixel((12, 2)), BLUE)


def test_greyscale_becomes_three_equal_channels(tmp_path):
    Image.new("L", (8, 8), 77).save(tmp_path / "grey.png")
    assert load_rgb(tmp_path / "grey.png", LIMITS).getpixel((3, 3)) == (77, 77, 77)


def test_rgba_transparency_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (16, 8), (0, 0, 0, 0))  # transparent black
    image.paste((0, 0, 255, 255), (8, 0, 16, 8))
    image.save(tmp_path / "alpha.png")
    loaded = load_rgb(tmp_path / "alpha.png", LIMITS)
    assert loaded.getpixel((2, 2)) == WHITE
    assert loaded.getpixel((12, 2)) == BLUE


def test_greyscale_with_alpha(tmp_path):
    Image.new("LA", (8, 8), (0, 0)).save(tmp_path / "la.png")
    assert load_rgb(tmp_path / "la.png", LIMITS).getpixel((1, 1)) == WHITE


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (12, 10), colour) for colour in (RED, BLUE, (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    loaded = load_rgb(tmp_path / "anim.gif", LIMITS)
    assert loaded.size == (12, 10) and loaded.mode == "RGB"
    assert close_to(loaded.getpixel((5, 5)), RED)


def test_webp(tmp_path, write_image):
    path = write_image(tmp_path / "a.webp", lossless=True)
    original = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(np.asarray(load_rgb(path, LIMITS)), original)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (32, 16), RED)  # stored landscape: left half red, right half blue
    stored.paste(BLUE, (16, 0, 32, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    upright = load_rgb(tmp_path / "rotated.jpg", LIMITS)
    assert upright.size == (16, 32)  # portrait once rotated
    assert close_to(upright.getpixel((8, 4)), RED, tolerance=40)  # the stored left edge is now the top
    assert close_to(upright.getpixel((8, 28)), BLUE, tolerance=40)


@pytest.mark.parametrize("name", ["UPPER.JPG", "long.jpeg", "Mixed.JpEg", "kätzchen_猫.jpg", "tiff.TIF"])
def test_extensions_any_case_and_non_ascii_names(tmp_path, write_image, name):
    path = write_image(tmp_path / name)
    assert is_image_name(name)
    assert load_rgb(path, LIMITS).size == (24, 24)


def test_extension_list():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"} == set(IMAGE_EXTENSIONS)
    assert not is_image_name("Thumbs.db") and not is_image_name("README")


def test_load_resized_gives_exact_uint8_square(tmp_path, write_image):
    path = write_image(tmp_path / "wide.png", size=(40, 20))
    array = load_resized(path, 16, LIMITS)
    assert array.shape == (16, 16, 3) and array.dtype == np.uint8
    Image.new("RGB", (30, 10), RED).save(tmp_path / "red.png")
    assert (load_resized(tmp_path / "red.png", 8, LIMITS) == np.array(RED, np.uint8)).all()


def test_returned_image_is_independent_of_the_file(tmp_path, write_image):
    path = write_image(tmp_path / "a.png")
    with Image.open(path) as written:
        expected = np.asarray(written.convert("RGB")).copy()
    image = load_rgb(path, LIMITS)
    write_image(path, seed=1)  # other pixels in the same file, then no file: a lazily read image would see either
    path.unlink()
    assert np.array_equal(np.asarray(image), expected)


def test_bytes_survive_in_memory(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), RED).save(buffer, format="BMP")
    (tmp_path / "a.bmp").write_bytes(buffer.getvalue())
    assert load_rgb(tmp_path / "a.bmp", LIMITS).getpixel((0, 0)) == RED
