"""Reading radiographs as grey uint8 arrays (Pillow, and pydicom for DICOM), and listing the image files of folders.

All three datasets store 8-bit images (ISBI: BMP originals or 3-channel JPEG copies with identical channels; hand
atlas and spine: 1-channel JPEG); every one is returned as "L" (grey) so the rest of the pipeline sees `(H, W) uint8`.

Accepted formats: PNG, JPEG, BMP, TIFF and DICOM. 16-bit and 32-bit integer images are scaled by their peak, float
images (e.g. a TIFF of 0-1 values) by their min..max range; DICOM goes through :mod:`farnet_lite.data.dicom`
(rescale, VOI window, MONOCHROME1 inversion), which also gives its pixel spacing (`read_image`, `pixel_spacing`).

`read_reduced` is the prepared cache's reader: a JPEG is decoded in Pillow's draft mode, where libjpeg scales
each 8x8 DCT block down by 1/2, 1/4 or 1/8 while decoding (~5x faster; measured in `farnet_lite.data.cache`);
every other format is decoded fully.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from farnet_lite.atomic import atomic_path
from farnet_lite.data.dicom import DICOM_SUFFIXES, dicom_size, dicom_spacing, is_dicom, read_dicom
from farnet_lite.data.errors import DatasetError

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff") + DICOM_SUFFIXES
IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF (8/16-bit, float scaled by its range) and DICOM (.dcm)"

# Pillow's "truncated/corrupt file" errors: OSError (truncated data), SyntaxError (bad BMP/PNG header
# in some versions), ValueError/struct errors from broken headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def load_grey(path: Path | str) -> np.ndarray:
    """Decode an image file into a grey `(H, W) uint8` array ("L"; colour images are converted with
    Pillow's ITU-R 601 luma, which leaves images with 3 identical channels unchanged).

    Raises DatasetError naming the file if it is missing, truncated or corrupt.
    """
    return read_image(path)[0]


def _to_uint8(im: Image.Image, path: Path) -> np.ndarray:
    """A decoded Pillow image as (H, W) uint8: integer modes scaled by their peak, float modes by their range."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(im, dtype=np.float64)               # 16/32-bit integers: the peak becomes 255
        return np.round(array * (255.0 / max(float(array.max()), 1.0))).astype(np.uint8)
    if im.mode == "F":
        array = np.asarray(im, dtype=np.float64)               # floats (e.g. 0-1): min..max becomes 0..255
        if not np.isfinite(array).all():
            raise DatasetError(f"Image {path} holds values that are not finite (NaN or inf); save it again with "
                               f"finite values or as 8/16-bit.")
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return np.round(scaled).astype(np.uint8)
    grey = im if im.mode == "L" else im.convert("L")
    return np.array(grey, dtype=np.uint8)


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise DatasetError(f"Image file {path} does not exist; re-download the dataset or remove its entry.")


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn Pillow's errors for a truncated or corrupt file inside the block into one DatasetError naming it."""
    try:
        yield
    except _DECODE_ERRORS as err:
        raise DatasetError(f"Could not decode image {path} ({type(err).__name__}: {err}); the file is "
                           f"truncated or corrupt, re-download it.") from err


def read_image(path: Path | str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """``(image (H, W) uint8, pixel spacing (row, column) in mm or None)`` of any accepted format.

    Only DICOM files state a spacing here. Raises DatasetError naming the file if it is missing or unreadable.
    """
    path = Path(path)
    _check_exists(path)
    if is_dicom(path):
        return read_dicom(path)
    with _decoding(path), Image.open(path) as im:
        im.load()
        return _to_uint8(im, path), None


class Reduced(NamedTuple):
    """What `read_reduced` returns.

    image:          (h, w) uint8 grey; (h, w) = ceil((H, W) / scale).
    original_size:  (H, W) of the file's full-resolution image.
    scale:          1 (decoded fully), 2, 4 or 8: image pixel (j, i) is the mean-like reduction of the source
                    block of rows [j*scale, (j+1)*scale) and columns [i*scale, (i+1)*scale), so its centre sits at
                    (i + 0.5) * scale - 0.5 in source pixels (the pixel-centre convention of `rescale_points`).
    The last row/column of blocks may reach past the image (ceil); the original extent is exactly
    (H / scale, W / scale) image pixels, which is the box to resize from (see `farnet_lite.data.cache`).
    """
    image: np.ndarray
    original_size: tuple[int, int]
    scale: int


def draft_scale(original_size: tuple[int, int], at_least: tuple[int, int]) -> int:
    """The largest JPEG draft factor s in (8, 4, 2) with s * at_least <= original_size in both axes, else 1."""
    height, width = original_size
    return next((s for s in (8, 4, 2) if s * at_least[0] <= height and s * at_least[1] <= width), 1)


def read_reduced(path: Path | str, at_least: tuple[int, int]) -> Reduced:
    """Decode an image at a reduced size of at least `at_least` = (h, w) where that is cheap (JPEG draft mode).

    A JPEG whose `draft_scale` is 2, 4 or 8 is decoded with libjpeg's DCT-domain downscaling by that factor
    (same colour conversion to grey as `read_image`); every other file -- PNG, BMP, TIFF, DICOM, or a JPEG smaller
    than 2 * `at_least` -- is decoded fully with `read_image` (scale 1). Raises the same DatasetError as
    `read_image` for a missing, truncated or corrupt file.
    """
    path = Path(path)
    _check_exists(path)
    if not is_dicom(path):
        with _decoding(path), Image.open(path) as im:
            original = (int(im.height), int(im.width))
            scale = draft_scale(original, at_least) if im.format == "JPEG" else 1
            if scale > 1:
                # Pillow picks the largest s in (8, 4, 2, 1) with s * requested <= size: ask for size // scale
                im.draft(None, (original[1] // scale, original[0] // scale))
                im.load()
                image = _to_uint8(im, path)
                expected = (-(-original[0] // scale), -(-original[1] // scale))      # ceil((H, W) / scale)
                if image.shape != expected:
                    raise RuntimeError(f"Pillow decoded the JPEG draft of {path} at {image.shape}, not {expected}; "
                                       f"use Pillow >= 9 (pip install -U pillow).")
                return Reduced(image, original, scale)
    image = read_image(path)[0]
    return Reduced(image, (int(image.shape[0]), int(image.shape[1])), 1)


def pixel_spacing(path: Path | str) -> tuple[float, float] | None:
    """(row, column) spacing in mm that the file itself states (DICOM), else None."""
    path = Path(path)
    return dicom_spacing(path) if path.is_file() and is_dicom(path) else None


def image_size(path: Path | str) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels (fast for large JPEGs).

    Raises DatasetError naming the file if it cannot be opened.
    """
    path = Path(path)
    if path.is_file() and is_dicom(path):
        return dicom_size(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as err:
        raise DatasetError(f"Image file {path} does not exist; re-download the dataset.") from err
    except _DECODE_ERRORS as err:
        raise DatasetError(f"Could not read the header of image {path} ({err}); the file is corrupt, "
                             f"re-download it.") from err
    return int(height), int(width)


def save_grey(image: np.ndarray, path: Path | str, quality: int = 95) -> None:
    """Write a `(H, W) uint8` array atomically (``farnet_lite.atomic``); format from the suffix."""
    path = Path(path)
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"save_grey expects an (H, W) uint8 array, got {image.shape} {image.dtype}.")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
    kind = fmt.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"Unsupported image suffix {path.suffix!r} for {path}.")
    options = {"quality": quality} if kind == "JPEG" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=kind, **options)


def list_images(inputs: Iterable) -> list[Path]:
    """Expand files and folders (sorted image files directly inside) into a list of image paths, each once."""
    paths: list[Path] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"Folder {item} holds no image files ({IMAGE_FORMATS}); pass image "
                                        f"files or another folder.")
            paths += found
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"Image {item} does not exist; check the path.")
    seen: set = set()
    return [p for p in paths if not (p.resolve() in seen or seen.add(p.resolve()))]


def relative_ids(paths: Iterable) -> list[str]:
    """Unique image ids: each path relative to the deepest folder holding all of them, with "/" separators.

    ``a/image.png`` and ``b/image.png`` stay apart (their stems would not), one folder's images keep their file
    names.
    """
    paths = [Path(p).absolute() for p in paths]
    if not paths:
        return []
    base = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(base).as_posix() for p in paths]
