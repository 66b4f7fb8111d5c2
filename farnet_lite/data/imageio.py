"""Reading radiographs as grey uint8 arrays (Pillow, and pydicom for DICOM), and listing the image files of folders.

All three datasets store 8-bit images (ISBI: BMP originals or 3-channel JPEG copies with identical channels; hand
atlas and spine: 1-channel JPEG); every one is returned as "L" (grey) so the rest of the pipeline sees `(H, W) uint8`.

Accepted formats: PNG, JPEG, BMP, TIFF and DICOM. 16-bit and 32-bit integer images are scaled by their peak, float
images (e.g. a TIFF of 0-1 values) by their min..max range; DICOM goes through :mod:`farnet_lite.data.dicom`
(rescale, VOI window, MONOCHROME1 inversion), which also gives its pixel spacing (`read_image`, `pixel_spacing`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

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


def read_image(path: Path | str) -> tuple[np.ndarray, tuple[float, float] | None]:
    """``(image (H, W) uint8, pixel spacing (row, column) in mm or None)`` of any accepted format.

    Only DICOM files state a spacing here. Raises DatasetError naming the file if it is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Image file {path} does not exist; re-download the dataset or remove its entry.")
    if is_dicom(path):
        return read_dicom(path)
    try:
        with Image.open(path) as im:
            im.load()
            return _to_uint8(im, path), None
    except _DECODE_ERRORS as err:
        raise DatasetError(f"Could not decode image {path} ({type(err).__name__}: {err}); the file is "
                           f"truncated or corrupt, re-download it.") from err


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
