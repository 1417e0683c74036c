"""The `download` stage: put the configured data source's images under paths.raw.

python pipelines/download.py                                   # the Microsoft PetImages archive
python pipelines/download.py data=folder data.source=/path/to/kagglecatsanddogs_5340.zip
python pipelines/download.py data=synthetic                    # generated, offline
"""

from pathlib import Path
from urllib.parse import urlparse

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from smallvision import stages
from smallvision.data.skipped import SKIPPED, read_skipped
from smallvision.data.sources import fetch_source
from smallvision.entrypoints import check_output, friendly_errors, hydra_errors, load_settings, show_config
from smallvision.errors import ConfigError
from smallvision.files import OUTPUT_MARKER

_SHOW_SKIPPED = 20  # longer lists: see the file


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg)  # first: a value that cannot be resolved is one line too
    if OmegaConf.is_missing(cfg.data, "source") or not str(cfg.data.source).strip():
        raise ConfigError(
            f"data.source is not set (data={cfg.data.name}); give a folder or archive: data.source=/path/to/images"
        )
    data = settings.data
    plain = settings.model_dump()
    show_config("download", plain, stages.reads("download", plain))
    check_output("download", plain)
    source = data.source
    if source != "synthetic" and not urlparse(source).scheme[1:]:  # a local path (or C:\... on Windows)
        source = to_absolute_path(source)
    raw = Path(to_absolute_path(settings.paths.raw))
    fetch_source(
        source,
        raw,
        sha256=data.sha256,
        size=data.size,
        connect_timeout_s=data.connect_timeout_s,
        max_extract_bytes=data.max_extract_bytes,
        max_tar_header_bytes=data.max_tar_header_bytes,
        max_download_bytes=data.max_download_bytes,
        min_download_rate=(data.min_download_bytes_per_s, data.download_rate_window_s),
        synthetic=data.synthetic,
        retries=data.download_retries,
    )
    files = sum(
        1 for p in raw.rglob("*") if p.is_file() and p.relative_to(raw).as_posix() not in (SKIPPED, OUTPUT_MARKER)
    )
    print(f"download: {files} files from {data.source} in {settings.paths.raw}")
    skipped = read_skipped(raw)
    if skipped:
        print(f"skipped {len(skipped)} entries (the split report lists them too):")
    for entry in skipped[:_SHOW_SKIPPED]:
        print(f"  {entry.path}: {entry.reason}")
    if len(skipped) > _SHOW_SKIPPED:
        print(f"  ... and {len(skipped) - _SHOW_SKIPPED} more, in {raw / SKIPPED}")


if __name__ == "__main__":
    main()
