"""One sample type for the three datasets of the paper: `Sample`, `MetricSpec`, `LandmarkDataset`.

Every reader (ISBI 2015, Digital Hand Atlas, AASCE spine) returns a `LandmarkDataset`: a lazy sequence of
`Sample`s. Constructing one only lists files and parses the (small) annotation files; an image is decoded
when its sample is accessed.

Conventions (README, "Conventions used everywhere"):
    image      np.ndarray (H, W) uint8, grey ("L")
    landmarks  np.ndarray (K, 2) float64, (x, y) = (column, row) in ORIGINAL image pixels, 0-based,
               pixel centres at integer coordinates; None for an image without annotations.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from farnet_lite.data.errors import DatasetError, check_on_error, warn_skipped
from farnet_lite.data.imageio import Reduced, image_size, load_grey, read_reduced


@dataclass(frozen=True)
class MetricSpec:
    """How a pixel error becomes the dataset's reported metric (paper §4.1).

    kind:
        "spacing"   error_mm = error_px * spacing_mm                     (ISBI 2015: 0.1 mm/px)
        "wrist"     error_mm = 50 * error_px / ||gt[1] - gt[5]||          (hand: wrist width taken as 50 mm,
                    0-based landmarks 1 and 5; see metrics.hand_errors_mm)
        "fraction"  errors as fractions of the image width / height      (spine; see metrics.spine_mse_fraction)
        "image"     error_mm = error_px * each image's own spacing       (your own CSV: ``dataset.spacings``;
                    pixels when a spacing is unknown)
    spacing_mm: the pixel spacing for kind "spacing", else None.
    """
    kind: str
    spacing_mm: Optional[float] = None

    def __post_init__(self):
        if self.kind not in ("spacing", "wrist", "fraction", "image"):
            raise ValueError(f"MetricSpec.kind must be 'spacing', 'wrist', 'fraction' or 'image', got "
                             f"{self.kind!r}.")
        if (self.kind == "spacing") != (self.spacing_mm is not None):
            raise ValueError("MetricSpec.spacing_mm is required for kind 'spacing' and must be None otherwise.")


@dataclass
class Sample:
    """One annotated (or unannotated) radiograph.

    image_id:  the dataset's own id ("001" for ISBI, "3143" for the hand atlas, the file stem for the spine).
    image:     (H, W) uint8 grey image.
    landmarks: (K, 2) float64 (x, y) original pixels, 0-based, pixel centres at integers; None if unlabelled.
    metric:    how pixel errors turn into the dataset's metric.
    """
    image_id: str
    image: np.ndarray
    landmarks: Optional[np.ndarray]
    metric: MetricSpec

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the original image."""
        return self.image.shape[0], self.image.shape[1]


class LandmarkDataset(Sequence):
    """A lazy, indexable sequence of `Sample`s (one split of one dataset).

    Build it with a reader (`read_isbi2015`, `read_hand`, `read_spine`);
    the constructor is for readers and tests.

    Attributes: name ("isbi2015" | "hand" | "spine"), split, num_landmarks, metric (MetricSpec), metric_kind,
    ids (tuple of str), paths (tuple of Path), root, missing_ids (annotated ids whose image was not found),
    skipped (id -> reason, for entries left out with on_error="skip"), spacings ((N,) mm per pixel of each
    image, NaN where unknown; None when the dataset has one spacing in its metric).
    """

    def __init__(self, name: str, split: str, ids: Sequence[str], paths: Sequence[Path],
                 landmarks: Sequence[Optional[np.ndarray]], metric: MetricSpec, num_landmarks: int,
                 root: Path | str = ".", missing_ids: Sequence[str] = (), skipped: Optional[dict] = None,
                 spacings: Optional[Sequence[float]] = None):
        if not (len(ids) == len(paths) == len(landmarks)):
            raise ValueError("ids, paths and landmarks must have the same length.")
        for image_id, points in zip(ids, landmarks):
            if points is not None and np.shape(points) != (num_landmarks, 2):
                raise ValueError(f"landmarks of {image_id!r} have shape {np.shape(points)}, "
                                 f"expected ({num_landmarks}, 2).")
        self.name = name
        self.split = split
        self.ids = tuple(str(i) for i in ids)
        self.paths = tuple(Path(p) for p in paths)
        self._landmarks = [None if p is None else np.asarray(p, dtype=np.float64) for p in landmarks]
        self.metric = metric
        self.num_landmarks = int(num_landmarks)
        self.root = Path(root)
        self.missing_ids = tuple(missing_ids)
        self.skipped = dict(skipped or {})
        self.spacings = None if spacings is None else np.asarray(spacings, dtype=np.float64).reshape(len(self.ids))

    @property
    def metric_kind(self) -> str:
        return self.metric.kind

    @property
    def num_labelled(self) -> int:
        """How many samples have landmarks."""
        return sum(p is not None for p in self._landmarks)

    def __len__(self) -> int:
        return len(self.ids)

    def _index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} {self.split} ({len(self)} samples).")
        return index % len(self)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.subset(range(len(self))[index])
        i = self._index(int(index))
        points = self._landmarks[i]
        return Sample(self.ids[i], load_grey(self.paths[i]), None if points is None else points.copy(),
                      self.metric)

    def landmarks(self, index: int) -> Optional[np.ndarray]:
        """(K, 2) float64 landmarks of sample `index` (or None) without decoding its image."""
        points = self._landmarks[self._index(int(index))]
        return None if points is None else points.copy()

    def reduced_image(self, index: int, at_least: tuple[int, int]) -> Reduced:
        """Image of sample `index` decoded at a reduced size >= `at_least` (H, W) where cheap, plus its ORIGINAL
        (H, W) and the reduction factor: `farnet_lite.data.imageio.read_reduced` (JPEG draft mode, else a full
        decode). Landmarks stay in original pixels; the prepared cache uses this to skip full JPEG decodes."""
        return read_reduced(self.paths[self._index(int(index))], at_least)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of sample `index`, read from the file header (no decoding)."""
        return image_size(self.paths[self._index(int(index))])

    def subset(self, indices) -> "LandmarkDataset":
        """A dataset of the samples at `indices` (same name, split and metric)."""
        indices = [self._index(int(i)) for i in indices]
        return LandmarkDataset(self.name, self.split, [self.ids[i] for i in indices],
                               [self.paths[i] for i in indices], [self._landmarks[i] for i in indices],
                               self.metric, self.num_landmarks, self.root, self.missing_ids, self.skipped,
                               None if self.spacings is None else self.spacings[indices])

    def verify(self, on_error: str = "raise") -> "LandmarkDataset":
        """Decode every image once; with on_error="skip" return the dataset without unreadable images.

        Slow on a full dataset (it decodes everything), so readers do not
        call it: use it once after a download. Raises DatasetError (on_error="raise") at the first bad file.
        """
        check_on_error(on_error)
        keep, skipped = [], {}
        for i, path in enumerate(self.paths):
            try:
                load_grey(path)
            except DatasetError as err:
                if on_error == "raise":
                    raise
                skipped[self.ids[i]] = str(err)
                continue
            keep.append(i)
        if not skipped:
            return self
        warn_skipped(self.name, skipped)
        out = self.subset(keep)
        out.skipped.update(skipped)
        return out

    def __repr__(self) -> str:
        return (f"LandmarkDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"labelled={self.num_labelled}, num_landmarks={self.num_landmarks}, "
                f"metric={self.metric}, root='{self.root}')")


def dataset_summary(dataset: LandmarkDataset) -> dict:
    """Counts, image-size range and landmark extent of a dataset, from file headers (no decoding).

 Returns a dict with keys name, split, count, labelled, num_landmarks,
    height (min, max), width (min, max), x (min, max) and y (min, max) over all labelled landmarks
    (None when nothing is labelled), and missing (annotated ids without an image).
    """
    sizes = np.array([dataset.image_size(i) for i in range(len(dataset))], dtype=np.int64).reshape(-1, 2)
    labelled = [p for p in (dataset.landmarks(i) for i in range(len(dataset))) if p is not None]
    points = np.concatenate(labelled) if labelled else None

    def extent(values, cast=float):
        return None if values is None or len(values) == 0 else (cast(values.min()), cast(values.max()))

    return {
        "name": dataset.name, "split": dataset.split, "count": len(dataset), "labelled": len(labelled),
        "num_landmarks": dataset.num_landmarks,
        "height": extent(sizes[:, 0], int), "width": extent(sizes[:, 1], int),
        "x": extent(None if points is None else points[:, 0]),
        "y": extent(None if points is None else points[:, 1]),
        "missing": len(dataset.missing_ids),
    }
