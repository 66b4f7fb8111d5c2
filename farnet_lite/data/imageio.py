"""Reading radiographs as grey uint8 arrays (Pillow, and pydicom for DICOM), and listing the image files of folders.

All three datasets store 8-bit images (ISBI: BMP originals or 3-channel JPEG copies with identical channels; hand
atlas and spine: 1-channel JPEG); every one is returned as "L" (grey) so the rest of the pipeline sees `(H, W) uint8`.

Accepted formats: PNG, JPEG, BMP, TIFF and DICOM. 16-bit and 32-bit integer images are scaled by their peak, float
images (e.g. a TIFF of 0-1 values) by their min..max range; DICOM goes through :mod:`farnet_lite.data.dicom`
(rescale, VOI window, MONOCHROME1 inversion), which also gives its pixel spacing (`read_image`, `pixel_spacing`).

`read_reduced` is the prepared cache's reader: a JPEG is decoded in Pillow's draft mode, where libjpeg scales
each 8x8 DCT block down by 1/2, 1/4 or 1/8 while decoding (several times faster);
every other format is decoded fully.

EXIF orientation (a phone or scanner JPEG stored sideways with "rotate 90" in its header) is applied by every
reader here, draft mode and `image_size` included: images and landmark coordinates are those of the image as it
is displayed. An image over Pillow's decompression-bomb pixel limit is refused in one sentence saying so.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from farnet_lite.atomic import atomic_path
from farnet_lite.data.dicom import DICOM_SUFFIXES, dicom_size, dicom_spacing, is_dicom, read_dicom
from farnet_lite.data.errors import DatasetError

IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff") + DICOM_SUFFIXES
IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF (8/16-bit, float scaled by its range) and DICOM (.dcm)"

# Pillow's "truncated/corrupt file" errors: OSError (truncated data), SyntaxError (bad BMP/PNG header
# in some versions), ValueError/struct errors from broken headers.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)
_SWAPS_AXES = (5, 6, 7, 8)      # EXIF orientations that turn the stored image by 90 degrees
_PADS_AT_END = (1, 5)           # orientations that keep a JPEG draft's padded last block at the bottom/right


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


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8) of an opened image that is still to be transposed, from its header; 1 if none.

    Pillow's TIFF reader applies the orientation itself (its size is already the displayed one), so 1 there; a
    PNG whose eXIf chunk comes after the pixels only shows it once decoded (Pillow would decode the whole image to
    look for it), so before decoding such a PNG counts as 1 (`image_size` then gives its stored size).
    """
    if im.format == "TIFF" or (im.format == "PNG" and "exif" not in im.info):
        return 1
    try:
        value = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a broken EXIF block: Pillow's own readers ignore it too
        return 1
    return value if value in range(1, 9) else 1


def _upright(im: Image.Image) -> Image.Image:
    """A decoded image turned as its EXIF orientation says (in place; a no-op without one)."""
    ImageOps.exif_transpose(im, in_place=True)
    return im


def _too_many_pixels(path: Path, err: Exception) -> DatasetError:
    """The sentence for Pillow's decompression-bomb pixel limit (PIL.Image.MAX_IMAGE_PIXELS)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    pixels = f"{int(found.group(1)):,} pixels" if found else "more pixels than that"
    limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return DatasetError(f"Image {path} has {pixels}, over Pillow's limit of {limit:,} pixels against decompression "
                        f"bombs (PIL.Image.MAX_IMAGE_PIXELS); the file is not corrupt: downscale it first (e.g. to "
                        f"at most 8000 pixels on its longest side), or, if you trust it, raise "
                        f"PIL.Image.MAX_IMAGE_PIXELS in Python before reading it.")


@contextmanager
def _decoding(path: Path) -> Iterator[None]:
    """Turn Pillow's errors for a truncated or corrupt file inside the block into one DatasetError naming it."""
    try:
        yield
    except Image.DecompressionBombError as err:
        raise _too_many_pixels(path, err) from err
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
        return _to_uint8(_upright(im), path), None


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
    `read_image` for a missing, truncated or corrupt file. The EXIF orientation is applied (sizes are the
    displayed ones); a JPEG whose orientation would move the draft's padded last block to the top or left is
    drafted only by a factor that divides its size (no padding), else decoded fully.
    """
    path = Path(path)
    _check_exists(path)
    if not is_dicom(path):
        with _decoding(path), Image.open(path) as im:
            stored, orientation = (int(im.height), int(im.width)), _orientation(im)
            original = stored[::-1] if orientation in _SWAPS_AXES else stored      # (H, W) as displayed
            scale = draft_scale(original, at_least) if im.format == "JPEG" else 1
            while scale > 1 and orientation not in _PADS_AT_END and (stored[0] % scale or stored[1] % scale):
                scale //= 2
            if scale > 1:
                # Pillow picks the largest s in (8, 4, 2, 1) with s * requested <= size: ask for size // scale
                im.draft(None, (stored[1] // scale, stored[0] // scale))
                im.load()
                image = _to_uint8(_upright(im), path)
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
            if _orientation(im) in _SWAPS_AXES:         # displayed turned by 90 degrees (EXIF orientation)
                width, height = height, width
    except FileNotFoundError as err:
        raise DatasetError(f"Image file {path} does not exist; re-download the dataset.") from err
    except Image.DecompressionBombError as err:
        raise _too_many_pixels(path, err) from err
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


class FoundImages(NamedTuple):
    """What `find_images` returns: the image files, their unique ids, and what the folders held besides."""
    paths: list[Path]
    ids: list[str]
    skipped: dict[str, str]        # file or folder -> why it was left out


def _why_not_an_image(path: Path) -> str | None:
    """None when a file found in a folder is taken as an image, else why it is left out.

    Taken: a known image suffix (`IMAGE_SUFFIXES`: a broken one is then reported when it is read), or any file
    whose content Pillow identifies (GIF, WebP, an extension-less PNG...) or that is DICOM (often extension-less).
    """
    if path.suffix.lower() in IMAGE_SUFFIXES or is_dicom(path):
        return None
    try:
        with Image.open(path):
            return None
    except Image.DecompressionBombError:
        return None                                 # an image: reading it says why it is refused
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        return "not an image file (neither Pillow nor pydicom recognises it)"


def _walk_folder(folder: Path, exclude: set, skipped: dict) -> list[Path]:
    """Every image file under `folder` and its subfolders, sorted; what is left out goes into `skipped`."""
    found, searched = [], {folder.resolve()}
    for top, dirs, files in os.walk(folder, followlinks=True):
        top_path, keep = Path(top), []
        for name in sorted(dirs):
            sub = top_path / name
            real = sub.resolve()
            reason = ("a hidden folder, not searched" if name.startswith(".") else
                      "the output folder, not searched" if real in exclude else
                      "a link to a folder searched already" if real in searched else None)
            if reason:
                skipped[str(sub)] = reason
            else:
                searched.add(real)
                keep.append(name)
        dirs[:] = keep                               # os.walk enters only these, in this order
        for name in sorted(files):
            path = top_path / name
            reason = "a hidden file" if name.startswith(".") else _why_not_an_image(path)
            if reason:
                skipped[str(path)] = reason
            else:
                found.append(path)
    return sorted(found)


def find_images(inputs: Iterable, exclude: Iterable = ()) -> FoundImages:
    """Expand image files and folders into image paths (each once), their ids and the files left out.

    A file given is taken as it is. A folder is searched with its subfolders (links to folders too, each folder
    once; hidden entries and the folders in `exclude` -- e.g. an output folder inside the input tree -- are left out);
    a file found there is taken when it has an image suffix or Pillow / pydicom recognises its content, and every
    other file is listed in ``skipped`` (``{path: reason}``). Ids are paths relative to the deepest folder holding
    all folders given and all files' folders (`relative_ids`). Raises FileNotFoundError for a missing input or a
    folder without any image.
    """
    exclude = {Path(e).resolve() for e in exclude}
    paths: list[Path] = []
    roots: list[Path] = []
    skipped: dict[str, str] = {}
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            left_out: dict[str, str] = {}
            found = _walk_folder(item, exclude, left_out)
            if not found:
                listed = "; ".join(f"{Path(p).relative_to(item).as_posix()}: {why}" for p, why in
                                   list(left_out.items())[:3]) + ("; ..." if len(left_out) > 3 else "")
                raise FileNotFoundError(f"Folder {item} holds no image files ({IMAGE_FORMATS}), in its subfolders "
                                        f"neither{f' (left out: {listed})' if left_out else ''}; pass image "
                                        f"files or another folder.")
            paths += found
            roots.append(item)
            skipped.update(left_out)
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"Image {item} does not exist; check the path.")
    seen: set = set()
    paths = [p for p in paths if not (p.resolve() in seen or seen.add(p.resolve()))]
    return FoundImages(paths, relative_ids(paths, roots), skipped)


def list_images(inputs: Iterable) -> list[Path]:
    """Expand files and folders (image files inside, subfolders included) into image paths, each once; see
    `find_images`, which also gives the ids and what the folders held besides images."""
    return find_images(inputs).paths


def relative_ids(paths: Iterable, roots: Iterable = ()) -> list[str]:
    """Unique image ids: each path relative to the deepest folder holding all of them (and the folders `roots`,
    e.g. the folders given to `find_images`), with "/" separators.

    ``a/image.png`` and ``b/image.png`` stay apart (their stems would not), one folder's images keep their file
    names, and a folder's images in its subfolders keep the subfolder (``tree/a/x.png`` -> ``a/x.png``).
    """
    paths = [Path(p).absolute() for p in paths]
    if not paths:
        return []
    base = Path(os.path.commonpath([str(p.parent) for p in paths] + [str(Path(r).absolute()) for r in roots]))
    return [p.relative_to(base).as_posix() for p in paths]
