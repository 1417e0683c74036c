"""The techniques' settings (smallvision.schema_techniques): each technique of conf/ is read as the model of its
`kind`, a kind that is unknown or missing is one line listing the kinds, and the kinds listed are the union's own."""

from __future__ import annotations

import typing

import pytest
from helpers.study import config

from smallvision.errors import ConfigError
from smallvision.schema_techniques import (
    TECHNIQUE_KINDS,
    AnyTechnique,
    FeatureExtract,
    FineTune,
    Modern,
    Scratch,
)


def test_the_listed_kinds_are_the_unions_own():
    kinds = {model.model_fields["kind"].annotation for model in typing.get_args(AnyTechnique)}
    assert {typing.get_args(kind)[0] for kind in kinds} == set(TECHNIQUE_KINDS)


def test_each_shipped_technique_is_read_as_the_model_of_its_kind():
    techniques = config().techniques
    expected = {"baseline": Scratch, "augment": Scratch, "modern": Modern}
    expected |= {"feature_extract": FeatureExtract, "fine_tune": FineTune}
    assert {name: type(t) for name, t in techniques.items()} == expected


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("techniques.baseline.kind=vgg", r"^techniques\.baseline\.kind='vgg' is unknown; allowed: scratch, modern, "),
        ("~techniques.baseline.kind", r"^techniques\.baseline\.kind is not set; allowed: scratch, modern, "),
    ],
)
def test_an_unknown_or_missing_kind_is_one_line_listing_the_kinds(override: str, line: str):
    with pytest.raises(ConfigError, match=line):
        config(override)


def test_only_feature_extraction_in_cached_mode_is_cached():
    assert config("techniques.feature_extract.mode=cached").techniques["feature_extract"].cached
    assert not config("techniques.feature_extract.mode=augmented").techniques["feature_extract"].cached
    assert not any(t.cached for name, t in config().techniques.items() if name != "feature_extract")
