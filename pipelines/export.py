"""Export a trained technique (the export stage): ONNX and TorchScript files with preprocessing.json beside them.

python pipelines/export.py                                  # export.technique (fine_tune) -> models/export/
python pipelines/export.py export.technique=augment export.opset=18
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from smallvision import stages
from smallvision.checks import check_settings, one_of
from smallvision.data.manifest import load_manifest
from smallvision.entrypoints import check_output, friendly_errors, show_config, to_dict
from smallvision.export import ONNX_FILE, PREPROCESSING_FILE, TORCHSCRIPT_FILE, export_checkpoint, parity_images
from smallvision.runs import CHECKPOINT


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
@friendly_errors
def main(cfg: DictConfig) -> None:
    c = to_dict(cfg)
    check_settings(c, "export")
    show_config("export", c, stages.reads("export", c))
    check_output("export", c)
    settings, out = c["export"], Path(c["paths"]["export"])
    technique = one_of(settings["technique"], "export.technique", list(c["techniques"]))
    records, _ = load_manifest(Path(c["paths"]["prepared"]))
    done = export_checkpoint(
        Path(c["paths"]["models"]) / technique / CHECKPOINT,
        out,
        parity_images(records, settings["check_images"]),
        technique=technique,
        opset=settings["opset"],
        tolerance=settings["tolerance"],
        max_pixels=c["data"]["max_image_pixels"],
        max_bytes=c["data"]["max_image_bytes"],
    )
    worst = ", ".join(f"{runtime} {d:.1g}" for runtime, d in done["parity"]["max_abs_difference"].items())
    print(
        f"export: {technique} -> {out / ONNX_FILE} (opset {done['onnx_opset']}), {out / TORCHSCRIPT_FILE}, "
        f"{out / PREPROCESSING_FILE}; largest difference from PyTorch on {done['parity']['images']} test images: {worst}"
    )


if __name__ == "__main__":
    main()
