"""The memory check a training job runs when its settings are loaded: an image size that cannot fit is refused,
naming the largest that can, and a batch that fits at no size names the batch size."""

from __future__ import annotations

import pytest
from helpers.study import technique

from smallvision import settings
from smallvision.errors import ConfigError
from smallvision.models.convnet_sizes import MIN_IMAGE_SIZE


def with_memory(monkeypatch: pytest.MonkeyPatch, nbytes: int | None) -> None:
    monkeypatch.setattr(settings, "machine_memory", lambda accelerator: None if nbytes is None else (nbytes, "memory"))


def test_the_scratch_network_needs_more_memory_as_the_image_grows_and_names_its_dense_layer():
    small, what = settings.training_memory(technique("baseline"), 64)
    large, _ = settings.training_memory(technique("baseline"), 150)
    assert 0 < small < large and "Dense layer" in what
    assert "Dense" not in settings.training_memory(technique("feature_extract"), 64)[1]
    assert settings.machine_memory("cpu")[1] == "memory" and settings.machine_memory("cpu")[0] > 0  # readable here


def test_a_size_that_cannot_fit_is_refused_naming_the_largest_that_can(monkeypatch):
    tech = technique("baseline", image_size=150)
    fits = settings.training_memory(tech, 100)[0]
    with_memory(monkeypatch, fits)
    with pytest.raises(ConfigError, match=r"^techniques\.baseline\.image_size=150 needs .* use at most 100 px$"):
        settings.check_memory(tech, "techniques.baseline", "cpu")
    settings.check_memory(tech.model_copy(update={"image_size": 100}), "techniques.baseline", "cpu")  # fits


def test_a_batch_too_large_at_any_size_names_the_batch_size(monkeypatch):
    tech = technique("baseline", image_size=64)
    with_memory(monkeypatch, settings.training_memory(tech, MIN_IMAGE_SIZE)[0] - 1)
    with pytest.raises(ConfigError, match=r"techniques\.baseline\.eval_batch_size=64 .* lower the batch size"):
        settings.check_memory(tech, "techniques.baseline", "cpu")


def test_memory_that_cannot_be_read_checks_nothing(monkeypatch):
    with_memory(monkeypatch, None)
    settings.check_memory(technique("baseline", image_size=10_000), "techniques.baseline", "cpu")
