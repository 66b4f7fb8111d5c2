"""The paper's Tables 1-5 as data: which runs fill which cells, their configs, names and completeness.

Each table is a list of :class:`Experiment` s. An experiment is *what* is trained (dataset, system, backbone,
loss, fold) -- the identity that decides which table cells a run can fill -- and ``experiment_config`` turns it
into a :class:`~farnet_lite.config.TrainConfig` under given *conditions* (input size, epochs, preset, ImageNet
weights, device). Several cells share one run: FARNet (MSFA + FR, DenseNet-121, EWC) on ISBI 2015 is the
DenseNet-121 row of Table 1, the MSFA+FR+EWC row of Table 2 and Table 3, and is trained once.

* Table 1 (§4.3): FARNet with the six backbones, ISBI 2015 Test1.
* Table 2 (§4.4): the eight systems U-Net, FPN, MSFA(+), MSFA, MSFA+FR*, MSFA+FR (all with the L2 loss, Eq. 2),
  MSFA+FR+AW (Adaptive Wing) and MSFA+FR+EWC (Eq. 3), ISBI 2015 Test1. That the first six rows use L2 is our
  reading of the row names (the loss is the last ablation step).
* Table 3 (§4.5.1): FARNet on ISBI 2015 Test1 and Test2 (best.pt selected on Test1, the paper's validation set,
  §4.1.1; the run also reports its last epoch, in ``last_epoch/``). Test2 is scored when its labels are present.
* Table 4 (§4.5.2): FARNet on the Digital Hand Atlas, Payer et al.'s three cross-validation sets; the table row
  pools the three test folds (every image is tested once). No checkpoint is selected on the reported fold: the
  last epoch is scored (the hand's ``val_split=""``), as in Payer et al.'s protocol that the paper follows.
* Table 5 (§4.1.3, §4.5.3): FARNet on the AASCE spine images: the 481 labelled images split once at random into
  431 train/val and 50 test (``farnet_lite/data/spine_431_50.csv``); five models, fold k of a 5-fold
  cross-validation of the 431 selecting the checkpoint of model k, each scored on the 50 (``test50``, pooled into
  the paper's row). Extra rows from the same five runs: their validation folds, and the AASCE challenge's 128 test
  images (``test``: scored when their labels are present, predictions otherwise).

Running them is ``farnet_lite.reproduction.reproduce``; gathering them into tables is ``farnet_lite.reproduction.tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from farnet_lite.config import DATASETS, TrainConfig
from farnet_lite.datasets import real_datasets

TABLES = ("table1", "table2", "table3", "table4", "table5")
"""The tables ``reproduce`` knows."""

BACKBONE_ROWS = (("VGG-16", "vgg16"), ("VGG-19", "vgg19"), ("ResNet-101", "resnet101"),
                 ("ResNet-152", "resnet152"), ("DenseNet-121", "densenet121"), ("DenseNet-169", "densenet169"))
SYSTEM_ROWS = (("U-Net", "unet", "l2"), ("FPN", "fpn", "l2"), ("MSFA(+)", "msfa_add", "l2"),
               ("MSFA", "msfa", "l2"), ("MSFA+FR*", "msfa_fr_naive", "l2"), ("MSFA+FR", "msfa_fr", "l2"),
               ("MSFA+FR+AW", "msfa_fr", "aw"), ("MSFA+FR+EWC", "msfa_fr", "ewc"))


@dataclass(frozen=True)
class Experiment:
    """One run of a table: what is trained, and which splits fill the table.

    ``row`` is the paper's row label; experiments of one table with the same ``row`` (the folds of a
    cross-validation) are pooled into that row by ``farnet_lite.reproduction.tables``. ``splits`` are the scored splits
    (table columns). ``train_split`` / ``val_split`` of None take the dataset's defaults; ``val_split=""``
    trains without model selection (the last epoch is evaluated).
    """

    table: str
    row: str
    dataset: str                      # real dataset: "isbi2015" | "hand" | "spine"
    system: str = "msfa_fr"
    backbone: str = "densenet121"
    loss: str = "ewc"
    fold: int = 1
    splits: Tuple[str, ...] = ("test1",)
    train_split: Optional[str] = None
    val_split: Optional[str] = None

    @property
    def key(self) -> str:
        """Folder name of the run, from its identity: ``<system>-<backbone>-<loss>[-fold<k>|-alltrain]``."""
        key = f"{self.system}-{self.backbone}-{self.loss}"
        if self.train_split == "training":
            return key + "-alltrain"
        return key + (f"-fold{self.fold}" if self.dataset in ("hand", "spine") else "")

    @property
    def label(self) -> str:
        """The row as shown: the paper's label, plus the fold for cross-validation runs."""
        return f"{self.row}, fold {self.fold}" if self.key.endswith(f"fold{self.fold}") else self.row


def table_experiments(table: str) -> List[Experiment]:
    """The experiments of ``table`` (one of :data:`TABLES`), in the paper's row order.
    """
    if table == "table1":
        return [Experiment(table, row, "isbi2015", backbone=name) for row, name in BACKBONE_ROWS]
    if table == "table2":
        return [Experiment(table, row, "isbi2015", system=system, loss=loss) for row, system, loss in SYSTEM_ROWS]
    if table == "table3":
        return [Experiment(table, "FARNet", "isbi2015", splits=("test1", "test2"))]
    if table == "table4":
        return [Experiment(table, "FARNet (3-fold CV)", "hand", fold=k, splits=("test",)) for k in (1, 2, 3)]
    if table == "table5":
        rows = (("FARNet (test set)", ("test50",)), ("FARNet (5-fold CV)", ("cv-val",)),
                ("FARNet (AASCE test, 128 images)", ("test",)))
        return [Experiment(table, row, "spine", fold=k, splits=splits) for row, splits in rows for k in range(1, 6)]
    raise ValueError(f"Unknown table {table!r}; choose one of {', '.join(TABLES)}.")


def unique_runs(experiments: Sequence[Experiment]) -> List[Experiment]:
    """The experiments with distinct ``(dataset, key)``, in order: each is trained once."""
    seen, runs = set(), []
    for exp in experiments:
        if (exp.dataset, exp.key) not in seen:
            seen.add((exp.dataset, exp.key))
            runs.append(exp)
    return runs


def synthetic_name(dataset: str) -> str:
    """``isbi2015`` -> ``synthetic-isbi``: the name of a dataset's synthetic stand-in (from its spec)."""
    return DATASETS[dataset].synthetic_name


def write_quick_datasets(root: Union[str, Path]) -> dict:
    """Tiny synthetic copies of the paper's datasets for quick mode (each spec's ``quick_counts``), in their
    folders under ``root``.

 Returns ``{dataset: folder}`` like ``write_synthetic_datasets``.
    """
    specs = [DATASETS[name] for name in real_datasets()]
    return {spec.name: spec.synthetic_writer(Path(root) / spec.folder, **dict(spec.quick_counts)) for spec in specs}


def _extra_eval_splits(exp: Experiment, spec) -> Tuple[str, ...]:
    """The dataset's own eval splits, minus any that lie inside the training data (a model trained on the whole
    spine training set is not scored on a fold of it)."""
    return () if exp.train_split == "training" else spec.eval_splits


def experiment_config(exp: Experiment, *, quick: bool = False, data_root=None, output_dir=None, cache_dir=None,
                      preset: str = "paper", epochs: Optional[int] = None, pretrained: Union[bool, str, None] = None,
                      device: str = "auto", progress: bool = False) -> TrainConfig:
    """The :class:`TrainConfig` of ``exp``: the paper preset (or ``preset``) of its dataset with its identity.

    ``data_root`` is the folder *containing* the dataset folders (``isbi2015``, ``hand_dha``, ``spine_aasce``).
    ``quick``: the synthetic stand-in at its spec's ``quick_size``, sigma 1.5 px, batch 8, Adam 1e-3, one epoch,
    no augmentation, random init and no checkpoints (writing ~1 GB of them would take longer than the training)
    -- it checks the pipeline end to end in seconds and says nothing about FARNet.
    """
    dataset = synthetic_name(exp.dataset) if quick else exp.dataset
    spec = DATASETS[dataset]
    changes = dict(system=exp.system, backbone=exp.backbone, loss=exp.loss, fold=exp.fold, device=device,
                   progress=progress, cache_dir=None if cache_dir is None else str(cache_dir),
                   eval_splits=tuple(dict.fromkeys(exp.splits + _extra_eval_splits(exp, spec))))
    if pretrained is not None:  # None: the preset's (ImageNet weights on the real datasets under `paper`)
        changes["pretrained"] = pretrained
    if exp.train_split is not None:
        changes["train_split"] = exp.train_split
    if exp.val_split is not None:
        changes["val_split"] = exp.val_split
    if data_root is not None:
        changes["data_root"] = str(Path(data_root) / DATASETS[exp.dataset].folder)
    if output_dir is not None:
        changes["output_dir"] = str(output_dir)
    if quick:
        changes.update(input_size=DATASETS[exp.dataset].quick_size, sigma=1.5, batch_size=8, lr=1e-3, epochs=1,
                       lr_schedule="constant", augment=False, num_workers=0, pretrained=False,
                       save_checkpoints=False)
        preset = "paper"
    if epochs is not None and not quick:
        changes["epochs"] = int(epochs)
    return TrainConfig.preset(dataset, preset, **changes)


# ----------------------------------------------------------------------------------------------- run bookkeeping
def epochs_done(run_dir: Union[str, Path]) -> int:
    """Number of finished epochs recorded in ``run_dir/log.csv`` (0 if there is none)."""
    log = Path(run_dir) / "log.csv"
    if not log.is_file():
        return 0
    return max(0, sum(1 for line in log.read_text().splitlines() if line.strip()) - 1)


def run_finished(run_dir: Union[str, Path], config: TrainConfig) -> bool:
    """True when ``run_dir`` holds a complete run of ``config``: all epochs logged and every eval split predicted."""
    run_dir = Path(run_dir)
    saved = run_dir / "config.json"
    if not saved.is_file() or TrainConfig.load(saved).epochs != config.epochs:
        return False
    return epochs_done(run_dir) >= config.epochs and all(
        (run_dir / f"predictions_{split}.csv").is_file() for split in config.eval_splits)


def conditions_tag(config: TrainConfig) -> str:
    """``<H>x<W>-<imagenet|randinit>-<epochs>ep[-b<batch>]``: the part of a result folder name that says how it ran
    (the batch only when it is not the paper's 1)."""
    init = "randinit" if config.pretrained is False else "imagenet"
    batch = f"-b{config.batch_size}" if config.batch_size != 1 else ""
    return f"{config.input_size[0]}x{config.input_size[1]}-{init}-{config.epochs}ep{batch}"
