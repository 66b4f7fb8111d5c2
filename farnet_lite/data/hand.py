"""Reader of the Digital Hand Atlas with the 37 landmarks of Payer et al. (MedIA 2019; FARNet paper §4.1).

Layout under `root` (images may sit anywhere below root: a flat folder or the DHA race/sex/age tree):

    **/<id>.jpg                             the DHA radiographs (grey JPEG)
    setup/all.csv                           one row per image: id,x1,y1,...,x37,y37 (original pixels, no header)
    setup/cv/set{1,2,3}/{train,test}.txt    the paper's 3-fold cross-validation, one id per line

Only the annotated images that are present are used: a partial download still works, and the dataset says how
many of the annotated ids were found (`missing_ids`, a warning). Errors are reported in mm by taking the wrist
width, the distance between 0-based landmarks 1 and 5, as 50 mm (metrics.hand_errors_mm).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from farnet_lite.data.imageio import IMAGE_SUFFIXES
from farnet_lite.data.errors import DatasetError, handle_error, warn_skipped
from farnet_lite.data.sample import LandmarkDataset, MetricSpec

HAND_NUM_LANDMARKS = 37
HAND_SPLITS = ("train", "test", "all")
"""Splits of one cross-validation set: its train and test ids, or every annotated id."""
HAND_FOLDS = (1, 2, 3)
"""Payer et al.'s cross-validation sets (setup/cv/set1..set3)."""
HAND_WRIST_WIDTH_MM = 50.0
HAND_WRIST_LANDMARKS = (1, 5)
"""0-based indices of the two landmarks whose distance is taken as the 50 mm wrist width."""
HAND_METRIC = MetricSpec("wrist")
"""Errors in mm through the 50 mm wrist width (Payer et al. 2019; farnet_lite.metrics.hand_errors_mm)."""


def read_hand_annotations(csv_path: Path | str, on_error: str = "raise",
                          skipped: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Parse Payer's all.csv: id -> (37, 2) float64 (x, y) original pixels.

 Raises DatasetError naming the file and row for a malformed row
    (or records it in `skipped` with on_error="skip").
    """
    csv_path = Path(csv_path)
    skipped = {} if skipped is None else skipped
    try:
        lines = csv_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DatasetError(f"Cannot read hand annotations {csv_path} ({err}); re-download the setup.") from err
    table: dict[str, np.ndarray] = {}
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        image_id = fields[0]
        try:
            if len(fields) != 1 + 2 * HAND_NUM_LANDMARKS:
                raise ValueError
            points = np.array([float(f) for f in fields[1:]], dtype=np.float64).reshape(HAND_NUM_LANDMARKS, 2)
            if not np.isfinite(points).all():
                raise ValueError
        except ValueError:
            handle_error(on_error, skipped, image_id,
                         f"Row {row} of {csv_path} is not 'id' followed by {2 * HAND_NUM_LANDMARKS} numbers "
                         f"(got {len(fields)} fields); re-download the annotation setup.")
            continue
        table[image_id] = points
    return table


def read_hand_ids(txt_path: Path | str) -> list[str]:
    """Ids listed one per line in a cross-validation file (blank lines ignored).
    """
    txt_path = Path(txt_path)
    if not txt_path.is_file():
        raise DatasetError(f"Cross-validation file {txt_path} is missing; re-download the annotation setup.")
    return [line.strip() for line in txt_path.read_text(encoding="utf-8").splitlines() if line.strip()]


def find_images(root: Path | str) -> dict[str, Path]:
    """id (file stem) -> path for every image file anywhere below `root` (DHA tree or flat folder).

    Raises DatasetError if one id appears twice.
    """
    found: dict[str, Path] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            if path.stem in found:
                raise DatasetError(f"Image id {path.stem} appears twice under {root} ({found[path.stem]} and "
                                   f"{path}); keep one of them.")
            found[path.stem] = path
    return found


def read_hand(root: Path | str, fold: int = 1, split: str = "train", setup: Path | str | None = None,
              on_error: str = "raise") -> LandmarkDataset:
    """Read one fold/split of the hand dataset -> LandmarkDataset of 37 landmarks, metric "wrist".

    Args:
        root: the folder below which the <id>.jpg images are (anywhere); also holds setup/ unless `setup` given.
        fold: 1, 2 or 3 (setup/cv/set{fold}).
        split: "train", "test" or "all" (every id of all.csv).
        setup: the folder holding all.csv and cv/ (default root/"setup").
        on_error: "raise" (default) or "skip" malformed all.csv rows / ids without annotations.

    Returns:
        LandmarkDataset of the listed ids whose image was found, in the order of the list; the ids whose
        image is absent are in `missing_ids` (and a warning says how many were found).
    """
    if split not in HAND_SPLITS:
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    if fold not in HAND_FOLDS:
        raise ValueError(f"fold must be 1, 2 or 3, got {fold!r}.")
    root = Path(root)
    setup = root / "setup" if setup is None else Path(setup)
    csv_path = setup / "all.csv"
    if not root.is_dir() or not csv_path.is_file():
        raise DatasetError(f"{root} is not a hand-atlas root: expected {csv_path} (Payer et al.'s annotation "
                           f"setup) and the <id>.jpg images below {root}; download it with "
                           f"`python -m farnet_lite.download.hand --dest DIR`.")
    skipped: dict[str, str] = {}
    table = read_hand_annotations(csv_path, on_error, skipped)
    if split == "all":
        wanted = list(table)
    else:
        wanted = read_hand_ids(setup / "cv" / f"set{fold}" / f"{split}.txt")
        for image_id in [i for i in wanted if i not in table and i not in skipped]:
            handle_error(on_error, skipped, image_id,
                         f"Id {image_id} of {setup / 'cv' / f'set{fold}' / f'{split}.txt'} has no row in "
                         f"{csv_path}; re-download the annotation setup.")
        wanted = [i for i in wanted if i in table]
    if skipped:
        warn_skipped("hand", skipped)

    images = find_images(root)
    present = [i for i in wanted if i in images]
    missing = [i for i in wanted if i not in images]
    if not present:
        raise DatasetError(f"None of the {len(wanted)} annotated hand images (split {split!r}) was found "
                           f"below {root}; download the Digital Hand Atlas images with "
                           f"`python -m farnet_lite.download.hand`.")
    if missing:
        which = "all.csv" if split == "all" else f"fold {fold} {split}"
        warnings.warn(f"hand: found {len(present)} of {len(wanted)} annotated images ({which}) "
                      f"below {root}; using those.", stacklevel=2)
    return LandmarkDataset("hand", split, present, [images[i] for i in present],
                           [table[i] for i in present], HAND_METRIC, HAND_NUM_LANDMARKS, root,
                           missing_ids=missing, skipped=skipped)
