"""Filter patterns: the input that maximises one filter's mean activation, by gradient ascent (Chollet 5.4.2).

The ascent runs in pixel space (0-255, as the book) from a grey image with noise; each step adds
`step_size` times the gradient divided by its root mean square (the book's normalised step), so the
step size is in grey levels whatever the network. The network sees the image normalised as in training.
The forward pass stops at the target layer, so early layers cost little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from pytorch_grad_cam.utils.image import deprocess_image
from torch import nn

from smallvision.data.preprocess import normalise
from smallvision.visualize.plotting import blank_axes, grid_shape, new_figure, show_image, wrapped

GREY = 128.0  # the starting image's level, mid-grey on a 0-255 scale
_RMS_EPS = 1e-5  # keeps the normalised step finite when the gradient vanishes


@dataclass
class FilterPattern:
    """The pattern of filter `index` of `layer`: `image` (uint8 HWC, contrast-stretched for display), the
    filter's mean activation on the starting image and after the ascent, and whether it is dead (no
    gradient reaches the input from it: it never responds to this kind of input)."""

    layer: str
    index: int
    image: np.ndarray
    start: float
    final: float
    dead: bool


class _Reached(Exception):
    """Raised by the hook once the target layer has run: the rest of the network is not needed."""

    def __init__(self, output: torch.Tensor) -> None:
        self.output = output


def forward_until(net: nn.Module, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of `module` for input `x`, without running the layers after it."""
    return capture_until(net, [module], x)[0]


def capture_until(net: nn.Module, modules: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of `modules` for input `x`, from one forward pass that stops once all of them have run."""
    outputs: dict[int, torch.Tensor] = {}
    wanted = {id(m) for m in modules}

    def keep(module, _inputs, output):
        outputs[id(module)] = output
        if wanted <= outputs.keys():
            raise _Reached(output)

    handles = [m.register_forward_hook(keep) for m in {id(m): m for m in modules}.values()]
    try:
        net(x)
    except _Reached:
        return [outputs[id(m)] for m in modules]
    finally:
        for handle in handles:
            handle.remove()
    missing = [type(m).__name__ for m in modules if id(m) not in outputs]
    raise ValueError(f"the network never ran {', '.join(missing)}: not part of its forward pass")


def target_patterns(
    net: nn.Module,
    targets: list[tuple[str, nn.Module, int]],
    *,
    image_size: int,
    mean: list[float],
    std: list[float],
    steps: int,
    step_size: float,
    noise: float,
    seed: int = 0,
) -> list[FilterPattern]:
    """Gradient ascent for each target (layer name, module, filter), all as one batch, whatever their layers.

    The images of the batch do not interact (the net is in eval mode), so the sum of the per-image
    objectives has, for each image, the gradient of its own filter's objective.
    """
    net.eval()
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    start = GREY + noise * (torch.rand(len(targets), 3, image_size, image_size, generator=generator) * 2 - 1)
    pixels = start.to(device).requires_grad_(True)
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:  # only the input is optimised; no parameter gradients to compute or keep
        p.requires_grad_(False)
    try:
        first = None
        for _ in range(steps):
            objective = _objective(net, targets, pixels, mean, std)
            (grad,) = torch.autograd.grad(objective.sum(), pixels)
            if first is None:
                first = objective.detach().cpu()
                dead = grad.flatten(1).abs().amax(1).cpu() == 0
            rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
            with torch.no_grad():
                pixels += step_size * grad / (rms + _RMS_EPS)
        with torch.no_grad():
            final = _objective(net, targets, pixels, mean, std).cpu()
    finally:
        for p in params:
            p.requires_grad_(True)
    if first is None:  # steps == 0: nothing was optimised
        first = final
        dead = torch.zeros(len(targets), dtype=torch.bool)
    images = pixels.detach().cpu().permute(0, 2, 3, 1).numpy()
    return [
        FilterPattern(name, int(i), deprocess_image(img), float(a), float(b), bool(d))
        for (name, _, i), img, a, b, d in zip(targets, images, first, final, dead)
    ]


def _objective(net, targets, pixels, mean, std) -> torch.Tensor:
    """Per image: the mean activation of its own target filter."""
    modules = list({id(m): m for _, m, _ in targets}.values())
    outputs = dict(zip(map(id, modules), capture_until(net, modules, normalise(pixels, mean, std))))
    values = []
    for k, (_, module, index) in enumerate(targets):
        out = outputs[id(module)]
        if index >= out.shape[1]:
            raise ValueError(f"filter {index} asked for, but the layer has {out.shape[1]} channels")
        values.append(out[k, index].mean())
    return torch.stack(values)


def pick_filters(channels: int, count: int) -> list[int]:
    """The first `count` filters (the book shows the first 64 of each layer), capped at the layer's size."""
    return list(range(min(count, channels)))


def layer_channels(net: nn.Module, module: nn.Module, image_size: int) -> int:
    """How many channels `module` outputs, from a forward pass of one grey image."""
    device = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        return int(forward_until(net, module, torch.zeros(1, 3, image_size, image_size, device=device)).shape[1])


def filters_figure(layers: dict[str, list[FilterPattern]], title: str, columns: int = 8, panel: float = 1.6) -> Figure:
    """One row block per layer, one panel per filter, titled with the filter number and its mean activation
    before -> after the ascent; a dead filter says so in its title."""
    blocks = [(name, patterns, *grid_shape(len(patterns), columns)) for name, patterns in layers.items()]
    cols = max([c for *_, c in blocks] + [1])
    rows = sum(r for _, _, r, _ in blocks)
    fig = new_figure(panel * cols, panel * 1.15 * rows + 0.55 * len(blocks) + 0.6)
    fig.suptitle(wrapped(title, panel * cols, 13), fontsize=13)
    subfigs = fig.subfigures(len(blocks), 1, height_ratios=[r for _, _, r, _ in blocks], squeeze=False)[:, 0]
    for sub, (name, patterns, r, c) in zip(subfigs, blocks):
        dead = sum(p.dead for p in patterns)
        note = f" ({dead} of {len(patterns)} dead: no gradient reaches the input)" if dead else ""
        sub.suptitle(wrapped(f"layer {name}{note}", panel * cols, 11), fontsize=11, x=0.0, ha="left")
        axes = sub.subplots(r, cols, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= len(patterns):
                blank_axes(ax)
                continue
            p = patterns[k]
            label = f"#{p.index} dead" if p.dead else f"#{p.index}: {p.start:.2g} -> {p.final:.2g}"
            show_image(ax, p.image, label, fontsize=8, color="firebrick" if p.dead else "black")
    return fig
