"""What the kit's input pipeline costs against the official code's, on one trained checkpoint.

    python benchmarks/input_pipeline.py --checkpoint notebooks/runs/quick-isbi2015/last.pt \\
        --data-root ../shared/data/isbi2015 --out results/audit/input_pipeline.json

The same checkpoint predicts the same split (default ISBI Test1) from four versions of its input images, all at the
checkpoint's input size, and each is scored like ``farnet evaluate`` (``farnet_lite.engine.evaluate.evaluate_cache``):

    (a) kit        JPEG draft decode (``read_reduced``) + PIL BILINEAR (antialiased) + JPEG q93 cache: the default
    (b) kit-png    the same, stored losslessly (``prepare_cache(..., codec="png")``)
    (c) full-pil   full JPEG decode + PIL BILINEAR (antialiased), lossless: the reference for the grey levels
    (d) official   full JPEG decode + ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` (2x2 neighbours, no
                   antialias; the official FARNet ``data.py``), lossless

(a) and (b) go through the kit's own ``resize_image`` / ``encode_image`` / ``decode_image``, so (a) is the
cache the run trained and was scored on and reproduces its ``metrics_test1.json``. (d) uses OpenCV when it is
importable, else ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=False)``:
the same sampling, within 1 grey level of cv2's fixed-point rounding; the JSON says which ran. All four are
decoded by Pillow (grey "L"), so (c) vs (d) is the resize alone.

Printed and written (``--out``): MRE, SD, SDR at 2 / 2.5 / 3 / 4 mm per input, the mean |grey-level difference|
of each input against (c), errors over 20 mm, a paired per-image bootstrap 95 % interval of each input's MRE
minus (a)'s, and provenance. The checkpoint was TRAINED on (a)-style inputs: (d) measures the
official resize AND a train/test mismatch; a model trained on (d)-style inputs would not pay the mismatch part.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from farnet_lite.data.cache import PreparedCache, decode_image, encode_image, resize_image
from farnet_lite.data.imageio import load_grey
from farnet_lite.engine.checkpoint import load_model
from farnet_lite.engine.evaluate import evaluate_cache
from farnet_lite.engine.splits import open_split
from farnet_lite.heatmaps import rescale_points

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"a": "kit: draft decode + PIL bilinear (antialias) + JPEG q93",
            "b": "draft decode + PIL bilinear (antialias), lossless",
            "c": "full decode + PIL bilinear (antialias), lossless",
            "d": "full decode + INTER_LINEAR (no antialias, official), lossless"}
METRICS = ("mre", "sd", "sdr_2", "sdr_2.5", "sdr_3", "sdr_4")


def inter_linear(image: np.ndarray, size, use_cv2: bool = True) -> tuple[np.ndarray, str]:
    """``cv2.resize(image, (W, H), interpolation=cv2.INTER_LINEAR)`` and the name of what computed it (torch's
    bilinear without antialias when OpenCV is missing or ``use_cv2`` is False)."""
    height, width = int(size[0]), int(size[1])
    try:
        if not use_cv2:
            raise ImportError
        import cv2
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), f"cv2 {cv2.__version__}"
    except ImportError:
        x = torch.from_numpy(np.ascontiguousarray(image))[None, None].double()
        y = torch.nn.functional.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                                            antialias=False)
        return y[0, 0].round().clamp(0, 255).to(torch.uint8).numpy(), "torch interpolate bilinear, no antialias"


def pipeline_images(dataset, size) -> tuple[dict, str]:
    """``({"a".."d": (N, H, W) uint8}, resize implementation of (d))`` for every image of ``dataset``."""
    out, impl = {key: [] for key in VARIANTS}, ""
    for i in range(len(dataset)):
        draft, original, scale = dataset.reduced_image(i, (2 * size[0], 2 * size[1]))   # as prepare_cache
        box = None if scale == 1 else (0.0, 0.0, original[1] / scale, original[0] / scale)
        kit = resize_image(draft, size, box)
        out["a"].append(decode_image(encode_image(kit, "jpeg", 93)))
        out["b"].append(decode_image(encode_image(kit, "png")))
        full = load_grey(dataset.paths[i])
        out["c"].append(resize_image(full, size))
        resized, impl = inter_linear(full, size)
        out["d"].append(resized)
    return {key: np.stack(images) for key, images in out.items()}, impl


def as_cache(dataset, images: np.ndarray, size) -> PreparedCache:
    """A ``PreparedCache`` holding ``images`` and ``dataset``'s landmarks in the cache grid (NaN if unlabelled)."""
    sizes = np.array([dataset.image_size(i) for i in range(len(dataset))], dtype=np.int64)
    points = [dataset.landmarks(i) for i in range(len(dataset))]
    num = next(p for p in points if p is not None).shape[0]
    points = np.stack([np.full((num, 2), np.nan) if p is None else p for p in points])
    return PreparedCache(images=images, landmarks=rescale_points(points, sizes, tuple(size)),
                         original_sizes=sizes, ids=tuple(dataset.ids), size=tuple(size), name=dataset.name,
                         split=dataset.split, metric=dataset.metric)


def measure(model, config, dataset) -> dict:
    """Score ``model`` on the four inputs of ``dataset``: ``{"variants": {key: {...metrics, grey_diff_vs_c}},
    "inter_linear": impl}``; ``grey_diff_vs_c`` is the mean |pixel difference| against input (c)."""
    size = tuple(config.input_size)
    images, impl = pipeline_images(dataset, size)
    reference = images["c"].astype(np.int16)
    rows, errors = {}, {}
    for key, stack in images.items():
        scored = evaluate_cache(model, as_cache(dataset, stack, size), config, torch.device("cpu"))
        errors[key] = scored.errors                                              # (N, K) mm
        rows[key] = dict({m: float(scored.summary[m]) for m in METRICS}, input=VARIANTS[key],
                         max_error=float(np.nanmax(scored.errors)), errors_over_20=int((scored.errors > 20).sum()),
                         grey_diff_vs_c=float(np.abs(stack.astype(np.int16) - reference).mean()))
    rng = np.random.default_rng(0)                      # paired per-image bootstrap of the MRE difference vs (a)
    draws = rng.integers(0, len(errors["a"]), (2000, len(errors["a"])))
    for key, row in rows.items():
        per_image = np.nanmean(errors[key] - errors["a"], axis=1)
        row["mre_minus_a_ci95"] = [float(v) for v in np.percentile(per_image[draws].mean(axis=1), [2.5, 97.5])]
    return {"variants": rows, "inter_linear": impl, "images": images}


def torch_vs_cv2(dataset, size, limit: int = 20):
    """(mean, max) |torch fallback - cv2.resize| over the first ``limit`` images; None without OpenCV."""
    diffs = []
    for i in range(min(limit, len(dataset))):
        full = load_grey(dataset.paths[i])
        (ours, _), (theirs, impl) = inter_linear(full, size, use_cv2=False), inter_linear(full, size)
        if not impl.startswith("cv2"):
            return None
        diffs.append(np.abs(ours.astype(np.int16) - theirs))
    return [float(np.mean(diffs)), int(np.max(diffs))]


def grey_differences(dataset, size, limit: int = 20) -> dict:
    """Mean |grey difference| of inputs (a), (b), (d) against (c) at another ``size``, first ``limit`` images
    (no model: how large the divergence is at e.g. the paper's 800x640)."""
    images, _ = pipeline_images(dataset.subset(range(min(limit, len(dataset)))), size)
    reference = images["c"].astype(np.int16)
    return {key: float(np.abs(images[key].astype(np.int16) - reference).mean()) for key in "abd"}


def _git() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(dirty), "dirty_files": dirty}


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _relative(arg: str) -> str:
    """A path argument relative to the repository (``../shared/...`` beside it); anything else unchanged."""
    path = Path(arg).resolve()
    if not Path(arg).exists():
        return arg
    if path == REPO or REPO in path.parents:
        return str(path.relative_to(REPO))
    return str(Path("..") / path.relative_to(REPO.parent)) if REPO.parent in path.parents else arg


def print_table(rows: dict) -> None:
    print(f"{'input':<66}{'MRE':>7}{'SD':>7}{'SDR2':>7}{'2.5':>7}{'3':>7}{'4':>7}{'|dI|':>7}{'>20mm':>6}"
          f"  MRE-(a) 95% CI")
    for key, r in rows.items():
        low, high = r["mre_minus_a_ci95"]
        print(f"({key}) {r['input']:<62}{r['mre']:7.3f}{r['sd']:7.3f}{r['sdr_2']:7.2f}{r['sdr_2.5']:7.2f}"
              f"{r['sdr_3']:7.2f}{r['sdr_4']:7.2f}{r['grey_diff_vs_c']:7.3f}{r['errors_over_20']:6d}"
              f"  [{low:+.3f}, {high:+.3f}]")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data-root", required=True, help="the dataset folder, e.g. ../shared/data/isbi2015")
    parser.add_argument("--split", default="test1")
    parser.add_argument("--out", default=None, help="JSON file to write")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grey-sizes", nargs="*", default=["800x640", "160x128"],
                        help="other input sizes HxW at which to report the grey-level differences (20 images)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, config = load_model(args.checkpoint)
    config = dataclasses.replace(config, data_root=str(args.data_root))
    dataset = open_split(config, args.split)
    result = measure(model, config, dataset)
    rows = result["variants"]
    print_table(rows)
    sizes = [tuple(int(v) for v in text.split("x")) for text in args.grey_sizes]
    grey = {f"{h}x{w}": grey_differences(dataset, (h, w)) for h, w in sizes}
    print("mean |grey difference| vs (c), first 20 images:", json.dumps(grey))
    report = {
        "what": "one checkpoint scored on the same split from four input pipelines (benchmarks/input_pipeline.py)",
        "split": args.split, "n_images": len(dataset), "variants": rows, "inter_linear": result["inter_linear"],
        "grey_diff_vs_c_other_sizes": grey,
        "torch_fallback_vs_cv2_mean_max": torch_vs_cv2(dataset, tuple(config.input_size)),
        "cost_official_minus_kit": {m: rows["d"][m] - rows["a"][m] for m in METRICS},
        "caveat": "the checkpoint was trained on (a)-style inputs: (d) - (a) is the official resize plus a "
                  "train/test mismatch, not what a model trained on (d)-style inputs would lose",
        "checkpoint_config": {k: getattr(config, k) for k in ("dataset", "system", "backbone", "input_size",
                                                              "epochs", "pretrained", "eval_batchnorm", "decode")},
        "provenance": {"command": " ".join(["python", _relative(sys.argv[0])] + [_relative(a) for a in
                                                                                 (argv or sys.argv[1:])]),
                       **_git(), "torch": torch.__version__, "threads": args.threads, "cpu": _cpu_model(),
                       "wall_time_s": round(time.perf_counter() - start, 1)},
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=list) + "\n")
    return report


if __name__ == "__main__":
    main()
