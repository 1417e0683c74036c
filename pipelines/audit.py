"""The `audit` stage: probable label errors, near-duplicates (leakage into test) and off-task images, from the
frozen backbone's features of every image (feature-extract's cache: extracted here when that stage has not run).

python pipelines/audit.py                                   # -> data/audit/
python pipelines/audit.py audit.duplicate_threshold=0.95
"""

from pathlib import Path

import hydra
import lightning  # noqa: F401 -- before Hydra sets up logging: conf/hydra/job_logging then routes its lines, once
from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from smallvision import stages, techniques
from smallvision.audit import audit, write_findings
from smallvision.data.cache import image_array
from smallvision.data.manifest import MANIFEST, load_manifest, manifest_digest
from smallvision.entrypoints import friendly_errors, hydra_errors, load_settings, show_config
from smallvision.networks import input_resize
from smallvision.runs import CHECKPOINT
from smallvision.trainer import make_trainer

_SHOW = 5  # rows of each list printed; the rest: the CSV files


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg)
    plain = settings.model_dump()
    show_config("audit", plain, stages.reads("audit", plain))
    folders = settings.paths
    prepared, out = Path(to_absolute_path(folders.prepared)), Path(to_absolute_path(folders.audit))
    records, classes = load_manifest(prepared)
    digest = manifest_digest(prepared / MANIFEST)
    tech = settings.techniques[stages.FEATURES_FROM]
    images = image_array(
        [r.file for r in records],
        input_resize(tech, settings.backbone),
        Path(to_absolute_path(folders.cache)),
        digest,
        settings.data.workers,
        settings.trainer.progress,
        settings.data.image_limits,
    )
    # one process: the audit is small; the precision stays the configured one, as the cache key holds it
    single = settings.trainer.model_copy(update={"devices": 1, "num_nodes": 1, "strategy": "auto"})
    trainer = make_trainer(single, 1, out, logger=False, callbacks=[])
    _, _, (features,) = techniques.base_features(
        techniques.Inputs(
            technique=tech,
            backbone=settings.backbone,
            classes=classes,
            images=images,
            augmentation=None,
            channels_last=settings.trainer.channels_last,
            trainer=trainer,
            features_dir=Path(to_absolute_path(folders.features)),
            manifest_digest=digest,
            head_checkpoint=Path(to_absolute_path(folders.models)) / stages.FEATURES_FROM / CHECKPOINT,  # unused
        )
    )
    found = audit(features, records, classes, settings.audit, settings.seed)
    write_findings(out, found)
    s = found.summary
    print(
        f"audit of {s['images']} images ({settings.backbone.name} features; out-of-fold accuracy "
        f"{s['out_of_fold_accuracy']:.3f}): {s['label_issues']} probable label errors, {s['near_duplicate_pairs']} "
        f"near-duplicate pairs ({s['leakage_pairs']} leak into test: {s['leakage_train_test']} train-test, "
        f"{s['leakage_val_test']} val-test), {s['off_task']} off-task images"
    )
    for title, rows in (("label errors", found.label_issues), ("off-task", found.off_task)):
        for r in rows[:_SHOW]:
            print(f"  {title}: {r['path']} ({r['split']}) labelled {r['label']}, looks {r['suggested']}: {r['score']}")
    for d in [d for d in found.duplicates if d["leakage"]][:_SHOW]:
        print(f"  leakage: {d['path_a']} ({d['split_a']}) ~ {d['path_b']} ({d['split_b']}): {d['similarity']}")
    print(f"lists and summary in {folders.audit}")


if __name__ == "__main__":
    main()
