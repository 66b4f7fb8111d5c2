"""Reader of the AASCE 2019 / SpineWeb dataset 16 (Wu et al., BoostNet, MICCAI 2017; FARNet paper §4.1).

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

from farnet_lite.data.imageio import IMAGE_SUFFIXES
from farnet_lite.data.errors import DatasetError, handle_error, warn_skipped
from farnet_lite.data.sample import LandmarkDataset, MetricSpec

SPINE_NUM_LANDMARKS = 68
SPINE_SPLITS = ("training", "test")
SPINE_METRIC = MetricSpec("fraction")
"""Errors as fractions of the image size (MSE and Pearson, AASCE 2019)."""

SPINE_LABELLED = 481
"""Labelled images of the public release (§4.1.3)."""
SPINE_TEST_SIZE = 50
"""Images of the 481 the paper holds out for Table 5 (§4.1.3: 431 for training / validation, 50 for testing)."""
SPINE_SPLIT_SEED = 0
"""Seed of :func:`paper_split` (the paper's own split was not published; ours is fixed by this seed)."""
SPINE_SPLIT_FILE = Path(__file__).with_name("spine_431_50.csv")
"""The committed 431 / 50 split of the 481 public training images: ``image,subset`` rows (``trainval`` | ``test50``),
written by :func:`write_paper_split`, so every copy of the kit gets the same split."""


def read_spine_mat(path: Path | str, num_landmarks: int = SPINE_NUM_LANDMARKS) -> np.ndarray:
    """Load variable `p2` of one .jpg.mat label file -> (68, 2) float64 (x, y) pixels.

    Raises DatasetError naming the file if it is unreadable, lacks `p2`
    or `p2` has the wrong shape.
    """
    import scipy.io  # lazy: only the .mat labels need scipy (the GPU session reads prepared caches)

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
    """The boostnet_labeldata folder: `root` itself or root/boostnet_labeldata (DatasetError otherwise)."""
    root = Path(root)
    for candidate in (root, root / "boostnet_labeldata"):
        if (candidate / "data").is_dir() and (candidate / "labels").is_dir():
            return candidate
    raise DatasetError(f"{root} is not a spine (AASCE) root: expected boostnet_labeldata/data/{{training,test}} "
                       f"and boostnet_labeldata/labels/{{training,test}}; get it with "
                       f"`python -m farnet_lite.download.spine --dest DIR`.")


def read_spine(root: Path | str, split: str = "training", on_error: str = "raise") -> LandmarkDataset:
    """Read one split of the spine dataset -> LandmarkDataset of 68 landmarks, metric "fraction".

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
    return LandmarkDataset("spine", split, ids, paths, landmarks, SPINE_METRIC,
                           SPINE_NUM_LANDMARKS, base, skipped=skipped)


def paper_split(names, seed: int = SPINE_SPLIT_SEED, test_size: int | None = None) -> dict[str, str]:
    """The paper's hold-out split (§4.1.3, §4.5.3): ``{image name: "trainval" | "test50"}``.

    The names are sorted (file-system order never matters), shuffled by ``numpy.random.default_rng(seed)`` and the
    first ``test_size`` go to ``test50``. ``test_size`` defaults to 50 for the 481 public images and to the same
    share (at least one) for another set, such as the synthetic stand-in.
    """
    names = sorted(set(names))
    if test_size is None:
        share = round(len(names) * SPINE_TEST_SIZE / SPINE_LABELLED)
        test_size = SPINE_TEST_SIZE if len(names) == SPINE_LABELLED else max(1, share)
    if not 0 < test_size < len(names):
        raise ValueError(f"test_size must be between 1 and {len(names) - 1} for {len(names)} images, got {test_size}.")
    order = np.random.default_rng(seed).permutation(len(names))
    held_out = {names[i] for i in order[:test_size]}
    return {name: "test50" if name in held_out else "trainval" for name in names}


def write_paper_split(root: Path | str, path: Path | str = SPINE_SPLIT_FILE, seed: int = SPINE_SPLIT_SEED) -> Path:
    """Write :func:`paper_split` of the labelled images under ``root`` to ``path`` (``image,subset``, sorted)."""
    import csv

    from farnet_lite.atomic import atomic_path

    dataset = read_spine(root, split="training")
    names = [Path(p).name for p in dataset.paths]
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "subset"])
        writer.writerows(sorted(paper_split(names, seed).items()))
    return path


def read_split_file(path: Path | str = SPINE_SPLIT_FILE) -> dict[str, str]:
    """``{image name: subset}`` from a split file written by :func:`write_paper_split`."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        return {row["image"]: row["subset"] for row in csv.DictReader(handle)}


def paper_split_indices(dataset: LandmarkDataset) -> tuple[list[int], list[int]]:
    """``(trainval indices, test50 indices)`` of the labelled ``training`` split.

    The committed :data:`SPINE_SPLIT_FILE` when the dataset's images are the ones it lists (the public 481);
    otherwise (the synthetic stand-in, another copy) :func:`paper_split` of its own names, with the same seed.
    """
    names = [Path(p).name for p in dataset.paths]
    committed = read_split_file() if SPINE_SPLIT_FILE.is_file() else {}
    subsets = committed if set(names) == set(committed) else paper_split(names)
    trainval = [i for i, name in enumerate(names) if subsets[name] == "trainval"]
    return trainval, [i for i, name in enumerate(names) if subsets[name] == "test50"]
