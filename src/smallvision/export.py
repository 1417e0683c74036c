"""The export stage: a trained network as an ONNX file and a TorchScript file, with what a user needs to feed
them in `preprocessing.json` beside them, so the network opens in Netron and serves without this project
(onnxruntime, LibTorch, TorchServe, Triton).

Both files take the normalised image batch, float32 (N, 3, size, size), RGB, channels first (see
`preprocessing.json`: resize, then (pixels / 255 - mean) / std), and return `logits` and `probabilities` (one
column per class, in the order of `classes`). Before anything is written, both files are run on real images
and compared with PyTorch; the stage fails if any output differs by more than the tolerance.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from importlib.metadata import version
from itertools import chain, islice, zip_longest
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smallvision.data.images import ImageLimits, load_resized
from smallvision.data.manifest import Record
from smallvision.data.preprocess import network_input
from smallvision.errors import DataError
from smallvision.files import check_output_folder, staging_dir
from smallvision.networks import class_probabilities, load_checkpoint, spec_network_name, spec_resize

ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.torchscript.pt"
PREPROCESSING_FILE = "preprocessing.json"
INPUT, OUTPUTS = "image", ("logits", "probabilities")


class WithProbabilities(nn.Module):
    """The network, returning its logits and the class probabilities the study reads from them."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(x).float()
        return logits, class_probabilities(logits)


def export_checkpoint(
    checkpoint: Path,
    out_dir: Path,
    images: Sequence[Path],
    *,
    technique: str,
    opset: int,
    tolerance: float,
    limits: ImageLimits,
) -> dict:
    """Write `out_dir`/{model.onnx, model.torchscript.pt, preprocessing.json} for the network in `checkpoint`
    (a cached-features head comes back on its pretrained base); `images` (two or more files) are the parity check's
    inputs, read under `limits` (data.max_image_pixels and data.max_image_bytes); `opset` (18 or newer) and
    `tolerance` are export.opset and export.tolerance. Returns what preprocessing.json holds."""
    check_output_folder(Path(out_dir), "export", "paths.export")
    net, spec = load_checkpoint(Path(checkpoint))
    model = WithProbabilities(net).eval()
    resize = spec_resize(spec)  # as the network was trained
    pixels = np.stack([load_resized(p, resize, limits) for p in images])
    x = network_input(pixels, spec["mean"], spec["std"])
    with torch.no_grad():
        expected = [t.numpy() for t in model(x)]
    with staging_dir(Path(out_dir), "export") as tmp:
        _write_onnx(model, x, tmp / ONNX_FILE, opset)
        _write_torchscript(model, x, tmp / TORCHSCRIPT_FILE)
        differences = {
            "onnxruntime": _max_difference(run_onnx(tmp / ONNX_FILE, x.numpy()), expected),
            "torchscript": _max_difference(run_torchscript(tmp / TORCHSCRIPT_FILE, x), expected),
        }
        for runtime, difference in differences.items():
            if not difference <= tolerance:
                raise DataError(
                    f"the {runtime} export of {checkpoint} differs from PyTorch by {difference:.3g} on {len(x)} "
                    f"images, more than export.tolerance={tolerance:g}; try another export.opset"
                )
        parity = {"images": len(x), "tolerance": tolerance, "max_abs_difference": differences}
        description = _description(spec, technique, checkpoint, onnx_opset(tmp / ONNX_FILE), parity)
        (tmp / PREPROCESSING_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def parity_images(records: Sequence[Record], count: int) -> list[Path]:
    """`count` (2 or more: export.check_images) test images for the parity check, taken from every class in
    turn."""
    by_class: dict[str, list[Path]] = {}
    for r in records:
        if r.split == "test":
            by_class.setdefault(r.label, []).append(r.file)
    in_turn = (f for f in chain.from_iterable(zip_longest(*by_class.values())) if f is not None)
    picked = list(islice(in_turn, count))
    if len(picked) < 2:
        raise DataError(f"the parity check needs 2 or more test images; the manifest has {len(picked)}")
    return picked


def _write_onnx(model: nn.Module, x: torch.Tensor, path: Path, opset: int) -> None:
    # the torch.export-based exporter (PyTorch's default and recommended one); the batch dimension stays free
    program = torch.onnx.export(
        model,
        (x,),
        dynamo=True,
        input_names=[INPUT],
        output_names=list(OUTPUTS),
        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        opset_version=opset,
        external_data=False,  # one self-contained file: Netron and serving tools open it alone
        verbose=False,
    )
    program.save(str(path))


def _write_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> None:
    # torch.jit is deprecated in favour of torch.export, but LibTorch, TorchServe and Triton's PyTorch backend
    # load TorchScript. Tracing records the eval-mode network; the one branch (one logit or several) depends on
    # the network, not on its input, hence no TracerWarning
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.jit.save(torch.jit.freeze(torch.jit.trace(model, x, check_trace=False)), str(path))


def run_onnx(path: Path, x: np.ndarray) -> list[np.ndarray]:
    """The ONNX file's outputs (logits, probabilities) on `x`, by onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(list(OUTPUTS), {INPUT: x.astype(np.float32)})


def run_torchscript(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    """The TorchScript file's outputs (logits, probabilities) on `x`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit")
        model = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return [t.numpy() for t in model(x)]


def onnx_opset(path: Path) -> int:
    """The default-domain opset the ONNX file declares (what a runtime must support)."""
    import onnx

    return next(
        o.version for o in onnx.load(str(path), load_external_data=False).opset_import if o.domain in ("", "ai.onnx")
    )


def _max_difference(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(g, dtype=np.float64) - e).max()) for g, e in zip(got, expected, strict=True))


def _description(spec: dict, technique: str, checkpoint: Path, opset: int, parity: dict) -> dict:
    size, classes = spec["image_size"], list(spec["classes"])
    one_logit = spec["num_outputs"] == 1
    return {
        "technique": technique,
        "network": spec_network_name(spec),
        "classes": classes,
        "files": {"onnx": ONNX_FILE, "torchscript": TORCHSCRIPT_FILE},
        "onnx_opset": opset,
        "input": {"name": INPUT, "dtype": "float32", "shape": ["batch", 3, size, size], "layout": "NCHW, RGB"},
        "outputs": {
            "logits": ["batch", spec["num_outputs"]],
            "probabilities": ["batch", len(classes)],
        },
        "probabilities": (
            f"sigmoid(logits[:, 0]) is the probability of {classes[1]!r}, 1 - it that of {classes[0]!r}"
            if one_logit
            else "softmax(logits), one column per class"
        ),
        "preprocessing": {
            "image_size": size,
            "resize": spec_resize(spec).to_dict(),
            "decode": "RGB, EXIF orientation applied, transparency composited on white",
            "mean": list(spec["mean"]),
            "std": list(spec["std"]),
            "normalise": "x = (pixels / 255 - mean) / std per channel, pixels RGB in 0..255",
        },
        "parity": parity,
        "source": {"checkpoint": str(checkpoint), "sha256": _sha256(checkpoint)},
        "versions": {name: version(name) for name in ("torch", "onnx", "onnxruntime")},
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
