"""``python -m farnet_lite.demo`` (what ``make demo`` runs): FARNet learns landmarks on the CPU in minutes.

1. Writes synthetic cephalograms in the ISBI 2015 layout (``farnet_lite.data.synthetic``): a training set, a
   validation set (the layout's Test1) and, with another seed, held-out images never used for any choice.
2. Trains FARNet (MSFA + FR on a DenseNet-121 from random initialisation -- no ImageNet weights) with the
   *same* engine as every other run: ``TrainConfig.preset("synthetic-isbi", "demo")`` and
   :func:`farnet_lite.engine.train.train`, which keeps the checkpoint that is best on the validation set.
3. Predicts the held-out images with :func:`farnet_lite.engine.predict.predict` and prints the model's mean radial
   error next to that of the *mean-shape baseline* (every landmark at its mean training position, in
   image-relative coordinates), and writes a prediction-vs-truth overlay to ``figures/demo_overlay.png``.

Threads: the demo runs torch on one CPU thread by default (``--threads``). On a 2-core machine that other
processes share, two intra-op threads spin against each other and the load, and one thread is faster.

The demo preset's settings (64x64 input, sigma 1.5 px, batch 8, Adam 1e-3 with cosine decay) were chosen on the
validation images; the held-out numbers are reported once, afterwards. ``--quick`` runs a tiny version for the
tests (it proves the pipeline runs end to end, not that the model is good).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from farnet_lite.atomic import atomic_path
from farnet_lite.config import TrainConfig
from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.data.synthetic import write_synthetic_isbi
from farnet_lite.engine.predict import predict
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.engine.train import train
from farnet_lite.reproduction.mean_shape import mean_shape_baseline

DEMO_SIZE = (240, 193)
"""(H, W) of the synthetic cephalograms: the real 2400 x 1935 scaled by 1/10 (0.1 mm/px becomes 1 mm/px)."""


def save_demo_figure(path, images, preds, truths, baseline, errors_px) -> Path:
    """Up to 4 held-out images side by side: truth (green o), FARNet (red +), mean shape (blue x)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    count = min(4, len(images))
    fig = Figure(figsize=(3.0 * count, 3.6), dpi=120)
    for i in range(count):
        ax = fig.add_subplot(1, count, i + 1)
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        ax.scatter(*truths[i].T, s=30, facecolors="none", edgecolors="lime", linewidths=1.2, label="truth")
        ax.scatter(*baseline[i].T, s=18, marker="x", color="deepskyblue", linewidths=1.0, label="mean shape")
        ax.scatter(*preds[i].T, s=30, marker="+", color="red", linewidths=1.3, label="FARNet")
        ax.set_title(f"held-out #{i + 1}: MRE {errors_px[i].mean():.1f} px", fontsize=8)
        ax.axis("off")
    fig.axes[0].legend(loc="lower left", fontsize=6, framealpha=0.7)
    fig.suptitle("FARNet (CPU demo, random init) vs. the mean-shape baseline on held-out synthetic images",
                 fontsize=9)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    return path


def run_demo(workdir, figure="figures/demo_overlay.png", quick: bool = False, epochs=None,
             train_images: int = 64, val_images: int = 16, test_images: int = 32, **overrides) -> dict:
    """Run the demo in ``workdir``; returns the numbers it prints."""
    started = time.perf_counter()
    work = Path(workdir)
    if quick:
        train_images, val_images, test_images = 8, 4, 4
    data = write_synthetic_isbi(work / "data", n_train=train_images, n_test1=val_images, n_test2=0,
                                size=DEMO_SIZE, seed=0)
    heldout = write_synthetic_isbi(work / "heldout", n_train=test_images, n_test1=0, n_test2=0,
                                   size=DEMO_SIZE, seed=1)                     # another seed: unseen images
    settings = dict(data_root=str(data), cache_dir=str(work / "cache"), output_dir=str(work / "run"),
                    eval_splits=("test1",))
    if quick:
        settings.update(input_size=(32, 32), epochs=1, batch_size=4)
    if epochs is not None:
        settings["epochs"] = epochs
    settings.update(overrides)
    config = TrainConfig.preset("synthetic-isbi", "demo", **settings)
    print(f"Training {config.system} ({config.backbone}, random init) on {train_images} synthetic "
          f"{DEMO_SIZE[0]}x{DEMO_SIZE[1]} images at {config.input_size[0]}x{config.input_size[1]}, "
          f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g}, sigma {config.sigma:g}.")
    shutil.rmtree(work / "run", ignore_errors=True)       # the demo's own run folder: a re-run trains afresh
    result = train(config)

    training = read_isbi2015(data, split="train")
    test = read_isbi2015(heldout, split="train")
    frame = predict(result.run_dir / "best.pt", list(test.paths), device=config.device)
    preds = frame[["x", "y"]].to_numpy().reshape(len(test), -1, 2)     # rows follow the order of the inputs
    truths = np.stack([test.landmarks(i) for i in range(len(test))])
    sizes = np.array([test.image_size(i) for i in range(len(test))], dtype=np.float64)
    train_points = np.stack([training.landmarks(i) for i in range(len(training))])
    train_sizes = np.array([training.image_size(i) for i in range(len(training))], dtype=np.float64)
    baseline = mean_shape_baseline(train_points, train_sizes, sizes)
    spec = config.spec
    model_summary, model_mm, _ = score_predictions(preds, truths, sizes, spec)
    base_summary, _, _ = score_predictions(baseline, truths, sizes, spec)
    model_px = np.linalg.norm(preds - truths, axis=-1)
    base_px = np.linalg.norm(baseline - truths, axis=-1)
    images = [test[i].image for i in range(min(4, len(test)))]
    path = save_demo_figure(figure, images, preds, truths, baseline, model_px)
    numbers = {"model_mre_px": float(model_px.mean()), "baseline_mre_px": float(base_px.mean()),
               "ratio": float(base_px.mean() / max(model_px.mean(), 1e-12)),
               "val_mre_mm": result.best_metric, "best_epoch": result.best_epoch,
               "seconds": time.perf_counter() - started, "figure": str(path), "run_dir": str(result.run_dir)}
    print(f"\nHeld-out synthetic images ({len(test)}), mean radial error in original pixels "
          f"({DEMO_SIZE[0]}x{DEMO_SIZE[1]} images):")
    print(f"  FARNet (best of {config.epochs} epochs on validation, epoch {result.best_epoch}): "
          f"{numbers['model_mre_px']:.2f} px  (SDR@4px {100 * np.mean(model_px <= 4):.0f}%)")
    print(f"  mean-shape baseline:                                 {numbers['baseline_mre_px']:.2f} px  "
          f"(SDR@4px {100 * np.mean(base_px <= 4):.0f}%)")
    print(f"  -> the model's error is {numbers['ratio']:.1f}x smaller than the baseline's.")
    print(f"Overlay: {path}   run folder: {result.run_dir}   total time {numbers['seconds']:.0f} s")
    return numbers


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m farnet_lite.demo", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where data, cache and run go (default: a temp folder)")
    parser.add_argument("--figure", default="figures/demo_overlay.png", help="overlay PNG to write")
    parser.add_argument("--quick", action="store_true", help="a tiny run that only checks the pipeline")
    parser.add_argument("--epochs", type=int, default=None, help="override the demo preset's epochs")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch; 1 is the robust choice on a small shared machine (module docstring)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.workdir:
        return run_demo(args.workdir, args.figure, args.quick, args.epochs)
    with tempfile.TemporaryDirectory(prefix="farnet-demo-") as workdir:
        return run_demo(workdir, args.figure, args.quick, args.epochs)


if __name__ == "__main__":
    main()
