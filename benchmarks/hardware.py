"""What the CPU offers the benchmarks: torch's kernel ISA, the bf16/AMX flags, and whether bf16 is native.

Every benchmark asks here, prints the answer first and records it with its results. bf16 work runs at full size
only where bf16 is native: elsewhere torch emulates it in fp32 code, so a bf16 matmul peak at 4096 x 4096 takes
minutes on a 2-core AVX2-only CPU. `--assume-no-bf16` makes a CPU with native bf16 take the other path.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from smallvision.trainer import resolve_precision

# The /proc/cpuinfo flags the figures depend on, widest last.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
# The matmul peak each Lightning precision is measured against (anything else trains in fp32).
PEAK_OF_PRECISION = {"bf16-mixed": "bf16", "bf16-true": "bf16", "16-mixed": "fp16", "16-true": "fp16"}


@dataclass(frozen=True)
class Cpu:
    capability: str  # torch.backends.cpu.get_cpu_capability(): the ISA torch's own kernels were dispatched to
    flags: tuple[str, ...]  # those of FLAGS the CPU lists
    native_bf16: bool  # what `trainer.precision: auto` decides on: bf16 autocast where true, fp32 elsewhere
    assumed_no_bf16: bool = False  # native bf16 here, but --assume-no-bf16 took the path of a CPU without it

    @property
    def isa(self) -> str:
        for flag, name in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 with bf16"), ("avx512f", "AVX-512")):
            if flag in self.flags:
                return name
        return "AVX2" if "avx2" in self.flags else self.capability

    @property
    def bf16(self) -> str:
        return "native" if self.native_bf16 else "emulated"

    def record(self) -> dict:
        return {**asdict(self), "flags": list(self.flags), "isa": self.isa, "bf16": self.bf16}

    def describe(self) -> str:
        assumed = " (assumed: --assume-no-bf16)" if self.assumed_no_bf16 else ""
        return (
            f"CPU offers {self.isa} (torch kernels: {self.capability}; flags: {' '.join(self.flags) or 'none'}); "
            f"bf16 {self.bf16}{assumed}"
        )


def cpu_flags() -> tuple[str, ...]:
    """Those of FLAGS that /proc/cpuinfo lists (none where there is no /proc/cpuinfo)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    listed = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return tuple(f for f in FLAGS if f in listed)


def detect(assume_no_bf16: bool = False) -> Cpu:
    """This CPU; native bf16 as the trainer's `auto` precision sees it, unless `assume_no_bf16`."""
    native = resolve_precision("auto", "cpu") == "bf16-mixed"
    return Cpu(
        capability=torch.backends.cpu.get_cpu_capability(),
        flags=cpu_flags(),
        native_bf16=native and not assume_no_bf16,
        assumed_no_bf16=native and assume_no_bf16,
    )


def trained_precision(precision: str, device: str, cpu: Cpu) -> str:
    """The precision a stage with `trainer.precision: <precision>` trains in on `device` (the trainer's decision)."""
    return resolve_precision(precision, "gpu" if device == "cuda" else "cpu", cpu_native_bf16=cpu.native_bf16)


def bf16_full_size(device: str, cpu: Cpu) -> bool:
    """Whether bf16 work runs at full size: on a GPU, or on a CPU with native bf16."""
    return device == "cuda" or cpu.native_bf16


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--assume-no-bf16",
        action="store_true",
        help="take the path of a CPU without native bf16 (fp32 training, bf16 work small or skipped), to reproduce it",
    )
