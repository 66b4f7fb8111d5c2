"""The paper's Tables 1-5 as lists of runs, and ``reproduce``: run what is missing, gather, write the tables.

Introduced in notebook 07_table1_backbones (and used by 08-11 and ``farnet reproduce``).

Each table is a list of :class:`Experiment` s. An experiment is *what* is trained (dataset, system, backbone,
loss, fold) -- the identity that decides which table cells a run can fill -- and ``experiment_config`` turns it
into a :class:`~farnet_lite.config.TrainConfig` under given *conditions* (input size, epochs, preset, ImageNet
weights, device). Several cells share one run: FARNet (MSFA + FR, DenseNet-121, EWC) on ISBI 2015 is the
DenseNet-121 row of Table 1, the MSFA+FR+EWC row of Table 2 and Table 3, and is trained once.

* Table 1 (§4.3): FARNet with the six backbones, ISBI 2015 Test1.
* Table 2 (§4.4): the eight systems U-Net, FPN, MSFA(+), MSFA, MSFA+FR*, MSFA+FR (all with the L2 loss, Eq. 2),
  MSFA+FR+AW (Adaptive Wing) and MSFA+FR+EWC (Eq. 3), ISBI 2015 Test1. That the first six rows use L2 is our
  reading of the row names (the loss is the last ablation step).
* Table 3 (§4.5): FARNet on ISBI 2015 Test1 and Test2 (best.pt selected on Test1, as the paper).
* Table 4 (§4.5): FARNet on the Digital Hand Atlas, Payer et al.'s three cross-validation sets; the table row
  pools the three test folds (every image is tested once).
* Table 5 (§4.5): FARNet on the AASCE spine images, 5-fold cross-validation on the training set (pooled) and a
  model trained on the whole training set for the test set.

Where a run lives (``reproduce``): checkpoints under ``runs_dir/<dataset>/<run key>`` (large, git-ignored); the
small files that make a result (config, log, metrics, per-landmark errors, predictions, ``provenance.json`` with
command, commit, device and wall time) are copied to ``results_dir/<dataset>/<run key>-<conditions>``, which is
what ``farnet_lite.tables`` gathers. Quick mode trains on tiny synthetic datasets for one epoch and keeps
everything under ``runs/quick`` so it can never be mistaken for a result.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from farnet_lite.config import DATASETS, TrainConfig

TABLES = ("table1", "table2", "table3", "table4", "table5")
"""The tables ``reproduce`` knows. Introduced in notebook 07_table1_backbones."""

BACKBONE_ROWS = (("VGG-16", "vgg16"), ("VGG-19", "vgg19"), ("ResNet-101", "resnet101"),
                 ("ResNet-152", "resnet152"), ("DenseNet-121", "densenet121"), ("DenseNet-169", "densenet169"))
SYSTEM_ROWS = (("U-Net", "unet", "l2"), ("FPN", "fpn", "l2"), ("MSFA(+)", "msfa_add", "l2"),
               ("MSFA", "msfa", "l2"), ("MSFA+FR*", "msfa_fr_naive", "l2"), ("MSFA+FR", "msfa_fr", "l2"),
               ("MSFA+FR+AW", "msfa_fr", "aw"), ("MSFA+FR+EWC", "msfa_fr", "ewc"))
DATA_FOLDERS = {"isbi2015": "isbi2015", "hand": "hand_dha", "spine": "spine_aasce"}
"""Folder of each dataset under a data root (as written by data_download/ and write_synthetic_datasets)."""

QUICK_SIZES = {"isbi2015": (64, 64), "hand": (64, 64), "spine": (64, 32)}
"""Quick mode: network input (H, W) per dataset -- a smoke test of the pipeline, not an experiment."""


@dataclass(frozen=True)
class Experiment:
    """One run of a table: what is trained, and which splits fill the table.

    Introduced in notebook 07_table1_backbones.

    ``row`` is the paper's row label; experiments of one table with the same ``row`` (the folds of a
    cross-validation) are pooled into that row by ``farnet_lite.tables``. ``splits`` are the scored splits
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

    Introduced in notebook 07_table1_backbones.
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
        folds = [Experiment(table, "FARNet (5-fold CV)", "spine", fold=k, splits=("cv-val",)) for k in range(1, 6)]
        return folds + [Experiment(table, "FARNet (test set)", "spine", splits=("test",), train_split="training",
                                   val_split="")]
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
    """``isbi2015`` -> ``synthetic-isbi`` (the synthetic stand-in of a dataset in ``DATASETS``)."""
    return "synthetic-" + DATASETS[dataset].layout.replace("2015", "")


def write_quick_datasets(root: Union[str, Path]) -> dict:
    """Tiny synthetic copies of the three datasets for quick mode (8 / 9 / 10 training images), under ``root``.

    Introduced in notebook 07_table1_backbones. Returns ``{dataset: folder}`` like ``write_synthetic_datasets``.
    """
    from farnet_lite.data import synthetic

    root = Path(root)
    return {"isbi2015": synthetic.write_synthetic_isbi(root / "isbi2015", n_train=8, n_test1=6, n_test2=4),
            "hand": synthetic.write_synthetic_hand(root / "hand_dha", n=9),
            "spine": synthetic.write_synthetic_spine(root / "spine_aasce", n_training=10, n_test=3)}


def _extra_eval_splits(exp: Experiment, spec) -> Tuple[str, ...]:
    """The dataset's own eval splits, minus any that lie inside the training data (a model trained on the whole
    spine training set is not scored on a fold of it)."""
    return () if exp.train_split == "training" else spec.eval_splits


def experiment_config(exp: Experiment, *, quick: bool = False, data_root=None, output_dir=None, cache_dir=None,
                      preset: str = "paper", epochs: Optional[int] = None, pretrained: Union[bool, str] = False,
                      device: str = "auto", progress: bool = False) -> TrainConfig:
    """The :class:`TrainConfig` of ``exp``: the paper preset (or ``preset``) of its dataset with its identity.

    ``data_root`` is the folder *containing* the dataset folders (``isbi2015``, ``hand_dha``, ``spine_aasce``).
    ``quick``: the synthetic stand-in at :data:`QUICK_SIZES`, sigma 1.5 px, batch 8, Adam 1e-3, one epoch,
    no augmentation, random init and no checkpoints (writing ~1 GB of them would take longer than the training)
    -- it checks the pipeline end to end in seconds and says nothing about FARNet.
    Introduced in notebook 07_table1_backbones.
    """
    dataset = synthetic_name(exp.dataset) if quick else exp.dataset
    spec = DATASETS[dataset]
    changes = dict(system=exp.system, backbone=exp.backbone, loss=exp.loss, fold=exp.fold, device=device,
                   progress=progress, pretrained=pretrained, cache_dir=None if cache_dir is None else str(cache_dir),
                   eval_splits=tuple(dict.fromkeys(exp.splits + _extra_eval_splits(exp, spec))))
    if exp.train_split is not None:
        changes["train_split"] = exp.train_split
    if exp.val_split is not None:
        changes["val_split"] = exp.val_split
    if data_root is not None:
        changes["data_root"] = str(Path(data_root) / DATA_FOLDERS[exp.dataset])
    if output_dir is not None:
        changes["output_dir"] = str(output_dir)
    if quick:
        changes.update(input_size=QUICK_SIZES[exp.dataset], sigma=1.5, batch_size=8, lr=1e-3, epochs=1,
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


def device_description(device: str = "auto") -> str:
    """A human description of the device a run used, e.g. ``NVIDIA H100 80GB HBM3`` or ``CPU (2 cores, x86_64)``."""
    import torch

    from farnet_lite.engine import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return torch.cuda.get_device_name(resolved)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def git_commit() -> str:
    """The commit of the farnet-lite checkout in use (``+dirty`` with uncommitted changes), or ``unknown``."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


RESULT_FILES = ("config.json", "log.csv", "metrics_*.json", "per_landmark_*.csv", "predictions_*.csv")


def export_run(run_dir: Union[str, Path], dest: Union[str, Path], provenance: dict) -> Path:
    """Copy the small result files of ``run_dir`` (no checkpoints) and ``provenance.json`` to ``dest``.

    The copy is assembled in a temporary folder and renamed into place, so ``dest`` is either complete or absent.
    Introduced in notebook 07_table1_backbones.
    """
    from farnet_lite.outputs import write_json

    run_dir, dest = Path(run_dir), Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for pattern in RESULT_FILES:
            for path in sorted(run_dir.glob(pattern)):
                shutil.copy2(path, tmp / path.name)
        write_json(tmp / "provenance.json", provenance)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


@dataclass
class RunStatus:
    """What ``reproduce`` did with one run: ``finished`` (skipped), ``trained``, ``planned`` (dry run) or
    ``missing`` (``train_missing=False`` and no finished result)."""

    experiment: Experiment
    status: str
    run_dir: Path
    result_dir: Path
    seconds: float = 0.0


def run_experiment(exp: Experiment, config: TrainConfig, result_dir: Union[str, Path], *, quick: bool,
                   command: str, dry_run: bool = False, train_missing: bool = True) -> RunStatus:
    """Train ``config`` unless ``result_dir`` already holds it finished; resume a partial run; export the result.

    Introduced in notebook 07_table1_backbones.
    """
    from farnet_lite.train import train

    run_dir, result_dir = Path(config.output_dir), Path(result_dir)
    if (result_dir / "provenance.json").is_file() and run_finished(result_dir, config):
        return RunStatus(exp, "finished", run_dir, result_dir)
    if dry_run or not train_missing:
        return RunStatus(exp, "planned" if dry_run else "missing", run_dir, result_dir)
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    previous = epochs_done(run_dir) if (run_dir / "last.pt").is_file() else 0
    train(config, resume=True)
    seconds = time.perf_counter() - clock
    log_seconds = _log_seconds(run_dir)
    provenance = dict(
        run=result_dir.name, quick=quick, synthetic=config.spec.synthetic,
        what=f"{exp.system} / {exp.backbone} / {exp.loss} on {config.dataset} (fold {config.fold}); trained on "
             f"{config.train_split}, selected on {config.val_split or 'nothing (last epoch)'}",
        command=command, commit=git_commit(), device=device_description(config.device),
        torch=_torch_version(), python=platform.python_version(), pretrained=config.pretrained,
        input_size_hw=list(config.input_size), epochs=config.epochs, epochs_reached=epochs_done(run_dir),
        resumed_after_epoch=previous, started_utc=started.isoformat(timespec="seconds"),
        finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), wall_seconds_this_call=round(seconds, 1),
        train_seconds_all_epochs=round(log_seconds, 1))
    export_run(run_dir, result_dir, provenance)
    return RunStatus(exp, "trained", run_dir, result_dir, seconds)


def _log_seconds(run_dir: Path) -> float:
    import pandas as pd

    log = run_dir / "log.csv"
    return float(pd.read_csv(log)["seconds"].sum()) if log.is_file() else 0.0


def _torch_version() -> str:
    import torch

    return torch.__version__


def default_dirs(quick: bool) -> Tuple[Path, Path]:
    """``(runs_dir, results_dir)``: ``runs/reproduce`` and ``results``, or ``runs/quick`` and ``runs/quick/results``."""
    if quick:
        return Path("runs/quick"), Path("runs/quick/results")
    return Path("runs/reproduce"), Path("results")


def reproduce(table: str, *, quick: bool = False, data_root=None, runs_dir=None, results_dir=None, cache_dir=None,
              preset: str = "paper", epochs: Optional[int] = None, pretrained: Union[bool, str] = False,
              device: str = "auto", dry_run: bool = False, train_missing: bool = True, progress: bool = False,
              command: Optional[str] = None, log=print):
    """Run what is missing of ``table``, gather every matching result and write the table (CSV + Markdown).

    Resumable: a run whose exported result is complete is skipped; a partial one resumes from its ``last.pt``.
    ``train_missing=False`` trains nothing and only gathers what ``results_dir`` holds (e.g. the kit's committed
    ``results/``); ``dry_run`` also writes nothing.
    ``data_root``: the folder holding ``isbi2015/``, ``hand_dha/``, ``spine_aasce/`` (real data; quick mode
    writes tiny synthetic copies under ``runs_dir/data``). Returns a :class:`farnet_lite.tables.TableResult`.
    Introduced in notebook 07_table1_backbones; ``farnet reproduce <table> [--quick]`` calls it.
    """
    from farnet_lite.tables import write_table

    experiments = table_experiments(table)
    default_runs, default_results = default_dirs(quick)
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs
    results_dir = Path(results_dir) if results_dir is not None else default_results
    if quick:
        data_root = (runs_dir / "data").resolve()
        if not dry_run:
            write_quick_datasets(data_root)
        cache_dir = cache_dir if cache_dir is not None else runs_dir / "cache"
    elif data_root is None and train_missing and not dry_run:
        raise ValueError(f"{table} on the real data needs data_root (the folder holding "
                         f"{', '.join(DATA_FOLDERS.values())}); use quick=True to try it on synthetic data.")
    command = command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:])
    statuses = []
    for exp in unique_runs(experiments):
        dataset = synthetic_name(exp.dataset) if quick else exp.dataset
        config = experiment_config(exp, quick=quick, data_root=data_root, cache_dir=cache_dir, preset=preset,
                                   epochs=epochs, pretrained=pretrained, device=device, progress=progress,
                                   output_dir=runs_dir / dataset / exp.key)
        result_dir = results_dir / dataset / f"{exp.key}-{conditions_tag(config)}"
        status = run_experiment(exp, config, result_dir, quick=quick, command=command, dry_run=dry_run,
                                train_missing=train_missing)
        statuses.append(status)
        log(f"{table} | {exp.label:<22} {status.status:>8}  {status.result_dir}"
            + (f"  ({status.seconds:.0f} s)" if status.status == "trained" else ""))
    result = write_table(table, results_dir, quick=quick, write=not dry_run)
    result.runs = statuses
    return result
