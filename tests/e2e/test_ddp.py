"""DDP is exact and owned by rank 0: the same checkpoint gives the same test counts on 2 processes as on one,
features come back in manifest order, augmentations differ per rank, a seed reproduces a run, and only rank 0
writes outputs and MLflow runs.

Most tests fork 2 gloo processes from the test process (strategy ddp_fork: the same gathering code as
`trainer=ddp_cpu`, without re-importing everything); one runs `trainer=ddp_cpu` itself through pipelines/train.py
(the baseline, one epoch), and the slow test does so with feature extraction. The test split has 21 images (odd),
so any padding of a shard would show.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.project import run
from helpers.study import LIMITS, class_probabilities, config, make_dataset, paths, split_input
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader, DistributedSampler

from smallvision.data.augmentation import AffineConfig
from smallvision.data.cache import image_array
from smallvision.data.datamodule import ArrayDataModule, ArrayDataset, SplitArrays
from smallvision.data.manifest import load_manifest, manifest_digest
from smallvision.data.split import prepare_split
from smallvision.data.synthetic import generate
from smallvision.errors import DataError
from smallvision.features import FeatureExtractor, cached_features
from smallvision.modules.classifier import ClassifierModule, ImageInput
from smallvision.networks import load_checkpoint
from smallvision.runs import read_history
from smallvision.schema import Split
from smallvision.shards import ShardSampler
from smallvision.trainer import make_trainer
from smallvision.training import train_technique

CLASSES = ("circle", "square", "triangle")
SPLIT = {"train": 6, "val": 3, "test": 7}  # per class: 21 test images, 9 validation images
SIZE = 64


def make_odd_dataset(root: Path) -> Path:
    """Three classes of generated shapes split 6/3/7 per class: odd val and test splits."""
    generate(root / "data" / "raw", classes=CLASSES, per_class=sum(SPLIT.values()), image_size=SIZE, seed=0)
    prepare_split(
        root / "data" / "raw",
        root / "data" / "prepared",
        split=Split(**SPLIT),
        seed=0,
        classes=None,
        workers=1,
        limits=LIMITS,
        progress=False,
    )
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return make_odd_dataset(tmp_path_factory.mktemp("ddp_study"))


def _arrays(root: Path) -> SplitArrays:
    records, classes = load_manifest(root / "data" / "prepared")
    digest = manifest_digest(root / "data" / "prepared" / "manifest.csv")
    images = image_array([r.file for r in records], SIZE, root / "data" / "cache", digest, 1, False, LIMITS)
    labels = np.array([classes.index(r.label) for r in records])
    rows = {s: np.array([i for i, r in enumerate(records) if r.split == s]) for s in ("train", "val", "test")}
    return SplitArrays(images, labels, rows, classes)


def _trainer(devices: int, out: Path, callbacks=(), epochs: int = 1) -> L.Trainer:
    """One process, or `devices` processes forked from this one (gloo, as trainer=ddp_cpu)."""
    cfg = config().trainer.model_copy(
        update={"devices": devices, "strategy": "ddp_fork" if devices > 1 else "auto", "precision": "32-true"}
    )
    return make_trainer(cfg, epochs, out, False, list(callbacks))


class SavePerRank(L.Callback):
    """What each rank saw, saved to <out>/<stage>-rank<r>.pt (forked ranks cannot hand objects back)."""

    def __init__(self, out: Path, probe: torch.Tensor | None = None) -> None:
        self.out, self.probe = out, probe

    def _save(self, trainer, stage: str, value: dict) -> None:
        torch.save(value, self.out / f"{stage}-rank{trainer.global_rank}.pt")

    def on_test_end(self, trainer, module) -> None:
        # the module's own training-time augmentation of one fixed batch, with this rank's generator
        augmented = module.prepare_images(self.probe.clone(), train=True) if self.probe is not None else None
        self._save(trainer, "test", {"results": module.test_results, "augmented": augmented})

    def on_fit_end(self, trainer, module) -> None:
        weights = b"".join(v.detach().cpu().numpy().tobytes() for v in module.state_dict().values())
        self._save(trainer, "fit", {"history": module.history, "weights": hashlib.sha256(weights).hexdigest()})

    def on_predict_end(self, trainer, module) -> None:
        self._save(trainer, "predict", {"features": module.result})


def _load(out: Path, stage: str, rank: int) -> dict:
    return torch.load(out / f"{stage}-rank{rank}.pt", weights_only=False)


def _module(net, data: SplitArrays, seed: int) -> ClassifierModule:
    augmentation = AffineConfig.of(config().augmentation)  # the study's transforms (chollet)
    return ClassifierModule(
        net,
        len(data.classes),
        config().techniques["baseline"].optimizer.model_copy(update={"lr": 1e-3}),
        ImageInput(augmentation=augmentation),
        seed=seed,
    )


# --------------------------------------------------------------------------------------------- exactness


def test_ddp_test_counts_equal_one_process_on_the_same_checkpoint(study, tmp_path):
    single_metrics = train_technique(
        config("technique=baseline", "techniques.baseline.epochs=1"), paths(study, "baseline"), progress=False
    )
    checkpoint = study / "models" / "baseline" / "best.ckpt"
    data = _arrays(study)
    probe = torch.from_numpy(np.array(data.array[:4]))
    outputs = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        out.mkdir()
        net, _ = load_checkpoint(checkpoint)
        module = _module(net, data, seed=3)
        # eval batches of 4: each rank's shard (11 and 10 images) ends in a partial batch
        datamodule = ArrayDataModule(data, batch_size=4, seed=3, eval_batch_size=4)
        _trainer(devices, out, [SavePerRank(out, probe)]).test(module, datamodule=datamodule, verbose=False)
        outputs[devices] = [_load(out, "test", r) for r in range(devices)]

    one, (rank0, rank1) = outputs[1][0]["results"], outputs[2]
    ddp = rank0["results"]
    assert len(list(DistributedSampler(range(21), num_replicas=2, rank=0))) * 2 == 22  # what padding would count
    assert ddp["n"] == one["n"] == single_metrics["test_images"] == 21
    assert ddp["correct"] == one["correct"] == single_metrics["test_correct"]
    assert torch.equal(ddp["samples"]["idx"], torch.arange(21))  # each test image once, in split order
    assert torch.equal(ddp["samples"]["pred"], one["samples"]["pred"])
    assert torch.equal(ddp["samples"]["y"], torch.from_numpy(data.labels[data.rows["test"]]))
    assert torch.allclose(ddp["samples"]["prob"], one["samples"]["prob"], atol=1e-5)
    assert rank1["results"]["correct"] == ddp["correct"]  # every rank reports the same numbers

    # per-rank augmentation: ranks draw different transforms; rank 0 draws what a single process draws
    assert not torch.allclose(rank0["augmented"], rank1["augmented"])
    assert torch.equal(rank0["augmented"], outputs[1][0]["augmented"])


class _TinyBase(torch.nn.Module):
    """A seeded conv 'backbone' with timm's forward_features: every image gets its own feature vector.

    Weights and bias are both fixed, so two instances are the same network (an unseeded bias made the
    single-process and DDP extractors differ by up to 0.2, which looked like a gathering bug).
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=torch.Generator().manual_seed(0)))
            self.conv.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_ddp_feature_extraction_gathers_features_in_manifest_order(study, tmp_path):
    images = np.array(_arrays(study).array[:47])  # an odd count: shards of 24 and 23
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    single = cached_features(
        _trainer(1, tmp_path),
        FeatureExtractor(_TinyBase(), "avg", mean, std, False),
        images,
        tmp_path / "single" / "features.npy",
        batch_size=5,
    )
    assert single.shape == (47, 8) and len(np.unique(single.round(3), axis=0)) == 47

    extractor = FeatureExtractor(_TinyBase(), "avg", mean, std, False)
    dataset = ArrayDataset(images, np.zeros(len(images), dtype=np.int64), np.arange(len(images)))
    trainer = _trainer(2, tmp_path, [SavePerRank(tmp_path)])
    assert [len(ShardSampler(47, rank, 2)) for rank in (0, 1)] == [24, 23]
    trainer.predict(extractor, datamodule=_Shards(dataset, batch_size=5), return_predictions=False)
    for rank in (0, 1):
        gathered = _load(tmp_path, "predict", rank)["features"]
        assert gathered.shape == single.shape
        np.testing.assert_allclose(gathered, single, atol=2e-3)  # fp16 cache, same rows in the same order


class _Shards(L.LightningDataModule):
    """Each rank's ShardSampler over `dataset`, as cached_features builds it, made inside the forked rank."""

    def __init__(self, dataset, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def predict_dataloader(self) -> DataLoader:
        sampler = ShardSampler(len(self.dataset), self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(self.dataset, batch_size=self.batch_size, sampler=sampler)


def test_a_split_smaller_than_the_number_of_processes_is_a_clear_error(study):
    data = _arrays(study)
    tiny = SplitArrays(data.array, data.labels, {**data.rows, "val": data.rows["val"][:1]}, data.classes)
    module = ArrayDataModule(tiny, batch_size=4, seed=0)
    module.trainer = type("FakeTrainer", (), {"global_rank": 0, "world_size": 2})()
    with pytest.raises(DataError, match="val split has 1 images but 2 processes"):
        module.val_dataloader()


def test_batch_size_is_per_process_and_each_process_trains_on_its_own_part_of_the_split(study):
    """README "Scale out": batch_size is per device, so the global batch is batch_size x devices x num_nodes."""
    data = _arrays(study)
    seen = []
    for rank in (0, 1):
        module = ArrayDataModule(data, batch_size=4, seed=0)
        module.trainer = type("FakeTrainer", (), {"global_rank": rank, "world_size": 2})()
        loader = module.train_dataloader()
        batches = list(loader)
        assert loader.batch_size == 4 and [len(b[2]) for b in batches] == [4, 4, 1]  # 9 of the 18 images each
        seen.append(torch.cat([b[2] for b in batches]).tolist())
    assert sorted(seen[0] + seen[1]) == list(range(18))  # together: every training image once per epoch


# --------------------------------------------------------------------------------------------- seeds


def _fit(data: SplitArrays, seed: int, out: Path) -> list[dict]:
    out.mkdir()
    L.seed_everything(seed, verbose=False)
    from smallvision.models.convnet import SmallConvNet

    module = _module(SmallConvNet(SIZE, len(data.classes), dropout=0.5), data, seed)
    datamodule = ArrayDataModule(data, batch_size=4, seed=seed, eval_batch_size=4)
    _trainer(2, out, [SavePerRank(out)], epochs=2).fit(module, datamodule=datamodule)
    return [_load(out, "fit", r) for r in (0, 1)]


def test_ddp_training_is_reproducible_and_ranks_stay_in_sync(study, tmp_path):
    data = _arrays(study)
    first, again, other = _fit(data, 5, tmp_path / "a"), _fit(data, 5, tmp_path / "b"), _fit(data, 6, tmp_path / "c")
    assert first[0]["weights"] == first[1]["weights"]  # DDP keeps the ranks' weights identical
    assert first[0]["history"] == first[1]["history"]  # and their gathered metrics
    assert again[0] == first[0]  # the same seed reproduces the run exactly
    assert other[0]["weights"] != first[0]["weights"]  # another seed is another run
    assert other[0]["history"][0]["train_loss"] != first[0]["history"][0]["train_loss"]


def test_the_same_seed_twice_gives_the_same_metrics(study):
    def run(seed: int, name: str) -> tuple[dict, str]:
        cfg = config("technique=augment", "techniques.augment.epochs=1", f"seed={seed}")
        metrics = train_technique(cfg, paths(study, name), progress=False)
        (
            metrics.pop("wall_time_s"),
            metrics.pop("trained_at"),
            metrics.pop("seconds_per_epoch"),
        )  # when and how fast, not what
        return metrics, (study / "models" / name / "history.csv").read_text()

    first, again, other = run(11, "augment_a"), run(11, "augment_b"), run(12, "augment_c")
    assert first == again
    assert other[1] != first[1]  # a different seed: different shuffles, initial weights and augmentations


# --------------------------------------------------------------------------------------------- end to end


def _mlflow_runs(db: Path) -> list:

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("smallvision")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _train_ddp_cpu(project: Path, technique: str, *overrides: str) -> tuple[dict, Path]:
    """pipelines/train.py technique=<technique> trainer=ddp_cpu `overrides` in `project`; checks what only rank 0 does
    (print, write one set of outputs) and returns metrics.json and the output folder."""
    cmd = [
        sys.executable,
        str(ROOT / "pipelines" / "train.py"),
        f"technique={technique}",
        "trainer=ddp_cpu",
        "data=synthetic",
        *overrides,
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
    ]
    result = run(cmd, project)
    assert result.stdout.count(f"{technique}: test accuracy") == 1  # rank 1 prints nothing
    out = project / "models" / technique
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_images"] == 21
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.ckpt", "confusion.json", "history.csv", "metrics.json", "test_accuracy.json", "test_predictions.csv"]
    )  # one set of outputs, no second writer's leftovers
    return metrics, out


def test_a_ddp_cpu_training_job_is_exact_end_to_end_and_only_rank_zero_writes(tmp_path):
    """pipelines/train.py trainer=ddp_cpu, fast (one epoch of the baseline; the slow test below runs feature
    extraction under DDP too): the test split's 21 images each counted once, the numbers those of best.ckpt evaluated
    here by hand, one set of outputs and one MLflow run, written by rank 0 alone."""
    project = make_odd_dataset(tmp_path)
    before = set(project.iterdir())
    metrics, out = _train_ddp_cpu(
        project, "baseline", f"techniques.baseline.image_size={SIZE}", "techniques.baseline.epochs=1"
    )
    # besides: the MLflow store and its artifacts, and Hydra's log of each rank (rank 1 ran, and wrote only its log)
    assert {p.name for p in set(project.iterdir()) - before} == {
        "models",
        "mlflow.db",
        "mlartifacts",
        "train.log",
        "train_ddp_process_1.log",
    }

    net, spec = load_checkpoint(out / "best.ckpt")  # evaluated here, by one process, by hand
    records, x = split_input(project, spec)
    probs = class_probabilities(net, x)
    with open(out / "test_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [r.path for r in records]  # each test image once, in split order
    assert [r["predicted"] for r in rows] == [spec["classes"][k] for k in probs.argmax(1)]
    assert [float(r["probability"]) for r in rows] == pytest.approx(probs.max(1).tolist(), abs=1e-4)
    y = np.array([r.target for r in records])
    assert metrics["test_correct"] == int((probs.argmax(1) == y).sum())

    runs = _mlflow_runs(project / "mlflow.db")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 2 and len(children) == 1  # one study run, one technique run
    assert children[0].info.status == "FINISHED"
    assert children[0].data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.slow
def test_ddp_cpu_run_is_exact_and_only_rank_zero_writes(tmp_path):
    """pipelines/train.py trainer=ddp_cpu: feature extraction, training and test on 2 processes."""
    project = make_odd_dataset(tmp_path)
    metrics, out = _train_ddp_cpu(
        project,
        "feature_extract",
        f"techniques.feature_extract.image_size={SIZE}",
        "techniques.feature_extract.epochs=2",
        "techniques.feature_extract.optimizer.lr=1e-3",
    )
    predictions = (out / "test_predictions.csv").read_text().splitlines()[1:]
    assert len(predictions) == len({line.split(",")[0] for line in predictions}) == 21

    # features written under DDP == features of one process, row for row in manifest order
    cfg = config("technique=feature_extract", f"techniques.feature_extract.image_size={SIZE}")
    (cached,) = (project / "data" / "features").rglob("features-*.npy")
    from smallvision.data.preprocess import backbone_normalisation
    from smallvision.models import backbones

    bb = cfg.backbone
    pool = cfg.techniques["feature_extract"].head.pool
    extractor = FeatureExtractor(backbones.create_backbone(bb.model_dump()), pool, *backbone_normalisation(bb), False)
    single = cached_features(
        _trainer(1, tmp_path), extractor, np.array(_arrays(project).array), tmp_path / "single.npy", batch_size=16
    )
    np.testing.assert_allclose(np.load(cached), single, atol=2e-2, rtol=1e-2)

    # the DDP checkpoint evaluated by one process counts the same correct test images
    data = _arrays(project)
    data = SplitArrays(np.load(cached), data.labels, data.rows, data.classes)
    net = _head(out / "best.ckpt")
    module = ClassifierModule(net, 3, config().techniques["baseline"].optimizer.model_copy(update={"lr": 1e-3}), None)
    _trainer(1, tmp_path).test(module, datamodule=ArrayDataModule(data, 4, 0), verbose=False)
    assert module.test_results["n"] == 21 and module.test_results["correct"] == metrics["test_correct"]

    runs = _mlflow_runs(project / "mlflow.db")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 2 and len(children) == 1  # one study run, one technique run
    assert children[0].data.metrics["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert children[0].info.status == "FINISHED"


def _head(checkpoint: Path) -> torch.nn.Module:
    """The dense head a cached-features checkpoint holds."""
    from smallvision.networks import build_head

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    net = build_head(state["hyper_parameters"]["spec"])
    net.load_state_dict({k.removeprefix("net."): v for k, v in state["state_dict"].items()})
    return net


WRECKING_LR = "techniques.fine_tune.optimizer.lr=1.0"  # RMSprop at 1.0 wrecks the base within an epoch


@pytest.mark.slow
def test_under_ddp_the_start_is_validated_exactly_and_kept(tmp_path):
    """pipelines/train.py trainer=ddp_cpu (2 processes, an odd validation split): epoch 0 is the one-process
    validation exactly, each image once; the start is kept, and the stage says so once (rank 0 alone)."""
    root = make_dataset(tmp_path, per_class=12, classes=("circle", "square", "triangle"))
    common = [
        "data=synthetic",
        "preset=smoke",
        "logger.enabled=false",
        "trainer.precision=32-true",
        WRECKING_LR,
        "hydra.run.dir=.",
        "hydra.output_subdir=null",
    ]
    train = [sys.executable, str(ROOT / "pipelines" / "train.py")]
    run([*train, "technique=feature_extract", *common], root)
    out = root / "models" / "fine_tune"
    histories, said = [], []
    for trainer in ("trainer=cpu", "trainer=ddp_cpu"):
        result = run([*train, "technique=fine_tune", trainer, *common], root)
        histories.append((out / "history.csv").read_text().splitlines())
        said.append((result.stdout + result.stderr).count("keeping the starting weights"))
    one, ddp = histories
    assert ddp[1] == one[1] and ddp[1].startswith("0,,,")  # epoch 0, to the printed digit
    assert said == [1, 1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["best_epoch"], metrics["kept_start"]) == (0, True)
    images = sum(r.split == "val" for r in load_manifest(root / "data" / "prepared")[0])
    assert images % 2 == 1  # odd: a padded shard would count an image twice
    right = read_history(out / "history.csv")[0]["val_acc"] * images
    assert right == pytest.approx(round(right), abs=1e-4)  # a whole number of images
