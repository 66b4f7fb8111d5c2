"""The datasets the kit knows: one :class:`DatasetSpec` per dataset holds everything about it.

A spec says how to read a split (``reader``), where the dataset sits under a data root (``folder``), how to write
its synthetic stand-in (``synthetic_writer``, named ``synthetic_name``), its split names and defaults, its
cross-validation folds, the paper's input size and augmentation (§4.2), how errors are scored (``metric``, SDR
``radii``, hence the table columns ``metric_columns``) and the input size of quick mode. The readers in
:mod:`farnet_lite.data` own what they need to read a file and attach to it (landmark count, split names, the
:class:`~farnet_lite.data.sample.MetricSpec` of their samples); the specs refer to those constants instead of
repeating them.

Import direction: ``farnet_lite.data`` -> ``datasets`` -> ``config`` -> everything that trains or scores.
A new dataset is one more entry of :data:`DATASETS` (its ``num_landmarks`` may be None when it is read from the
data, with ``count_landmarks`` saying how).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple, Union

from farnet_lite.data.augment import AugmentConfig
from farnet_lite.data.custom import CUSTOM_METRIC, CUSTOM_SPLITS, count_custom_landmarks, read_custom
from farnet_lite.data.hand import HAND_FOLDS, HAND_METRIC, HAND_NUM_LANDMARKS, HAND_SPLITS, read_hand
from farnet_lite.data.isbi2015 import ISBI_METRIC, ISBI_NUM_LANDMARKS, ISBI_SPLITS, read_isbi2015
from farnet_lite.data.sample import LandmarkDataset, MetricSpec
from farnet_lite.data.spine import SPINE_METRIC, SPINE_NUM_LANDMARKS, SPINE_SPLITS, paper_split_indices, read_spine
from farnet_lite.data.synthetic import MANIFEST, write_synthetic_hand, write_synthetic_isbi, write_synthetic_spine

SPINE_FOLDS = 5
"""Folds of the spine's cross-validation on its training set (``cv-train`` / ``cv-val``)."""


def cv_fold_indices(ids, fold: int, num_folds: int = SPINE_FOLDS) -> Tuple[List[int], List[int]]:
    """``(train_indices, val_indices)`` of fold ``fold`` (1-based): sorted ids, i-th sorted id in fold i % n + 1.

    Deterministic and independent of file-system order.
    """
    if not 1 <= fold <= num_folds:
        raise ValueError(f"fold must be between 1 and {num_folds}, got {fold}.")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    val = sorted(i for rank, i in enumerate(order) if rank % num_folds == fold - 1)
    chosen = set(val)
    return [i for i in range(len(ids)) if i not in chosen], val


# --- readers with one signature: reader(root, split, *, fold, annotation) -> LandmarkDataset
def _read_isbi(root: Path, split: str, *, fold: int, annotation: str) -> LandmarkDataset:
    return read_isbi2015(root, split=split, annotation=annotation)


def _read_hand(root: Path, split: str, *, fold: int, annotation: str) -> LandmarkDataset:
    return read_hand(root, fold=fold, split=split)


def _read_spine(root: Path, split: str, *, fold: int, annotation: str) -> LandmarkDataset:
    """The published splits, and the paper's protocol (§4.1.3, §4.5.3) on the 481 labelled images: ``trainval``
    (431) / ``test50`` (50, Table 5) from the committed split file, ``cv-train`` / ``cv-val`` = fold ``fold`` of
    the 5-fold cross-validation on ``trainval``."""
    if split not in ("trainval", "test50", "cv-train", "cv-val"):
        return read_spine(root, split=split)
    training = read_spine(root, split="training")
    trainval_idx, test_idx = paper_split_indices(training)
    if split == "test50":
        return training.subset(test_idx)
    trainval = training.subset(trainval_idx)
    if split == "trainval":
        return trainval
    train_idx, val_idx = cv_fold_indices(trainval.ids, fold)
    return trainval.subset(train_idx if split == "cv-train" else val_idx)


def _read_custom(root: Path, split: str, *, fold: int, annotation: str) -> LandmarkDataset:
    return read_custom(root, split=split)   # root: the landmark CSV itself


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the kit knows about one dataset (or its synthetic stand-in).

    Sizes are ``(H, W)``. ``metric`` is how errors are scored, the same
    :class:`~farnet_lite.data.sample.MetricSpec` the reader attaches to its samples: kind ``spacing`` (mm = px x
    ``metric.spacing_mm``), ``wrist`` (mm via the 50 mm wrist width, :func:`farnet_lite.metrics.hand_errors_mm`),
    ``fraction`` (spine: MSE as a fraction of the image size, plus Pearson) or ``image`` (mm = px x each image's
    own spacing, your own CSV). ``radii`` are the SDR radii in mm. ``val_split=""`` in a config means no model
    selection (the last epoch is kept).
    """

    name: str
    layout: str                                   # the reader family: "isbi2015" | "hand" | "spine"
    reader: Callable[..., LandmarkDataset]        # reader(root, split, *, fold, annotation)
    num_landmarks: Optional[int]                  # None: read from the data by count_landmarks(data_root)
    splits: Tuple[str, ...]                       # every split name the reader accepts
    train_split: str
    val_split: str                                # the split best.pt is selected on
    eval_splits: Tuple[str, ...]                  # scored with best.pt after training
    input_size: Tuple[int, int]                   # the paper's network input (§4.2); smaller for synthetic
    augment: bool                                 # the paper augments the hand and the spine (§4.2)
    metric: MetricSpec                            # how errors are scored (the reader's own MetricSpec)
    radii: Tuple[float, ...]
    folds: int = 1                                # cross-validation folds (``TrainConfig.fold`` is 1..folds)
    folder: str = ""                              # folder under a data root (as the downloaders write it)
    synthetic_name: str = ""                      # the name of the synthetic stand-in in DATASETS
    synthetic_writer: Optional[Callable[..., Path]] = None   # writer(root, ...) of that stand-in's files
    synthetic: bool = False                       # True for the stand-in itself
    quick_size: Tuple[int, int] = (64, 64)        # quick mode of farnet reproduce (a smoke test) ...
    quick_counts: Tuple[Tuple[str, int], ...] = ()   # ... on a tiny stand-in: synthetic_writer's image counts
    count_landmarks: Optional[Callable[[Path], int]] = None
    augmentation: Callable[[], AugmentConfig] = AugmentConfig.hand   # the ranges when ``augment`` is on
    paper_grid_mm: Optional[float] = None        # mm per pixel of ``input_size``'s grid when all images share one
    #                                              size and spacing (ISBI: 2400 px x 0.1 mm / 800 px = 0.3 mm)

    @property
    def metric_columns(self) -> Tuple[Tuple[str, str], ...]:
        """``(key in metrics_<split>.json, column title)`` of the dataset's tables, in the paper's order.

        Lower is better for MRE, SD and MSE; higher for SDR and Pearson.
        """
        if self.metric.kind == "fraction":
            return (("mse_fraction", "MSE (fraction of image)"), ("pearson", "Pearson ρ"))
        sdr = tuple((f"sdr_{r:g}", f"SDR {r:g} mm (%)") for r in self.radii)
        return (("mre", "MRE (mm)"), ("sd", "SD (mm)")) + sdr

    def grid_sigma(self, sigma: float, sigma_scale: str, input_size: Tuple[int, int]) -> float:
        """``sigma`` in pixels of each output's grid at ``input_size`` (H, W): as given (``sigma_scale="output"``)
        or given in the paper's grid (``"paper"``: ``self.input_size``) and scaled by the input heights."""
        if sigma_scale == "output":
            return float(sigma)
        if sigma_scale == "paper":
            return float(sigma) * input_size[0] / self.input_size[0]
        raise ValueError(f"sigma_scale must be output or paper, got {sigma_scale!r}.")

    def target_width(self, sigma: float, input_size: Tuple[int, int]) -> str:
        """How wide a run's targets are (Eq. 1): ``sigma`` px of each output's grid at ``input_size`` (H, W) (the
        run's :attr:`TrainConfig.target_sigma`), said in the paper's grid (``self.input_size``, where the paper's
        sigma is 10 px) and, where known, in mm of the final output. At a smaller input the same sigma in pixels
        is a wider Gaussian in the image."""
        scale = self.input_size[0] / input_size[0]                  # paper-grid pixels per training-grid pixel
        text = f"σ {sigma:.3g} px of each output's grid"
        if self.paper_grid_mm:
            return text + (f" (≈ {sigma * scale * self.paper_grid_mm:.1f} mm; the paper's σ 10 at "
                           f"{self.input_size[0]}×{self.input_size[1]} ≈ {10 * self.paper_grid_mm:.0f} mm)")
        return text + (f" (= {sigma * scale:.3g} px of the paper's {self.input_size[0]}×{self.input_size[1]} grid, "
                       f"where the paper's σ is 10)")

    def landmarks_in(self, data_root: Optional[str]) -> int:
        """K: ``num_landmarks``, or (a dataset defined by its files) the count read from ``data_root``."""
        if self.num_landmarks is not None:
            return self.num_landmarks
        if self.count_landmarks is None or not data_root:
            raise ValueError(f"Dataset {self.name!r} reads its landmark count from its files; pass --data-root.")
        return int(self.count_landmarks(Path(data_root)))

    def stand_in(self, input_size: Tuple[int, int]) -> "DatasetSpec":
        """The synthetic stand-in: same reader, splits and metric, at a CPU-sized ``input_size``."""
        return dataclasses.replace(self, name=self.synthetic_name, input_size=input_size, synthetic=True,
                                   paper_grid_mm=None)


ISBI2015 = DatasetSpec(
    name="isbi2015", layout="isbi2015", reader=_read_isbi, num_landmarks=ISBI_NUM_LANDMARKS,
    splits=tuple(ISBI_SPLITS), train_split="train", val_split="test1", eval_splits=("test1", "test2"),
    input_size=(800, 640), augment=False, metric=ISBI_METRIC, radii=(2.0, 2.5, 3.0, 4.0),
    folder="isbi2015", synthetic_name="synthetic-isbi", synthetic_writer=write_synthetic_isbi, quick_size=(64, 64),
    quick_counts=(("n_train", 8), ("n_test1", 6), ("n_test2", 4)), paper_grid_mm=0.3)
"""ISBI 2015 cephalograms (§4.1.1): Test1 selects the checkpoint and is scored with Test2."""

HAND = DatasetSpec(
    name="hand", layout="hand", reader=_read_hand, num_landmarks=HAND_NUM_LANDMARKS, splits=HAND_SPLITS,
    train_split="train", val_split="", eval_splits=("test",), input_size=(512, 512), augment=True,
    metric=HAND_METRIC, radii=(2.0, 4.0, 10.0), folds=len(HAND_FOLDS), folder="hand_dha",
    synthetic_name="synthetic-hand", synthetic_writer=write_synthetic_hand, quick_size=(64, 64),
    quick_counts=(("n", 9),))
"""Digital Hand Atlas with Payer et al.'s 37 landmarks and 3-fold cross-validation (§4.1.2). No checkpoint is
selected (``val_split=""``: the last epoch is scored): the fold's test images are the reported ones, and Payer et
al.'s protocol, which the paper follows, never selects on them."""

SPINE = DatasetSpec(
    name="spine", layout="spine", reader=_read_spine, num_landmarks=SPINE_NUM_LANDMARKS,
    splits=SPINE_SPLITS + ("trainval", "test50", "cv-train", "cv-val"), train_split="cv-train", val_split="cv-val",
    eval_splits=("cv-val", "test50", "test"), input_size=(1024, 512), augment=True, metric=SPINE_METRIC,
    radii=(), folds=SPINE_FOLDS, folder="spine_aasce", synthetic_name="synthetic-spine",
    synthetic_writer=write_synthetic_spine, augmentation=AugmentConfig.spine, quick_size=(64, 32),
    quick_counts=(("n_training", 10), ("n_test", 3)))
"""AASCE spine radiographs, 68 vertebra corners (§4.1.3): ``test50`` = the paper's 50 held-out images (Table 5),
``cv-*`` = the folds of the other 431; ``test`` = the AASCE challenge's 128 (labels withheld in public copies)."""

CUSTOM = DatasetSpec(
    name="custom", layout="custom", reader=_read_custom, num_landmarks=None, splits=CUSTOM_SPLITS,
    train_split="train", val_split="val", eval_splits=("val", "test"), input_size=(512, 512), augment=False,
    metric=CUSTOM_METRIC, radii=(2.0, 2.5, 3.0, 4.0), count_landmarks=count_custom_landmarks)
"""Your own landmark set: ``--data-root`` is its CSV (format in :mod:`farnet_lite.data.custom`), K read from it.
Metric ``image``: each image's own spacing turns pixel errors into mm (all in pixels when one is unknown)."""

DATASETS: Dict[str, DatasetSpec] = {
    spec.name: spec for spec in (
        ISBI2015, HAND, SPINE, CUSTOM,
        # Synthetic radiographs in exactly the public layouts (farnet_lite.data.synthetic), written on demand:
        # same readers and metrics, a smaller input so that CPU runs finish.
        ISBI2015.stand_in((160, 128)), HAND.stand_in((128, 128)), SPINE.stand_in((256, 128)))
}
"""The datasets the engine knows, by name."""


def real_datasets() -> Tuple[str, ...]:
    """The names of the public datasets of the paper (those with a ``folder``; not stand-ins, not "custom")."""
    return tuple(name for name, spec in DATASETS.items() if spec.folder and not spec.synthetic)


SHARED_DATA = Path("..") / "shared" / "data"
"""Where a development or CI machine keeps the real datasets, relative to the repository (``../shared/data``)."""


def real_data_root(dataset: str, data_root: Union[str, Path, None] = None,
                   search_from: Optional[Iterable[Union[str, Path]]] = None) -> Optional[Path]:
    """The first real (not synthetic) copy of ``dataset``'s folder, or None when there is none.

    Looks in ``data_root/<folder>`` (where notebook 00's downloaders put it), then in ``../shared/data/<folder>``
    relative to each of ``search_from`` (default: the working directory and its parent, so that it is found from
    the repository and from its ``notebooks/`` folder). ``<folder>`` is the spec's ``folder`` (isbi2015, hand_dha, spine_aasce). A folder
    counts when it is a non-empty directory without the synthetic writer's manifest.
    """
    folder = DATASETS[dataset].folder
    if not folder:
        raise ValueError(f"{dataset!r} has no public folder; real_data_root knows {', '.join(real_datasets())}.")
    bases = [Path.cwd(), Path.cwd().parent] if search_from is None else [Path(b) for b in search_from]
    candidates = ([Path(data_root) / folder] if data_root else []) + [b / SHARED_DATA / folder for b in bases]
    for root in candidates:
        if root.is_dir() and not (root / MANIFEST).is_file() and any(root.iterdir()):
            return root.resolve()
    return None
