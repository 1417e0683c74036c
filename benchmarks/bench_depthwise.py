"""Why `trainer.fp32_depthwise_grads` picks the layers it does: each depthwise conv of a preset's backbone, forward
and backward under bf16 autocast on this CPU, as autocast runs it (bf16 backward) and with its backward in fp32.

    python benchmarks/bench_depthwise.py                     # playbook's EfficientNet-Lite2 at 260 px, batch 32
    python benchmarks/bench_depthwise.py --preset default    # Lite0 at 224 px

Each distinct layer (channels, input size, kernel, stride) is timed alone on random bf16 input; the last column
says whether the setting gives it fp32 gradients (a kernel above 3 or a stride above 1). A CPU whose bf16 kernels
differ from the ones measured in benchmarks/README.md shows here whether that rule still holds on it.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from smallvision.models import backbones
from smallvision.models.depthwise import fp32_grad_class, is_slow_in_bf16

import hardware
from common import project_config, save, say


def milliseconds(fn, repeats: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1000


def depthwise_layers(base: nn.Module, image_size: int) -> dict[tuple[int, int, int, int], list[nn.Conv2d]]:
    """(channels, input size, kernel, stride) -> the base's depthwise convs of that shape, found by one forward."""
    found: dict[tuple[int, int, int, int], list[nn.Conv2d]] = {}

    def record(conv, inputs, _):
        key = (conv.in_channels, inputs[0].shape[-1], conv.kernel_size[0], conv.stride[0])
        found.setdefault(key, []).append(conv)

    hooks = [
        m.register_forward_hook(record)
        for m in base.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    ]
    with torch.no_grad():
        base(torch.zeros(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return found


def step_ms(conv: nn.Conv2d, x: torch.Tensor, repeats: int) -> float:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.backward(torch.ones_like(y))

    return milliseconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="playbook")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cpu = hardware.detect()
    say(f"{cpu.describe()}")
    if cpu.bf16 != "native":
        say("bf16 is not native here: training runs in fp32 and the setting never acts; nothing to measure")
        return
    cfg = project_config("technique=fine_tune", f"preset={args.preset}")
    size = cfg.selected.image_size
    base = backbones.create_backbone({**cfg.backbone.model_dump(), "weights": {"source": "none"}}, allow_random=True)
    say(f"{cfg.backbone.timm_name} at {size} px, batch {args.batch}: each depthwise conv, forward + backward (ms)")
    rows, totals = [], {"bf16": 0.0, "fp32 backward": 0.0, "as set": 0.0}
    for (channels, width, kernel, stride), convs in depthwise_layers(base, size).items():
        conv = convs[0]
        chosen = is_slow_in_bf16(conv)
        x = torch.randn(args.batch, channels, width, width, dtype=torch.bfloat16)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        conv = conv.to(memory_format=torch.channels_last)
        native = type(conv)
        bf16 = step_ms(conv, x, args.repeats)
        conv.__class__ = fp32_grad_class(conv)  # every depthwise layer, also those the setting leaves in bf16
        fp32 = step_ms(conv, x, args.repeats)
        conv.__class__ = native
        n = len(convs)
        totals["bf16"] += bf16 * n
        totals["fp32 backward"] += fp32 * n
        totals["as set"] += (fp32 if chosen else bf16) * n
        rows.append(
            {"channels": channels, "size": width, "kernel": kernel, "stride": stride, "layers": n}
            | {"bf16_ms": round(bf16, 1), "fp32_backward_ms": round(fp32, 1), "fp32_grads": chosen}
        )
        say(
            f"  {channels:5d} ch {width:4d} px {kernel}x{kernel} /{stride} x{n}: bf16 {bf16:7.1f}  "
            f"fp32 backward {fp32:7.1f}  {'fp32 gradients' if chosen else 'bf16 (kept)'}"
        )
    say(
        "  all depthwise layers, per step: "
        + ", ".join(f"{name} {ms:.0f} ms" for name, ms in totals.items())
        + f" ({totals['bf16'] / totals['as set']:.2f}x as set)"
    )
    save("depthwise", {"preset": args.preset, "batch": args.batch, "layers": rows, "totals_ms": totals}, cpu)


if __name__ == "__main__":
    main()
