"""The paper's Tables 1-5 as data: the CSV files beside this module, read as printed or one line per cell.

The files and their columns are described in ``README.md`` here; ``farnet_lite.reproduction.tables`` puts them beside our runs.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import pandas as pd

from farnet_lite.datasets import DATASETS

PAPER_DIR = Path(__file__).parent
"""The folder of ``table1.csv`` ... ``table5.csv``."""
OURS_ONLY = " · ours only"
"""Suffix of a column title the paper has no column for (our SD on ISBI)."""


def paper_table(table: str) -> pd.DataFrame:
    """``farnet_lite/reproduction/paper/<table>.csv`` as printed: every cell a string, ``""`` where the paper prints "-".

    Columns ``row, kit_row, kind, [input_size,] <split>:<metric> ..., note`` (see ``farnet_lite/reproduction/paper/README.md``).
    """
    path = PAPER_DIR / f"{table}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"No paper numbers for {table!r} at {path}; the package data is incomplete, "
                                f"reinstall farnet-lite.")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(frame.columns[:3]) != ["row", "kit_row", "kind"] or frame.columns[-1] != "note":
        raise ValueError(f"{path} must have the columns row, kit_row, kind, ..., note (farnet_lite/reproduction/paper/README.md); "
                         f"restore it from the kit.")
    return frame


def load_paper_numbers(table: str) -> pd.DataFrame:
    """The paper's numbers of ``table``, one line per printed cell, in the printed order.

    Columns ``row, kit_row, kind, split, metric, value, printed``: ``value`` is the number (NaN where the paper
    prints "-"), ``printed`` the cell as printed (``"-"`` there).
    """
    printed = paper_table(table)
    lines = []
    for _, line in printed.iterrows():
        for column in (c for c in printed.columns if ":" in c):
            split, metric = column.split(":", 1)
            text = line[column].strip()
            lines.append(dict(row=line["row"], kit_row=line["kit_row"], kind=line["kind"], split=split,
                              metric=metric, value=float(text) if text else math.nan, printed=text or "-"))
    return pd.DataFrame(lines)


def table_columns(table: str, dataset: str) -> List[Tuple[str, str, bool]]:
    """``(metric, title, in_paper)`` of a table: the paper's metric columns in the printed order, then ours only."""
    titles = dict(DATASETS[dataset].metric_columns)
    printed = list(dict.fromkeys(c.split(":", 1)[1] for c in paper_table(table).columns if ":" in c))
    unknown = [m for m in printed if m not in titles]
    if unknown:
        raise ValueError(f"farnet_lite/reproduction/paper/{table}.csv has metric {unknown[0]!r}, which {dataset} does not score; "
                         f"use one of {', '.join(titles)}.")
    ours_only = [m for m in titles if m not in printed]
    return [(m, titles[m], True) for m in printed] + [(m, titles[m] + OURS_ONLY, False) for m in ours_only]
