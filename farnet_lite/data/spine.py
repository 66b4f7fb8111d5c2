"""Reader of the AASCE 2019 / SpineWeb dataset 16 (Wu et al., BoostNet, MICCAI 2017; FARNet paper §4.1).

Introduced in notebook 00_setup_and_data.

Layout under `root` (the folder boostnet_labeldata, or a folder that contains it):

    data/{training,test}/<name>.jpg                 grey AP radiographs of varying size
    labels/{training,test}/<name>.jpg.mat           variable p2, shape (68, 2), pixel (x, y): 17 vertebrae x 4
                                                    corners (top-left, top-right, bottom-left, bottom-right)
    labels/{training,test}/filenames.csv            image names, one per line (gives the order)
    labels/training/landmarks.csv, angles.csv       (not needed: p2 / size and the Cobb angles)

The public test split has no .mat files; it still yields its images with landmarks None. Errors are measured
relative to the image width / height (metrics.spine_mse_fraction, metrics.spine_pearson).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from farnet_lite.data.imageio import IMAGE_SUFFIXES
from farnet_lite.data.sample import (DatasetError, LandmarkDataset, MetricSpec, handle_error,
                                     warn_skipped)

SPINE_NUM_LANDMARKS = 68
SPINE_SPLITS = ("training", "test")


def read_spine_mat(path: Path | str, num_landmarks: int = SPINE_NUM_LANDMARKS) -> np.ndarray:
    """Load variable `p2` of one .jpg.mat label file -> (68, 2) float64 (x, y) pixels.

    Introduced in notebook 00_setup_and_data. Raises DatasetError naming the file if it is unreadable, lacks `p2`
    or `p2` has the wrong shape.
    """
    path = Path(path)
    try:
        content = scipy.io.loadmat(str(path), variable_names=["p2"])
    except (OSError, ValueError, TypeError, NotImplementedError) as err:
        raise DatasetError(f"Cannot read label file {path} ({err}); re-download the spine labels.") from err
    if "p2" not in content:
        raise DatasetError(f"Label file {path} has no variable 'p2'; re-download the spine labels.")
    points = np.asarray(content["p2"], dtype=np.float64)
    if points.shape != (num_landmarks, 2):
        raise DatasetError(f"Variable p2 of label file {path} has shape {points.shape}, expected "
                           f"({num_landmarks}, 2); re-download the spine labels.")
    if not np.isfinite(points).all():
        raise DatasetError(f"Label file {path} contains non-finite coordinates; re-download the spine labels.")
    return points


def spine_root(root: Path | str) -> Path:
    """The boostnet_labeldata folder: `root` itself or root/boostnet_labeldata (DatasetError otherwise).

    Introduced in notebook 00_setup_and_data.
    """
    root = Path(root)
    for candidate in (root, root / "boostnet_labeldata"):
        if (candidate / "data").is_dir() and (candidate / "labels").is_dir():
            return candidate
    raise DatasetError(f"{root} is not a spine (AASCE) root: expected boostnet_labeldata/data/{{training,test}} "
                       f"and boostnet_labeldata/labels/{{training,test}}; get it with "
                       f"`python -m data_download.spine --dest DIR`.")


def read_spine(root: Path | str, split: str = "training", on_error: str = "raise") -> LandmarkDataset:
    """Read one split of the spine dataset -> LandmarkDataset of 68 landmarks, metric "fraction".

    Introduced in notebook 00_setup_and_data.

    Args:
        root: the boostnet_labeldata folder (or its parent).
        split: "training" (481 labelled) or "test" (128, labels withheld in the public copy).
        on_error: "raise" (default) a DatasetError at the first bad .mat / missing image, or "skip" them
            with one warning (listed in `dataset.skipped`).

    Returns:
        LandmarkDataset with ids = image file stems, in the order of filenames.csv when present. The split is
        labelled when its label folder holds any .mat file; then every image needs one.
    """
    if split not in SPINE_SPLITS:
        raise ValueError(f"split must be 'training' or 'test', got {split!r}.")
    base = spine_root(root)
    image_dir, label_dir = base / "data" / split, base / "labels" / split
    if not image_dir.is_dir():
        raise DatasetError(f"Spine image folder {image_dir} is missing; re-download the dataset.")
    names_csv = label_dir / "filenames.csv"
    if names_csv.is_file():
        names = [line.strip() for line in names_csv.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    mats = {p.name[: -len(".mat")] for p in label_dir.glob("*.mat")} if label_dir.is_dir() else set()
    labelled = bool(mats)

    skipped: dict[str, str] = {}
    for name in sorted(mats - set(names)):
        handle_error(on_error, skipped, Path(name).stem,
                     f"Label file {label_dir / (name + '.mat')} has no image {image_dir / name}; re-download "
                     f"the images or remove the label file.")
    ids, paths, landmarks = [], [], []
    for name in names:
        image_id, path = Path(name).stem, image_dir / name
        try:
            if not path.is_file():
                raise DatasetError(f"Image {path} (listed in {names_csv}) does not exist; re-download the "
                                   f"spine images.")
            points = None
            if labelled:
                mat = label_dir / f"{name}.mat"
                if not mat.is_file():
                    raise DatasetError(f"Image {path} has no label file {mat}; re-download the spine labels.")
                points = read_spine_mat(mat)
        except DatasetError as err:
            handle_error(on_error, skipped, image_id, str(err))
            continue
        ids.append(image_id)
        paths.append(path)
        landmarks.append(points)
    if skipped:
        warn_skipped("spine", skipped)
    if not ids:
        raise DatasetError(f"No readable spine images in {image_dir}; re-download the dataset.")
    return LandmarkDataset("spine", split, ids, paths, landmarks, MetricSpec("fraction"),
                           SPINE_NUM_LANDMARKS, base, skipped=skipped)
