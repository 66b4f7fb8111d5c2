"""Paired short ablations on ISBI 2015 Test1: the same start, the same budget, one change per variant.

    python tools/ablate.py sigma-160x128 --input-size 160 128 --epochs 4 \\
        --variant output-10 sigma=10 sigma_scale=output \\
        --variant paper-10 sigma=10 sigma_scale=paper

Every variant is ``TrainConfig.preset("isbi2015", "quick")`` -- FARNet-DenseNet-121 from random init, batch 2,
Adam with warm-up and cosine decay, no checkpoint selection -- at ``--input-size`` for ``--epochs``, with the
variant's ``FIELD=VALUE`` changes on top (values read as JSON, else as text), and the same seed, so the variants
differ only in what they change. Each trains into ``<runs-dir>/<study>/<variant>`` (resumed when interrupted,
reused when finished), is scored on Test1 at its last epoch (Test1 only: Test2 is the test set, scored once for
a chosen recipe), and its small files are copied to ``<results-dir>/<study>/<variant>`` with provenance; the
study's table (``table.md``, ``table.csv``) puts the variants beside the mean-shape floor. Ablation runs are not
rows of the paper's tables (``farnet_lite.reproduction.runs`` leaves ``results/ablations`` out).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

from farnet_lite.config import TrainConfig
from farnet_lite.engine.outputs import atomic_write_text, write_frame
from farnet_lite.engine.train import train
from farnet_lite.reproduction.experiments import run_finished
from farnet_lite.reproduction.reproduce import device_description, export_run, git_commit

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ("mre", "sd", "sdr_2", "sdr_2.5", "sdr_3", "sdr_4")


def machine() -> str:
    """The CPU model (from /proc/cpuinfo where there is one) and its core count."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, no GPU"


def _provenance(folder: Path) -> dict:
    path = folder / "provenance.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def parse_changes(pairs) -> dict:
    """``["sigma=10", "sigma_scale=paper"]`` -> ``{"sigma": 10, "sigma_scale": "paper"}``."""
    changes = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"ablate: {pair!r} is not FIELD=VALUE; e.g. sigma=10.")
        try:
            changes[name] = json.loads(text)
        except json.JSONDecodeError:
            changes[name] = text
    return changes


def variant_config(args, name: str, changes: dict) -> TrainConfig:
    return TrainConfig.preset("isbi2015", "quick", **dict(
        dict(data_root=args.data_root, input_size=tuple(args.input_size), epochs=args.epochs, seed=args.seed,
             eval_splits=("test1",), output_dir=str(Path(args.runs_dir) / args.study / name),
             cache_dir=args.cache_dir, progress=False), **changes))


def row_of(name: str, changes: dict, config: TrainConfig, result_dir: Path) -> dict:
    metrics = json.loads((result_dir / "metrics_test1.json").read_text())
    log = pd.read_csv(result_dir / "log.csv")
    return dict(variant=name, changes=" ".join(f"{k}={v}" for k, v in changes.items()),
                target=config.spec.target_width(config.target_sigma, config.input_size),
                **{k: metrics[k] for k in COLUMNS}, epochs=int(log["epoch"].max()),
                final_loss=float(log["train_loss"].iloc[-1]), train_seconds=float(log["seconds"].sum()))


def study_markdown(study: str, frame: pd.DataFrame, floor: dict, base: TrainConfig) -> str:
    h, w = base.input_size
    lines = [f"# Ablation {study}: ISBI 2015 Test1, last epoch of each variant",
             "",
             f"FARNet-DenseNet-121 from **random init**, {h}×{w}, {base.epochs} epochs of batch {base.batch_size}, "
             f"Adam {base.lr:g} (warm-up, cosine), seed {base.seed}, no checkpoint selection; each variant changes only "
             f"what its row says. Made by `tools/ablate.py` (command and machine in `provenance.json`). A CPU "
             f"budget far from the paper's (ImageNet weights, 800×640, 300 epochs): the differences are what these "
             f"choices buy under it, one seed each.",
             "",
             "| variant | change | targets | MRE (mm) | SD | SDR 2 mm | 2.5 mm | 3 mm | 4 mm | train s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in frame.iterrows():
        lines.append(f"| {r['variant']} | {r['changes'] or '—'} | {r['target']} | {r['mre']:.2f} | {r['sd']:.2f} | "
                     f"{r['sdr_2']:.1f} | {r['sdr_2.5']:.1f} | {r['sdr_3']:.1f} | {r['sdr_4']:.1f} | "
                     f"{r['train_seconds']:.0f} |")
    if floor:
        lines.append(f"| mean shape (no learning) | — | — | {floor['mre']:.2f} | {floor['sd']:.2f} | "
                     f"{floor['sdr_2']:.1f} | {floor['sdr_2.5']:.1f} | {floor['sdr_3']:.1f} | {floor['sdr_4']:.1f} | — |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study's name: its folder under --runs-dir and --results-dir")
    parser.add_argument("--variant", nargs="+", action="append", required=True, metavar=("NAME", "FIELD=VALUE"),
                        help="a variant: its name, then the TrainConfig fields it changes")
    parser.add_argument("--input-size", nargs=2, type=int, default=(160, 128), metavar=("H", "W"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default="../shared/data/isbi2015")
    parser.add_argument("--cache-dir", default="runs/cache")
    parser.add_argument("--runs-dir", default="runs/ablations")
    parser.add_argument("--results-dir", default="results/ablations")
    args = parser.parse_args(argv)
    variants = [(v[0], parse_changes(v[1:])) for v in args.variant]
    configs = [variant_config(args, name, changes) for name, changes in variants]   # every config valid first
    rows, out = [], Path(args.results_dir) / args.study
    for (name, changes), config in zip(variants, configs):
        started, earlier = time.time(), _provenance(out / name)
        trained = not run_finished(config.output_dir, config)
        if trained:
            train(config, resume=True)
        provenance = dict(
            command="python " + " ".join(["tools/ablate.py", *(argv if argv is not None else sys.argv[1:])]),
            commit=git_commit() if trained or "commit" not in earlier else earlier["commit"],
            device=device_description("cpu"), machine=earlier.get("machine") if not trained and
            earlier.get("machine") else machine(), variant=name, changes=changes, pretrained=False,
            wall_seconds=round(time.time() - started, 1) if trained else earlier.get("wall_seconds"),
            note="ablation run: Test1 at the last epoch, no selection; not a table row; commit and machine are "
                 "those of the call that trained it")
        export_run(config.output_dir, out / name, provenance)
        rows.append(row_of(name, changes, config, out / name))
    frame = pd.DataFrame(rows)
    write_frame(out / "table.csv", frame, index=False)
    floor_path = REPO / "results" / "isbi2015" / "mean-shape" / "metrics_test1.json"
    floor = json.loads(floor_path.read_text()) if floor_path.is_file() else {}
    atomic_write_text(out / "table.md", study_markdown(args.study, frame, floor, configs[0]))
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
