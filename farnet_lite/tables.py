"""Our numbers beside the paper's: gather finished runs into Tables 1-5 and write them as CSV and Markdown.

Introduced in notebook 07_table1_backbones (and used by 08-11 and ``farnet reproduce``).

``gather_table(table, results_dir)`` looks at every run folder under ``results_dir`` (a ``config.json`` with
metrics beside it), matches it to the table's experiments by identity (dataset, system, backbone, loss, training
split, fold -- not by input size or epochs) and reads its ``metrics_<split>.json``. When several runs match one
cell, the one closest to the paper's conditions is used: ImageNet weights first, then a finished schedule, then
the larger input, then more epochs -- never the better score. Cross-validation rows pool their folds: MRE, SDR
and the spine MSE weighted by the number of test images, the SD from the pooled second moment (exact for the
population SD of ``metrics.mre_sd``), the spine Pearson rho as the mean over folds (it cannot be pooled from
summaries); a pooled value is only shown when every fold is done.

The paper's numbers live in ``farnet_lite/paper/table<N>.csv`` (``row, split, metric, value, kind, source, note``);
an empty ``value`` is a cell that has not been transcribed, shown as "n/a" and never filled by guesswork.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import pandas as pd

from farnet_lite.experiments import Experiment, epochs_done, synthetic_name, table_experiments

PAPER_DIR = Path(__file__).with_name("paper")

METRICS = {
    "isbi2015": (("mre", "MRE (mm)"), ("sd", "SD (mm)"), ("sdr_2", "SDR 2 mm (%)"), ("sdr_2.5", "SDR 2.5 mm (%)"),
                 ("sdr_3", "SDR 3 mm (%)"), ("sdr_4", "SDR 4 mm (%)")),
    "hand": (("mre", "MRE (mm)"), ("sd", "SD (mm)"), ("sdr_2", "SDR 2 mm (%)"), ("sdr_4", "SDR 4 mm (%)"),
             ("sdr_10", "SDR 10 mm (%)")),
    "spine": (("mse_fraction", "MSE (fraction of image)"), ("pearson", "Pearson ρ")),
}
"""The metrics shown per dataset, ``(key in metrics_<split>.json, column title)``. Lower is better for MRE, SD and
MSE; higher for SDR and Pearson."""

SPLIT_TITLES = {"test1": "Test1", "test2": "Test2", "test": "test folds", "cv-val": "CV folds"}
TITLES = {
    "table1": "Table 1 · FARNet with six ImageNet backbones, ISBI 2015 Test1",
    "table2": "Table 2 · Ablation of the decoder and the loss, ISBI 2015 Test1",
    "table3": "Table 3 · FARNet on the ISBI 2015 cephalograms, Test1 and Test2",
    "table4": "Table 4 · FARNet on the Digital Hand Atlas, 3-fold cross-validation (Payer et al.)",
    "table5": "Table 5 · FARNet on the AASCE spine radiographs, 5-fold CV and test set",
}


def load_paper_numbers(table: str) -> pd.DataFrame:
    """The paper's numbers of ``table`` as a frame ``row, split, metric, value, kind, source, note``.

    ``value`` is NaN where the cell has not been transcribed. Introduced in notebook 07_table1_backbones.
    """
    path = PAPER_DIR / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"No paper numbers for {table!r} at {path}; the package data is incomplete, "
                                f"reinstall farnet-lite.")
    frame = pd.read_csv(path, dtype={"row": str, "split": str, "metric": str}, keep_default_na=False,
                        na_values={"value": [""]})
    frame["value"] = pd.to_numeric(frame["value"], errors="raise")
    return frame


# -------------------------------------------------------------------------------------------- finding the runs
@dataclass
class FoundRun:
    """A finished (or stopped) run folder under a results directory, with what identifies it."""

    path: Path
    config: dict
    provenance: dict
    epochs_done: int

    @property
    def preference(self) -> tuple:
        """Sort key: closest to the paper's conditions first (pretrained, finished, input size, epochs)."""
        h, w = self.config.get("input_size", (0, 0))
        return (self.config.get("pretrained", False) is not False, self.epochs_done >= self.config.get("epochs", 0),
                h * w, self.epochs_done)

    def conditions(self) -> str:
        """One line on how the run was obtained: input size, epochs, weights, batch, device; synthetic runs say so."""
        c = self.config
        h, w = c.get("input_size", ("?", "?"))
        init = "random init" if c.get("pretrained", False) is False else "ImageNet init"
        device = self.provenance.get("device") or "device not recorded"
        text = (f"{h}×{w}, {self.epochs_done}/{c.get('epochs', '?')} epochs, {init}, batch {c.get('batch_size', '?')}, "
                f"{device}")
        if str(c.get("dataset", "")).startswith("synthetic"):
            text += ", SYNTHETIC quick run (not a result)"
        return text


def find_runs(results_dir: Union[str, Path]) -> List[FoundRun]:
    """Every run folder below ``results_dir`` (a ``config.json`` beside at least one predictions or metrics file).

    Introduced in notebook 07_table1_backbones.
    """
    found = []
    root = Path(results_dir)
    if not root.is_dir():
        return found
    for config_path in sorted(root.rglob("config.json")):
        folder = config_path.parent
        if folder.name.startswith(".") or not any(folder.glob("predictions_*.csv")):
            continue
        provenance_path = folder / "provenance.json"
        provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
        found.append(FoundRun(folder, json.loads(config_path.read_text()), provenance, epochs_done(folder)))
    return found


def _identity(config: dict) -> tuple:
    from farnet_lite.config import DATASETS

    spec = DATASETS[config["dataset"]]
    fold = config.get("fold", 1) if spec.layout in ("hand", "spine") else None
    return (config["dataset"], config.get("system"), config.get("backbone"), config.get("loss"),
            config.get("train_split", spec.train_split), fold)


def experiment_identity(exp: Experiment, quick: bool = False) -> tuple:
    """What a run must match to fill ``exp``'s cells (see the module docstring): the identity of its config."""
    dataset = synthetic_name(exp.dataset) if quick else exp.dataset
    fields = dict(dataset=dataset, system=exp.system, backbone=exp.backbone, loss=exp.loss, fold=exp.fold)
    if exp.train_split is not None:
        fields["train_split"] = exp.train_split
    return _identity(fields)


def best_run(exp: Experiment, runs: List[FoundRun], quick: bool = False) -> Optional[FoundRun]:
    """The run that fills ``exp``'s cells (see the module docstring), or None."""
    identity = experiment_identity(exp, quick)
    matches = [r for r in runs if _identity(r.config) == identity]
    return max(matches, key=lambda r: r.preference) if matches else None


@dataclass
class RunErrors:
    """Per-image, per-landmark errors of one run on one split, with what is needed to plot them."""

    ids: List[str]
    pred: np.ndarray          # (N, K, 2) (x, y) original pixels
    truth: np.ndarray         # (N, K, 2) (x, y) original pixels, NaN where unlabelled
    sizes: np.ndarray         # (N, 2) (H, W) of each original image
    errors: Optional[np.ndarray]  # (M, K) over the M labelled images, in ``summary["unit"]``
    summary: dict


def run_errors(run_dir: Union[str, Path], split: str, data_root=None) -> RunErrors:
    """Re-score a run's ``predictions_<split>.csv`` against the dataset: per-image errors for box plots and curves.

    ``data_root`` overrides the dataset folder saved in the run's ``config.json`` (needed when the run was made on
    another machine). Images are not decoded (sizes come from the file headers). Introduced in notebook
    07_table1_backbones.
    """
    from farnet_lite.config import TrainConfig
    from farnet_lite.evaluate import score_predictions
    from farnet_lite.outputs import read_predictions
    from farnet_lite.splits import open_split

    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    if data_root is not None:
        config = TrainConfig.from_dict(dict(config.to_dict(), data_root=str(data_root)))
    path = run_dir / f"predictions_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; evaluate the run on {split!r} first "
                                f"(farnet evaluate <best.pt> --split {split}).")
    predictions = read_predictions(path)
    dataset = open_split(config, split)
    index = {image_id: i for i, image_id in enumerate(dataset.ids)}
    unknown = [i for i in predictions if i not in index]
    if unknown:
        raise ValueError(f"{path} has predictions for {len(unknown)} images that are not in the {split} split under "
                         f"{dataset.root} (e.g. {unknown[0]!r}); pass the data_root the run was made on.")
    ids = list(predictions)
    k = config.num_landmarks
    truth = np.stack([dataset.landmarks(index[i]) if dataset.landmarks(index[i]) is not None
                      else np.full((k, 2), np.nan) for i in ids])
    sizes = np.array([dataset.image_size(index[i]) for i in ids], dtype=np.float64)
    pred = np.stack([predictions[i] for i in ids])
    summary, errors, _ = score_predictions(pred, truth, sizes, config.spec)
    return RunErrors(ids, pred, truth, sizes, errors, summary)


def _read_metrics(run: FoundRun, split: str) -> Optional[dict]:
    path = run.path / f"metrics_{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pool_folds(summaries: List[dict], metric: str) -> float:
    """Pool one metric over cross-validation folds (see the module docstring). Introduced in notebook 10_table4_hand."""
    n = np.array([s["labelled_images"] for s in summaries], dtype=np.float64)
    values = np.array([s.get(metric, math.nan) for s in summaries], dtype=np.float64)
    if metric == "pearson":
        return float(values.mean())
    if metric == "sd":
        means = np.array([s["mre"] for s in summaries], dtype=np.float64)
        second = np.sum(n * (values ** 2 + means ** 2)) / n.sum()
        pooled_mean = np.sum(n * means) / n.sum()
        return float(math.sqrt(max(second - pooled_mean ** 2, 0.0)))
    return float(np.sum(n * values) / n.sum())


# ------------------------------------------------------------------------------------------------ the tables
@dataclass
class TableResult:
    """A gathered table: the long frame (one line per row x split x metric), its files and the runs behind it."""

    table: str
    frame: pd.DataFrame
    markdown: str
    csv_path: Optional[Path] = None
    md_path: Optional[Path] = None
    runs: list = field(default_factory=list)

    def wide(self) -> pd.DataFrame:
        return wide_table(self.frame)


def gather_table(table: str, results_dir: Union[str, Path], quick: bool = False) -> pd.DataFrame:
    """The long frame of ``table``: ``table, row, split, metric, title, ours, paper, diff, run, conditions``.

    ``ours`` is NaN where no run has scored the cell (``conditions`` says why); ``diff`` = ours − paper.
    Introduced in notebook 07_table1_backbones.
    """
    experiments = table_experiments(table)
    runs = find_runs(results_dir)
    paper = load_paper_numbers(table).set_index(["row", "split", "metric"])["value"]
    lines = []
    rows: Dict[str, List[Experiment]] = {}
    for exp in experiments:
        rows.setdefault(exp.row, []).append(exp)
    for row, members in rows.items():
        for split in members[0].splits:
            found = [best_run(exp, runs, quick) for exp in members]
            summaries = [None if r is None else _read_metrics(r, split) for r in found]
            for metric, title in METRICS[members[0].dataset]:
                if len(members) > 1:           # cross-validation: the pooled row first, then one row per fold
                    done = [s for s in summaries if s is not None]
                    ours = pool_folds(done, metric) if len(done) == len(members) else math.nan
                    conditions = "; ".join(sorted({r.conditions() for r in found if r is not None})) or "no run yet"
                    note = f"pooled over {len(members)} folds" if len(done) == len(members) else \
                        f"{len(done)} of {len(members)} folds done"
                    lines.append(_line(table, row, split, metric, title, ours, paper, "; ".join(
                        str(r.path) for r in found if r is not None), f"{note}; {conditions}"))
                for exp, run, summary in zip(members, found, summaries):
                    label = exp.label if len(members) > 1 else row
                    ours = math.nan if summary is None else float(summary.get(metric, math.nan))
                    lines.append(_line(table, label, split, metric, title, ours, paper,
                                       "" if run is None else str(run.path), _conditions(run, split, summary)))
    return pd.DataFrame(lines)


def _conditions(run: Optional[FoundRun], split: str, summary: Optional[dict]) -> str:
    if run is None:
        return "no run yet"
    if summary is None:
        withheld = (run.path / f"predictions_{split}.csv").is_file()
        return (f"predictions written, labels withheld ({split}); " if withheld else f"{split} not evaluated; ") + \
            run.conditions()
    return run.conditions()


def _line(table, row, split, metric, title, ours, paper, run, conditions) -> dict:
    reference = paper.get((row, split, metric), math.nan)
    return dict(table=table, row=row, split=split, metric=metric, title=title, ours=ours, paper=reference,
                diff=ours - reference, run=run, conditions=conditions)


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (row, split), columns (metric title, ours | paper | Δ), plus the conditions.

    Introduced in notebook 07_table1_backbones; style it with ``.style.format(precision=2, na_rep="n/a")``.
    """
    order = list(dict.fromkeys(frame["title"]))
    index = list(dict.fromkeys(zip(frame["row"], frame["split"])))
    values = frame.set_index(["row", "split", "title"])[["ours", "paper", "diff"]].rename(columns={"diff": "Δ"})
    wide = values.unstack("title").swaplevel(axis=1)
    wide = wide.reindex(columns=pd.MultiIndex.from_product([order, ["ours", "paper", "Δ"]]),
                        index=pd.MultiIndex.from_tuples(index, names=["row", "split"]))
    conditions = frame.drop_duplicates(["row", "split"]).set_index(["row", "split"])["conditions"]
    wide[("conditions", "")] = conditions.reindex(wide.index)
    return wide


def _cell(value: float, digits: int) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def table_markdown(table: str, frame: pd.DataFrame, quick: bool = False) -> str:
    """The Markdown of a gathered table: ``ours / paper / Δ`` per metric, and how ours were obtained."""
    titles = list(dict.fromkeys(frame["title"]))
    lines = [f"# {TITLES[table]}", ""]
    if quick:
        lines += ["**Quick mode: tiny synthetic datasets, one epoch from random initialisation. These numbers test "
                  "the pipeline; they are not results and say nothing about FARNet.**", ""]
    lines += ["Each cell: ours / paper / Δ (ours − paper). n/a: no number (no run yet, labels withheld, or the "
              f"paper's value not transcribed in farnet_lite/paper/{table}.csv).", "",
              "| Row | Split | " + " | ".join(titles) + " | How ours was obtained |",
              "|---|---|" + "---|" * len(titles) + "---|"]
    for (row, split), group in frame.groupby(["row", "split"], sort=False):
        by_title = group.set_index("title")
        cells = []
        for title in titles:
            digits = 4 if "fraction" in title else 3 if "Pearson" in title else 2
            o, p, d = by_title.loc[title, ["ours", "paper", "diff"]]
            cells.append(f"{_cell(o, digits)} / {_cell(p, digits)} / {_cell(d, digits)}")
        conditions = group["conditions"].iloc[0].replace("|", "/")
        lines.append(f"| {row} | {SPLIT_TITLES.get(split, split)} | " + " | ".join(cells) + f" | {conditions} |")
    runs = sorted({r for value in frame["run"] for r in str(value).split("; ") if r})
    lines += ["", "Runs: " + (", ".join(f"`{r}`" for r in runs) if runs else "none yet."), ""]
    return "\n".join(lines)


def _relative_runs(value: str, base: Path) -> str:
    return "; ".join(os.path.relpath(p, base) for p in str(value).split("; ") if p)


def write_table(table: str, results_dir: Union[str, Path], quick: bool = False, write: bool = True) -> TableResult:
    """Gather ``table`` from ``results_dir`` and write ``results_dir/tables/<table>.csv`` and ``.md``.

    ``result.frame`` names runs as paths usable from the current directory; the written files name them relative
    to the folder that holds ``results_dir`` (``results/isbi2015/...``), so they do not depend on where this ran.

    Introduced in notebook 07_table1_backbones.
    """
    from farnet_lite.outputs import atomic_write_text, write_frame

    frame = gather_table(table, results_dir, quick=quick)
    # the files name runs relative to the folder that holds results_dir (results/isbi2015/...), whatever the cwd
    written = frame.assign(run=[_relative_runs(value, Path(results_dir).parent) for value in frame["run"]])
    markdown = table_markdown(table, written, quick=quick)
    result = TableResult(table, frame, markdown)
    if write:
        out = Path(results_dir) / "tables"
        result.csv_path = write_frame(out / f"{table}.csv", written, index=False)
        result.md_path = atomic_write_text(out / f"{table}.md", markdown)
    return result
