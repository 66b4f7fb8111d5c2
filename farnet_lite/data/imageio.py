"""Reading radiographs as grey uint8 arrays with Pillow.

Introduced in notebook 00_setup_and_data. All three datasets store 8-bit images (ISBI: BMP originals or 3-channel
JPEG copies with identical channels; hand atlas and spine: 1-channel JPEG); every one is returned as
"L" (grey) so the rest of the pipeline sees `(H, W) uint8`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff")

# Pillow's "truncated/corrupt file" errors: OSError (truncated data), SyntaxError (bad BMP/PNG header
# in some versions), ValueError/struct errors from broken headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def _dataset_error(message: str) -> Exception:
    # Imported here: sample.py imports this module.
    from farnet_lite.data.sample import DatasetError
    return DatasetError(message)


def load_grey(path: Path | str) -> np.ndarray:
    """Decode an image file into a grey `(H, W) uint8` array ("L"; colour images are converted with
    Pillow's ITU-R 601 luma, which leaves images with 3 identical channels unchanged).

    Introduced in notebook 00_setup_and_data. Raises DatasetError naming the file if it is missing, truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise _dataset_error(f"Image file {path} does not exist; re-download the dataset or remove its entry.")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit greyscale: scale the full range to 8 bits instead of clipping.
                array = np.asarray(im, dtype=np.float64)
                peak = max(float(array.max()), 1.0)
                return np.round(array * (255.0 / peak)).astype(np.uint8)
            grey = im if im.mode == "L" else im.convert("L")
            return np.array(grey, dtype=np.uint8)
    except _DECODE_ERRORS as err:
        raise _dataset_error(f"Could not decode image {path} ({type(err).__name__}: {err}); the file is "
                             f"truncated or corrupt, re-download it.") from err


def image_size(path: Path | str) -> tuple[int, int]:
    """(H, W) of an image file from its header, without decoding the pixels (fast for large JPEGs).

    Introduced in notebook 00_setup_and_data. Raises DatasetError naming the file if it cannot be opened.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except FileNotFoundError as err:
        raise _dataset_error(f"Image file {path} does not exist; re-download the dataset.") from err
    except _DECODE_ERRORS as err:
        raise _dataset_error(f"Could not read the header of image {path} ({err}); the file is corrupt, "
                             f"re-download it.") from err
    return int(height), int(width)


def save_grey(image: np.ndarray, path: Path | str, quality: int = 95) -> None:
    """Write a `(H, W) uint8` array atomically (temp file + rename); format from the suffix.

    Introduced in notebook 00_setup_and_data (used by the synthetic-data writers).
    """
    path = Path(path)
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"save_grey expects an (H, W) uint8 array, got {image.shape} {image.dtype}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF"}
    kind = fmt.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"Unsupported image suffix {path.suffix!r} for {path}.")
    options = {"quality": quality} if kind == "JPEG" else {}
    Image.fromarray(image).save(tmp, format=kind, **options)
    tmp.replace(path)
