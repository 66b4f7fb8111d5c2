"""What the kit's results hold, for the table notebooks: one call that runs (or, in quick mode, only plans) a table
over ``results/``, a description of the runs behind its rows, per-row errors for curves, a finished run adopted as
a result (the quick run of notebook 06), and the ISBI FARNet run that notebooks 06-09 share.

Where things live: checkpoints under ``<runs_root>/reproduce/<dataset>/<run key>`` (``farnet_lite.reproduction.reproduce``); the
small result files under ``<results>/<dataset>/<run key>-<conditions>/`` with a ``provenance.json``; the kit's
committed real runs in the clone's ``results/``. Quick mode of notebooks 07-11 trains no table run: it lists what
full mode would train and gathers what ``results/`` already holds, so every number it shows comes from a run
whose conditions are printed beside it. The real datasets are found by ``farnet_lite.datasets.real_data_root``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import pandas as pd

from farnet_lite.config import TrainConfig
from farnet_lite.datasets import DATASETS, real_data_root, real_datasets
from farnet_lite.reproduction.experiments import (Experiment, conditions_tag, epochs_done, experiment_config,
                                                  table_experiments)
from farnet_lite.reproduction.reproduce import device_description, export_run, git_commit, reproduce
from farnet_lite.reproduction.tables import TableResult, gather_table, run_errors, wide_table

PathLike = Union[str, Path]


def run_table(table: str, *, quick: bool, results: PathLike, runs_root: PathLike, data_root: Optional[PathLike] = None,
              train: bool = True, command: str = "", log=print, **conditions) -> TableResult:
    """The one ``reproduce`` call of notebooks 07-11: quick mode plans, full mode trains what is missing.

    ``quick``: a dry run -- lists the runs full mode would train (``planned``) or finds finished (``finished``)
    and gathers ``results`` without writing anything; nothing is trained. Full mode: trains the missing runs on the
    real data under ``data_root`` (the folder holding isbi2015/, hand_dha/, spine_aasce/) when ``train`` and
    ``data_root`` is given, checkpoints under ``<runs_root>/reproduce``, and writes ``<results>/tables/``.
    ``conditions``: ``preset``, ``epochs``, ``pretrained``, ``device`` of :func:`farnet_lite.reproduction.reproduce.reproduce`.
    """
    runs_dir = Path(runs_root) / "reproduce"
    if quick:
        return reproduce(table, dry_run=True, runs_dir=runs_dir, results_dir=results, command=command, log=log,
                         **conditions)
    return reproduce(table, data_root=data_root, runs_dir=runs_dir, results_dir=results, progress=True, log=log,
                     train_missing=train and data_root is not None, command=command, **conditions)


# ------------------------------------------------------------------------------------- what a table's runs are
@dataclass
class RowRun:
    """One kit row of a gathered table with its run: the folder, how it ran, and its score on the table's split."""

    row: str
    run: str
    conditions: str
    metric: str
    value: float


def table_runs(frame: pd.DataFrame) -> List[RowRun]:
    """The kit rows of a gathered table (``farnet_lite.reproduction.tables.gather_table``) that have a number, first metric and
    split of each row; literature rows and rows without a run are left out."""
    ours = frame[(frame["kind"] != "literature") & frame["ours"].notna()]
    first = ours.drop_duplicates("row")
    return [RowRun(line.row, line.run, line.conditions, line.metric, float(line.ours))
            for line in first.itertuples(index=False)]


def describe_table(frame: pd.DataFrame) -> str:
    """Which rows of a gathered table have a number of ours, from which run under which conditions, and which
    rows have none yet -- the text each table notebook prints above its table."""
    filled = table_runs(frame)
    kit_rows = list(dict.fromkeys(frame.loc[frame["kind"] != "literature", "row"]))
    done = {r.row for r in filled}
    lines = [f"{len(done)} of {len(kit_rows)} rows of ours have a number:"]
    lines += [f"  {r.row}: {r.metric} {r.value:.4g} -- {r.conditions}" for r in filled]
    missing: Dict[str, List[str]] = {}                # "FARNet (5-fold CV), fold 2" -> under "FARNet (5-fold CV)"
    for row in (row for row in kit_rows if row not in done):
        name, _, fold = row.partition(", fold ")
        missing.setdefault(name, []).append(fold)
    named = [name + (f" (folds {', '.join(folds)})" if all(folds) else "") for name, folds in missing.items()]
    lines.append("no run yet: " + (", ".join(named) if named else "none"))
    return "\n".join(lines)


def styled(frame: pd.DataFrame, caption: str, precision: int = 2):
    """``wide_table(frame)`` styled for a notebook: ``precision`` digits, n/a for missing cells, a caption."""
    return wide_table(frame).style.format(precision=precision, na_rep="n/a").set_caption(caption)


def row_errors(frame: pd.DataFrame, split: str, data_root: Optional[PathLike] = None, log=print
               ) -> Dict[str, np.ndarray]:
    """``{row: (M, K) errors}`` for every row of a gathered table whose run predicted ``split``, re-scored by
    :func:`farnet_lite.reproduction.tables.run_errors` (the unit of the dataset: mm on ISBI and the hand).

    ``data_root`` is the dataset folder (e.g. the real ``isbi2015/``) when the runs were made on another machine.
    Rows without predictions are left out; rows whose ground truth is not on this machine are left out with a
    line through ``log`` saying why.
    """
    errors = {}
    lines = frame.loc[frame["split"] == split, ["row", "run"]].drop_duplicates("row")
    for row, run in lines.itertuples(index=False):
        if not (isinstance(run, str) and run and (Path(run) / f"predictions_{split}.csv").is_file()):
            continue
        try:
            errors[row] = run_errors(run, split, data_root=data_root).errors          # (M, K)
        except (FileNotFoundError, ValueError) as err:
            log(f"{row}: not re-scored ({err})")
    return errors


# --------------------------------------------------------------------------- runs made outside reproduce
def adopt_run(run_dir: PathLike, results_dir: PathLike, command: str) -> Path:
    """Export a finished run made outside ``reproduce`` (notebook 06's quick run, say) as a result that
    ``gather_table`` finds: ``<results_dir>/<dataset>/<run key>-<conditions>/`` with a ``provenance.json``.

    The run folder must hold ``config.json``, ``log.csv`` and at least one ``predictions_<split>.csv``. Returns
    the result folder; adopting the same run again replaces it.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() or not any(run_dir.glob("predictions_*.csv")):
        raise FileNotFoundError(f"{run_dir} holds no config.json with predictions_<split>.csv; train and evaluate "
                                f"the run first.")
    config = TrainConfig.load(run_dir / "config.json")
    exp = Experiment("", "", real_name(config.dataset), config.system, config.backbone, config.loss, config.fold)
    dest = Path(results_dir) / config.dataset / f"{exp.key}-{conditions_tag(config)}"
    log = run_dir / "log.csv"
    provenance = dict(
        run=dest.name, quick=True, synthetic=config.spec.synthetic, adopted_from=str(run_dir), command=command,
        what=f"{config.system} / {config.backbone} / {config.loss} on {config.dataset}; trained on "
             f"{config.train_split}, selected on {config.val_split or 'nothing (last epoch)'}",
        commit=git_commit(), device=device_description(config.device),
        pretrained=config.pretrained, input_size_hw=list(config.input_size), epochs=config.epochs,
        epochs_reached=epochs_done(run_dir), adopted_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds_all_epochs=round(float(pd.read_csv(log)["seconds"].sum()), 1) if log.is_file() else None)
    return export_run(run_dir, dest, provenance)


def real_name(dataset: str) -> str:
    """The public dataset a (possibly synthetic) dataset name stands for: ``synthetic-isbi`` -> ``isbi2015``."""
    for name in real_datasets():
        if dataset in (name, DATASETS[name].synthetic_name):
            return name
    raise ValueError(f"{dataset!r} is not one of the paper's datasets ({', '.join(real_datasets())}) or their "
                     f"synthetic stand-ins.")


def run_summary(run_dir: PathLike, split: str) -> Optional[dict]:
    """``metrics_<split>.json`` of a run or result folder, or None when the split was not scored."""
    path = Path(run_dir) / f"metrics_{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ------------------------------------------------------------------------- the run notebooks 06-09 share
def paper_run_config(runs_root: PathLike, data_root: Optional[PathLike] = None, preset: str = "paper",
                     **conditions) -> TrainConfig:
    """The config of FARNet on the real ISBI 2015 (MSFA+FR, DenseNet-121, EWC: Table 1's DenseNet-121 row, Table 2's
    MSFA+FR+EWC row and Table 3), with its checkpoints where ``reproduce`` keeps them:
    ``<runs_root>/reproduce/isbi2015/msfa_fr-densenet121-ewc``.

    Notebook 06 trains it in full mode; notebooks 07-09 then find it (``run_table``: nothing left to train, it is
    evaluated and exported). ``data_root``: where notebook 00 put the data (its ``isbi2015/`` is found with
    ``real_data_root``, else ``../shared/data``). ``conditions``: ``epochs``, ``pretrained`` (default: the preset's
    ImageNet weights), ``device``, ``cache_dir``, ``progress``.
    """
    isbi = real_data_root("isbi2015", data_root)
    if isbi is None:
        raise FileNotFoundError(f"No real ISBI 2015 copy in {data_root}/isbi2015 or ../shared/data/isbi2015; run "
                                f"notebook 00 in full mode to download it.")
    (exp,) = table_experiments("table3")
    return experiment_config(exp, data_root=isbi.parent, preset=preset,
                             output_dir=Path(runs_root) / "reproduce" / exp.dataset / exp.key, **conditions)
