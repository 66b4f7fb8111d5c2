"""Your own landmark set: one CSV file lists the images, their landmarks (any K) and, optionally, split and spacing.

 The format (a header row, then one row per image)::

    image,spacing_mm,split,x1,y1,x2,y2,...,xK,yK
    images/p001.png,0.1,train,412.5,380,520,391.25,...
    images/p002.dcm,,val,401,377,,,...            <- no spacing given, landmark 2 missing
    scans/p003.jpg,0.1,test,,,,,...               <- no landmarks at all: an unlabelled image

* Every row has exactly one cell per header column (empty cells included): a row with a cell too many (a stray
  comma, a decimal comma) or too few would shift or drop coordinates, so it is refused naming its line.
* ``image`` (required): the image file, relative to the CSV's folder (or absolute); any format
  :func:`farnet_lite.data.imageio.load_grey` reads (PNG, JPEG, BMP, TIFF, DICOM). One image belongs to one split:
  listing it in two (say train and test) is refused, as it would score the model on an image it trained on.
* ``x1,y1 ... xK,yK`` (required): landmark k in ORIGINAL image pixels, 0-based, pixel centres at integer
  coordinates (the kit's convention), of the image as displayed (EXIF orientation applied); K is the largest k.
  An empty cell or ``nan`` is a missing landmark: it is left out of the loss and of the metrics, never read as
  (0, 0). A row without any landmark is unlabelled. A landmark outside its image (below -0.5, or beyond the
  width / height read from the image file) is refused, and so is a file whose coordinates all lie between 0 and 1
  (fractions of the image size, not pixels).
* ``spacing_mm`` (optional): mm per pixel (square pixels). Empty: a DICOM image's own PixelSpacing /
  ImagerPixelSpacing (when square), else unknown. Metrics are in mm when every scored image has a spacing,
  in pixels otherwise.
* ``split`` (optional): ``train``, ``val`` (selects ``best.pt``) or ``test``. Without this column the split is
  taken from the same file: images sorted by path, the 4th of every 5 goes to ``val`` and the 5th to ``test``.

Use it with ``farnet train --dataset custom --data-root my_landmarks.csv`` (or ``read_custom(csv, split)``);
``write_synthetic_custom(folder)`` writes a small example of the format.
"""
from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from farnet_lite.data.dicom import dicom_spacing, is_dicom, write_dicom
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import image_size, save_grey
from farnet_lite.data.procedural import synthetic_radiograph
from farnet_lite.data.sample import LandmarkDataset, MetricSpec

CUSTOM_SPLITS = ("train", "val", "test")
CUSTOM_METRIC = MetricSpec("image")
"""Errors in mm by each image's own pixel spacing (pixels where one is unknown)."""
HELD_OUT_EVERY = 5  # without a split column: of every 5 images (sorted by path), one to val and one to test
PathLike = Union[str, Path]
_COORD = re.compile(r"^([xy])(\d+)$")


@dataclass(frozen=True)
class CustomTable:
    """A parsed landmark CSV: per row the image path, its spacing (mm, NaN if unknown), split and landmarks."""

    csv_path: Path
    names: Tuple[str, ...]          # the image column as written (the ids)
    paths: Tuple[Path, ...]
    spacings: np.ndarray            # (N,) float64 mm per pixel, NaN when unknown
    splits: Tuple[str, ...]
    landmarks: np.ndarray           # (N, K, 2) float64 (x, y) original pixels, NaN where missing

    @property
    def num_landmarks(self) -> int:
        return int(self.landmarks.shape[1])


def _number(text: str, csv_path: Path, line: int, column: str) -> float:
    text = (text or "").strip()
    if text == "" or text.lower() == "nan":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{csv_path}, line {line}: column {column} holds {text!r}, not a number; write a "
                           f"number, or leave the cell empty for a missing value.") from None
    if not math.isfinite(value):
        raise DatasetError(f"{csv_path}, line {line}: column {column} holds {text!r}; write a finite number or "
                           f"leave the cell empty.")
    return value


def _landmark_columns(header, csv_path: Path) -> int:
    """K from the header's x1,y1..xK,yK columns; refuse gaps or an x without its y."""
    found = {(m.group(1), int(m.group(2))) for m in map(_COORD.match, header) if m}
    k = max((index for _, index in found), default=0)
    expected = {(axis, i) for i in range(1, k + 1) for axis in "xy"}
    if "image" not in header or k == 0 or found != expected:
        missing = sorted(f"{a}{i}" for a, i in expected - found)
        raise DatasetError(f"{csv_path} needs the columns image,x1,y1,...,xK,yK (found {', '.join(header)}"
                           f"{'; missing ' + ', '.join(missing) if missing else ''}); see the format in "
                           f"farnet_lite/data/custom.py.")
    return k


def _check_cells(cells, header, csv_path: Path, line: int) -> None:
    """Refuse a row whose number of cells is not the header's: its coordinates would shift or go missing."""
    if len(cells) > len(header):
        raise DatasetError(f"{csv_path}, line {line}: {len(cells)} cells but the header has {len(header)} columns, "
                           f"so every value after the extra cell would shift by one column; remove the stray comma "
                           f"(a decimal comma such as 412,5 must be written 412.5) so that the row has one cell "
                           f"per column.")
    if len(cells) < len(header):
        missing = header[len(cells):]
        names = missing[0] if len(missing) == 1 else f"{missing[0]} to {missing[-1]}"
        raise DatasetError(f"{csv_path}, line {line}: {len(cells)} cells but the header has {len(header)} columns "
                           f"({names} missing); write every column, leaving a cell empty (,,) for a missing "
                           f"landmark or value.")


def _check_inside(points: np.ndarray, path: Path, csv_path: Path, line: int) -> None:
    """Refuse a landmark (K, 2) outside its image: below -0.5 (the first pixel's edge) or past the last pixel's,
    the image size read from the file header (skipped when the file cannot be read: reading it says why)."""
    size = None
    if path.is_file() and not np.isnan(points).all():
        try:
            size = image_size(path)                      # (H, W), EXIF orientation applied
        except DatasetError:
            size = None
    high = np.array([np.inf, np.inf]) if size is None else np.array([size[1], size[0]]) - 0.5
    outside = ((points < -0.5) | (points > high)).any(axis=1)          # NaN compares False: missing passes
    if outside.any():
        k = int(np.argmax(outside))
        where = (f"lies outside the image {path.name}, which is {size[1]} pixels wide and {size[0]} high (x from "
                 f"0 to {size[1] - 1}, y from 0 to {size[0] - 1})" if size is not None and (points[k] >= -0.5).all()
                 else "is negative, outside the image (pixels count from 0 at the top left)")
        raise DatasetError(f"{csv_path}, line {line}: landmark {k + 1} at x{k + 1}={points[k, 0]:g}, "
                           f"y{k + 1}={points[k, 1]:g} {where}; fix the coordinates (original image pixels, x "
                           f"across and y down), or leave x{k + 1},y{k + 1} empty for a missing landmark.")


def _check_pixels_not_fractions(points: np.ndarray, lines, csv_path: Path) -> None:
    """Refuse a file whose coordinates all lie in [0, 1], some strictly inside: fractions, not pixels."""
    values = points[np.isfinite(points)]
    if values.size and values.min() >= 0 and values.max() <= 1 and ((values > 0) & (values < 1)).any():
        first = int(np.argmax(np.isfinite(points).any(axis=(1, 2))))
        raise DatasetError(f"{csv_path}, line {lines[first]}: every coordinate of the file lies between 0 and 1, "
                           f"which looks like fractions of the image size, not pixels; write original image pixels "
                           f"(x times the image width, y times its height; see the format in "
                           f"farnet_lite/data/custom.py).")


def _check_one_split_per_image(paths, names, splits, lines, csv_path: Path) -> None:
    """Refuse an image listed in two splits (e.g. train and test): the test would score a training image."""
    first = {}
    for i, path in enumerate(paths):
        j = first.setdefault(path.resolve(), i)
        if splits[j] != splits[i]:
            raise DatasetError(f"{csv_path}, lines {lines[j]} and {lines[i]}: image {names[i]} is listed in split "
                               f"{splits[j]} and in split {splits[i]}, which leaks it from one split into the other "
                               f"(a test image seen in training scores too well); keep one row for each image.")


def _default_splits(paths) -> Tuple[str, ...]:
    """The held-out split of a file without a split column (see the module docstring)."""
    order = sorted(range(len(paths)), key=lambda i: str(paths[i]))
    splits = ["train"] * len(paths)
    for rank, i in enumerate(order):
        if rank % HELD_OUT_EVERY == HELD_OUT_EVERY - 2:
            splits[i] = "val"
        elif rank % HELD_OUT_EVERY == HELD_OUT_EVERY - 1:
            splits[i] = "test"
    return tuple(splits)


def _image_spacing(path: Path) -> float:
    """A DICOM's own square pixel spacing in mm, else NaN."""
    if not (path.is_file() and is_dicom(path)):
        return math.nan
    spacing = dicom_spacing(path)
    return spacing[0] if spacing is not None and math.isclose(spacing[0], spacing[1], rel_tol=1e-3) else math.nan


def read_custom_table(csv_path: PathLike) -> CustomTable:
    """Parse a landmark CSV (format in the module docstring); DatasetError names the file, line and fix."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"Landmark file {csv_path} does not exist; pass the CSV itself with --data-root "
                           f"(write an example with farnet_lite.data.custom.write_synthetic_custom).")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = [(reader.line_num, cells) for cells in reader if cells]        # (1-based line, cells); no blanks
    if not rows:
        raise DatasetError(f"{csv_path} has no image rows; add one row per image below the header.")
    k = _landmark_columns(header, csv_path)
    names, paths, spacings, splits, lines = [], [], [], [], []
    points = np.full((len(rows), k, 2), np.nan)
    for i, (line, cells) in enumerate(rows):
        _check_cells(cells, header, csv_path, line)
        row = dict(zip(header, cells))
        lines.append(line)
        path = Path((row.get("image") or "").strip())
        if not str(path) or str(path) == ".":
            raise DatasetError(f"{csv_path}, line {line}: the image column is empty; name the image file.")
        names.append(path.as_posix())
        paths.append(path if path.is_absolute() else csv_path.parent / path)
        split = (row.get("split") or "").strip().lower()
        if "split" in header and split not in CUSTOM_SPLITS:
            raise DatasetError(f"{csv_path}, line {line}: split {split!r} is not one of "
                               f"{', '.join(CUSTOM_SPLITS)}; fix the split column.")
        splits.append(split)
        spacing = _number(row.get("spacing_mm", ""), csv_path, line, "spacing_mm")
        if spacing <= 0:
            raise DatasetError(f"{csv_path}, line {line}: spacing_mm is {spacing:g}; give the mm per pixel (> 0) or "
                               f"leave the cell empty.")
        spacings.append(spacing if math.isfinite(spacing) else _image_spacing(paths[-1]))
        for j in range(k):
            for axis, c in (("x", 0), ("y", 1)):
                points[i, j, c] = _number(row.get(f"{axis}{j + 1}", ""), csv_path, line, f"{axis}{j + 1}")
        half = np.isnan(points[i]).any(axis=1) & ~np.isnan(points[i]).all(axis=1)
        if half.any():
            raise DatasetError(f"{csv_path}, line {line}: landmark {int(np.argmax(half)) + 1} has only one of "
                               f"x and y; give both or leave both empty.")
        _check_inside(points[i], paths[-1], csv_path, line)
    _check_pixels_not_fractions(points, lines, csv_path)
    if "split" not in header:
        splits = list(_default_splits(paths))
    _check_one_split_per_image(paths, names, splits, lines, csv_path)
    return CustomTable(csv_path, tuple(names), tuple(paths), np.array(spacings, dtype=np.float64), tuple(splits),
                       points)


def count_custom_landmarks(csv_path: PathLike) -> int:
    """K of a landmark CSV, from its header."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"Landmark file {csv_path} does not exist; pass the CSV itself with --data-root.")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        header = [h.strip() for h in next(csv.reader(f), [])]
    return _landmark_columns(header, csv_path)


def read_custom(csv_path: PathLike, split: str = "train") -> LandmarkDataset:
    """The images of one split of a landmark CSV as a `LandmarkDataset` (name "custom").

 Ids are the image paths as written in the CSV (unique even when two
    folders hold the same file name). Per-image spacings travel as ``dataset.spacings`` ((N,) mm, NaN unknown)
    and the metric is ``MetricSpec("image")``: errors in mm by each image's own spacing.
    """
    if split not in CUSTOM_SPLITS:
        raise DatasetError(f"Split {split!r} is not one of {', '.join(CUSTOM_SPLITS)} for a landmark CSV.")
    table = read_custom_table(csv_path)
    keep = [i for i, s in enumerate(table.splits) if s == split]
    names = [table.names[i] for i in keep]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"{table.csv_path} lists {duplicate} twice in split {split}; keep one row per image.")
    landmarks = [None if np.isnan(table.landmarks[i]).all() else table.landmarks[i] for i in keep]
    return LandmarkDataset("custom", split, names, [table.paths[i] for i in keep], landmarks, CUSTOM_METRIC,
                           table.num_landmarks, root=table.csv_path.parent, spacings=table.spacings[keep])


def write_synthetic_custom(root: PathLike, n: int = 20, num_landmarks: int = 5, size: Tuple[int, int] = (96, 80),
                           spacing_mm: float = 0.25, seed: int = 0) -> Path:
    """Write an example landmark set in the CSV format above; returns the CSV's path (``root/landmarks.csv``).

 `n` procedural radiographs of `size` (H, W) with `num_landmarks`
    landmarks, in two folders that reuse file names (ids must be paths, not stems): PNGs with ``spacing_mm`` in
    the CSV, and every 4th image as a 16-bit MONOCHROME1 DICOM whose spacing is only in its header. Every 3rd
    image misses one landmark (an empty cell), and there is no split column (the held-out split is used).
    Deterministic; rewrites the same files when called again.
    """
    root = Path(root)
    header = ["image", "spacing_mm"] + [f"{a}{k}" for k in range(1, num_landmarks + 1) for a in "xy"]
    lines = [",".join(header)]
    for i in range(n):
        image, points = synthetic_radiograph([seed, 7, i], size, num_landmarks)
        folder = "site_a" if i % 2 == 0 else "site_b"
        if i % 4 == 3:
            name = f"{folder}/case{i // 2:02d}.dcm"
            stored = 4095 - image.astype(np.uint16) * 16  # 12 bits, MONOCHROME1: low values are bright
            write_dicom(root / name, stored, spacing=(spacing_mm, spacing_mm), photometric="MONOCHROME1",
                        bits_stored=12)
            spacing = ""
        else:
            name = f"{folder}/case{i // 2:02d}.png"
            save_grey(image, root / name)
            spacing = f"{spacing_mm:g}"
        cells = [f"{v:.2f}" for v in points.reshape(-1)]
        if i % 3 == 1:
            cells[2 * (i % num_landmarks)] = cells[2 * (i % num_landmarks) + 1] = ""  # one missing landmark
        lines.append(",".join([name, spacing] + cells))
    csv_path = root / "landmarks.csv"
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return csv_path
