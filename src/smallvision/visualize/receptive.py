"""Receptive fields: which input pixels one position of a layer's feature map sees.

Along each axis, position i of a layer sees the input pixels [offset + i * jump, offset + i * jump + size):
`size` is the receptive field, `jump` the distance in input pixels between neighbouring positions (the layer's
total stride, timm's `reduction`), `offset` where position 0's field starts (negative where padding reaches
outside the image). Two ways to get them:

- `chain_geometry`: layer arithmetic over a plain chain of convs and pools (the small convnet), the textbook
  recurrence, checkable by hand: a conv or pool with kernel k, stride s, padding p and dilation d gives
  size += (k - 1) * d * jump, offset -= p * jump, jump *= s.
- `probed_geometry`: for any network (a timm base, with residual branches and TensorFlow-style "same" padding
  that depends on the input size), the gradient of one output position with respect to the input, in a
  linearised float32 copy of the network: every conv weight 1/fan-in and no bias, batch norms and activations
  passed through, max pools averaged. All weights are then positive, nothing cancels and nothing is cut off by
  a ReLU, so the input pixels with a non-zero gradient are exactly the theoretical receptive field of that
  position. Every conv then averages its inputs, so a field's gradient sums to one and its smallest value, at
  the field's edge, is about the product of 1/k over the k x k kernels that widen it: far above float32's
  smallest number for any network here (float64's convolutions, without oneDNN, are 10-100x slower). Two
  neighbouring positions give the jump. The probe image is grown by multiples of the network's total stride (so
  every layer keeps the same padding) until the field fits inside it; a field still wider than the largest probe
  (3x the image) covers the whole image from every position.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from smallvision.visualize.filters import capture_until

# Modules whose output is passed through in the linearised copy: normalisation and element-wise activations.
_PASS_THROUGH = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.Mish,
)
_PROBE_FACTOR = 3  # the largest probe image, in image sizes: a field this wide covers the image from anywhere


@dataclass(frozen=True)
class Geometry:
    """The receptive field of a layer's positions along one axis (the same along both for square kernels).

    `exact` is False when the field is wider than the largest probe: `size` is then a lower bound, and every
    position sees the whole image."""

    size: int
    jump: int
    offset: int
    exact: bool = True

    def window(self, i: int, limit: int) -> tuple[int, int, int]:
        """Position i's field clipped to the image [0, limit): (first pixel, end pixel, how far the field starts
        before the image, i.e. the pixels cut off at the low side)."""
        if not self.exact:
            return 0, limit, 0
        start = self.offset + i * self.jump
        return max(start, 0), min(start + self.size, limit), max(-start, 0)

    def interior(self, limit: int) -> slice:
        """The positions whose whole field lies inside an image of `limit` px (none reaches into the padding);
        every position when none does (a field as wide as the image, or wider)."""
        first = max(0, -(self.offset // self.jump))  # ceil(-offset / jump)
        last = (limit - self.size - self.offset) // self.jump
        return slice(first, last + 1) if self.exact and first <= last else slice(None)


def chain_geometry(modules: Iterable[nn.Module]) -> list[Geometry]:
    """The geometry after each module of a plain chain (Conv2d, MaxPool2d/AvgPool2d, and element-wise modules
    that keep the geometry: activations, batch norms, dropout)."""
    size, jump, offset, out = 1, 1, 0, []
    for m in modules:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (_first(getattr(m, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
            if not isinstance(p, int):
                raise TypeError(f"{type(m).__name__} with padding={p!r}: use probed_geometry for this network")
            size, offset, jump = size + (k - 1) * d * jump, offset - p * jump, jump * s
        elif not isinstance(m, (*_PASS_THROUGH, nn.Dropout, nn.Identity)):
            raise TypeError(f"{type(m).__name__} is not part of a plain conv/pool chain: use probed_geometry")
        out.append(Geometry(size, jump, offset))
    return out


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def linearised(net: nn.Module) -> tuple[nn.Module, dict[int, nn.Module], list]:
    """A float32 copy of `net` with positive weights (1/fan-in) whose normalisations and activations pass their
    input through and whose max pools average; also the map from id(original module) to its copy, and the hook
    handles that do the passing through (removed with the copy)."""
    memo: dict[int, object] = {}
    twin = copy.deepcopy(net, memo).float().eval()
    copies = {key: value for key, value in memo.items() if isinstance(value, nn.Module)}
    hooks = []
    for m in twin.modules():
        if isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.fill_(1.0 / m.weight[0].numel())
                if m.bias is not None:
                    m.bias.zero_()
        if isinstance(m, _PASS_THROUGH):
            hooks.append(m.register_forward_hook(lambda _m, inputs, _out: inputs[0]))
        elif isinstance(m, nn.MaxPool2d):
            hooks.append(m.register_forward_hook(_average_instead))
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin, copies, hooks


def _average_instead(m: nn.MaxPool2d, inputs, _out):
    """A max pool's gradient reaches one pixel per window: averaging reaches them all (the field, not a path)."""
    return nn.functional.avg_pool2d(inputs[0], m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode)


def total_stride(net: nn.Module) -> int:
    """The product of every conv's and pool's stride: a multiple of the network's reduction (equal for a chain)."""
    product = 1
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            product *= _first(m.stride)
    return product


def probed_geometry(net: nn.Module, layers: list[tuple[str, nn.Module]], image_size: int) -> dict[str, Geometry]:
    """The geometry of each layer's positions along the rows, for input images of `image_size` px, by the
    gradient method (module docstring). `layers` are (name, module) of `net` in forward order, as for the figures.

    Only the probe's height grows: its columns do not change how rows map, and a narrow probe is cheap."""
    twin, copies, hooks = linearised(net)
    step = total_stride(net)
    sizes = [image_size, image_size + step * max(1, -(-(_PROBE_FACTOR - 1) * image_size // step))]
    found: dict[str, Geometry] = {}
    try:
        for probe in sizes:
            todo = [(name, copies[id(module)]) for name, module in layers if name not in found]
            if not todo:
                break
            x = torch.ones(1, 3, probe, image_size, dtype=torch.float32, requires_grad=True)
            outputs = capture_until(twin, [m for _, m in todo], x)
            for (name, _), out in zip(todo, outputs):
                geometry = _measure(out, x, probe)
                if geometry is not None:
                    found[name] = geometry
        return {name: found.get(name) or Geometry(sizes[-1], step, 0, exact=False) for name, _ in layers}
    finally:
        for h in hooks:
            h.remove()


def _measure(out: torch.Tensor, x: torch.Tensor, probe: int) -> Geometry | None:
    """The geometry seen at the middle row of a map `out` of the probe `x`; None when that row's field is cut
    off by the probe's border (wider than the probe, or reaching past its edge)."""
    h, col = out.shape[2], out.shape[3] // 2
    c = (h - 1) // 2  # the middle row, and one below it for the jump
    spans = []
    for i in (c, c + 1) if h > 1 else (c,):
        (grad,) = torch.autograd.grad(out[0, :, i, col].sum(), x, retain_graph=True)
        rows = torch.nonzero(grad[0].abs().sum(dim=(0, 2)) > 0).flatten()
        spans.append((int(rows[0]), int(rows[-1]) + 1))
    lo, hi = spans[0]
    if lo == 0 or hi == probe:
        return None
    if len(spans) == 1:  # a single row: one position, its field is what it sees
        return Geometry(hi - lo, probe, lo)
    jump = spans[1][0] - lo
    return Geometry(hi - lo, jump, lo - c * jump)


def layer_geometry(net: nn.Module, layers: list[tuple[str, nn.Module]], image_size: int) -> dict[str, Geometry]:
    """Each layer's geometry: by layer arithmetic where the layers sit in a plain chain `net.features` (the small
    convnet), else by the gradient probe."""
    chain = getattr(net, "features", None)
    if isinstance(chain, nn.Sequential):
        index = {id(m): i for i, m in enumerate(chain)}
        if all(id(m) in index for _, m in layers):
            after = chain_geometry(chain)
            return {name: after[index[id(m)]] for name, m in layers}
    return probed_geometry(net, layers, image_size)
