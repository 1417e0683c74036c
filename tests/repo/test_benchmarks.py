"""The benchmarks respect the CPU they run on (benchmarks/hardware.py): with the CPU's capability faked, bf16 work
runs at full size only where bf16 is native, and the FLOP/s fraction is taken against the peak of the precision
that trained. The fine-tune benchmark builds the project's network and records its ratio per preset. Nothing here
measures time."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import bench_finetune_throughput as finetune
import bench_train_throughput as throughput

import common
import hardware

AVX2_ONLY = ("AVX2", ("avx2",), False)  # the filed report's 2-core AMD EPYC
AMX = ("AVX512", ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"), True)


@pytest.fixture
def fake_cpu(monkeypatch):
    """fake_cpu((capability, flags, native bf16)) -> hardware.detect() on a CPU like that."""

    def fake(offer: tuple, assume_no_bf16: bool = False) -> hardware.Cpu:
        capability, flags, native = offer
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
        # what trainer.resolve_precision asks the CPU (torch has no public API for it)
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
        return hardware.detect(assume_no_bf16)

    return fake


@pytest.fixture
def peaks_measured(monkeypatch):
    """The matmul peaks the throughput benchmark asks for, as (dtype, sizes, repeats); each returns a fixed figure."""
    calls = []

    def fake_peak(dtype, sizes, repeats, device):
        calls.append((dtype, tuple(sizes), repeats))
        return {torch.float32: 100e9, torch.bfloat16: 10e9}[dtype]

    monkeypatch.setattr(throughput, "matmul_peak", fake_peak)
    return calls


def test_detect_reads_what_the_cpu_offers(fake_cpu):
    avx2 = fake_cpu(AVX2_ONLY)
    assert (avx2.isa, avx2.capability, avx2.bf16, avx2.assumed_no_bf16) == ("AVX2", "AVX2", "emulated", False)
    amx = fake_cpu(AMX)
    assert (amx.isa, amx.bf16) == ("AMX", "native")
    # the record every results file carries
    assert common.machine(amx)["cpu_offers"] == {
        "capability": "AVX512",
        "flags": list(AMX[1]),
        "native_bf16": True,
        "assumed_no_bf16": False,
        "isa": "AMX",
        "bf16": "native",
    }
    assert "AVX2" in avx2.describe() and "bf16 emulated" in avx2.describe()


def test_the_trained_precision_is_the_trainers_auto_decision(fake_cpu):
    assert hardware.trained_precision("auto", "cpu", fake_cpu(AVX2_ONLY)) == "32-true"
    assert hardware.trained_precision("auto", "cpu", fake_cpu(AMX)) == "bf16-mixed"
    assert hardware.trained_precision("32-true", "cpu", fake_cpu(AMX)) == "32-true"  # what the config says, kept
    assumed = fake_cpu(AMX, assume_no_bf16=True)  # --assume-no-bf16 on a CPU with native bf16
    assert (assumed.native_bf16, assumed.assumed_no_bf16, assumed.bf16) == (False, True, "emulated")
    assert hardware.trained_precision("auto", "cpu", assumed) == "32-true"
    assert "--assume-no-bf16" in assumed.describe()


def test_the_flag_reproduces_a_cpu_without_native_bf16(fake_cpu):
    import argparse

    parser = argparse.ArgumentParser()
    hardware.add_argument(parser)
    fake_cpu(AMX)
    assert hardware.detect(parser.parse_args(["--assume-no-bf16"]).assume_no_bf16).native_bf16 is False
    assert hardware.detect(parser.parse_args([]).assume_no_bf16).native_bf16 is True


def test_without_native_bf16_the_bf16_peak_is_small_and_the_fraction_uses_fp32(fake_cpu, peaks_measured, capsys):
    cpu = fake_cpu(AVX2_ONLY)
    trained = hardware.trained_precision("auto", "cpu", cpu)
    plan = throughput.peak_plan(trained, "cpu", cpu)
    peaks = throughput.measure_peaks(plan, "cpu")

    bf16 = [c for c in peaks_measured if c[0] == torch.bfloat16]
    fp32 = [c for c in peaks_measured if c[0] == torch.float32]
    assert len(bf16) == 1 and max(bf16[0][1]) <= 512  # not the full-size probe that ran for minutes
    assert fp32 == [(torch.float32, *throughput.FULL_PEAK)]
    assert throughput.peak_of(trained) == "fp32" and peaks["fp32"] == 100e9
    printed = capsys.readouterr().out
    assert "bf16 matmul peak" in printed and "EMULATED" in printed

    variants, skipped = throughput.variant_plan((trained, True), "cpu", cpu, skip=False, compile=False)
    assert variants == [("32-true", False, False)]  # the bf16 ones are left out, each saying why
    assert len(skipped) == 2 and all("bf16" in s and "emulated" in s for s in skipped)


def test_with_native_bf16_the_bf16_peak_runs_at_full_size_and_is_the_one_compared(fake_cpu, peaks_measured, capsys):
    cpu = fake_cpu(AMX)
    trained = hardware.trained_precision("auto", "cpu", cpu)
    throughput.measure_peaks(throughput.peak_plan(trained, "cpu", cpu), "cpu")

    assert (torch.bfloat16, *throughput.FULL_PEAK) in peaks_measured
    assert throughput.peak_of(trained) == "bf16"
    assert "EMULATED" not in capsys.readouterr().out
    variants, skipped = throughput.variant_plan((trained, True), "cpu", cpu, skip=False, compile=False)
    assert ("bf16-mixed", False, False) in variants and not skipped


def test_on_a_gpu_bf16_runs_at_full_size_whatever_the_cpu(fake_cpu, peaks_measured):
    cpu = fake_cpu(AVX2_ONLY)
    throughput.measure_peaks(throughput.peak_plan("bf16-mixed", "cuda", cpu), "cuda")
    assert (torch.bfloat16, *throughput.FULL_PEAK) in peaks_measured


def test_the_emulated_peak_probe_runs():
    """The small probe itself (real bf16 matmuls, a fraction of a second even where emulated)."""
    _, sizes, repeats, emulated = throughput.peak_plan("32-true", "cpu", hardware.Cpu("AVX2", ("avx2",), False))["bf16"]
    assert emulated and throughput.matmul_peak(torch.bfloat16, sizes, repeats, "cpu") > 0


def test_the_bf16_reference_runs_only_where_bf16_is_native(fake_cpu):
    names = lambda planned: [name for name, _ in planned]
    planned, skipped = throughput.references("cpu", fake_cpu(AVX2_ONLY))
    assert planned == [(throughput.REFERENCE, False)]
    assert skipped == ["reference bf16 channels_last: bf16 is emulated here"]  # printed as `skipped ...`
    planned, skipped = throughput.references("cpu", fake_cpu(AMX))
    assert planned == [(throughput.REFERENCE, False), (throughput.REFERENCE_BF16, True)] and not skipped
    assert names(throughput.references("cuda", fake_cpu(AVX2_ONLY))[0])[1] == throughput.REFERENCE_BF16
    assert throughput.references("cpu", fake_cpu(AMX, assume_no_bf16=True))[1]  # --assume-no-bf16 skips it too


def test_ours_is_compared_with_each_reference_measured_and_repeats_give_medians():
    ours = "ours (bf16-mixed, channels_last)"
    runs = {throughput.REFERENCE: 40.0, throughput.REFERENCE_BF16: 60.0, ours: 120.0}
    assert throughput.ratios(runs, ours) == {"fp32": 3.0, "bf16": 2.0}
    del runs[throughput.REFERENCE_BF16]  # skipped: bf16 emulated
    assert throughput.ratios(runs, ours) == {"fp32": 3.0}
    repeats = [{"r": 3.0, "b": None}, {"r": 2.0, "b": None}, {"r": 4.0, "b": None}]
    assert throughput.median_of(repeats, "r") == 3.0 and throughput.median_of(repeats, "b") is None


def test_the_finetune_benchmark_takes_presets_and_steps():
    args = finetune.parse_args([])
    assert (args.presets, args.steps, args.device, args.assume_no_bf16) == (["playbook", "default"], 20, "cpu", False)
    args = finetune.parse_args(["--presets", "default", "--steps", "3", "--assume-no-bf16"])
    assert (args.presets, args.steps, args.assume_no_bf16) == (["default"], 3, True)
    assert finetune.parse_args([]).set == []
    args = finetune.parse_args(["--set", "trainer.compile=true"])
    assert finetune.preset_config("playbook", *args.set).trainer.compile is True
    for bad in (["--presets", "nope"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            finetune.parse_args(bad)


def test_the_finetune_presets_are_the_projects():
    playbook, default = (
        finetune.describe(finetune.preset_config("playbook")),
        finetune.describe(finetune.preset_config("default")),
    )
    assert (playbook["backbone"], playbook["image_size"], playbook["unfreeze_blocks"]) == (
        "efficientnet_lite2",
        260,
        "all",
    )
    assert (default["backbone"], default["image_size"], default["unfreeze_blocks"]) == ("efficientnet_lite0", 224, 1)


def test_the_finetune_benchmark_trains_the_projects_network(tmp_path):
    """The builder's network from the written start: the head's weights come from it, the base's top trains, the
    frozen BatchNorms are returned to stay in eval mode."""
    cfg = finetune.preset_config("default")
    setup = finetune.setup_of(cfg, np.zeros((1, 8, 8, 3), np.uint8), None, tmp_path)
    written = torch.load(tmp_path / "feature_extract.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, written[f"net.head.{k}"]) for k, v in setup.net.head.state_dict().items())
    trainable = [p for p in setup.net.parameters() if p.requires_grad]
    assert 0 < len(trainable) < len(list(setup.net.parameters()))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in setup.frozen)
    assert setup.image_input.channels_last == cfg.trainer.channels_last


def test_the_finetune_benchmark_records_each_presets_ratio(fake_cpu, monkeypatch, tmp_path):
    """Without native bf16 both sides train in fp32, and each preset's ratio and target land in the results file."""
    fake_cpu(AVX2_ONLY)
    seen = []
    monkeypatch.setattr(finetune, "reference", lambda cfg, bf16, *a: seen.append(("reference", bf16)) or 10.0)
    monkeypatch.setattr(finetune, "ours", lambda cfg, precision, *a: seen.append(("ours", precision)) or 16.0)
    saved = {}
    monkeypatch.setattr(finetune, "save", lambda name, result, cpu: saved.update(name=name, cpu=cpu, **result))
    result = finetune.main(["--presets", "playbook", "default", "--workdir", str(tmp_path / "work")])
    assert seen == [("reference", False), ("ours", "32-true")] * 2
    assert saved["name"] == "finetune-throughput" and saved["presets"] == result["presets"]
    assert saved["presets"]["playbook"]["ratio_vs_reference"] == 1.6
    assert saved["presets"]["playbook"]["target"] == 1.5 and saved["presets"]["default"]["target"] is None
    assert saved["presets"]["playbook"]["reference_precision"] == "fp32"
    assert common.machine(saved["cpu"])["cpu_offers"]["bf16"] == "emulated"  # what the results file records


def test_the_depthwise_benchmark_finds_every_depthwise_layer_of_the_backbone():
    import bench_depthwise

    cfg = common.project_config("technique=fine_tune", "preset=smoke")
    base = bench_depthwise.backbones.create_backbone(
        {**cfg.backbone.model_dump(), "weights": {"source": "none"}}, allow_random=True
    )
    layers = bench_depthwise.depthwise_layers(base, 64)
    depthwise = [m for m in base.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == m.in_channels > 1]
    assert sum(len(convs) for convs in layers.values()) == len(depthwise) == 16  # EfficientNet-Lite0's
    assert (32, 32, 3, 1) in layers and (144, 16, 5, 2) in layers  # (channels, input size, kernel, stride)
