"""What every thin entry script in pipelines/ needs: one-line errors and the config as plain containers."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from smallvision.errors import SmallvisionError


def friendly_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a SmallvisionError into one clear line on stderr and exit status 2, instead of a traceback."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except SmallvisionError as err:
            print(f"smallvision: error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def to_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what library code receives)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
