"""Class activation heatmaps with Grad-CAM (the `grad-cam` package), for one or several logits.

pytorch_grad_cam calls each target on one image's output (shape (num_outputs,)). Its
ClassifierOutputTarget(k) returns output[k]: with the study's single logit (two classes, sigmoid)
that is the logit for *both* classes, so a "class 0" map would show the evidence for class 1.
`LogitTarget` returns the logit for class 1 and its negative for class 0 (log-odds of the class),
and output[k] with one logit per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn

from smallvision.predict import probabilities
from smallvision.visualize.plotting import blank_axes, new_figure, show_image, to_unit, wrapped


class LogitTarget:
    """Grad-CAM target: the network's score for `category` (see the module docstring)."""

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        if output.shape[-1] == 1:  # one logit: sigmoid(logit) = P(class 1)
            if self.category not in (0, 1):
                raise ValueError(f"a single-logit network has classes 0 and 1, not {self.category}")
            return output[..., 0] if self.category == 1 else -output[..., 0]
        return output[..., self.category]


def gradcam_maps(net: nn.Module, layer: nn.Module, x: torch.Tensor, categories: list[int]) -> np.ndarray:
    """(N, H, W) Grad-CAM maps in [0, 1] (each scaled by its own maximum) of `categories` for the batch `x`.

    A map is all zero when nothing in the layer speaks for the category (every weighted sum negative).
    """
    with GradCAM(model=net, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[LogitTarget(c) for c in categories])


@dataclass
class Explained:
    """One test image with the network's prediction and the Grad-CAM map of the predicted class."""

    path: str
    image: np.ndarray  # uint8 HWC, as the network saw it
    actual: int
    predicted: int
    probability: float  # of the predicted class
    heatmap: np.ndarray  # (H, W) in [0, 1]

    @property
    def correct(self) -> bool:
        return self.actual == self.predicted

    @property
    def has_evidence(self) -> bool:
        return bool(self.heatmap.max() > 0)


def explain(
    net: nn.Module, layer: nn.Module, images: np.ndarray, x: torch.Tensor, actual: list[int], paths: list[str]
) -> list[Explained]:
    """Predict the images (`x`, normalised from uint8 `images`) and explain each prediction with Grad-CAM."""
    if len(images) == 0:
        return []
    net.eval()
    probs = probabilities(net, x).cpu()
    predicted = probs.argmax(1).tolist()
    maps = gradcam_maps(net, layer, x, predicted)
    return [
        Explained(path, img, int(a), int(k), float(p[k]), m)
        for path, img, a, k, p, m in zip(paths, images, actual, predicted, probs, maps)
    ]


def gradcam_figure(
    rows: dict[str, list[Explained]],
    classes: list[str],
    title: str,
    columns: int,
    image_weight: float = 0.5,
    panel: float = 2.2,
) -> Figure:
    """A row of heatmap overlays per group (e.g. "correct", "wrong"), `columns` wide, and a colour bar.

    Each panel's title: predicted class and its probability, and the true class. A group with fewer
    images than columns says so in its first empty cell.
    """
    cols = max(1, columns)
    fig = new_figure(panel * cols + 1.0, panel * 1.2 * len(rows) + 0.7)
    fig.suptitle(wrapped(title, panel * cols + 1.0, 13), fontsize=13)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    cmap = colormaps["jet"]
    for r, (group, items) in enumerate(rows.items()):
        for c, ax in enumerate(axes[r]):
            if c >= len(items):
                blank_axes(
                    ax,
                    f"no {group} test images" if c == 0 else (f"only {len(items)} {group}" if c == len(items) else ""),
                )
                continue
            e = items[c]
            overlay = show_cam_on_image(to_unit(e.image), e.heatmap, use_rgb=True, image_weight=image_weight)
            note = "" if e.has_evidence else "\n(no positive evidence)"
            show_image(
                ax,
                overlay,
                f"pred {classes[e.predicted]} {e.probability:.2f}\ntrue {classes[e.actual]}{note}",
                fontsize=9,
                color="black" if e.correct else "firebrick",
            )
            if c == 0:
                ax.set_ylabel(group, fontsize=11)
    fig.colorbar(
        ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.8, label="Grad-CAM (relative to the image's max)"
    )
    return fig
