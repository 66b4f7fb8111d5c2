"""The run folder of :func:`farnet_lite.engine.train.train`: a run never mixes with another run's files, nor reports a
best.pt it did not write.

* A fresh run refuses a folder that holds a run (``RUN_RESULTS``), in one sentence, before anything is read or
  trained; ``resume=True`` that finds no last.pt there starts from scratch and removes the earlier outputs.
* A resumed run (``--resume PATH``) continues in the folder of PATH (the CLI) or in ``--output-dir`` when that
  folder holds no run; the best.pt it continues with is the one its checkpoint records (same epoch, same log),
  copied from beside PATH when the run continues elsewhere.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List

from farnet_lite.atomic import atomic_path
from farnet_lite.engine import distributed
from farnet_lite.engine.checkpoint import load_checkpoint

RUN_RESULTS = ("last.pt", "best.pt", "selection.json")
"""The files that make a folder hold a run: a fresh (not resumed) run refuses such a folder."""
RUN_OUTPUTS = ("best.pt", "selection.json", "log.csv", "last_epoch", "metrics_*.json", "predictions_*.csv",
               "per_landmark_*.csv")
"""What a run writes besides last.pt and config.json: removed when a run starts afresh in a folder."""


def found(run_dir: Path, names) -> List[Path]:
    """The files and folders of ``run_dir`` matching any of ``names`` (glob patterns), sorted."""
    return sorted({p for name in names for p in run_dir.glob(name)})


def fresh_run_folder(run_dir: Path, resume, info: distributed.DistInfo) -> None:
    """A run that starts from scratch never mixes with another's files (nor reads its best.pt): a folder holding
    a run (``RUN_RESULTS``) is refused in one sentence, unless ``resume=True`` found no last.pt there (a run
    stopped before its first last.pt: it is started again); the rest of an earlier run's outputs is removed."""
    held = found(run_dir, RUN_RESULTS)
    if held and not resume:
        raise ValueError(f"Run folder {run_dir} already holds a run ({', '.join(p.name for p in held)}); continue "
                         f"it with --resume (train(..., resume=True)), choose a new --output-dir, or delete the "
                         f"folder first.")
    old = found(run_dir, RUN_OUTPUTS)
    if old and info.is_main:
        print(f"Removing the earlier run's {', '.join(p.name for p in old)} from {run_dir}: this run starts "
              f"from scratch.")
        for item in old:
            shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
    distributed.barrier(info)


def check_resume_folder(run_dir: Path, path: Path) -> None:
    """Resuming ``path`` into another folder (``--output-dir``) is refused when that folder holds a run."""
    held = found(run_dir, RUN_RESULTS)
    if held and run_dir.resolve() != path.parent.resolve():
        raise ValueError(f"Run folder {run_dir} already holds a run ({', '.join(p.name for p in held)}) and {path} "
                         f"is not its checkpoint; continue {path} in its own folder (leave out --output-dir) or "
                         f"into an empty --output-dir.")


def is_best_of(best: Path, best_epoch: int, history: list) -> bool:
    """Whether ``best`` is the best.pt that a run with this ``history`` wrote at ``best_epoch``: its epoch and
    its log (the rows up to that epoch, seconds included) are the same."""
    if not best.is_file():
        return False
    try:
        saved = load_checkpoint(best, mmap=True)
    except ValueError:
        return False
    rows = [row for row in history if row["epoch"] <= best_epoch]
    return saved["epoch"] == best_epoch and json.dumps(saved["history"], sort_keys=True, default=str) == \
        json.dumps(rows, sort_keys=True, default=str)


def resumed_best(run_dir: Path, path: Path, best_epoch: int, history: list, info: distributed.DistInfo) -> bool:
    """Whether ``run_dir/best.pt`` is the resumed run's (the one its checkpoint says it wrote at ``best_epoch``);
    when the run continues into another folder, its best.pt is copied there from beside ``path`` first."""
    if best_epoch <= 0:
        return False
    best = run_dir / "best.pt"
    if is_best_of(best, best_epoch, history):
        return True
    source = path.parent / "best.pt"
    if source.resolve() == best.resolve() or not is_best_of(source, best_epoch, history):
        return False
    if info.is_main:                     # the other ranks read it only after the end-of-run barrier
        with atomic_path(best) as tmp:
            shutil.copyfile(source, tmp)
    return True
