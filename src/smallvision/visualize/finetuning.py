"""What fine-tuning changed: the same test images explained by Grad-CAM before (feature extraction, the frozen
base) and after fine-tuning (its top unfrozen), with both predictions; the images where the two disagree first.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from smallvision.runs import PredictionRow
from smallvision.visualize.gradcam import Explained, gradcam_figure


def truth_probability(row: PredictionRow) -> float:
    """The probability a prediction gives the true class (exact for two classes; for more, 1 - the predicted
    class's probability bounds it from above when the prediction is wrong)."""
    return row.probability if row.correct else 1.0 - row.probability


def paired_images(
    before: list[PredictionRow], after: list[PredictionRow], count: int
) -> list[tuple[PredictionRow, PredictionRow]]:
    """Up to `count` test images that both runs predicted: those whose predicted classes differ first, then the
    rest; in each group the largest change in the true class's probability first (ties by path)."""
    by_path = {row.path: row for row in before}
    pairs = [(by_path[row.path], row) for row in after if row.path in by_path]

    def key(pair: tuple[PredictionRow, PredictionRow]):
        a, b = pair
        return a.predicted == b.predicted, -abs(truth_probability(a) - truth_probability(b)), a.path

    return sorted(pairs, key=key)[:count]


def finetuning_figure(
    before: tuple[str, list[Explained]],
    after: tuple[str, list[Explained]],
    classes: list[str],
    image_weight: float = 0.5,
) -> Figure:
    """Grad-CAM of the two techniques (a row each) on the same images (a column each); under each column, whether
    the two predictions agree and the file's name."""
    (name_a, a), (name_b, b) = before, after
    columns = max(len(a), 1)
    fig = gradcam_figure(
        {name_a: a, name_b: b},
        classes,
        f"What fine-tuning changed: Grad-CAM of {name_a} (top) and {name_b} (bottom) on the same test images",
        columns,
        image_weight,
    )
    bottom = fig.axes[columns : 2 * columns]
    for ax, x, y in zip(bottom, a, b):
        verdict = "agree" if x.predicted == y.predicted else "DISAGREE"
        ax.set_xlabel(f"{verdict}\n{Path(y.path).name}", fontsize=8, color="black" if verdict == "agree" else "C3")
    return fig
