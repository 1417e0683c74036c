"""The Lightning Trainer from conf/trainer: precision `auto` is bf16 autocast only where the hardware runs bf16
natively, and trainer.channels_last puts the network's weights and every input batch in channels_last layout."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from helpers.study import add_callbacks, config, make_dataset, paths

from smallvision.features import FeatureExtractor
from smallvision.trainer import make_trainer, resolve_precision
from smallvision.training import train_technique


def test_the_cpu_trainer_defaults_to_auto_precision_and_channels_last():
    trainer = config().trainer
    assert (trainer.precision, trainer.channels_last, trainer.accelerator) == ("auto", True, "cpu")


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_precision_on_a_cpu_is_bf16_only_where_the_cpu_runs_it_natively(
    monkeypatch, tmp_path, native_bf16, expected
):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", "auto") == expected  # no GPU: the CPU decides
    assert (
        make_trainer(config().trainer.model_copy(update={"precision": "auto"}), 1, tmp_path, False, []).precision
        == expected
    )


@pytest.mark.parametrize(("gpu_bf16", "expected"), [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_precision_on_a_gpu_follows_the_gpu_not_the_cpu(monkeypatch, gpu_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: gpu_bf16)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: not gpu_bf16)
    for accelerator in ("gpu", "cuda", "auto"):
        assert resolve_precision("auto", accelerator) == expected, accelerator


def test_a_precision_that_is_set_is_kept(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    for precision in ("32-true", "16-mixed", "bf16-mixed", "64-true"):
        assert resolve_precision(precision, "cpu") == precision


# --------------------------------------------------------------------------------------------- channels_last


def _channels_last(t: torch.Tensor) -> bool:
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


class _Layouts(L.Callback):
    """Whether each batch the network sees (training, validation and test) and each conv weight is channels_last."""

    def __init__(self) -> None:
        self.inputs: list[bool] = []
        self.weights: list[bool] = []

    def _watch(self, module) -> None:
        module.net.register_forward_pre_hook(lambda _, args: self.inputs.append(_channels_last(args[0])))

    def on_fit_start(self, trainer, module) -> None:
        self._watch(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.weights += [_channels_last(p) for p in module.net.parameters() if p.dim() == 4]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("layouts"), per_class=8)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_puts_the_input_and_the_weights_in_that_layout(tiny, monkeypatch, channels_last):
    seen = _Layouts()
    add_callbacks(monkeypatch, seen)
    cfg = config("technique=baseline", "techniques.baseline.epochs=1", f"trainer.channels_last={channels_last}")
    metrics = train_technique(cfg, paths(tiny, f"layout_{channels_last}"), progress=False)
    # 8 training images in batches of 20, 4 validation and 4 test images: one batch each
    assert len(seen.inputs) == 3 and metrics["test_images"] == 4
    assert len(seen.weights) == 4 and seen.weights == [channels_last] * 4  # the four conv layers
    if channels_last:
        assert seen.inputs == [True] * 3
    # (without it the input is channels_last-strided anyway: the NHWC uint8 batch permuted to NCHW is not copied)


@pytest.mark.parametrize("channels_last", [True, False])
def test_feature_extraction_runs_the_base_in_the_configured_layout(channels_last):
    class Base(torch.nn.Module):  # a conv base with timm's entry point, which feature extraction calls
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    base, seen = Base(), []
    base.conv.register_forward_pre_hook(lambda _, args: seen.append(_channels_last(args[0])))
    extractor = FeatureExtractor(base, "avg", (0.5,) * 3, (0.5,) * 3, channels_last)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    extractor.predict_step((images, None, torch.arange(2)), 0)
    assert len(seen) == 1 and _channels_last(extractor.base.conv.weight) == channels_last
    if channels_last:
        assert seen == [True]
