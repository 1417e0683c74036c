"""The typed settings of the visualize stage (`visualize:` in conf/, `conf/visualize/default.yaml`): one section per
figure of the report, and the check that every technique they name is one the study has. Part of the whole
configuration's schema (`smallvision.schema.Settings.visualize`), with the same kinds of setting and rules
(`smallvision.schema_rules`)."""

from pydantic_core import PydanticCustomError

from smallvision.schema_rules import (
    COLUMNS,
    COUNT,
    FLAG,
    INDEX_OR_PATH,
    LAYER_NAMES,
    SEED,
    TECHNIQUE_NAMES,
    Section,
    choice,
    optional,
    real,
    refuse,
    refuse_line,
    whole,
)


class Activations(Section):
    techniques: TECHNIQUE_NAMES
    max_channels: optional(COUNT, "every channel")
    columns: COLUMNS


class Filters(Section):
    techniques: TECHNIQUE_NAMES
    scratch_layers: LAYER_NAMES
    transfer_layers: LAYER_NAMES
    per_layer: whole(1, 4096)
    columns: COLUMNS
    steps: whole(0, 100_000)
    step_size: real(0, 255, why="grey levels")
    noise: real(0, 128, why="grey levels")
    image_size: optional(whole(1, 4096, "px"), "the network's input size")
    seed: SEED


class GradCam(Section):
    per_group: whole(1, 1000)
    image_weight: real(0, 1, why="the image's share of the overlay")


class Curves(Section):
    smoothing: real(0, 1, high_open=True, why="0: raw curves; the book uses 0.8")


class AugmentationPreview(Section):
    technique: str
    image: INDEX_OR_PATH
    count: whole(1, 1000)
    columns: COLUMNS
    seed: SEED


class Mistakes(Section):
    technique: str
    max_images: whole(1, 10_000)
    columns: COLUMNS
    image_size: whole(1, 4096, "px")


class Confusion(Section):
    enabled: FLAG


class Finetuning(Section):
    enabled: FLAG
    before: str
    after: str
    images: whole(1, 10_000)


class Pairs(Section):
    enabled: FLAG
    techniques: TECHNIQUE_NAMES


class Patches(Section):
    enabled: FLAG
    techniques: TECHNIQUE_NAMES
    scratch_layers: LAYER_NAMES
    transfer_layers: LAYER_NAMES
    channels: whole(1, 4096)
    top: whole(1, 1000)
    columns: COLUMNS
    images: optional(COUNT, "the whole validation split")
    interior: FLAG
    batch_size: whole(1, 4096)


class Kernels(Section):
    enabled: FLAG
    techniques: TECHNIQUE_NAMES
    columns: COLUMNS


class AuditFindings(Section):
    thumbnails: whole(1, 1000, "images of each audit list shown, the top-ranked first; pairs for near-duplicates")
    columns: COLUMNS
    image_size: whole(1, 4096, "px")


class Visualize(Section):
    techniques: TECHNIQUE_NAMES
    device: choice("cpu", "cuda", "auto")
    threads: optional(whole(1, 1024), "torch's default")
    dpi: whole(1, 1200)
    test_image: INDEX_OR_PATH
    reference_label: str
    reference: dict[str, real(0, 1, why="an accuracy")]
    activations: Activations
    filters: Filters
    gradcam: GradCam
    curves: Curves
    augmentation_preview: AugmentationPreview
    mistakes: Mistakes
    confusion: Confusion
    finetuning: Finetuning
    pairs: Pairs
    patches: Patches
    kernels: Kernels
    audit: AuditFindings

    def unknown_techniques(self, known: list[str]) -> PydanticCustomError | None:
        """The first technique named here that `known` lacks, as an error; None when every name is known."""
        for option in ("", "activations.", "filters.", "pairs.", "patches.", "kernels."):
            node = getattr(self, option.rstrip("."), None) if option else self
            unknown = [n for n in node.techniques if n not in known]
            if unknown:
                return refuse_line(
                    f"{option}techniques", f"names unknown technique(s) {unknown}; known: {', '.join(known)}"
                )
        allowed = {
            "mistakes.technique": (self.mistakes.technique, ["best", *known]),
            "augmentation_preview.technique": (self.augmentation_preview.technique, known),
            "finetuning.before": (self.finetuning.before, known),
            "finetuning.after": (self.finetuning.after, known),
        }
        for key, (value, names) in allowed.items():
            if value not in names:
                return refuse(key, value, f"is unknown; allowed: {', '.join(names)}")
        return None
