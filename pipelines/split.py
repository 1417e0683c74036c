"""The `split` stage: validate every image under paths.raw and write the manifest and report to paths.prepared.

python pipelines/split.py                                      # 1000/500/500 per class (data=petimages)
python pipelines/split.py data.split.train=0.6 data.split.val=0.2 data.split.test=0.2
"""

from pathlib import Path

import hydra
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from smallvision import stages
from smallvision.data.exclusions import read_exclusions
from smallvision.data.manifest import REPORT, SPLITS
from smallvision.data.split import prepare_split
from smallvision.entrypoints import check_output, friendly_errors, hydra_errors, load_settings, show_config

_SHOW_DROPPED = 20  # longer lists: see the report file


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg)
    plain = settings.model_dump()
    show_config("split", plain, stages.reads("split", plain))
    check_output("split", plain)
    data = settings.data
    prepared = Path(to_absolute_path(settings.paths.prepared))
    excluded = read_exclusions(Path(to_absolute_path(data.exclude))) if data.exclude else {}
    report = prepare_split(
        Path(to_absolute_path(settings.paths.raw)),
        prepared,
        split=data.split,
        seed=settings.seed,
        classes=data.classes,
        workers=data.workers,
        limits=data.image_limits,
        exclude=excluded,
        exclude_source=str(data.exclude),
    )
    width = max(len(c) for c in report.classes)
    print(f"split ({report.layout} layout, seed {report.seed}):")
    for name, source in report.split_from.items():
        print(f"  {name:5s} <- {source}")
    print("images per class:")
    print(f"  {'':{width}}  " + "  ".join(f"{s:>6}" for s in SPLITS) + "  unused")
    for label in report.classes:
        counts = "  ".join(f"{report.counts[s][label]:>6}" for s in SPLITS)
        print(f"  {label:{width}}  {counts}  {report.unused[label]:>6}")
    print(
        f"dropped {len(report.dropped)} files ({report.duplicates} duplicates"
        + (f", {report.excluded} excluded by {data.exclude}):" if data.exclude else "):")
    )
    for item in report.dropped[:_SHOW_DROPPED]:
        print(f"  {item.path}: {item.reason}")
    if len(report.dropped) > _SHOW_DROPPED:
        print(f"  ... and {len(report.dropped) - _SHOW_DROPPED} more")
    print(f"manifest and {REPORT} in {settings.paths.prepared}")


if __name__ == "__main__":
    main()
