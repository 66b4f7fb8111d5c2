"""``reproduce``: run what is missing of a paper table, record where and how each run ran, write the table.

The tables as data (which runs, their configs and folder names) are ``farnet_lite.reproduction.experiments``; gathering finished
runs into a table is ``farnet_lite.reproduction.tables``. This module sits above both: it trains (``farnet_lite.engine.train``),
exports each run with its provenance and then asks ``tables`` to write the table.

Where a run lives (``reproduce``): checkpoints under ``runs_dir/<dataset>/<run key>`` (large, git-ignored); the
small files that make a result (config, log, metrics, per-landmark errors, predictions, ``provenance.json`` with
command, commit, device and wall time) are copied to ``results_dir/<dataset>/<run key>-<conditions>``, which is
what ``farnet_lite.reproduction.tables`` gathers. Quick mode trains on tiny synthetic datasets for one epoch and keeps
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
from typing import Optional, Tuple, Union

import pandas as pd
import torch

from farnet_lite.config import TrainConfig
from farnet_lite.data.errors import DatasetError
from farnet_lite.datasets import DATASETS, real_datasets
from farnet_lite.engine.outputs import write_json
from farnet_lite.engine.runtime import resolve_device
from farnet_lite.engine.train import train
from farnet_lite.reproduction.experiments import (Experiment, conditions_tag, epochs_done, experiment_config,
                                                  run_finished, synthetic_name, table_experiments, unique_runs,
                                                  write_quick_datasets)
from farnet_lite.reproduction.mean_shape import write_mean_shape_floor
from farnet_lite.reproduction.tables import FLOOR_TABLES, write_table


# ------------------------------------------------------------------------------------------------- provenance
def device_description(device: str = "auto") -> str:
    """A human description of the device a run used, e.g. ``NVIDIA H100 80GB HBM3`` or ``CPU (2 cores, x86_64)``."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return torch.cuda.get_device_name(resolved)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def git_commit() -> str:
    """The commit of the farnet-lite checkout in use (``+dirty`` with uncommitted changes outside ``results/``,
    which reproduce itself rewrites), or ``unknown``."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+dirty" if dirty else "")


RESULT_FILES = ("config.json", "log.csv", "selection.json", "metrics_*.json", "per_landmark_*.csv",
                "predictions_*.csv")
"""What ``export_run`` copies from a run folder, and from its ``last_epoch/`` sub-folder when there is one."""


def export_run(run_dir: Union[str, Path], dest: Union[str, Path], provenance: dict) -> Path:
    """Copy the small result files of ``run_dir`` (no checkpoints) and ``provenance.json`` to ``dest``.

    The copy is assembled in a temporary folder and renamed into place, so ``dest`` is either complete or absent.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for sub in ("", "last_epoch"):
            if not (run_dir / sub).is_dir():
                continue
            (tmp / sub).mkdir(exist_ok=True)
            for pattern in RESULT_FILES:
                for path in sorted((run_dir / sub).glob(pattern)):
                    shutil.copy2(path, tmp / sub / path.name)
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
    """Train ``config`` unless ``result_dir`` already holds it finished; resume a partial run; export the result."""
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
        torch=torch.__version__, python=platform.python_version(), pretrained=config.pretrained,
        input_size_hw=list(config.input_size), epochs=config.epochs, epochs_reached=epochs_done(run_dir),
        resumed_after_epoch=previous, started_utc=started.isoformat(timespec="seconds"),
        finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"), wall_seconds_this_call=round(seconds, 1),
        train_seconds_all_epochs=round(log_seconds, 1))
    export_run(run_dir, result_dir, provenance)
    return RunStatus(exp, "trained", run_dir, result_dir, seconds)


def _log_seconds(run_dir: Path) -> float:
    log = run_dir / "log.csv"
    return float(pd.read_csv(log)["seconds"].sum()) if log.is_file() else 0.0


def default_dirs(quick: bool) -> Tuple[Path, Path]:
    """``(runs_dir, results_dir)``: ``runs/reproduce`` and ``results``, or ``runs/quick`` and ``runs/quick/results``."""
    if quick:
        return Path("runs/quick"), Path("runs/quick/results")
    return Path("runs/reproduce"), Path("results")


def reproduce(table: str, *, quick: bool = False, data_root=None, runs_dir=None, results_dir=None, cache_dir=None,
              preset: str = "paper", epochs: Optional[int] = None, pretrained: Union[bool, str, None] = None,
              device: str = "auto", dry_run: bool = False, train_missing: bool = True, progress: bool = False,
              command: Optional[str] = None, log=print):
    """Run what is missing of ``table``, gather every matching result and write the table (CSV + Markdown).

    Resumable: a run whose exported result is complete is skipped; a partial one resumes from its ``last.pt``.
    ``train_missing=False`` trains nothing and only gathers what ``results_dir`` holds (e.g. the kit's committed
    ``results/``); ``dry_run`` also writes nothing.
    ``data_root``: the folder holding ``isbi2015/``, ``hand_dha/``, ``spine_aasce/`` (real data; quick mode
    writes tiny synthetic copies under ``runs_dir/data``). Returns a :class:`farnet_lite.reproduction.tables.TableResult`.
    """
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
        folders = ", ".join(DATASETS[name].folder for name in real_datasets())
        raise ValueError(f"{table} on the real data needs data_root (the folder holding {folders}); use "
                         f"quick=True to try it on synthetic data.")
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
    if table in FLOOR_TABLES and not dry_run and (quick or data_root is not None):
        try:
            write_mean_shape_floor(table, results_dir, data_root=data_root, quick=quick, cache_dir=cache_dir,
                                   provenance=dict(command=command, commit=git_commit(), quick=quick,
                                                   computed_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                                   what="mean training landmark positions (normalised image "
                                                        "coordinates) scored on the table's splits; no network"))
        except DatasetError as error:  # e.g. a partial copy of a dataset: the table is written without the floor
            log(f"{table} | mean-shape floor not computed: {error}")
    result = write_table(table, results_dir, quick=quick, write=not dry_run)
    result.runs = statuses
    return result
