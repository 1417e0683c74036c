"""What every thin entry script in pipelines/ needs: one-line errors, the config as typed settings, and where
Hydra runs this job. Library code gets these as plain values and never reads Hydra's runtime itself."""

from __future__ import annotations

import copy
import errno
import functools
import inspect
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from smallvision import stages
from smallvision.distributed import SWEEP_DIR_ENV
from smallvision.errors import ConfigError, SmallvisionError
from smallvision.files import check_output_place
from smallvision.interrupts import reliable_ctrl_c
from smallvision.schema import Logger, Settings, validate
from smallvision.settings import check_memory


def _usage() -> str:
    """The running entry script's own usage text (its docstring), for `--help` (conf/hydra/help)."""
    return (getattr(sys.modules.get("__main__"), "__doc__", None) or "").strip()


def _keys(node: Any) -> str:
    """`a|b|c`: the keys of a config section, for `--help` (conf/hydra/help: the techniques to choose from)."""
    return "|".join(str(k) for k in node)


OmegaConf.register_new_resolver("smallvision.usage", _usage, replace=True)
OmegaConf.register_new_resolver("smallvision.keys", _keys, replace=True)

# A file or folder this process may not write (permissions, a read-only mount): the user's to fix, not a bug.
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def refuse(message: str) -> NoReturn:
    """The one way an entry script stops on bad input: one line on stderr, exit status 2."""
    print(f"smallvision: error: {message}", file=sys.stderr)
    sys.exit(2)


def friendly_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a SmallvisionError into one clear line on stderr and exit status 2, instead of a traceback; and make
    Ctrl-C reliable (`reliable_ctrl_c`)."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reliable_ctrl_c()
        try:
            return main(*args, **kwargs)
        except SmallvisionError as err:
            refuse(str(err))
        except OSError as err:
            if err.errno not in _NOT_WRITABLE:  # anything else is a bug to see whole
                raise
            refuse(_not_writable(err))
        except RecursionError:
            refuse("the input is nested too deeply to read (Python's recursion limit)")

    return wrapper


def hydra_errors(main: Callable[..., Any]) -> Callable[..., Any]:
    """Outside `@hydra.main`: Hydra's own errors, raised before the job runs (a config group or option that does not
    exist, an override it cannot parse, a project folder it may not write its log in) as one line and exit status 2,
    like `friendly_errors` inside the job. HYDRA_FULL_ERROR (Hydra's public switch) makes Hydra raise them rather
    than print them with a stack."""
    conf = Path(inspect.unwrap(main).__code__.co_filename).resolve().parent.parent / "conf"  # beside pipelines/

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from hydra.errors import HydraException

        given = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = given or "1"
        try:
            return main(*args, **kwargs)
        except HydraException as err:
            refuse(_hydra_message(err, conf))
        except OSError as err:
            if err.errno not in _NOT_WRITABLE:
                raise
            refuse(f"{_not_writable(err)} (Hydra's output folder: hydra.run.dir=)")
        finally:
            if given is None:  # as it was: the switch is this call's, not the process's
                os.environ.pop("HYDRA_FULL_ERROR", None)

    return wrapper


def _hydra_message(err: Exception, conf: Path) -> str:
    text = " ".join(str(err).split())
    missing = re.match(r"Could not override '([^']+)'", text)
    if not missing:
        return text
    groups = sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("hydra", "techniques"))
    return (
        f"'{missing.group(1)}' is neither a config group nor a key of the config; the groups are {', '.join(groups)}; "
        "technique=<name> picks the technique (python pipelines/<script>.py --help lists them)"
    )


def _not_writable(err: OSError) -> str:
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{err.strerror}: make it writable or give another path"


def check_output(stage: str, cfg: Mapping[str, Any]) -> None:
    """Before any work: refuse the folder `stage` replaces wholesale when it is not the stage's to replace
    (`files.check_output_place`: the project folder, another stage's outputs, the project's own files, something the
    stage did not make). The project folder is where the command started, which Hydra's `to_absolute_path` reads
    relative paths from."""
    from hydra.utils import to_absolute_path

    key, claimed = stages.output_folder(stage, cfg)
    given = str(cfg["paths"][key.removeprefix("paths.")])
    check_output_place(Path(to_absolute_path(".")), given, key, stage, claimed)


_RESOLVER_PREFIX = re.compile(r"^\w+ raised while resolving interpolation: ")


def to_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what the schema validates). A value that cannot be resolved (an
    unset environment variable, a key that refers to itself or to no key) is a ConfigError naming it."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        cause = str(err).strip().splitlines()[0]
        cause = _RESOLVER_PREFIX.sub("", cause).strip('"')  # a resolver's own words (oc.env's) say it best
        if "Recursive interpolation" in cause:
            cause += " (the value refers to itself)"
        raise ConfigError(f"{getattr(err, 'full_key', '') or 'the config'} cannot be resolved: {cause}") from None


def load_settings(cfg: DictConfig | Mapping[str, Any], *, training: bool = False) -> Settings:
    """The whole resolved config as typed settings, checked once before any work (a ConfigError names the first
    bad key); `training`: also that the technique it picks fits in this machine's memory."""
    settings = validate(Settings, to_dict(cfg) if isinstance(cfg, DictConfig) else cfg)
    if training:
        check_memory(settings.selected, f"techniques.{settings.technique}", settings.trainer.accelerator)
    return settings


@dataclass(frozen=True)
class HydraJob:
    """Where Hydra runs this job: its sweep's folder (None outside a multirun) and the job's own output folder."""

    sweep_dir: str | None
    output_dir: Path


def hydra_job() -> HydraJob:
    """This job's place in Hydra's runtime. A DDP child of a sweep job runs that one job in Hydra's run mode; the
    launching job tells it the sweep (see smallvision.distributed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        sweep_dir = str(Path(hc.sweep.dir).resolve())
    else:
        sweep_dir = os.environ.get(SWEEP_DIR_ENV) or None
    return HydraJob(sweep_dir, Path(hc.runtime.output_dir))


def bound_mlflow_requests(logger: Logger) -> None:
    """Bound how long an unreachable MLflow server can stall a stage (cfg.logger.http_timeout_s and
    http_max_retries): MLflow's defaults, 120 s and 7 retries with backoff, would stall it for minutes, and MLflow
    reads these only from the environment (as whole numbers). Variables the user already set win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(math.ceil(logger.http_timeout_s)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(logger.http_max_retries)))


CONFIG_WIDTH = 110  # where a long printed value (a list) wraps


def show_config(stage: str, cfg: Mapping[str, Any], keys: Sequence[str], echo: bool = True) -> dict:
    """The part of the resolved config `cfg` that `stage` reads (`keys`, dotted paths), nested as in conf/;
    with `echo` it is printed first as block-style YAML, one setting a line as conf/ writes it, indented under the
    stage's name (the printed lines load back as YAML). The stage's MLflow run keeps it as config/<stage>.yaml."""
    part: dict = {}
    for key in keys:
        *parents, last = key.split(".")
        value, node = cfg, part
        for name in key.split("."):
            value = value[name]
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = copy.deepcopy(value)
    if echo:
        text = yaml.safe_dump(part, default_flow_style=False, sort_keys=False, width=CONFIG_WIDTH)
        print(f"{stage}: configuration read", *(f"  {line}" for line in text.splitlines()), sep="\n", flush=True)
    return part
