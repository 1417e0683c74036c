"""Depthwise convs that take fp32 gradients under CPU bf16 autocast: which convs, and that they compute the same."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.study import config
from torch import nn

from smallvision import techniques, training
from smallvision.models.depthwise import (
    Fp32GradDepthwise,
    Fp32GradDepthwiseSame,
    is_slow_in_bf16,
    use_fp32_depthwise_grads,
)


def _net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(8, 8, 5, padding=2, groups=8, bias=False),  # 5x5 depthwise: slow in bf16
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8, bias=False),  # strided depthwise: slow in bf16
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # 3x3 stride 1: faster in bf16, kept
        nn.Conv2d(8, 16, 5, padding=2),  # dense
        nn.Conv2d(16, 16, 5, padding=2, groups=4),  # grouped, not depthwise
        nn.Conv2d(16, 16, 5, padding="same", groups=16),  # padding given as a word: kept plain
    )


def test_only_depthwise_convs_slow_in_bf16_change_and_the_weights_stay():
    net = _net()
    keys = list(net.state_dict())
    assert [is_slow_in_bf16(m) for m in net] == [True, True, False, False, False, False]
    assert use_fp32_depthwise_grads(net) == 2
    assert [type(m) is Fp32GradDepthwise for m in net] == [True, True, False, False, False, False]
    assert list(net.state_dict()) == keys
    assert use_fp32_depthwise_grads(net) == 0  # already done


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("kernel", "stride"), [(5, 1), (3, 2)])
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16])
def test_under_bf16_autocast_it_computes_the_bf16_convolution_with_fp32_gradients(kernel, stride, bias, input_dtype):
    torch.manual_seed(0)
    plain = nn.Conv2d(6, 6, kernel, stride=stride, padding=kernel // 2, groups=6, bias=bias)
    tuned = nn.Conv2d(6, 6, kernel, stride=stride, padding=kernel // 2, groups=6, bias=bias)
    tuned.load_state_dict(plain.state_dict())
    assert use_fp32_depthwise_grads(tuned) == 1
    x = torch.randn(4, 6, 12, 12).to(input_dtype).contiguous(memory_format=torch.channels_last)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    outs = []
    for conv, xi in zip((plain, tuned), xs, strict=True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(xi)
        outs.append(y)
        (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    assert outs[1].dtype == torch.bfloat16 and torch.equal(outs[0], outs[1])  # the same bf16 forward
    # the reference: the convolution of the bf16-rounded input and weight, differentiated in float64 against the
    # incoming gradient as it arrives at the bf16 output (rounded to bf16)
    xr = x.to(torch.bfloat16).double().requires_grad_()
    wr = plain.weight.detach().to(torch.bfloat16).double().requires_grad_()
    br = plain.bias.detach().to(torch.bfloat16).double().requires_grad_() if bias else None
    yr = F.conv2d(xr, wr, br, stride, kernel // 2, 1, 6)
    yr.backward(torch.linspace(-1, 1, yr.numel()).to(torch.bfloat16).double().view_as(yr))
    assert xs[1].grad.dtype == input_dtype and tuned.weight.grad.dtype == torch.float32
    assert torch.allclose(tuned.weight.grad.double(), wr.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(xs[1].grad.double(), xr.grad, rtol=1e-2 if input_dtype == torch.bfloat16 else 1e-5, atol=1e-3)
    if bias:
        assert torch.allclose(tuned.bias.grad.double(), br.grad, rtol=1e-5, atol=1e-5)
    # closer to the reference than autocast's own bf16 weight gradient, never farther
    err = (tuned.weight.grad.double() - wr.grad).abs().max()
    assert err <= (plain.weight.grad.double() - wr.grad).abs().max()


@pytest.mark.parametrize("stride", [1, 2])
def test_timms_same_padded_depthwise_convs_change_too_and_compute_the_same(stride):
    from timm.layers import Conv2dSame
    from timm.layers.conv2d_same import conv2d_same

    torch.manual_seed(0)
    plain = Conv2dSame(6, 6, 5, stride=stride, groups=6, bias=False)
    tuned = Conv2dSame(6, 6, 5, stride=stride, groups=6, bias=False)
    tuned.load_state_dict(plain.state_dict())
    assert use_fp32_depthwise_grads(tuned) == 1 and type(tuned) is Fp32GradDepthwiseSame
    x = torch.randn(2, 6, 11, 11)
    assert torch.equal(plain(x), tuned(x))
    xt = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = tuned(xt)
        assert torch.equal(y, plain(x))  # the same bf16 forward, padded as timm pads
    upstream = torch.linspace(-1, 1, y.numel()).to(torch.bfloat16).view_as(y)
    y.backward(upstream)
    xr = x.to(torch.bfloat16).double().requires_grad_()
    wr = plain.weight.detach().to(torch.bfloat16).double().requires_grad_()
    conv2d_same(xr, wr, None, (stride, stride), (0, 0), (1, 1), 6).backward(upstream.double())
    assert torch.allclose(tuned.weight.grad.double(), wr.grad, rtol=1e-5, atol=1e-5)
    assert torch.allclose(xt.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)


def test_elsewhere_it_is_a_plain_conv():
    torch.manual_seed(0)
    plain = nn.Conv2d(4, 4, 5, padding=2, groups=4)
    tuned = nn.Conv2d(4, 4, 5, padding=2, groups=4)
    tuned.load_state_dict(plain.state_dict())
    use_fp32_depthwise_grads(tuned)
    x = torch.randn(2, 4, 9, 9)
    assert torch.equal(plain(x), tuned(x))  # fp32, no autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(plain(x), tuned(x))  # inference under autocast


@pytest.mark.parametrize("enabled", [True, False])
def test_the_trainer_setting_decides_whether_training_uses_them(enabled):
    cfg = config("technique=baseline", f"trainer.fp32_depthwise_grads={str(enabled).lower()}")
    net = _net()
    setup = techniques.Setup(net=net, spec={}, array=None, image_input=None, frozen=[], parameters=0)
    training.classifier_module(cfg, setup, 2)
    assert sum(type(m) is Fp32GradDepthwise for m in net) == (2 if enabled else 0)
