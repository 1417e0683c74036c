"""The benchmarks respect the CPU they run on (benchmarks/hardware.py): with the CPU's capability faked, bf16 work
runs at full size only where bf16 is native, and the FLOP/s fraction is taken against the peak of the precision
that trained. Nothing here measures time."""

from __future__ import annotations

import sys

import pytest
import torch
from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
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
