"""The official FARNet pipeline's approach, re-implemented for ``farnet benchmark`` (no code copied).

From the description of the official ``data.py`` / ``train.py``: batch 1, fp32, NCHW; every sample is read from a
full-size JPEG on disk (3 channels), resized per sample (PIL bilinear here; the official code uses
``cv2.resize``), normalised with the [0, 1] ImageNet statistics on 0-255 values, and its targets are built in numpy
on the CPU -- a Python loop over landmarks, one ``meshgrid`` + ``exp`` float64 map per landmark at full and at half
resolution -- then copied to the device; DataLoader with ``shuffle=True`` and 4 workers; EWC as
``MSELoss(reduction="none") * 40 ** y``. Also the timing helpers the benchmark shares (sync, peak memory).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import normalize

from farnet_lite.config import TrainConfig
from farnet_lite.engine.measure import peak_mb, reset_peak, sync
from farnet_lite.preprocess import IMAGENET_MEAN, IMAGENET_STD
from farnet_lite.systems import build_model_from_config


def random_points(rng: np.random.Generator, count: int, num: int, size) -> np.ndarray:
    height, width = size
    margin = np.array([0.1 * width, 0.1 * height])
    return margin + rng.random((count, num, 2)) * (np.array([width, height]) - 2 * margin)


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
        height, width = self.size
        with Image.open(self.files[index]) as im:
            original = im.convert("RGB")                             # cv2.imread gives 3 channels
            scale_w, scale_h = original.width / width, original.height / height
            image = np.asarray(original.resize((width, height), Image.BILINEAR))
        image = torch.from_numpy(np.transpose(image, (2, 0, 1)).copy()).float()       # (3, H, W), 0..255
        image = normalize(image, list(IMAGENET_MEAN), list(IMAGENET_STD))       # on 0..255, as the official
        xs, ys = self.points[index][:, 0] / scale_w, self.points[index][:, 1] / scale_h
        full = np.zeros((len(xs), height, width))
        half = np.zeros((len(xs), height // 2, width // 2))
        for k in range(len(xs)):
            full[k] = official_style_heatmap(width, height, xs[k], ys[k], self.sigma)
            half[k] = official_style_heatmap(width // 2, height // 2, xs[k] / 2, ys[k] / 2, self.sigma)
        return (image, torch.from_numpy(full.astype("float32")), torch.from_numpy(half.astype("float32")))


def _write_radiographs(folder: Path, rng: np.random.Generator, count: int, size) -> list:
    """``count`` textured full-size ``(H, W)`` radiograph stand-ins as JPEGs in ``folder`` (what the baseline reads)."""
    height, width = size
    base = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1), dtype=np.uint8)
    files = []
    for i in range(count):
        image = np.kron(base, np.ones((16, 16), np.uint8))[:height, :width] // 2
        image = image + rng.integers(0, 128, (height, width), dtype=np.uint8)
        files.append(folder / f"{i:03d}.jpg")
        Image.fromarray(image).save(files[-1], quality=95)
    return files


def bench_official_style(config: TrainConfig, device, original_size, steps: int, warmup: int,
                         workers: int) -> dict:
    """Train and inference images/s of the official pipeline's approach (see the module docstring)."""
    rng = np.random.default_rng(1)
    count = steps + warmup
    folder = Path(tempfile.mkdtemp(prefix="farnet-bench-"))
    files = _write_radiographs(folder, rng, min(count, 8), original_size)
    files = [files[i % len(files)] for i in range(count)]
    points = random_points(rng, count, config.num_landmarks, original_size)
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
        reset_peak(device)
        done, start = 0, None
        for image, full, half in loader():
            if done == warmup:
                sync(device)
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
        sync(device)
        train_ips = steps / (time.perf_counter() - start)
        train_peak = peak_mb(device)

        del optimizer
        reset_peak(device)
        done = 0
        with torch.no_grad():   # the official test loop also builds the maps and leaves the model in train mode
            for image, full, half in loader():
                if done == warmup:
                    sync(device)
                    start = time.perf_counter()
                final = model(image.to(device)).final
                final.cpu().numpy()
                done += 1
        sync(device)
        infer_ips = steps / (time.perf_counter() - start)
    finally:
        for f in set(files):
            f.unlink()
        folder.rmdir()
    return {"train_images_per_s": train_ips, "infer_images_per_s": infer_ips, "train_peak_mb": train_peak,
            "infer_peak_mb": peak_mb(device)}
