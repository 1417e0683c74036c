"""Depthwise convolutions that compute their gradients in fp32 when they train on a CPU under bf16 autocast.

On the CPU measured (a 2-core AMD EPYC with AVX512_BF16), oneDNN's bf16 backward of a depthwise convolution with
a kernel above 3 or a stride above 1 ran up to 4.8x slower than its fp32 backward of the same layer (most of them
1.3-4.8x; one 3x3 stride-2 layer 10 % faster), and all of them took half of an EfficientNet-Lite2 training step at
260 px; 3x3 stride-1 ones ran faster in bf16, so they keep it (benchmarks/README.md, benchmark 7). The forward
stays autocast's bf16 convolution; the backward converts the saved bf16 input and weight and the incoming gradient
to fp32, so the gradients are those of the same bf16-rounded convolution, computed at a higher precision.
Anywhere else (no autocast, another precision or device, no gradient) the layer is a plain nn.Conv2d."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn


def fp32_grad_class(conv: nn.Module) -> type[nn.Conv2d] | None:
    """The class a conv of this exact class becomes: a plain nn.Conv2d, or timm's Conv2dSame (TF 'SAME' padding: the
    tf_ EfficientNets' strided convs), which exists only once timm is loaded."""
    if type(conv) is nn.Conv2d:
        return Fp32GradDepthwise
    timm_layers = sys.modules.get("timm.layers")
    return Fp32GradDepthwiseSame if timm_layers is not None and type(conv) is timm_layers.Conv2dSame else None


def is_slow_in_bf16(conv: nn.Module) -> bool:
    """A depthwise conv (one filter per channel; nn.Conv2d or timm's Conv2dSame) with a kernel above 3 or a stride
    above 1."""
    return (
        fp32_grad_class(conv) is not None
        and conv.groups > 1
        and conv.groups == conv.in_channels == conv.out_channels
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and (max(conv.kernel_size) > 3 or max(conv.stride) > 1)
    )


def use_fp32_depthwise_grads(net: nn.Module) -> int:
    """Make each depthwise conv of `net` that is slow in bf16 take fp32 gradients (in place: the same weights and
    state_dict keys); return how many."""
    convs = [m for m in net.modules() if is_slow_in_bf16(m)]
    for conv in convs:
        conv.__class__ = fp32_grad_class(conv)
    return len(convs)


def _trains_in_cpu_bf16(x: torch.Tensor) -> bool:
    return (
        torch.is_grad_enabled()
        and x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


class Fp32GradDepthwise(nn.Conv2d):
    """A depthwise nn.Conv2d whose backward runs in fp32 under CPU bf16 autocast (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _trains_in_cpu_bf16(x):
            return _Bf16ForwardFp32Backward.apply(
                x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
            )
        return super().forward(x)


class Fp32GradDepthwiseSame(Fp32GradDepthwise):
    """timm's Conv2dSame, depthwise: padded as timm pads it (its own padding is 0), then a `Fp32GradDepthwise`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from timm.layers import pad_same  # loaded: timm made this layer

        return super().forward(pad_same(x, self.weight.shape[-2:], self.stride, self.dilation))


class _Bf16ForwardFp32Backward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        xb, wb = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        ctx.save_for_backward(xb, wb)
        ctx.conv = (list(stride), list(padding), list(dilation), groups)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(
                xb, wb, None if bias is None else bias.to(torch.bfloat16), stride, padding, dilation, groups
            )

    @staticmethod
    def backward(ctx, grad):
        xb, wb = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        g = grad.float()
        gx, gw, _ = torch.ops.aten.convolution_backward(
            g, xb.float(), wb.float(), None, stride, padding, dilation, False, [0, 0], groups, [need_x, need_w, False]
        )
        gb = g.sum((0, 2, 3)).to(bias_dtype) if need_b and bias_dtype is not None else None
        gx = None if gx is None else gx.to(x_dtype)
        return gx, None if gw is None else gw.to(weight_dtype), gb, None, None, None, None
