"""Prepared cache: every radiograph of a split resized ONCE to the network input and stored in one file.

Decoding and resizing a full 1935x2400 ISBI radiograph for every image in every epoch dominates a small GPU
job. `prepare_cache` does it once and writes one `.npz` holding

    encoded         (sum of bytes,) uint8   every resized image, JPEG (default) or PNG, back to back
    offsets         (N + 1,) int64          image i is encoded[offsets[i]:offsets[i + 1]]
    landmarks       (N, K, 2) float64       (x, y) in the CACHE grid, NaN where unlabelled
    original_sizes  (N, 2) int64            (H, W) of the original images
    ids             (N,) str
    meta, fingerprint, format               JSON / version strings (name, split, size, codec, metric, ...)

`load_cache` decodes all images once into `PreparedCache.images`, an `(N, H, W)` uint8 array in memory.

Grid change. Landmarks go through `farnet_lite.heatmaps.rescale_points` (``x -> (x + 0.5) * s - 0.5`` per
axis, pixel centres at integers), and `PreparedCache.to_original` maps predictions back the same way, so a
point survives original -> cache -> original exactly (up to float rounding).

Resizing. Pillow's ``Image.resize(..., BILINEAR)`` with its antialias: Pillow widens the triangle filter by the
reduction factor, so a 3x downscale averages over each output pixel's whole footprint (area-like) instead of
sampling and aliasing. Its geometry is the same pixel-centre convention (image edges map onto edges).

Decoding. A `LandmarkDataset` of JPEGs (ISBI's .jpg copies, the hand atlas, the spine) is decoded in Pillow's draft mode
(`farnet_lite.data.imageio.read_reduced`): libjpeg shrinks each 8x8 DCT block by s = 2, 4 or 8 while decoding,
with s the largest factor that keeps the draft >= 2x the cache size in both axes, so the BILINEAR resize above
still averages at least 2x2 draft pixels per cache pixel, and a large JPEG decodes several times faster.
Geometry: a draft has ceil(H0 / s) rows, which cover ceil(H0 / s) * s >= H0 source rows (the last block is
padded), so resizing the whole draft would stretch the content by up to s - 1 source pixels (1 px = 0.05 % of
an ISBI width at s = 8); the resize therefore reads only the box (0, 0, W0 / s, H0 / s) of the draft -- exactly
the original extent -- and landmarks are rescaled from the ORIGINAL (H0, W0), which `original_sizes` stores.
Measured on 20 ISBI images, the resized draft differs from the resized full decode by 0.21 (64x64), 0.19
(160x128) and 0.16 (320x256) grey levels on average (mean |diff|; 0.33-0.40 without the box), below the
JPEG codec's own ~0.7. Other formats (PNG, BMP, TIFF, DICOM), JPEGs smaller than 2x the cache size and plain
sequences of `Sample`s are decoded fully; so is every raw image file given to `farnet_lite.engine.predict.predict`,
so a cached image and a raw one differ by those ~0.2 grey levels -- far inside the JPEG noise and the training
intensity augmentation. The fingerprint's "decode" field names the decoder, so caches built by the full decoder
are rebuilt once.

Codec (measured on the real data, see docs): the source radiographs are themselves JPEGs full of fine noise,
so lossless PNG is only ~2.5x smaller than raw (ISBI at 800x640: 205 MB raw, 80 MB PNG) and cannot meet the
60 MB budget of a cache that travels to a GPU machine. JPEG quality 93 (the default) stores ISBI 800x640
(400 images) in ~34 MB and the spine at 1024x512 (609 images) in ~47 MB, with a mean absolute error of
~0.7 grey levels -- well below the intensity augmentation. ``codec="png"`` keeps the pixels exactly.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from farnet_lite.atomic import atomic_path, sweep_stale_temps
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.sample import MetricSpec
from farnet_lite.heatmaps import rescale_points

CACHE_FORMAT = "farnet-lite-cache/1"
DEFAULT_CODEC = "jpeg"
DEFAULT_QUALITY = 93
RESAMPLING = "PIL.Image.BILINEAR (antialiased, area-like when downscaling)"
DRAFT_DECODE = "jpeg-draft>=2x"   # fingerprint "decode" of a LandmarkDataset (JPEG draft at >= 2x the cache size)
FULL_DECODE = "full"              # fingerprint "decode" of any other sequence of Samples


class CacheError(DatasetError):
    """A cache file that cannot be used (corrupt, foreign or from an incompatible version)."""


@dataclass
class PreparedCache:
    """One split of one dataset, resized to `size`, decoded into memory.

    Build with `prepare_cache`, open with `load_cache`.

    images:          (N, H, W) uint8 grey images in the cache grid, (H, W) = `size`.
    landmarks:       (N, K, 2) float64 (x, y) in the cache grid, pixel centres at integers; NaN if unlabelled.
    original_sizes:  (N, 2) int64 (H, W) of each original radiograph.
    ids:             the dataset ids, in order.
    """
    images: np.ndarray
    landmarks: np.ndarray
    original_sizes: np.ndarray
    ids: tuple
    size: tuple
    name: str = "custom"
    split: str = ""
    metric: Optional[MetricSpec] = None
    fingerprint: dict = field(default_factory=dict)
    path: Optional[Path] = None
    spacings: Optional[np.ndarray] = None   # (N,) mm per pixel of each original image (NaN unknown), if known

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_landmarks(self) -> int:
        return int(self.landmarks.shape[1])

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: True where the sample has landmarks (i.e. they are not NaN)."""
        return ~np.isnan(self.landmarks).all(axis=(1, 2))

    def to_original(self, points, index):
        """Map `(..., 2)` points from the cache grid to the original image(s) `index` (int, or an (N,) array
        of indices for points of shape (N, K, 2)). numpy or torch in, same type out (via rescale_points)."""
        return rescale_points(points, self.size, self.original_sizes[np.asarray(index)])


def resize_image(image: np.ndarray, size: Sequence[int], box: Optional[Sequence[float]] = None) -> np.ndarray:
    """Resize an `(H0, W0)` uint8 image to `size` = (H, W) with Pillow BILINEAR + antialias (see module doc).

 Same pixel-centre convention as `rescale_points`. `box` =
    (x0, y0, x1, y1), floats in pixel-EDGE coordinates of `image`, resizes only that region (default: all of it);
    the cache uses (0, 0, W0 / s, H0 / s) for a JPEG draft reduced by s (`farnet_lite.data.imageio.Reduced`).
    """
    height, width = int(size[0]), int(size[1])
    image = np.asarray(image)
    if box is None and image.shape == (height, width):
        return image.copy()
    box = None if box is None else tuple(float(v) for v in box)
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR, box=box), dtype=np.uint8)


def encode_image(image: np.ndarray, codec: str = DEFAULT_CODEC, quality: int = DEFAULT_QUALITY) -> bytes:
    """Encode an `(H, W)` uint8 image as JPEG (`quality`) or PNG (lossless) bytes."""
    buffer = io.BytesIO()
    if codec == "jpeg":
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    elif codec == "png":
        Image.fromarray(image).save(buffer, format="PNG", compress_level=6)
    else:
        raise ValueError(f"codec must be 'jpeg' or 'png', got {codec!r}.")
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes into an `(H, W)` uint8 array."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("L") if im.mode != "L" else im, dtype=np.uint8)


def default_cache_name(name: str, split: str, size: Sequence[int]) -> str:
    """File name used by the CLI, e.g. ``isbi2015_train_800x640.npz``."""
    return f"{name}_{split}_{int(size[0])}x{int(size[1])}.npz"


# ----------------------------------------------------------------------------- building

def _all_landmarks(dataset) -> list:
    """(K, 2) array or None per sample, without decoding images when the dataset allows it."""
    if callable(getattr(dataset, "landmarks", None)):
        return [dataset.landmarks(i) for i in range(len(dataset))]
    return [sample.landmarks for sample in dataset]


def _file_stamp(path: Path) -> list:
    """(size in bytes, modification time in ns) of an image file: a changed image changes the cache key."""
    try:
        stat = Path(path).stat()
    except OSError:
        return [-1, -1]
    return [int(stat.st_size), int(stat.st_mtime_ns)]


def _decodes_drafts(dataset) -> bool:
    """Whether the cache decodes ``dataset``'s images in draft mode (a `LandmarkDataset`: ``reduced_image``)."""
    return callable(getattr(dataset, "reduced_image", None))


def _fingerprint(dataset, size, codec, quality, landmarks) -> dict:
    digest, files = hashlib.sha256(), hashlib.sha256()
    for points in landmarks:
        digest.update(b"none" if points is None else np.ascontiguousarray(points, dtype=np.float64).tobytes())
    for path in getattr(dataset, "paths", None) or ():
        files.update(json.dumps([str(path)] + _file_stamp(path)).encode())
    spacings = getattr(dataset, "spacings", None)
    if spacings is not None:
        digest.update(np.ascontiguousarray(spacings, dtype=np.float64).tobytes())
    ids = [str(i) for i in getattr(dataset, "ids", None) or [s.image_id for s in dataset]]
    decode = DRAFT_DECODE if _decodes_drafts(dataset) else FULL_DECODE
    return {"format": CACHE_FORMAT, "name": getattr(dataset, "name", "custom"),
            "split": getattr(dataset, "split", ""), "annotation": getattr(dataset, "annotation", None),
            "ids": ids, "size": [int(size[0]), int(size[1])], "codec": codec,
            "quality": int(quality) if codec == "jpeg" else None, "decode": decode,
            "landmarks_sha256": digest.hexdigest(),
            "files_sha256": files.hexdigest()}


def read_fingerprint(path: Union[str, Path]) -> Optional[dict]:
    """The fingerprint stored in a cache file, or None when the file is missing, corrupt or foreign."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["format"]) != CACHE_FORMAT:
                return None
            return json.loads(str(npz["fingerprint"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


_WORKER_STATE: dict = {}


def _init_worker(dataset, size, codec, quality) -> None:
    _WORKER_STATE.update(dataset=dataset, size=size, codec=codec, quality=quality)


def _decode_one(dataset, index: int, size) -> tuple:
    """(image id, image, ORIGINAL (H0, W0), draft scale, landmarks or None) of sample `index`.

    A dataset with ``reduced_image`` (a `LandmarkDataset`) gives JPEGs decoded in draft mode at >= 2x `size`
    (see the module docstring); any other sequence of Samples is decoded fully (scale 1).
    """
    if _decodes_drafts(dataset):
        image, original, scale = dataset.reduced_image(index, (2 * size[0], 2 * size[1]))
        return dataset.ids[index], image, tuple(original), int(scale), dataset.landmarks(index)
    sample = dataset[index]
    image = np.asarray(sample.image)
    return sample.image_id, image, tuple(image.shape), 1, sample.landmarks


def _prepare_one(index: int):
    """Worker: decode sample `index`, resize, encode -> (bytes, (H0, W0), landmarks in cache grid or None).

    Landmarks are rescaled from the ORIGINAL size (never a draft's), so original -> cache -> original is exact.
    """
    state = _WORKER_STATE
    size = state["size"]
    image_id, image, original, scale, landmarks = _decode_one(state["dataset"], index, size)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise DatasetError(f"Sample {image_id} has an image of shape {image.shape} {image.dtype}; "
                           f"the cache needs (H, W) uint8 grey images.")
    box = None if scale == 1 else (0.0, 0.0, original[1] / scale, original[0] / scale)   # the original extent
    data = encode_image(resize_image(image, size, box), state["codec"], state["quality"])
    points = None
    if landmarks is not None:
        points = rescale_points(np.asarray(landmarks, dtype=np.float64), original, size)
    return data, original, points


def prepare_cache(dataset, size: Sequence[int], path: Union[str, Path], num_workers: Optional[int] = None,
                  codec: str = DEFAULT_CODEC, quality: int = DEFAULT_QUALITY, force: bool = False,
                  progress: bool = True) -> Path:
    """Resize every sample of `dataset` to `size` = (H, W) once and store it in one `.npz` at `path`.

    Args:
        dataset: a `LandmarkDataset` (or any sequence of `Sample`s).
        size: (H, W) of the network input, e.g. (800, 640) for ISBI, (512, 512) hand, (1024, 512) spine.
        path: the cache file (".npz"); written atomically (temp file + rename).
        num_workers: processes that decode/resize in parallel (default: min(4, CPUs)); 0 or 1 = in-process.
        codec, quality: "jpeg" (default, `quality` 93) or "png" (lossless); see the module docstring.
        force: rebuild even when an up-to-date cache exists.

    Returns:
        `path`. When `path` already holds a cache with the same fingerprint (dataset name, split, ids,
        landmarks, size, codec, and every image file's size and modification time) nothing is rebuilt.
    """
    path = Path(path)
    size = (int(size[0]), int(size[1]))
    if codec not in ("jpeg", "png"):
        raise ValueError(f"codec must be 'jpeg' or 'png', got {codec!r}.")
    if len(dataset) == 0:
        raise DatasetError(f"Cannot build the cache {path} from an empty dataset; check the dataset root.")
    landmarks = _all_landmarks(dataset)
    fingerprint = _fingerprint(dataset, size, codec, quality, landmarks)
    if not force and path.is_file() and read_fingerprint(path) == fingerprint:
        return path
    sweep_stale_temps(path.parent)  # half-written caches of killed runs

    workers = min(4, os.cpu_count() or 1) if num_workers is None else int(num_workers)
    workers = max(0, min(workers, len(dataset)))
    bar = tqdm(total=len(dataset), desc=f"cache {fingerprint['name']}/{fingerprint['split']} "
                                        f"{size[0]}x{size[1]}", disable=not progress, unit="img")
    with bar:
        results = _encode_all(dataset, size, codec, quality, workers, bar)
    _write_cache(path, dataset, fingerprint, results, size, codec)
    return path


def _encode_all(dataset, size, codec, quality, workers: int, bar) -> list:
    """``_prepare_one`` for every sample, in order: in this process (``workers`` <= 1) or in a process pool."""
    indices = range(len(dataset))
    results = []
    if workers <= 1:
        _init_worker(dataset, size, codec, quality)
        try:
            for index in indices:
                results.append(_prepare_one(index))
                bar.update()
        finally:
            _WORKER_STATE.clear()
    else:
        with ProcessPoolExecutor(workers, initializer=_init_worker,
                                 initargs=(dataset, size, codec, quality)) as pool:
            for result in pool.map(_prepare_one, indices, chunksize=4):
                results.append(result)
                bar.update()
    return results


def _write_cache(path: Path, dataset, fingerprint: dict, results: list, size, codec: str) -> None:
    """Assemble the arrays of the module docstring from the encoded samples and save them atomically."""
    num_landmarks = getattr(dataset, "num_landmarks", None)
    if num_landmarks is None:
        num_landmarks = next((len(p) for _, _, p in results if p is not None), 0)
    points = np.full((len(results), num_landmarks, 2), np.nan)
    for i, (_, _, p) in enumerate(results):
        if p is not None:
            points[i] = p
    lengths = [len(data) for data, _, _ in results]
    metric = getattr(dataset, "metric", None) or dataset[0].metric
    meta = {"name": fingerprint["name"], "split": fingerprint["split"], "size": list(size),
            "num_landmarks": int(num_landmarks), "codec": codec, "quality": fingerprint["quality"],
            "resampling": RESAMPLING, "metric_kind": metric.kind, "spacing_mm": metric.spacing_mm}
    arrays = {
        "format": np.array(CACHE_FORMAT),
        "fingerprint": np.array(json.dumps(fingerprint)),
        "meta": np.array(json.dumps(meta)),
        "encoded": np.frombuffer(b"".join(data for data, _, _ in results), dtype=np.uint8),
        "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "landmarks": points,
        "original_sizes": np.array([s for _, s, _ in results], dtype=np.int64).reshape(-1, 2),
        "ids": np.array(fingerprint["ids"], dtype=str),
    }
    if getattr(dataset, "spacings", None) is not None:
        arrays["spacings"] = np.asarray(dataset.spacings, dtype=np.float64)     # (N,) mm, NaN unknown
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)  # payload is already compressed (JPEG/PNG): no zip deflate


# ----------------------------------------------------------------------------- loading

def load_cache(path: Union[str, Path], num_threads: Optional[int] = None) -> PreparedCache:
    """Open a cache written by `prepare_cache` and decode every image once into memory.

 Raises FileNotFoundError for a missing file and CacheError (one sentence
    naming the file and the fix) for a corrupt, foreign or incompatible one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Cache file {path} does not exist; build it with prepare_cache() (farnet train "
                                f"and farnet evaluate build the caches they need).")
    rebuild = "delete it and rebuild it with prepare_cache() (farnet train / evaluate do so on their next run)"
    try:
        with np.load(path, allow_pickle=False) as npz:
            version = str(npz["format"]) if "format" in npz.files else None
            if version != CACHE_FORMAT:
                raise CacheError(f"{path} is not a farnet-lite cache of format {CACHE_FORMAT} (found "
                                 f"{version}); {rebuild}.")
            meta = json.loads(str(npz["meta"]))
            fingerprint = json.loads(str(npz["fingerprint"]))
            encoded = npz["encoded"]
            offsets = npz["offsets"]
            landmarks = npz["landmarks"].astype(np.float64)
            original_sizes = npz["original_sizes"].astype(np.int64)
            ids = tuple(str(i) for i in npz["ids"])
            spacings = npz["spacings"].astype(np.float64) if "spacings" in npz.files else None
    except CacheError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise CacheError(f"{path} is not a readable farnet-lite cache (corrupt or a foreign file: "
                         f"{type(err).__name__}); {rebuild}.") from err

    size = (int(meta["size"][0]), int(meta["size"][1]))
    count = len(ids)
    if len(offsets) != count + 1 or landmarks.shape[0] != count or original_sizes.shape != (count, 2):
        raise CacheError(f"{path} has inconsistent array lengths (a damaged cache); {rebuild}.")
    images = np.empty((count, *size), dtype=np.uint8)

    def decode(i: int) -> None:
        image = decode_image(encoded[offsets[i]:offsets[i + 1]].tobytes())
        if image.shape != size:
            raise ValueError(f"image {i} has shape {image.shape}")
        images[i] = image

    threads = num_threads or min(4, os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(decode, range(count)))
    except (OSError, ValueError, SyntaxError) as err:
        raise CacheError(f"{path} holds an image that cannot be decoded ({err}); {rebuild}.") from err
    metric = MetricSpec(meta["metric_kind"], meta["spacing_mm"]) if meta.get("metric_kind") else None
    return PreparedCache(images, landmarks, original_sizes, ids, size, meta["name"], meta["split"], metric,
                         fingerprint, path, spacings)
