"""Export a trained technique (the export stage): ONNX and TorchScript files with preprocessing.json beside them.

python pipelines/export.py                                  # export.technique (fine_tune) -> models/export/
python pipelines/export.py export.technique=augment export.opset=18
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import stages
from smallvision.data.manifest import load_manifest
from smallvision.entrypoints import check_output, friendly_errors, hydra_errors, load_settings, show_config
from smallvision.export import ONNX_FILE, PREPROCESSING_FILE, TORCHSCRIPT_FILE, export_checkpoint, parity_images
from smallvision.runs import CHECKPOINT


@hydra_errors
@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    settings = load_settings(cfg)
    plain = settings.model_dump()
    show_config("export", plain, stages.reads("export", plain))
    check_output("export", plain)
    opts, out, technique = settings.export, Path(settings.paths.export), settings.export.technique
    records, _ = load_manifest(Path(settings.paths.prepared))
    done = export_checkpoint(
        Path(settings.paths.models) / technique / CHECKPOINT,
        out,
        parity_images(records, opts.check_images),
        technique=technique,
        opset=opts.opset,
        tolerance=opts.tolerance,
        limits=settings.data.image_limits,
    )
    worst = ", ".join(f"{runtime} {d:.1g}" for runtime, d in done["parity"]["max_abs_difference"].items())
    print(
        f"export: {technique} -> {out / ONNX_FILE} (opset {done['onnx_opset']}), {out / TORCHSCRIPT_FILE}, "
        f"{out / PREPROCESSING_FILE}; largest difference from PyTorch on {done['parity']['images']} test images: {worst}"
    )


if __name__ == "__main__":
    main()
