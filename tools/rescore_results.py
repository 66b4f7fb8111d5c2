"""Rewrite the committed runs' metrics from their predictions CSVs: ``python tools/rescore_results.py [--check]``.

Each ``results/<dataset>/<run>/**/metrics_<split>.json`` and its ``per_landmark_<split>.csv`` are recomputed by
``farnet_lite.reproduction.rescore`` from the ``predictions_<split>.csv`` beside them and the annotation files under
``../shared/data`` (the data roots the runs' config.json record, relative to the repository), so that what a
reader recomputes from the CSV is what the JSON says. ``--check`` writes nothing and exits 1 when a file differs.
The mean-shape folders hold no predictions (``farnet_lite.reproduction.mean_shape`` recomputes them) and are left alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from farnet_lite.engine.outputs import write_frame, write_json
from farnet_lite.reproduction.rescore import DESCRIPTIVE_KEYS, per_landmark_of, rescore_metrics_file, run_config_of

REPO = Path(__file__).resolve().parents[1]


def committed_metrics(results: Path):
    """Every metrics JSON of a run under ``results`` (not the mean-shape floors, not the tables)."""
    return sorted(p for p in results.glob("*/*/**/metrics_*.json") if "mean-shape" not in p.parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args(argv)
    os.chdir(REPO)                                  # the runs record data roots relative to the repository
    changed = 0
    for path in committed_metrics(REPO / "results"):
        recorded, recomputed, errors = rescore_metrics_file(path)
        merged = dict(recorded, **recomputed)
        differs = {k: (recorded.get(k), v) for k, v in merged.items()
                   if k not in DESCRIPTIVE_KEYS and recorded.get(k) != v}
        print(f"{path.relative_to(REPO)}: " + ("same" if not differs else
              ", ".join(f"{k} {a} -> {b}" for k, (a, b) in differs.items())))
        if differs and not args.check:
            config, _ = run_config_of(path)
            write_json(path, merged)
            write_frame(path.parent / f"per_landmark_{recorded['split']}.csv",
                        per_landmark_of(errors, config, recomputed["unit"]))
        changed += bool(differs)
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
