"""The visualize settings' checks: a CUDA device that is there, and an image chosen by index or manifest path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from smallvision.data.manifest import Record
from smallvision.errors import ConfigError
from smallvision.visualize.settings import check_device, pick

RECORDS = [Record(Path(f"/data/{i}.jpg"), f"cat/{i}.jpg", "cat", 0, "test", "0" * 64) for i in range(3)]


def test_cuda_is_refused_without_a_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="visualize.device=cuda but no CUDA device"):
        check_device("cuda")
    check_device("cpu")
    check_device("auto")


def test_an_image_is_picked_by_index_or_manifest_path():
    assert pick(RECORDS, 1, "image") is RECORDS[1]
    assert pick(RECORDS, -1, "image") is RECORDS[2]
    assert pick(RECORDS, "cat/2.jpg", "image") is RECORDS[2]


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (3, r"visualize\.image=3: the split has 3 images; give an index from 0 to 2"),
        (True, r"visualize\.image=True: the split has 3 images"),
        ("dog/1.jpg", r"visualize\.image='dog/1.jpg' is not a path of that split .*'cat/0.jpg'"),
    ],
)
def test_a_bad_choice_names_the_option_and_what_it_can_be(which, message):
    with pytest.raises(ConfigError, match=message):
        pick(RECORDS, which, "image")
