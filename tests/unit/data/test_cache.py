"""The image cache: every image of a manifest decoded once into one array, rebuilt only when the key changes."""

from __future__ import annotations

import numpy as np
from helpers.study import LIMITS

from smallvision.data.cache import image_array
from smallvision.data.images import Resize, load_resized


def test_rows_follow_the_files_and_the_array_is_decoded_once_per_key(tmp_path, write_image):
    files = [write_image(tmp_path / "raw" / f"{i}.png", seed=i, size=(40, 30)) for i in range(3)]
    cache = tmp_path / "cache"
    first = image_array(files, Resize(16), cache, "manifest-a", 1, False, LIMITS)
    assert first.shape == (3, 16, 16, 3) and first.dtype == np.uint8
    assert all(np.array_equal(first[i], load_resized(f, Resize(16), LIMITS)) for i, f in enumerate(files))
    write_image(files[0], seed=99, size=(40, 30))  # same key: the cached array is read, nothing is decoded
    assert np.array_equal(image_array(files, Resize(16), cache, "manifest-a", 1, False, LIMITS), first)
    rebuilt = image_array(files, Resize(16), cache, "manifest-b", 1, False, LIMITS)  # another manifest: decoded
    assert np.array_equal(rebuilt[0], load_resized(files[0], Resize(16), LIMITS))
    assert not np.array_equal(rebuilt[0], first[0])


def test_a_build_killed_outright_leaves_a_temporary_file_the_next_build_removes(tmp_path, write_image):
    files = [write_image(tmp_path / "raw" / "0.png")]
    cache = tmp_path / "cache"
    cache.mkdir()
    image_array(files, Resize(8), cache, "k", 1, False, LIMITS)
    (target,) = cache.glob("images-*.npy")
    target.unlink()
    dead = cache / f".{target.stem}.999999999.tmp.npy"  # no process has this id
    dead.write_bytes(b"half")
    image_array(files, Resize(8), cache, "k", 1, False, LIMITS)
    assert sorted(p.name for p in cache.iterdir()) == [target.name]
