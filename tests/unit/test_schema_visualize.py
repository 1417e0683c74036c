"""The visualize stage's settings (smallvision.schema_visualize): every technique a figure names must be one the
study has, wherever it is named; `best` is a choice only where the report resolves it (the mistakes figure)."""

from __future__ import annotations

import pytest
from helpers.study import config

from smallvision.errors import ConfigError
from smallvision.schema_visualize import Visualize


def test_the_shipped_settings_name_only_known_techniques():
    settings = config()
    visualize = settings.visualize
    assert isinstance(visualize, Visualize)
    assert visualize.unknown_techniques(list(settings.techniques)) is None
    # the check reads the list it is given: with one technique known, the report's others are refused
    assert "unknown technique(s) ['augment'" in str(visualize.unknown_techniques(["baseline"]))


@pytest.mark.parametrize("key", ["techniques", "filters.techniques", "pairs.techniques", "kernels.techniques"])
def test_an_unknown_technique_in_any_list_is_one_line_naming_the_key_and_the_known_ones(key: str):
    with pytest.raises(
        ConfigError, match=rf"^visualize\.{key} names unknown technique\(s\) \['vgg'\]; known: baseline"
    ):
        config(f"visualize.{key}=[baseline,vgg]")


def test_best_is_a_choice_for_the_mistakes_figure_only():
    assert config("visualize.mistakes.technique=best").visualize.mistakes.technique == "best"
    with pytest.raises(ConfigError, match=r"visualize\.mistakes\.technique='nope' is unknown; allowed: best, baseline"):
        config("visualize.mistakes.technique=nope")
    with pytest.raises(ConfigError, match=r"visualize\.augmentation_preview\.technique='best' is unknown"):
        config("visualize.augmentation_preview.technique=best")
