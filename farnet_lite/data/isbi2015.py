"""Reader of the ISBI 2015 cephalometric challenge in its public layout (Wang et al., MedIA 2016; paper §4.1).

Layout under `root`:

    RawImage/TrainingData/001.bmp ... 150.bmp       (or .jpg / .png copies)
    RawImage/Test1Data/151 ... 300
    RawImage/Test2Data/301 ... 400
    AnnotationsByMD/400_senior/NNN.txt               19 lines "x,y" (integer pixels, x = column, 0-based),
    AnnotationsByMD/400_junior/NNN.txt               then extra lines that are ignored

The paper's ground truth is the mean of the two doctors; the pixel spacing is 0.1 mm. A split without any
annotation file (Test2 in the public copy) still yields its images, with landmarks None.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from farnet_lite.data.imageio import IMAGE_SUFFIXES
from farnet_lite.data.errors import DatasetError, handle_error, warn_skipped
from farnet_lite.data.sample import LandmarkDataset, MetricSpec

ISBI_NUM_LANDMARKS = 19
ISBI_SPACING_MM = 0.1
ISBI_METRIC = MetricSpec("spacing", ISBI_SPACING_MM)
"""Errors in mm: pixels x 0.1 mm (Wang et al. 2016)."""
ISBI_SPLITS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}
# Official id ranges of the splits (inclusive); used to notice an annotation whose image is missing.
ISBI_ID_RANGES = {"train": (1, 150), "test1": (151, 300), "test2": (301, 400)}
ISBI_LANDMARK_NAMES = (
    "sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion", "menton", "gnathion",
    "gonion", "lower incisal incision", "upper incisal incision", "upper lip", "lower lip", "subnasale",
    "soft tissue pogonion", "posterior nasal spine", "anterior nasal spine", "articulare",
)
"""Landmark names in the challenge order (1 sella ... 19 articulare; 0-based index = number - 1)."""


def read_isbi_annotation(path: Path | str, num_landmarks: int = ISBI_NUM_LANDMARKS) -> np.ndarray:
    """Parse one annotation txt: the first `num_landmarks` lines "x,y" -> (K, 2) float64; later lines ignored.

    Raises DatasetError naming the file and line for a short file or a
    line that is not two numbers.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DatasetError(f"Cannot read annotation file {path} ({err}); re-download the annotations.") from err
    if len(lines) < num_landmarks:
        raise DatasetError(f"Annotation file {path} has {len(lines)} lines but needs at least {num_landmarks} "
                           f"'x,y' lines; re-download the annotations.")
    points = np.empty((num_landmarks, 2), dtype=np.float64)
    for k, line in enumerate(lines[:num_landmarks]):
        fields = line.replace(" ", "").replace("\t", "").split(",")
        try:
            if len(fields) != 2:
                raise ValueError
            points[k] = float(fields[0]), float(fields[1])
        except ValueError:
            raise DatasetError(f"Line {k + 1} of annotation file {path} is {line.strip()!r}, not 'x,y' numbers; "
                               f"re-download the annotations.") from None
    if not np.isfinite(points).all():
        raise DatasetError(f"Annotation file {path} contains non-finite coordinates; re-download it.")
    return points


def _check_layout(root: Path) -> None:
    if not (root / "RawImage").is_dir():
        raise DatasetError(f"{root} is not an ISBI 2015 root: expected the folders RawImage/TrainingData, "
                           f"RawImage/Test1Data, RawImage/Test2Data and AnnotationsByMD/400_senior, "
                           f"400_junior; download it with `python -m farnet_lite.download.isbi2015 --dest DIR` "
                           f"or pass the right folder.")


def _list_images(folder: Path) -> dict[str, Path]:
    """id (file stem, e.g. "001") -> image path, for every image file directly in `folder`."""
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in images:
                raise DatasetError(f"Two images with id {path.stem} in {folder} ({images[path.stem].name} and "
                                   f"{path.name}); keep one of them.")
            images[path.stem] = path
    return images


def read_isbi2015(root: Path | str, split: str = "train", annotation: str = "mean",
                  on_error: str = "raise") -> LandmarkDataset:
    """Read one split of ISBI 2015 -> LandmarkDataset of 19 landmarks, metric 0.1 mm/px.

    Args:
        root: the folder holding RawImage/ and AnnotationsByMD/.
        split: "train" (TrainingData, 150), "test1" (Test1Data, 150) or "test2" (Test2Data, 100).
        annotation: "mean" of the two doctors (the paper's ground truth), "senior" or "junior".
        on_error: "raise" (default) a DatasetError at the first bad annotation or missing image, or "skip"
            such entries with one warning (listed in `dataset.skipped`).

    Returns:
        LandmarkDataset with ids "001", ...; landmarks (19, 2) float64 original pixels, or None for a split
        that has no annotation files.
    """
    # Long on purpose (~75 lines): the checks of one split of the official layout (images, annotation files,
    # 19 lines each, two doctors) read in the order the layout is described; splitting them would scatter it.
    if split not in ISBI_SPLITS:
        raise ValueError(f"split must be one of {sorted(ISBI_SPLITS)}, got {split!r}.")
    if annotation not in ("mean", "senior", "junior"):
        raise ValueError(f"annotation must be 'mean', 'senior' or 'junior', got {annotation!r}.")
    root = Path(root)
    _check_layout(root)
    folder = root / "RawImage" / ISBI_SPLITS[split]
    if not folder.is_dir():
        raise DatasetError(f"ISBI 2015 split folder {folder} is missing; re-download the dataset.")
    images = _list_images(folder)

    doctors = ("senior", "junior") if annotation == "mean" else (annotation,)
    txt_dirs = {d: root / "AnnotationsByMD" / f"400_{d}" for d in doctors}
    # Annotation ids that belong to this split: numeric ids in the official range, or any listed image.
    low, high = ISBI_ID_RANGES[split]
    annotated: set[str] = set()
    for txt_dir in txt_dirs.values():
        if txt_dir.is_dir():
            annotated |= {p.stem for p in txt_dir.glob("*.txt")
                          if p.stem in images or (p.stem.isdigit() and low <= int(p.stem) <= high)}
    labelled = bool(annotated)

    skipped: dict[str, str] = {}
    for image_id in sorted(annotated - set(images)):
        handle_error(on_error, skipped, image_id,
                     f"Annotation {image_id}.txt has no image {folder / image_id}.(bmp|jpg|png); "
                     f"re-download the images or remove the annotation.")

    ids, paths, landmarks = [], [], []
    for image_id, path in images.items():
        points: Optional[np.ndarray] = None
        if labelled:
            try:
                per_doctor = []
                for doctor, txt_dir in txt_dirs.items():
                    txt = txt_dir / f"{image_id}.txt"
                    if not txt.is_file():
                        raise DatasetError(f"Image {path} has no {doctor} annotation {txt}; re-download the "
                                           f"annotations or pass annotation='senior'/'junior'.")
                    per_doctor.append(read_isbi_annotation(txt))
                points = np.mean(per_doctor, axis=0)
            except DatasetError as err:
                handle_error(on_error, skipped, image_id, str(err))
                continue
        ids.append(image_id)
        paths.append(path)
        landmarks.append(points)
    if not labelled and split != "test2":
        warnings.warn(f"isbi2015: no annotation files for split {split!r} under {root / 'AnnotationsByMD'}; "
                      f"its landmarks are None.", stacklevel=2)
    if skipped:
        warn_skipped("isbi2015", skipped)
    if not ids:
        raise DatasetError(f"No readable images in {folder}; re-download the dataset.")
    dataset = LandmarkDataset("isbi2015", split, ids, paths, landmarks,
                              ISBI_METRIC, ISBI_NUM_LANDMARKS, root,
                              skipped=skipped)
    dataset.annotation = annotation  # which ground truth (the prepared cache keys on it)
    return dataset
