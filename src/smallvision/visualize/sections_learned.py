"""The report's sections on what the convnets learned beyond activations and filter patterns (top-activating
patches, first-layer kernels, filter/feature pairs), what fine-tuning changed, and the confusion matrices. Like
sections.py: one function per section, each taking the `Report` being built and returning the page's section."""

from __future__ import annotations

import json

import numpy as np
import torch

from smallvision.models import backbones
from smallvision.networks import FROM_SCRATCH, build_net, spec_resize
from smallvision.runs import CONFUSION, PREDICTIONS, read_confusion, read_metrics, read_predictions
from smallvision.visualize import activations, confusion, finetuning, gradcam, kernels, pairs, patches
from smallvision.visualize.layers import cam_layer, chosen_layers, depth_layers
from smallvision.visualize.receptive import layer_geometry
from smallvision.visualize.report import FigureEntry, Section
from smallvision.visualize.sections import Report, ascend
from smallvision.visualize.settings import pick


def patches_section(report: Report) -> Section:
    opts = report.visualize.patches
    top, count = int(opts.top), int(opts.channels)
    sec = Section(
        "patches",
        "Top-activating patches",
        f"For the first {count} channels of each layer (the filters of the filter-pattern figures), the {top} "
        "validation images that excite the channel most, each cut to the channel's receptive field around the "
        "position of its maximum (Zeiler & Fergus). Where some positions' fields lie wholly inside the image, "
        "only those are ranked (visualize.patches.interior), so no patch is cut by the image's border. Early "
        "layers see a few pixels: edges and colours; deeper layers see more of the image. Grey: where a receptive "
        "field reaches past the image (padding). The "
        "receptive fields come from layer arithmetic for the small convnet and from the gradient of one map "
        "position in a linearised copy of the pretrained base (visualize/receptive.py).",
    )
    val = report.split("val")
    if opts.images is not None and int(opts.images) < len(val):  # spread over the split (it is sorted by class)
        val = [val[i] for i in np.linspace(0, len(val) - 1, int(opts.images)).round().astype(int)]
    for name in report.chosen(opts.techniques, sec, "patches"):
        net, spec = report.nets.get(report.technique(name))
        size = int(spec["image_size"])
        option = "scratch_layers" if spec["network"] in FROM_SCRATCH else "transfer_layers"
        layers = chosen_layers(net, getattr(opts, option), f"visualize.patches.{option}")
        images = np.stack([report.load(rec.file, spec_resize(spec)) for rec in val])  # as the network was trained
        step = int(opts.batch_size)
        batches = (report.nets.inputs(images[i : i + step], spec) for i in range(0, len(images), step))
        geometry = layer_geometry(net, layers, size)
        regions = {n: (g.interior(size), g.interior(size)) for n, g in geometry.items()} if opts.interior else None
        tops = patches.top_activations(net, layers, batches, top, regions)
        shown = [
            patches.layer_patches(
                n, tops[n], list(range(min(count, len(tops[n].values)))), geometry[n], images.__getitem__
            )
            for n, _ in layers
        ]
        fig = patches.patches_figure(
            shown, f"Top-activating patches of {name} ({len(val)} validation images)", size, int(opts.columns)
        )
        path = report.save(fig, f"patches_{name}.png", name)
        sec.figures.append(
            FigureEntry(
                path,
                f"{name}: layers {', '.join(n for n, _ in layers)}; per channel its {top} best validation images, "
                "best first (row by row); panel title: the channel and its highest activation.",
            )
        )
    return sec


def kernels_section(report: Report) -> Section:
    opts = report.visualize.kernels
    sec = Section(
        "kernels",
        "First-layer kernels",
        "The weights of each network's first convolution, one RGB tile per kernel (each normalised on its own: "
        "smallest weight black, largest white), beside where they started. The scratch convnets start from the "
        "random initialisation training began with (same seed); a pretrained base's first layer starts from its "
        "ImageNet weights, which are not untrained: they are shown beside a random initialisation of the same "
        "architecture.",
    )
    references: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # a backbone's pretrained and random first conv
    for name in report.chosen(opts.techniques, sec, "kernels"):
        t = report.technique(name)
        net, spec = report.nets.get(t)
        layer, conv = kernels.first_conv(net)
        seed = int(read_metrics(t.folder).get("seed", 0))
        trained = conv.weight.detach().cpu()
        if spec["network"] in FROM_SCRATCH:
            initial = kernels.first_conv(scratch_initialisation(spec, seed))[1].weight
            sets = [
                kernels.KernelSet(f"after training ({name}), {kernels.moved(trained, initial)}", trained),
                kernels.KernelSet(f"initialisation (seed {seed}, as training began)", initial),
            ]
        else:
            key = json.dumps(spec["backbone"], sort_keys=True)
            if key not in references:
                references[key] = _pretrained_and_random(spec["backbone"], seed)
            pretrained, random = references[key]
            base = spec["backbone"]["name"]
            if torch.equal(pretrained, trained):
                sets = [kernels.KernelSet(f"{base} ImageNet-pretrained = after {name} (frozen)", pretrained)]
            else:
                sets = [
                    kernels.KernelSet(f"after training ({name}), {kernels.moved(trained, pretrained)}", trained),
                    kernels.KernelSet(f"{base} ImageNet-pretrained", pretrained),
                ]
            sets.append(kernels.KernelSet(f"{base} random initialisation (seed {seed})", random))
        path = report.save(
            kernels.kernels_figure(sets, f"First-layer kernels of {name} ({layer})", int(opts.columns)),
            f"kernels_{name}.png",
            name,
        )
        sec.figures.append(FigureEntry(path, f"{name}: {' | '.join(s.label for s in sets)}."))
    return sec


def scratch_initialisation(spec: dict, seed: int) -> torch.nn.Module:
    """The network a scratch technique started training from: training seeds every generator with its seed, then
    builds the network first (a test checks this against a real training run)."""
    torch.manual_seed(seed)
    return build_net(spec)


def _pretrained_and_random(backbone: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    pretrained = kernels.first_conv(backbones.create_backbone(backbone))[1].weight.detach()
    torch.manual_seed(seed)
    random = backbones.create_backbone({**backbone, "weights": {"source": "none"}}, allow_random=True)
    return pretrained, kernels.first_conv(random)[1].weight.detach()


def pairs_section(report: Report) -> Section:
    options, filter_opts = report.visualize, report.visualize.filters
    sec = Section(
        "pairs",
        "Filters and their features, going deeper",
        "For one test image and one channel per layer, first layer to last: the channel's pattern (gradient "
        "ascent, as in the filter patterns) beside the feature map it produces on the image, and that map over "
        "the image. Each layer's channel is the one with the highest mean activation on this image.",
    )
    record = pick(report.split("test"), options.test_image, "test_image")
    for name in report.chosen(options.pairs.techniques, sec, "pairs"):
        net, spec = report.nets.get(report.technique(name))
        image = report.load(record.file, spec_resize(spec))
        layers = depth_layers(net)
        maps = activations.capture(net, report.nets.inputs(image[None], spec), layers)
        features = [maps[n][0].float().cpu().numpy() for n, _ in layers]
        channels = [pairs.strongest_channel(feature) for feature in features]
        found = ascend(net, spec, [(n, m, c) for (n, m), c in zip(layers, channels)], filter_opts)
        shown = [pairs.Pair(p.layer, p, feature[p.index]) for p, feature in zip(found, features)]
        fig = pairs.pairs_figure(
            image,
            shown,
            f"Filters and features of {name} on test image {record.path} ({record.label})",
            float(options.gradcam.image_weight),
        )
        path = report.save(fig, f"pairs_{name}.png", name)
        sec.figures.append(FigureEntry(path, f"{name}: layers {', '.join(p.layer for p in shown)}, first to last."))
    return sec


def finetuning_section(report: Report) -> Section:
    opts = report.visualize.finetuning
    before, after = opts.before, opts.after
    sec = Section(
        "finetuning",
        "What fine-tuning changed",
        f"Grad-CAM of {before} (top row) and {after} (bottom row) on the same test images, the images where "
        "their predictions disagree first, then those whose probability of the true class moved most. "
        "Predictions are recomputed here in float32, so a probability can differ from the training run's "
        "(bf16) in the last digits.",
    )
    if any(row.get("technique") == after and row.get("kept_start") is True for row in report.rows):
        sec.notes.append(
            f"{after} kept the weights it started from: no training epoch beat them on validation (kept_start)"
        )
    trained = {t.name: t for t in report.trained}
    lacking = [n for n in (before, after) if n not in trained or trained[n].missing(PREDICTIONS)]
    if lacking:
        sec.notes.append(f"not shown: {', '.join(lacking)} not trained (or without {PREDICTIONS})")
        return sec
    rows = {n: read_predictions(trained[n].file(PREDICTIONS)) for n in (before, after)}
    every = finetuning.paired_images(rows[before], rows[after], len(rows[after]))
    differ = sum(a.predicted != b.predicted for a, b in every)
    chosen = [pair for pair in every if report.record(pair[1].path) is not None][: int(opts.images)]
    if not chosen:
        sec.notes.append(f"not shown: {before} and {after} have no test image in common with the manifest")
        return sec
    explained = {}
    for n in (before, after):
        net, spec = report.nets.get(trained[n])
        records = [report.record(b.path) for _, b in chosen]
        images = np.stack([report.load(rec.file, spec_resize(spec)) for rec in records])
        explained[n] = gradcam.explain(
            net,
            cam_layer(net)[1],
            images,
            report.nets.inputs(images, spec),
            [rec.target for rec in records],
            [rec.path for rec in records],
        )
    fig = finetuning.finetuning_figure(
        (before, explained[before]),
        (after, explained[after]),
        report.classes,
        float(report.visualize.gradcam.image_weight),
    )
    path = report.save(fig, "finetuning.png", after)
    sec.figures.append(
        FigureEntry(
            path,
            f"{before} and {after} disagree on {differ} of {len(rows[after])} test images; under each column: "
            "whether the two predictions agree, and the file.",
        )
    )
    return sec


def confusion_section(report: Report) -> Section:
    sec = Section(
        "confusion",
        "Confusion matrices",
        "Per technique, its test predictions by true class (rows) and predicted class (columns): counts, and "
        "the share of each true class.",
    )
    for t in report.trained:
        if t.missing(CONFUSION):
            sec.notes.append(f"{t.name}: no {CONFUSION}")
            continue
        path = report.save(
            confusion.confusion_figure(read_confusion(t.file(CONFUSION)), t.name), f"confusion_{t.name}.png", t.name
        )
        sec.figures.append(FigureEntry(path, f"{t.name}: test confusion matrix, counts and rates."))
    return sec
