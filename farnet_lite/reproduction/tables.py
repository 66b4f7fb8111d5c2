"""Our numbers beside the paper's: gather finished runs into Tables 1-5 and write them as CSV and Markdown.

A gathered table follows the paper (``farnet_lite.reproduction.paper``: one CSV line per printed row): the printed rows in the
printed order with the printed names -- other methods the paper quotes (``literature``: the paper's number only) and
the paper's own rows, whose "ours" comes from the runs of the ``Experiment`` named in the CSV's ``kit_row`` -- then
the kit's rows the paper has none for (cross-validation folds, ...). Metric columns: the paper's, in its order, then
the ones only we report (our SD on ISBI: the paper gives no SD in Tables 1-3).

``gather_table`` matches every run folder under ``results_dir`` (a ``config.json`` beside predictions) to the
table's experiments by identity (dataset, system, backbone, loss, training split, fold -- not input size or epochs).
Of several runs of one cell it takes the one under the table's shared conditions (:func:`shared_conditions`: the
weights and input size most of its rows have a run of), then the closest to the paper's: ImageNet weights, a
finished schedule, the larger input, more epochs -- never the better score. A run that selected its checkpoint
(ISBI: on Test1) also shows its last epoch (``last_epoch/``), labelled. Cross-validation rows pool their folds
(:func:`pool_folds`) once every fold is done.
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

from farnet_lite.config import TrainConfig
from farnet_lite.engine.outputs import atomic_write_text, read_predictions, write_frame
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.splits import open_split
from farnet_lite.reproduction.experiments import Experiment, table_experiments
from farnet_lite.reproduction.paper import load_paper_numbers, paper_table, table_columns
from farnet_lite.reproduction.runs import FoundRun, best_run, find_runs, shared_conditions

FLOOR_FOLDER, FLOOR_TABLES = "mean-shape", ("table3", "table4", "table5")
"""``<results>/<dataset>/mean-shape/metrics_<split>.json``: the no-learning floor (every landmark at its mean training
position), shown as an "ours only" row of Tables 3-5 when present."""
SPLIT_TITLES = {"test1": "Test1", "test2": "Test2", "test": "test", "test50": "test (50 images)", "cv-val": "CV folds"}
TITLES = {
    "table1": "Table 1 · FARNet with six ImageNet backbones, ISBI 2015 Test1",
    "table2": "Table 2 · Ablation of the decoder and the loss, ISBI 2015 Test1",
    "table3": "Table 3 · FARNet and prior methods on the ISBI 2015 cephalograms, Test1 and Test2",
    "table4": "Table 4 · FARNet and prior methods on the Digital Hand Atlas, 3-fold cross-validation (Payer et al.)",
    "table5": "Table 5 · FARNet and prior methods on the AASCE spine radiographs",
}


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
    another machine). Images are not decoded (sizes come from the file headers).
    """
    run_dir = Path(run_dir)
    config = TrainConfig.load(run_dir / "config.json")
    if data_root is not None:
        config = TrainConfig.from_dict(dict(config.to_dict(), data_root=str(data_root)))
    path = run_dir / f"predictions_{split}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; evaluate the run on {split!r} first "
                                f"(farnet evaluate <best.pt> --eval-splits {split}).")
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
    """Pool one metric over cross-validation folds: MRE, SDR and MSE weighted by the number of images, the SD from
    the pooled second moment (exact for the population SD of ``metrics.mre_sd``), Pearson's rho as the mean over
    folds (it cannot be pooled from summaries)."""
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
    """The long frame of ``table``, one line per row x split x metric, rows in the paper's order (module docstring).

    Columns ``table, row, kit_row, kind, split, metric, title, ours, paper, printed, diff, input_size,
    paper_input_size, run, conditions``. ``row`` is the printed name (the kit's label for rows the paper does not
    have); ``kit_row`` the ``Experiment`` label behind the line (``""`` for literature); ``ours`` is NaN where no
    run has scored the cell (``conditions`` says why); ``paper`` / ``printed`` the paper's cell (``printed`` is
    ``""`` where the paper has no such cell, ``"-"`` where it prints "-"); ``diff`` = ours − paper.
    """
    experiments = table_experiments(table)
    columns = table_columns(table, experiments[0].dataset)
    runs = find_runs(results_dir)
    prefer = shared_conditions(experiments, runs, quick)
    paper = load_paper_numbers(table)
    printed = paper_table(table).set_index("row")
    groups: Dict[str, List[Experiment]] = {}
    for exp in experiments:
        groups.setdefault(exp.row, []).append(exp)
    lines = []
    for row in printed.index:
        kit_row, kind = printed.loc[row, "kit_row"], printed.loc[row, "kind"]
        cells = paper[paper.row == row].set_index(["split", "metric"])
        if not kit_row:
            lines += _literature_lines(table, row, cells, columns)
            continue
        if kit_row not in groups:
            raise ValueError(f"farnet_lite/reproduction/paper/{table}.csv links its row {row!r} to the kit row {kit_row!r}, "
                             f"which {table} does not have; set kit_row to one of {', '.join(groups) or 'none'}.")
        lines += _kit_lines(table, row, kind, groups.pop(kit_row), cells, columns, runs, quick, prefer)
    for kit_row, members in groups.items():                  # the kit's rows the paper has no row for
        lines += _kit_lines(table, kit_row, "ours only", members, None, columns, runs, quick, prefer)
    lines += _floor_lines(table, experiments, Path(results_dir), columns)
    frame = pd.DataFrame(lines)
    sizes = printed["input_size"] if "input_size" in printed else pd.Series(dtype=str)
    frame["paper_input_size"] = [sizes.get(row, "") if kind != "ours only" else ""
                                 for row, kind in zip(frame["row"], frame["kind"])]
    return frame


def _literature_lines(table: str, row: str, cells: pd.DataFrame, columns) -> List[dict]:
    """The lines of another method the paper quotes: the paper's cells only, nothing of ours."""
    lines = []
    for split in dict.fromkeys(cells.index.get_level_values("split")):
        for metric, title, in_paper in columns:
            if in_paper:
                cell = cells.loc[(split, metric)]
                lines.append(dict(table=table, row=row, kit_row="", kind="literature", split=split, metric=metric,
                                  title=title, ours=math.nan, paper=cell["value"], printed=cell["printed"],
                                  diff=math.nan, input_size="", run="",
                                  conditions="quoted by the paper; not run by the kit"))
    return lines


def _kit_lines(table, row, kind, members: List[Experiment], cells: Optional[pd.DataFrame], columns, runs,
               quick, prefer=None) -> List[dict]:
    """The lines of one kit row (its folds pooled into it, then one line per fold), beside the paper's ``cells``."""
    lines = []
    found = [best_run(exp, runs, quick, prefer) for exp in members]
    paper_splits = [] if cells is None else list(dict.fromkeys(cells.index.get_level_values("split")))
    for split in dict.fromkeys(paper_splits + list(members[0].splits)):   # every paper cell, every split we score
        summaries = [None if r is None else _read_metrics(r, split) for r in found]
        size = next((_input_size(r) for r in found if r is not None), "")
        for metric, title, _ in columns:
            has = cells is not None and (split, metric) in cells.index
            value, printed = (cells.loc[(split, metric), "value"], cells.loc[(split, metric), "printed"]) \
                if has else (math.nan, "")
            head = dict(table=table, row=row, kit_row=members[0].row, kind=kind, split=split, metric=metric,
                        title=title, paper=value, printed=printed, input_size=size)
            if len(members) > 1:           # cross-validation: the pooled row first, then one row per fold
                done = [s for s in summaries if s is not None]
                ours = pool_folds(done, metric) if len(done) == len(members) else math.nan
                conditions = "; ".join(sorted({r.conditions() for r in found if r is not None})) or "no run yet"
                note = f"pooled over {len(members)} folds" if len(done) == len(members) else \
                    f"{len(done)} of {len(members)} folds done"
                lines.append(dict(head, ours=ours, diff=ours - value, conditions=f"{note}; {conditions}",
                                  run="; ".join(str(r.path) for r in found if r is not None)))
            for exp, run, summary in zip(members, found, summaries):
                ours = math.nan if summary is None else float(summary.get(metric, math.nan))
                line = dict(head, ours=ours, diff=ours - value, run="" if run is None else str(run.path),
                            conditions=_conditions(run, split, summary))
                if len(members) > 1:       # a fold: the kit's label, no paper cell, its own input size
                    line.update(row=exp.label, kit_row=exp.label, kind="ours only", paper=math.nan, printed="",
                                diff=math.nan, input_size="" if run is None else _input_size(run))
                lines.append(line)
            last = found[0].path / "last_epoch" / f"metrics_{split}.json" if len(found) == 1 and found[0] else None
            if last is not None and last.is_file():   # the run's last epoch, beside the selected checkpoint
                ours = float(json.loads(last.read_text()).get(metric, math.nan))
                lines.append(dict(head, row=f"{row} · last epoch", ours=ours, diff=ours - value, run=str(last.parent),
                                  conditions="last epoch instead of the selected checkpoint; "
                                             + found[0].conditions(False)))
    return lines


def _floor_lines(table: str, experiments: List[Experiment], results_dir: Path, columns) -> List[dict]:
    """The no-learning floor of the table's dataset (:data:`FLOOR_FOLDER`), on every split it was scored on."""
    folder, lines = results_dir / experiments[0].dataset / FLOOR_FOLDER, []
    for split in dict.fromkeys(s for exp in experiments for s in exp.splits):
        path = folder / f"metrics_{split}.json"
        if table in FLOOR_TABLES and path.is_file():
            summary = json.loads(path.read_text())
            lines += [dict(table=table, row="Mean shape (no learning)", kit_row="", kind="ours only", split=split,
                           metric=metric, title=title, ours=float(summary.get(metric, math.nan)), paper=math.nan,
                           printed="", diff=math.nan, input_size="", run=str(folder),
                           conditions="floor: every landmark at its mean training position, no network; "
                                      f"{summary.get('labelled_images', '?')} image predictions scored"
                                      f"{', folds pooled' if summary.get('folds', 1) > 1 else ''}")
                      for metric, title, _ in columns]
    return lines


def _input_size(run: FoundRun) -> str:
    h, w = run.config.get("input_size", ("?", "?"))
    return f"{h}×{w}"


def _conditions(run: Optional[FoundRun], split: str, summary: Optional[dict]) -> str:
    if run is None:
        return "no run yet"
    if summary is None and (run.path / f"predictions_{split}.csv").is_file():
        return f"predictions written, labels not present in this copy ({split}); {run.conditions()}"
    return run.conditions() if summary is not None else f"{split} not evaluated; {run.conditions()}"


def wide_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per (row, split); per metric the columns ours | paper | Δ (ours only where the paper has no such
    column), the input sizes where the paper prints them, and how ours was obtained.
    """
    index = pd.MultiIndex.from_tuples(list(dict.fromkeys(zip(frame["row"], frame["split"]))), names=["row", "split"])
    values = frame.set_index(["row", "split", "title"])[["ours", "paper", "diff"]].rename(columns={"diff": "Δ"})
    wide = values.unstack("title").swaplevel(axis=1)
    in_paper = frame.groupby("title", sort=False)["printed"].apply(lambda s: bool((s != "").any()))
    columns = [(title, part) for title in in_paper.index for part in (("ours", "paper", "Δ") if in_paper[title]
                                                                      else ("ours",))]
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(columns), index=index)
    first = frame.drop_duplicates(["row", "split"]).set_index(["row", "split"]).reindex(index)
    if (frame["paper_input_size"] != "").any():
        wide[("input size", "ours")] = first["input_size"].replace("", math.nan)
        wide[("input size", "paper")] = first["paper_input_size"].replace("", math.nan)
    wide[("conditions", "")] = first["conditions"]
    return wide


def _number(value: float, digits: int, signed: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}".replace("-", "−") if signed else f"{value:.{digits}f}"


def _markdown_cell(line: Optional[pd.Series], digits: int) -> str:
    """literature: the paper's cell; the kit's rows: ``ours / paper / Δ``, or ours alone where the paper has none."""
    if line is None:
        return ""
    if line["kind"] == "literature":
        return line["printed"]
    if not line["printed"]:
        return _number(line["ours"], digits)
    return f"{_number(line['ours'], digits)} / {line['printed']} / {_number(line['diff'], digits, signed=True)}"


def table_markdown(table: str, frame: pd.DataFrame, quick: bool = False) -> str:
    """The Markdown of a gathered table: the paper's rows and columns, ``ours / paper / Δ`` per cell, and how ours
    were obtained."""
    titles = list(dict.fromkeys(frame["title"]))
    sizes = bool((frame["paper_input_size"] != "").any())
    lines = [f"# {TITLES[table]}", ""]
    if quick:
        lines += ["**Quick mode: tiny synthetic datasets, one epoch from random initialisation. These numbers test "
                  "the pipeline; they are not results and say nothing about FARNet.**", ""]
    lines += [f"Rows and columns as printed in the paper's {table.replace('table', 'Table ')} "
              f"(farnet_lite/reproduction/paper/{table}.csv), then the kit's own rows. The paper's rows: ours / paper / Δ "
              "(ours − paper); rows of other methods: the paper's number only; \"-\": printed \"-\" by the paper; "
              "n/a: no number of ours (the last column says why); columns marked \"ours only\" and rows without a "
              "paper number are not in the paper.", "",
              "| Row | " + ("Input size (ours / paper) | " if sizes else "") + "Split | " + " | ".join(titles)
              + " | How ours was obtained |",
              "|---|" + ("---|" if sizes else "") + "---|" + "---|" * len(titles) + "---|"]
    for (row, split), group in frame.groupby(["row", "split"], sort=False):
        by_title = {line["title"]: line for _, line in group.iterrows()}
        first = group.iloc[0]
        cells = [_markdown_cell(by_title.get(title), 4 if "fraction" in title else 3 if "Pearson" in title else 2)
                 for title in titles]
        size = ""
        if sizes:
            size = (first["paper_input_size"] or "-") if first["kind"] == "literature" else \
                f"{first['input_size'] or 'n/a'} / {first['paper_input_size'] or '-'}" \
                if first["kind"] != "ours only" else (first["input_size"] or "n/a")
            size += " | "
        conditions = first["conditions"].replace("|", "/")
        lines.append(f"| {row} | {size}{SPLIT_TITLES.get(split, split)} | " + " | ".join(cells) + f" | {conditions} |")
    notes = paper_table(table).query("note != ''")
    lines += [""] + [f"* {row}: {note}" for row, note in zip(notes["row"], notes["note"])]
    runs = sorted({r for value in frame["run"] for r in str(value).split("; ") if r})
    lines += ["", "Runs: " + (", ".join(f"`{r}`" for r in runs) if runs else "none yet."), ""]
    return "\n".join(lines)


def _relative_runs(value: str, base: Path) -> str:
    return "; ".join(os.path.relpath(p, base) for p in str(value).split("; ") if p)


def write_table(table: str, results_dir: Union[str, Path], quick: bool = False, write: bool = True) -> TableResult:
    """Gather ``table`` from ``results_dir`` and write ``results_dir/tables/<table>.csv`` and ``.md``.

    ``result.frame`` names runs as paths usable from the current directory; the written files name them relative
    to the folder that holds ``results_dir`` (``results/isbi2015/...``), so they do not depend on where this ran;
    ``reproduce`` calls it.
    """
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
