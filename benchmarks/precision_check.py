"""Does bf16 autocast change FARNet's results by more than noise? (prints figures)

    python benchmarks/precision_check.py --checkpoint runs/isbi2015-320x256/best.pt --split test1 \\
        --train-epochs 3 --output results/benchmark/precision-check.json

Two measurements, both fp32 against bf16 on the same machine:

1. **Decoding a trained checkpoint**: the checkpoint predicts every image of ``--split`` once in fp32 and once
   in bf16 autocast (same weights, same cache, same decoding). Printed: how far the two predictions of each
   landmark lie apart (mean / 95th percentile / max, in original pixels and in mm where the dataset has a fixed
   spacing) and the split's MRE in both precisions.
2. **A short training run in both precisions**: the course's quick run (``farnet_lite.reproduction.quickrun.quick_config``:
   real ISBI 2015 when a copy is found, else the synthetic copy), trained ``--train-epochs`` epochs from the same
   seed in fp32 and in bf16, with Test1 scored after every epoch. Printed: both curves (training loss, Test1
   MRE) side by side.

bf16 rounds activations to 8 bits of mantissa, so the two trainings drift apart step by step; what matters is
whether the curves stay within each other's epoch-to-epoch noise. Results go to ``--output`` (JSON) when given.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from farnet_lite.engine.checkpoint import load_checkpoint
from farnet_lite.engine.evaluate import evaluate
from farnet_lite.engine.train import train
from farnet_lite.reproduction.quickrun import quick_config


def decoding_difference(checkpoint: Path, split: str, data_root=None) -> dict:
    """Predict ``split`` with ``checkpoint`` in fp32 and bf16; how far the two predictions lie apart."""
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for precision in ("fp32", "bf16"):
            start = time.perf_counter()
            results[precision] = evaluate(checkpoint, [split], data_root=data_root, precision=precision,
                                          output_dir=Path(out) / precision)[split]
            seconds[precision] = time.perf_counter() - start
    metric = load_checkpoint(checkpoint, mmap=True)["config"].spec.metric     # the config only: nothing else read
    apart = np.linalg.norm(results["fp32"].pred - results["bf16"].pred, axis=-1).ravel()   # (N * K,) px
    row = {"split": split, "images": int(len(results["fp32"].ids)), "landmarks_compared": int(apart.size),
           "difference_px": {"mean": float(apart.mean()), "p95": float(np.percentile(apart, 95)),
                             "max": float(apart.max())},
           "identical_fraction": float(np.mean(apart == 0)),
           "seconds": seconds}
    if metric is not None and metric.kind == "spacing":
        row["difference_mm"] = {k: v * metric.spacing_mm for k, v in row["difference_px"].items()}
    for precision, result in results.items():
        if result.summary:
            row[f"mre_{precision}"] = float(result.summary["mre"])
    return row


def training_curves(epochs: int, data_root: str, runs_root: Path) -> dict:
    """The quick run, ``epochs`` epochs, Test1 scored each epoch, in fp32 and in bf16 from the same seed."""
    curves = {}
    for precision in ("fp32", "bf16"):
        config = quick_config(data_root, runs_root, output_dir=str(runs_root / f"quick-{precision}"),
                              precision=precision, epochs=epochs, val_split="test1", progress=False)
        shutil.rmtree(config.output_dir, ignore_errors=True)   # this check's own run folder: trained afresh
        start = time.perf_counter()
        result = train(config)
        curves[precision] = {"dataset": config.dataset, "seconds": time.perf_counter() - start,
                             "train_loss": [float(r["train_loss"]) for r in result.history],
                             "val_mre": [float(r["val_mre"]) for r in result.history]}
    return curves


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a trained run's best.pt or last.pt (part 1)")
    parser.add_argument("--split", default="test1", help="the labelled split to predict (part 1)")
    parser.add_argument("--data-root", default=None, help="override the checkpoint's data root (part 1)")
    parser.add_argument("--train-epochs", type=int, default=0, help="epochs of the quick run per precision "
                                                                    "(part 2; 0 = skip)")
    parser.add_argument("--quick-data-root", default="data", help="DATA_ROOT of the quick run (part 2)")
    parser.add_argument("--runs-root", type=Path, default=Path("runs/precision-check"))
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    report = {"torch": torch.__version__, "machine": platform.processor() or platform.machine()}
    if args.checkpoint is not None:
        row = report["decoding"] = decoding_difference(args.checkpoint, args.split, args.data_root)
        unit = "mm" if "difference_mm" in row else "px"
        diff = row.get("difference_mm", row["difference_px"])
        print(f"decoding {row['split']} ({row['images']} images): fp32 vs bf16 predictions lie "
              f"{diff['mean']:.3f} {unit} apart on average (95th percentile {diff['p95']:.3f}, max "
              f"{diff['max']:.3f}); {100 * row['identical_fraction']:.0f} % identical; "
              f"MRE fp32 {row.get('mre_fp32', float('nan')):.3f} vs bf16 {row.get('mre_bf16', float('nan')):.3f}")
    if args.train_epochs > 0:
        curves = report["training"] = training_curves(args.train_epochs, args.quick_data_root, args.runs_root)
        print(f"quick run on {curves['fp32']['dataset']}, Test1 MRE after each epoch:")
        print("epoch | loss fp32 | loss bf16 | MRE fp32 | MRE bf16")
        for i, (l32, l16, m32, m16) in enumerate(zip(curves["fp32"]["train_loss"], curves["bf16"]["train_loss"],
                                                     curves["fp32"]["val_mre"], curves["bf16"]["val_mre"])):
            print(f"{i + 1:5d} | {l32:9.5f} | {l16:9.5f} | {m32:8.3f} | {m16:8.3f}")
        print(f"training time: fp32 {curves['fp32']['seconds']:.0f} s, bf16 {curves['bf16']['seconds']:.0f} s")
    report["threads"] = torch.get_num_threads()       # as the kit set them (FARNET_THREADS, else all cores)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
