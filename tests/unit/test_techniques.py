"""Each technique's network is built by the builder of that name; fine-tune starts from the feature-extract head."""

from __future__ import annotations

import pytest
from helpers.study import TECHNIQUES, config, make_dataset, paths

from smallvision import networks, techniques
from smallvision.errors import DataError
from smallvision.training import train_technique


def test_each_technique_trains_one_network_built_by_the_builder_of_that_name():
    """A technique's kind (how it trains) and its spec's network (what is built and saved) are two vocabularies;
    networks.network_of maps one to the other and techniques has one builder per network, named after it."""
    t = config().techniques
    networks_of = {name: networks.network_of(t[name]) for name in TECHNIQUES}
    assert networks_of == {
        "baseline": "scratch",
        "augment": "scratch",
        "feature_extract": "head",
        "fine_tune": "transfer",
    }
    assert networks.network_of(t["feature_extract"].model_copy(update={"mode": "augmented"})) == "transfer"
    assert {name: build.__name__ for name, build in techniques.BUILDERS.items()} == {
        "scratch": "scratch",
        "modern": "modern",
        "head": "head",
        "transfer": "transfer",
    }
    bb = config().backbone
    for name in TECHNIQUES:
        assert techniques.builder(t[name]) is techniques.BUILDERS[networks_of[name]]
        assert networks.make_spec(t[name], bb, ["cat", "dog"], 8)["network"] == networks_of[name]


def test_fine_tune_needs_the_feature_extract_head(tmp_path):
    root = make_dataset(tmp_path, per_class=12)
    missing = root / "models" / "feature_extract" / "best.ckpt"
    with pytest.raises(
        DataError, match=rf"feature-extract head, but {missing} does not exist.*dvc repro feature-extract"
    ):
        train_technique(config("technique=fine_tune"), paths(root, "fine_tune"), progress=False)
