"""The visualize stage's sections (smallvision.visualize.stage): each has a switch and its settings are checked."""

from __future__ import annotations

import pytest
from helpers.figures import (
    TINY,
)
from helpers.study import config

from smallvision import schema, schema_visualize
from smallvision.errors import ConfigError
from smallvision.models.convnet import SmallConvNet
from smallvision.visualize.layers import chosen_layers
from smallvision.visualize.stage import SECTIONS, enabled

# --------------------------------------------------------------------------- the switches and their checks


def test_each_new_section_has_a_switch_and_its_settings_are_checked():
    settings = config().visualize
    v = settings.model_dump()

    def validate(visualize: dict) -> schema_visualize.Visualize:
        return schema.validate(schema_visualize.Visualize, visualize, "visualize")

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
