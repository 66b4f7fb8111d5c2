"""``farnet benchmark``: a fair speed comparison -- today's path, the fast path, the official-style pipeline.

Every path trains and predicts the same model, on the same number of images, at the same batch size (batch 1, as
the paper and the official code; a batch > 1 is a separate, labelled row), and each is measured in a fresh
process on the CPU (so the allocator setting of one cannot leak into the next):

* *today's path*: the engine's plain settings -- fp32, NCHW, the for-loop Adam step, glibc's
  default allocator, torch's default thread count, inference at batch 1;
* *the fast path* (``precision="auto"``: TrainConfig's default and the ``fast`` preset's): bf16 autocast where the
  CPU has it natively, channels_last, fused Adam, the allocator fix and all cores, small maps as one matrix product
  (:mod:`farnet_lite.engine.cpu`), batched inference (``farnet_lite.engine.evaluate.EVAL_BATCH``);
* *official-style*: the official code's data pipeline (:mod:`farnet_lite.reproduction.official_style`): per-sample JPEG
  decode and resize, numpy float64 target maps, batch 1, fp32.

Columns: training seconds per image at each ``--input-size`` / ``--large-input-size``, evaluation seconds per
image at the larger size (each path at its own inference batch), prediction seconds per 800x640 image (batch 1),
peak memory. This prints figures; it asserts nothing (timings depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import math
import multiprocessing
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Tuple

import numpy as np
import torch

from farnet_lite.config import TrainConfig
from farnet_lite.engine.cpu import prepare_cpu, small_map_gemm_for
from farnet_lite.engine.evaluate import EVAL_BATCH, predict_batch
from farnet_lite.engine.measure import peak_mb, reset_peak, sync
from farnet_lite.engine.options import DefaultsFormatter, add_alias, add_field_option
from farnet_lite.engine.runtime import (BatchSource, build_optimizer, build_scheduler, make_scaler, precision_name,
                                        prepare_model, resolve_device, resolve_precision, run_codec)
from farnet_lite.engine.train import train_one_epoch
from farnet_lite.reproduction.official_style import bench_official_style, random_points
from farnet_lite.systems import build_model_from_config


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``farnet benchmark``: the same flags as ``farnet train`` for the same concepts."""
    add_field_option(parser, "input_size", default=None, shown="800 640 on a GPU, 160 128 on the CPU",
                     help="training input H W")
    add_alias(parser, "--size", "input_size")
    parser.add_argument("--large-input-size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="a second training input H W (default: 320 256 on the CPU, none on a GPU; 0 0: none)")
    parser.add_argument("--predict-size", nargs=2, type=int, metavar=("H", "W"), default=(800, 640),
                        help="input of the prediction column, batch 1 (default: 800 640, ISBI's; 0 0: none)")
    add_field_option(parser, "batch_size", default=None, shown="8 on a GPU, 4 on the CPU",
                     help="batch of the extra fast-path row (1: no extra row)")
    add_alias(parser, "--batch", "batch_size")
    add_field_option(parser, "precision", default="auto", shown="auto", help="precision of the fast path")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure, i.e. images at batch 1 "
                                                                "(default: 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 5 GPU, 1 CPU)")
    add_field_option(parser, "device", default="auto", shown="auto")
    add_field_option(parser, "dataset", default="isbi2015", shown="isbi2015", help="sets the landmark count")
    add_field_option(parser, "system", default="msfa_fr", shown="msfa_fr")
    add_field_option(parser, "backbone", default="densenet121", shown="densenet121")
    parser.add_argument("--original-size", nargs=2, type=int, metavar=("H", "W"), default=(2400, 1935),
                        help="size of the JPEGs the baseline reads and resizes per sample (default: 2400 1935, "
                             "ISBI's)")
    add_field_option(parser, "compile", default=False, help="torch.compile the fast path's model")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the official-style pipeline (default: on)")
    parser.add_argument("--baseline-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the baseline (official: 4; default: up to 4, one per core)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="each path in a fresh process (default: on for the CPU)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def bench_engine(config: TrainConfig, device, steps: int, warmup: int, fused: bool = True,
                 infer: bool = True) -> dict:
    """Train (and with ``infer``, inference at the same batch) images/s of this engine on random uint8 images kept
    in device memory; ``fused``: the fused optimizer step (False: torch's for-loop, today's path)."""
    amp_dtype = resolve_precision(config.precision, device)
    rng = np.random.default_rng(0)
    count = config.batch_size * (steps + warmup)
    cache = SimpleNamespace(images=rng.integers(0, 256, (count, *config.input_size), dtype=np.uint8),
                            landmarks=random_points(rng, count, config.num_landmarks, config.input_size))
    model = build_model_from_config(config)
    small_map_gemm_for(model, config.small_map_gemm, device)
    model = prepare_model(model, device, config.channels_last)
    net = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(config, model.parameters(), fused=fused)
    scheduler = build_scheduler(config, optimizer, steps + warmup)
    scaler = make_scaler(amp_dtype, device)
    source = BatchSource(cache, device, "yes")
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.arange(count)
    split = config.batch_size * warmup
    reset_peak(device)
    train_one_epoch(net, source, order[:split], optimizer, scheduler, scaler, config, amp_dtype, generator, 0)
    sync(device)
    start = time.perf_counter()
    train_one_epoch(net, source, order[split:], optimizer, scheduler, scaler, config, amp_dtype, generator, 1)
    sync(device)
    figures = {"train_images_per_s": (count - split) / (time.perf_counter() - start),
               "train_peak_mb": peak_mb(device)}
    if infer:
        del optimizer, scaler
        reset_peak(device)
        seconds = time_inference(net, source.images, config.batch_size, config, amp_dtype, warmup)
        figures.update(infer_images_per_s=1.0 / seconds, infer_peak_mb=peak_mb(device))
    return figures


def time_inference(net, images: torch.Tensor, batch: int, config: TrainConfig, amp_dtype, warmup: int) -> float:
    """Seconds per image of ``predict_batch`` (eval mode, decoding included) over ``images`` ``(N, H, W)`` uint8 in
    batches of ``batch``, after ``warmup`` untimed batches (of the same images)."""
    net.eval()
    codec = run_codec(config)
    batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    for chunk in batches[:warmup]:
        predict_batch(net, chunk, codec, config, amp_dtype)
    sync(images.device)
    start = time.perf_counter()
    for chunk in batches:
        predict_batch(net, chunk, codec, config, amp_dtype)
    sync(images.device)
    return (time.perf_counter() - start) / len(images)


@dataclasses.dataclass(frozen=True)
class BenchPath:
    """One row of the benchmark: a way of training and predicting the same model."""

    name: str
    precision: str = "fp32"
    fused: bool = False             # fused optimizer step (False: torch's for-loop)
    channels_last: bool = False
    fast_cpu: bool = False          # farnet_lite.engine.cpu.prepare_cpu: allocator fix + all cores
    small_map_gemm: bool = False    # farnet_lite.engine.cpu.use_small_map_gemm: small maps as one matrix product
    batch: int = 1
    eval_batch: int = 1
    official: bool = False          # the official-style pipeline (per-sample JPEG decode, numpy targets)


@dataclasses.dataclass(frozen=True)
class BenchSetup:
    """What every path shares: the model, the sizes, the number of images."""

    device: str
    dataset: str
    system: str
    backbone: str
    train_sizes: Tuple[Tuple[int, int], ...]
    predict_size: Optional[Tuple[int, int]]
    steps: int
    warmup: int
    original_size: Tuple[int, int]
    workers: int
    compile: bool = False


def _size_key(size) -> str:
    return f"{size[0]}x{size[1]}"


def _path_config(path: BenchPath, setup: BenchSetup, size, batch: int) -> TrainConfig:
    return TrainConfig(dataset=setup.dataset, input_size=tuple(size), system=setup.system, backbone=setup.backbone,
                       batch_size=batch, precision=path.precision, channels_last=path.channels_last,
                       small_map_gemm=path.small_map_gemm,
                       compile=setup.compile and not path.official, lr=1e-4, lr_schedule="constant",
                       device=setup.device, progress=False, deterministic=False)


def measure_path(path: BenchPath, setup: BenchSetup) -> dict:
    """Seconds per image (train at each size, eval at the largest, predict at ``predict_size``) and peak memory
    of ``path``; run by :func:`run_benchmark`, on the CPU in a fresh process."""
    device = torch.device(setup.device)
    if path.fast_cpu:
        prepare_cpu(device)
    largest = setup.train_sizes[-1]
    config = _path_config(path, setup, largest, path.batch)
    row = {"threads": torch.get_num_threads(), "batch": path.batch,
           "precision": precision_name(resolve_precision(path.precision, device)), "train_s_per_image": {}}
    peaks = []
    for size in setup.train_sizes:
        config = _path_config(path, setup, size, path.batch)
        if path.official:
            figures = bench_official_style(config, device, setup.original_size, setup.steps, setup.warmup,
                                           setup.workers)
        else:
            figures = bench_engine(config, device, setup.steps, setup.warmup, fused=path.fused, infer=False)
        row["train_s_per_image"][_size_key(size)] = 1.0 / figures["train_images_per_s"]
        peaks += [figures["train_peak_mb"], figures.get("infer_peak_mb", 0.0)]
    if path.official:               # its own test loop: per-sample JPEG decode, batch 1, at the largest size
        row["eval_s_per_image"] = 1.0 / figures["infer_images_per_s"]
        row["predict_s_per_image"] = math.nan
    else:
        model = build_model_from_config(config)
        small_map_gemm_for(model, path.small_map_gemm, device)
        model = prepare_model(model, device, path.channels_last)
        amp_dtype = resolve_precision(path.precision, device)
        rng = np.random.default_rng(2)
        count = max(setup.steps, EVAL_BATCH)                 # the same images for every path
        images = torch.from_numpy(rng.integers(0, 256, (count, *largest), dtype=np.uint8)).to(device)
        row["eval_s_per_image"] = time_inference(model, images, path.eval_batch, config, amp_dtype, setup.warmup)
        row["predict_s_per_image"] = math.nan
        if setup.predict_size:
            images = torch.from_numpy(rng.integers(0, 256, (setup.steps, *setup.predict_size), dtype=np.uint8))
            row["predict_s_per_image"] = time_inference(model, images.to(device), 1, config, amp_dtype,
                                                        setup.warmup)
    row["peak_mb"] = max(peaks + [peak_mb(device)])
    return row


def _measure_isolated(path: BenchPath, setup: BenchSetup) -> dict:
    """:func:`measure_path` in a fresh (spawned) process: nothing of one path's allocator or threads leaks."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_path, path, setup).result()


def _paths(precision: str, batch: int, baseline: bool) -> list:
    today = BenchPath("today")
    fast = BenchPath("fast", precision=precision, fused=True, channels_last=True, fast_cpu=True,
                     small_map_gemm=True, eval_batch=EVAL_BATCH)
    paths = [today, fast] + ([BenchPath("official-style", official=True)] if baseline else [])
    return paths + ([dataclasses.replace(fast, name=f"fast, batch {batch}", batch=batch)] if batch > 1 else [])


def _describe(path: BenchPath, row: dict, workers: int) -> str:
    if path.official:
        return f"fp32, NCHW, per-sample JPEG + numpy maps, {workers} workers"
    return (f"{row['precision']}{', channels_last' if path.channels_last else ''}, "
            f"{'fused' if path.fused else 'for-loop'} Adam, {'mallopt' if path.fast_cpu else 'default malloc'}, "
            f"{'small-map GEMM, ' if path.small_map_gemm else ''}"
            f"eval batch {path.eval_batch}")


def _columns(setup: BenchSetup):
    columns = [(f"train {_size_key(s)}", lambda r, k=_size_key(s): r["train_s_per_image"][k])
               for s in setup.train_sizes]
    columns.append((f"eval {_size_key(setup.train_sizes[-1])}", lambda r: r["eval_s_per_image"]))
    if setup.predict_size:
        columns.append((f"predict {_size_key(setup.predict_size)}", lambda r: r["predict_s_per_image"]))
    return columns


def print_table(setup: BenchSetup, paths, rows: dict) -> dict:
    """Print the rows (seconds per image, peak MB) and the ratios of the batch-1 paths to the fast path;
    returns the ratios ``{"today/fast": {column: x}, ...}``."""
    columns = _columns(setup)
    memory = "peak GPU MB" if setup.device.startswith("cuda") else "peak RSS MB"
    print(f"{'path':<18}{'threads':>8}" + "".join(f"{t + ' s/img':>22}" for t, _ in columns) + f"{memory:>13}  settings")
    for path in paths:
        r = rows[path.name]
        print(f"{path.name:<18}{r['threads']:>8}" + "".join(f"{get(r):>22.3f}" for _, get in columns)
              + f"{r['peak_mb']:>13.0f}  {_describe(path, r, setup.workers)}")
    ratios = {}
    for other in ("today", "official-style"):
        if other in rows:
            ratios[f"{other}/fast"] = {t: get(rows[other]) / get(rows["fast"]) for t, get in columns}
            print(f"{'x ' + other + '/fast':<26}" + "".join(f"{v:>21.2f}x" for v in ratios[f"{other}/fast"].values()))
    return ratios


def run_benchmark(args: argparse.Namespace) -> dict:
    """Measure every path with ``args`` (see :func:`add_benchmark_arguments`), print the table and the ratios."""
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size = tuple(args.input_size) if args.input_size else ((800, 640) if gpu else (160, 128))
    large = tuple(args.large_input_size) if args.large_input_size else (None if gpu else (320, 256))
    sizes = (size,) + ((large,) if large and min(large) > 0 and large != size else ())
    setup = BenchSetup(device=str(device), dataset=args.dataset, system=args.system, backbone=args.backbone,
                       train_sizes=sizes, predict_size=tuple(args.predict_size) if min(args.predict_size) > 0
                       else None, steps=args.steps or (20 if gpu else 3),
                       warmup=args.warmup if args.warmup is not None else (5 if gpu else 1),
                       original_size=tuple(args.original_size), workers=args.baseline_workers, compile=args.compile)
    paths = _paths(args.precision, args.batch_size or (8 if gpu else 4), args.baseline)
    isolate = (not gpu) if args.isolate is None else args.isolate
    where = torch.cuda.get_device_name(device) if gpu else f"CPU, {os.cpu_count()} cores"
    print(f"device: {where}; {args.system}/{args.backbone}; {setup.steps} timed steps per figure after "
          f"{setup.warmup} warm-up; batch 1 unless the path says; load average {os.getloadavg()[0]:.1f}; "
          f"each path in {'a fresh process' if isolate else 'this process'}")
    rows = {p.name: (_measure_isolated if isolate else measure_path)(p, setup) for p in paths}
    figures = {"device": where, "setup": dataclasses.asdict(setup), "paths": rows,
               "ratios": print_table(setup, paths, rows)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv=None) -> dict:
    """``python benchmarks/benchmark_training.py ...`` (same options as ``farnet benchmark``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=DefaultsFormatter)
    add_benchmark_arguments(parser)
    return run_benchmark(parser.parse_args(argv))
