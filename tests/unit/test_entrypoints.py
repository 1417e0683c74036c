"""What the entry scripts share: the settings loaded and checked once, the configuration a stage reads shown as YAML,
MLflow's requests bounded (the scripts' one-line errors end to end: tests/e2e/test_bad_config.py)."""

from __future__ import annotations

import os

import pytest
import yaml
from helpers.study import config

from smallvision import stages
from smallvision.entrypoints import bound_mlflow_requests, load_settings, show_config
from smallvision.errors import ConfigError


def test_shown_config_is_block_yaml_of_the_part_the_stage_reads(capsys: pytest.CaptureFixture) -> None:
    cfg = config("technique=augment", "techniques.augment.epochs=3").model_dump()
    part = show_config("train augment", cfg, stages.training_reads(cfg))
    assert list(part) == ["techniques", "augmentation", "trainer", "seed", "preset"]
    assert list(part["techniques"]) == ["augment"] and part["techniques"]["augment"]["epochs"] == 3
    assert part["seed"] == cfg["seed"] and part["trainer"] == cfg["trainer"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "train augment: configuration read"
    assert lines[1:4] == ["  techniques:", "    augment:", "      name: augment"]  # block style, as conf/ writes it
    assert not [line for line in lines if "{" in line or len(line) > 120]
    assert lines[-2:] == [f"  seed: {cfg['seed']}", f"  preset: {cfg['preset']}"]
    assert yaml.safe_load("\n".join(lines[1:])) == part  # what is printed is the config, as YAML


def test_settings_are_checked_once_with_a_one_line_error_naming_the_key():
    cfg = config().model_dump()
    assert load_settings(cfg) == config()
    cfg["techniques"]["baseline"]["epochs"] = 0
    with pytest.raises(ConfigError, match=r"^techniques\.baseline\.epochs=0 must be") as caught:
        load_settings(cfg)
    assert "\n" not in str(caught.value)


def test_mlflow_requests_are_bounded_and_what_the_user_set_wins(monkeypatch):
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    bound_mlflow_requests(config().logger.model_copy(update={"http_timeout_s": 2.5, "http_max_retries": 1}))
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "3"  # MLflow reads whole seconds
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
