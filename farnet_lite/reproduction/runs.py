"""The kit's runs under ``results/``, and which of them fills a cell of Tables 1-5 (used by ``farnet_lite.reproduction.tables``).

A run folder is a ``config.json`` beside at least one ``predictions_<split>.csv``. A run fills an experiment's cells
when the identity of its config matches (dataset, system, backbone, loss, training split, fold -- not input size or
epochs); of several, :func:`best_run` takes the one under the table's shared conditions, then the closest to the
paper's (see ``farnet_lite.reproduction.tables``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

from farnet_lite.datasets import DATASETS
from farnet_lite.reproduction.experiments import Experiment, epochs_done, synthetic_name


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

    def conditions(self, selected: bool = True) -> str:
        """One line on how the run was obtained: input size, epochs, weights, batch, target width, how the
        reported epoch was chosen (``selected=False``: the line of its last epoch), device; synthetic runs say so."""
        c, spec = self.config, DATASETS[self.config["dataset"]]
        h, w = c.get("input_size", ("?", "?"))
        init = "random init" if c.get("pretrained", False) is False else "ImageNet init"
        device = self.provenance.get("device") or "device not recorded"
        sigma = spec.grid_sigma(c.get("sigma", 10.0), c.get("sigma_scale", "output"), (h, w))
        text = (f"{h}×{w}, {self.epochs_done}/{c.get('epochs', '?')} epochs, {init}, batch {c.get('batch_size', '?')}, "
                f"{spec.target_width(sigma, (h, w))}, ")
        best, val = self.provenance.get("best_epoch"), c.get("val_split")
        if best and val and selected:
            text += f"epoch {best} of {self.epochs_done} selected on {val}"
            if val.lower() in str(self.provenance.get("stopped_because", "")).lower():
                text += f" ({val} also decided when to stop)"
            text += ", "
        text += device
        if str(c.get("dataset", "")).startswith("synthetic"):
            text += ", SYNTHETIC quick run (not a result)"
        return text


ABLATIONS_FOLDER = "ablations"
"""``results/ablations/<study>/<variant>``: the runs of ``tools/ablate.py``, which no table takes as a row."""


def find_runs(results_dir: Union[str, Path]) -> List[FoundRun]:
    """Every run folder below ``results_dir`` (a ``config.json`` beside at least one predictions or metrics file)."""
    found = []
    root = Path(results_dir)
    if not root.is_dir():
        return found
    for config_path in sorted(root.rglob("config.json")):
        folder = config_path.parent
        if folder.name.startswith(".") or not any(folder.glob("predictions_*.csv")):
            continue
        if folder.relative_to(root).parts[0] == ABLATIONS_FOLDER:   # paired short runs, not rows of a table
            continue
        provenance_path = folder / "provenance.json"
        provenance = json.loads(provenance_path.read_text()) if provenance_path.is_file() else {}
        found.append(FoundRun(folder, json.loads(config_path.read_text()), provenance, epochs_done(folder)))
    return found


def _identity(config: dict) -> tuple:
    spec = DATASETS[config["dataset"]]
    fold = config.get("fold", 1) if spec.folds > 1 else None
    return (config["dataset"], config.get("system"), config.get("backbone"), config.get("loss"),
            config.get("train_split", spec.train_split), fold)


def experiment_identity(exp: Experiment, quick: bool = False) -> tuple:
    """What a run must match to fill ``exp``'s cells (see the module docstring): the identity of its config."""
    dataset = synthetic_name(exp.dataset) if quick else exp.dataset
    fields = dict(dataset=dataset, system=exp.system, backbone=exp.backbone, loss=exp.loss, fold=exp.fold)
    if exp.train_split is not None:
        fields["train_split"] = exp.train_split
    return _identity(fields)


def _matching(exp: Experiment, runs: List[FoundRun], quick: bool) -> List[FoundRun]:
    """The runs whose config has ``exp``'s identity."""
    identity = experiment_identity(exp, quick)
    return [r for r in runs if _identity(r.config) == identity]


def best_run(exp: Experiment, runs: List[FoundRun], quick: bool = False,
             prefer: Optional[tuple] = None) -> Optional[FoundRun]:
    """The run that fills ``exp``'s cells (see the module docstring), or None; runs of the ``prefer`` conditions
    (:func:`shared_conditions`) first."""
    matches = _matching(exp, runs, quick)
    return max(matches, key=lambda r: (_comparable(r) == prefer, r.preference)) if matches else None


def _comparable(run: FoundRun) -> tuple:
    return run.config.get("pretrained", False) is not False, tuple(run.config.get("input_size", (0, 0)))


def shared_conditions(experiments: List[Experiment], runs: List[FoundRun], quick: bool = False) -> Optional[tuple]:
    """(ImageNet init?, input size) under which more of a table's experiments have a run than under any other, so
    that its rows compare like with like (an ablation row at 160x128 is not set beside one at 320x256); None when
    no such majority exists (a one-row table, a tie): then each cell takes its closest run to the paper's."""
    counts: Dict[tuple, int] = {}
    for exp in experiments:
        for key in {_comparable(r) for r in _matching(exp, runs, quick)}:
            counts[key] = counts.get(key, 0) + 1
    most = max(counts.values(), default=0)
    top = [key for key, count in counts.items() if count == most]
    return top[0] if most > 1 and len(top) == 1 else None
