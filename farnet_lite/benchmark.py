"""``farnet benchmark``: images/s and peak memory of this engine against the official pipeline's approach.

Introduced in notebook 06_training_on_gpu.

*This engine* (the real code path: ``BatchSource`` + ``train_one_epoch`` + ``predict_batch``): uint8 images
already at the input size in device memory, Gaussian targets drawn on the device inside the step, mixed precision,
channels_last, any batch size.

*Official-style baseline*, re-implemented from the description of the official FARNet ``data.py`` /
``train.py`` (no code copied): batch 1, fp32, NCHW; every sample is read from a full-size JPEG on disk
(3 channels), resized per sample (PIL bilinear here; the official code uses ``cv2.resize``), normalised with the
[0, 1] ImageNet statistics on 0-255 values, and its targets are built in numpy on the CPU -- a Python loop over
landmarks, one ``meshgrid`` + ``exp`` float64 map per landmark at full and at half resolution -- then copied to
the device; DataLoader with ``shuffle=True`` and 4 workers; EWC as ``MSELoss(reduction="none") * 40 ** y``.
Both run the same model, so the ratio measures the pipeline, not the network.

This prints figures; it asserts nothing (timings depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from farnet_lite.config import DATASETS, TrainConfig
from farnet_lite.engine import (BatchSource, build_optimizer, build_scheduler, make_scaler, prepare_model,
                                resolve_device, resolve_precision)


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``farnet benchmark`` (GPU defaults in brackets are used when --device resolves to cuda)."""
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="network input (default: 800 640 on a GPU, 128 128 on the CPU)")
    parser.add_argument("--batch", type=int, default=None, help="batch of this engine (default: 8 GPU, 4 CPU)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                        help="precision of this engine (always fp32 on the CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps (default: 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default: 5 GPU, 1 CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dataset", default="isbi2015", choices=tuple(DATASETS), help="sets the landmark count")
    parser.add_argument("--system", default="msfa_fr", help="architecture (msfa_fr = FARNet)")
    parser.add_argument("--backbone", default="densenet121", help="backbone")
    parser.add_argument("--original-size", nargs=2, type=int, metavar=("H", "W"), default=(2400, 1935),
                        help="size of the JPEGs the baseline reads and resizes per sample (ISBI: 2400 1935)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="channels_last for this engine (default: on for a GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile this engine's model")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the official-style baseline")
    parser.add_argument("--baseline-workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DataLoader workers of the baseline (official: 4)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    """Restart the peak-memory count: CUDA's allocator stats, or on Linux the process's RSS high-water mark."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM (Linux >= 4.0)
    except OSError:
        pass


def _peak_mb(device: torch.device) -> float:
    """Peak GPU memory allocated since the reset, or the main process's peak RSS on the CPU (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # lifetime peak: an upper bound


def _random_points(rng: np.random.Generator, count: int, num: int, size) -> np.ndarray:
    height, width = size
    margin = np.array([0.1 * width, 0.1 * height])
    return margin + rng.random((count, num, 2)) * (np.array([width, height]) - 2 * margin)


def bench_engine(config: TrainConfig, device, steps: int, warmup: int) -> dict:
    """Train and inference images/s of this engine on random uint8 images kept in device memory."""
    from farnet_lite.checkpoint import build_model_from_config
    from farnet_lite.evaluate import predict_batch
    from farnet_lite.train import train_one_epoch

    amp_dtype = resolve_precision(config.precision, device)
    rng = np.random.default_rng(0)
    count = config.batch_size * (steps + warmup)
    cache = SimpleNamespace(images=rng.integers(0, 256, (count, *config.input_size), dtype=np.uint8),
                            landmarks=_random_points(rng, count, config.num_landmarks, config.input_size))
    model = prepare_model(build_model_from_config(config), device, config.channels_last)
    net = torch.compile(model) if config.compile else model
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config, optimizer, steps + warmup)
    scaler = make_scaler(amp_dtype, device)
    source = BatchSource(cache, device, "yes")
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.arange(count)
    split = config.batch_size * warmup
    _reset_peak(device)
    train_one_epoch(net, source, order[:split], optimizer, scheduler, scaler, config, amp_dtype, generator, 0)
    _sync(device)
    start = time.perf_counter()
    train_one_epoch(net, source, order[split:], optimizer, scheduler, scaler, config, amp_dtype, generator, 1)
    _sync(device)
    train_ips = (count - split) / (time.perf_counter() - start)
    train_peak = _peak_mb(device)

    del optimizer, scaler
    _reset_peak(device)
    net.eval()
    batches = [source.images[i:i + config.batch_size] for i in range(0, count, config.batch_size)]
    for images in batches[:warmup]:
        predict_batch(net, images, config.input_size, config, amp_dtype)
    _sync(device)
    start = time.perf_counter()
    for images in batches[warmup:]:
        predict_batch(net, images, config.input_size, config, amp_dtype)
    _sync(device)
    infer_ips = (count - split) / (time.perf_counter() - start)
    return {"train_images_per_s": train_ips, "infer_images_per_s": infer_ips, "train_peak_mb": train_peak,
            "infer_peak_mb": _peak_mb(device)}


def official_style_heatmap(width: int, height: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    """One float64 Gaussian map the way the official data.py builds it: meshgrid over 1..W x 1..H, exp."""
    xs, ys = np.meshgrid(np.linspace(1, width, width), np.linspace(1, height, height))
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2.0 * sigma * sigma))


class OfficialStyleDataset(torch.utils.data.Dataset):
    """Per sample: read a full-size JPEG, resize, normalise 0-255 values, build 2 x K numpy maps in a loop."""

    def __init__(self, files, points, size, sigma: float = 10.0):
        self.files, self.points, self.size, self.sigma = files, points, size, sigma

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        from PIL import Image
        from torchvision.transforms.functional import normalize

        height, width = self.size
        with Image.open(self.files[index]) as im:
            original = im.convert("RGB")                             # cv2.imread gives 3 channels
            scale_w, scale_h = original.width / width, original.height / height
            image = np.asarray(original.resize((width, height), Image.BILINEAR))
        image = torch.from_numpy(np.transpose(image, (2, 0, 1)).copy()).float()       # (3, H, W), 0..255
        image = normalize(image, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
        xs, ys = self.points[index][:, 0] / scale_w, self.points[index][:, 1] / scale_h
        full = np.zeros((len(xs), height, width))
        half = np.zeros((len(xs), height // 2, width // 2))
        for k in range(len(xs)):
            full[k] = official_style_heatmap(width, height, xs[k], ys[k], self.sigma)
            half[k] = official_style_heatmap(width // 2, height // 2, xs[k] / 2, ys[k] / 2, self.sigma)
        return (image, torch.from_numpy(full.astype("float32")), torch.from_numpy(half.astype("float32")))


def bench_official_style(config: TrainConfig, device, original_size, steps: int, warmup: int,
                         workers: int) -> dict:
    """Train and inference images/s of the official pipeline's approach (see the module docstring)."""
    from PIL import Image

    from farnet_lite.checkpoint import build_model_from_config

    rng = np.random.default_rng(1)
    count = steps + warmup
    folder = Path(tempfile.mkdtemp(prefix="farnet-bench-"))
    files = []
    height, width = original_size
    base = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
    for i in range(min(count, 8)):                                 # textured full-size radiograph stand-ins
        image = np.kron(base, np.ones((16, 16), np.uint8))[:height, :width] // 2
        image = image + rng.integers(0, 128, (height, width), dtype=np.uint8)
        files.append(folder / f"{i:03d}.jpg")
        Image.fromarray(image).save(files[-1], quality=95)
    files = [files[i % len(files)] for i in range(count)]
    points = _random_points(rng, count, config.num_landmarks, original_size)
    dataset = OfficialStyleDataset(files, points, config.input_size, config.sigma)
    model = build_model_from_config(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = torch.nn.MSELoss(reduction="none")

    def ewc(pred, target):
        return torch.mean(criterion(pred, target) * torch.pow(40.0, target))

    def loader():
        return torch.utils.data.DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers)

    try:
        model.train()
        _reset_peak(device)
        done, start = 0, None
        for image, full, half in loader():
            if done == warmup:
                _sync(device)
                start = time.perf_counter()
            image, full, half = image.to(device), full.to(device), half.to(device)
            loss = 0.0
            for output in model(image):        # FARNet: final (full resolution) and coarse (half)
                if output is not None:
                    loss = loss + ewc(output, full if output.shape[-1] == full.shape[-1] else half)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
        _sync(device)
        train_ips = steps / (time.perf_counter() - start)
        train_peak = _peak_mb(device)

        del optimizer
        _reset_peak(device)
        done = 0
        with torch.no_grad():   # the official test loop also builds the maps and leaves the model in train mode
            for image, full, half in loader():
                if done == warmup:
                    _sync(device)
                    start = time.perf_counter()
                final = model(image.to(device)).final
                final.cpu().numpy()
                done += 1
        _sync(device)
        infer_ips = steps / (time.perf_counter() - start)
    finally:
        for f in set(files):
            f.unlink()
        folder.rmdir()
    return {"train_images_per_s": train_ips, "infer_images_per_s": infer_ips, "train_peak_mb": train_peak,
            "infer_peak_mb": _peak_mb(device)}


def run_benchmark(args: argparse.Namespace) -> dict:
    """Run both pipelines with ``args`` (see :func:`add_benchmark_arguments`) and print the figures."""
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    size = tuple(args.size) if args.size else ((800, 640) if gpu else (128, 128))
    batch = args.batch or (8 if gpu else 4)
    steps = args.steps or (20 if gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    channels_last = gpu if args.channels_last is None else args.channels_last
    config = TrainConfig(dataset=args.dataset, input_size=size, system=args.system, backbone=args.backbone,
                         batch_size=batch, precision=args.precision, channels_last=channels_last,
                         compile=args.compile, lr=1e-4, lr_schedule="constant", device=str(device), progress=False)
    amp = resolve_precision(config.precision, device)
    where = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {where}; input {size[0]}x{size[1]}; {args.system}/{args.backbone}; "
          f"{config.num_landmarks} landmarks; {steps} timed steps after {warmup} warm-up")
    figures = {"device": where, "input_size": list(size), "system": args.system, "backbone": args.backbone,
               "engine": dict(bench_engine(config, device, steps, warmup), batch=batch,
                              precision=str(amp or torch.float32).replace("torch.", ""),
                              channels_last=channels_last, compile=args.compile)}
    rows = [("farnet-lite", f"b={batch}, {figures['engine']['precision']}"
             f"{', channels_last' if channels_last else ''}", figures["engine"])]
    if args.baseline:
        figures["official_style"] = dict(
            bench_official_style(config, device, tuple(args.original_size), steps, warmup,
                                 args.baseline_workers), batch=1, precision="float32", channels_last=False)
        rows.append(("official-style", f"b=1, fp32, {args.baseline_workers} workers", figures["official_style"]))
    memory = "peak GPU MB" if gpu else "peak RSS MB"  # CPU: main process (not DataLoader workers)
    print(f"{'pipeline':<16}{'settings':<30}{'train img/s':>12}{'infer img/s':>12}{memory:>14}")
    for name, settings, f in rows:
        print(f"{name:<16}{settings:<30}{f['train_images_per_s']:>12.2f}{f['infer_images_per_s']:>12.2f}"
              f"{max(f['train_peak_mb'], f['infer_peak_mb']):>14.0f}")
    if args.baseline:
        base = figures["official_style"]
        figures["speedup_train"] = figures["engine"]["train_images_per_s"] / base["train_images_per_s"]
        figures["speedup_infer"] = figures["engine"]["infer_images_per_s"] / base["infer_images_per_s"]
        print(f"{'speed-up':<46}{figures['speedup_train']:>11.2f}x{figures['speedup_infer']:>11.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def main(argv=None) -> dict:
    """``python benchmarks/benchmark_training.py ...`` (same options as ``farnet benchmark``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_benchmark_arguments(parser)
    return run_benchmark(parser.parse_args(argv))
