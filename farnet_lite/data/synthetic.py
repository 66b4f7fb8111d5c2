"""Synthetic datasets in exactly the three public layouts, so every reader and the whole pipeline run without
the real data (tests, CI, `make demo`). The images come from `synthetic_radiograph` (procedural.py).

Each writer is deterministic and idempotent: it keeps a small manifest (`synthetic_manifest.json`) of its
parameters in the root and does nothing when called again with the same ones. A root is written into a
temporary sibling folder and renamed into place, so nothing half-written is left behind. A non-empty root
without a manifest (e.g. real data) is never overwritten.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import save_grey
from farnet_lite.data.procedural import synthetic_radiograph

__all__ = ["synthetic_radiograph", "write_synthetic_isbi", "write_synthetic_hand", "write_synthetic_spine",
           "write_synthetic_datasets", "MANIFEST"]

MANIFEST = "synthetic_manifest.json"
_VERSION = 1
_DATASET_CODES = {"isbi2015": 0, "hand": 1, "spine": 2}


def _write_once(root: Path | str, params: dict, fill: Callable[[Path], None]) -> Path:
    """Call fill(tmp_dir) and move tmp_dir to root, unless root already holds these parameters."""
    root = Path(root)
    params = {"generator": "farnet_lite.data.synthetic", "version": _VERSION, **params}
    manifest = root / MANIFEST
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")) == params:
                return root
        except ValueError:
            pass  # unreadable manifest: rewrite
    elif root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} is not empty and was not written by the synthetic generator; choose an empty "
                           f"or new folder for synthetic data.")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        fill(tmp)
        (tmp / MANIFEST).write_text(json.dumps(params, indent=1), encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return root


def _write_text(path: Path, text: str) -> None:
    """Write a text file inside the temporary root (which is renamed into place as a whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _draw(seed: int, dataset: str, index: int, size, num_landmarks: int, layout: str = "grid"):
    return synthetic_radiograph([seed, _DATASET_CODES[dataset], index], size, num_landmarks, layout)


def write_synthetic_isbi(root: Path | str, n_train: int = 24, n_test1: int = 12, n_test2: int = 12,
                         size: tuple[int, int] = (240, 193), seed: int = 0) -> Path:
    """Write a synthetic ISBI 2015 root: RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp and
    AnnotationsByMD/400_{senior,junior}/NNN.txt (19 integer "x,y" lines + extra trailing lines).

 Ids follow the official numbering (train from 001, Test1 from
    151, Test2 from 301); the junior doctor is the senior one ± up to 2 px; Test2 annotations are withheld like the
    public data. `size` is (H, W): (240, 193) is the real 2400 x 1935 scaled down. Returns root.
    """
    if not (0 < n_train <= 150 and 0 <= n_test1 <= 150 and 0 <= n_test2 <= 100):
        raise ValueError("ISBI 2015 split sizes must be at most 150 / 150 / 100 (the official id ranges).")
    params = {"dataset": "isbi2015", "n_train": n_train, "n_test1": n_test1, "n_test2": n_test2,
              "size": list(size), "seed": seed}
    splits = (("TrainingData", 1, n_train, True), ("Test1Data", 151, n_test1, True),
              ("Test2Data", 301, n_test2, False))

    def fill(tmp: Path) -> None:
        for folder, first, count, annotated in splits:
            (tmp / "RawImage" / folder).mkdir(parents=True, exist_ok=True)
            for number in range(first, first + count):
                image, points = _draw(seed, "isbi2015", number, size, 19)
                image_id = f"{number:03d}"
                save_grey(image, tmp / "RawImage" / folder / f"{image_id}.bmp")
                if not annotated:
                    continue
                rng = np.random.default_rng([seed, 99, number])
                senior = np.round(points).astype(int)
                junior = np.clip(senior + rng.integers(-2, 3, senior.shape), 0, [size[1] - 1, size[0] - 1])
                extra = "".join(f"{v}\n" for v in rng.integers(1, 4, 8))  # like the challenge's class labels
                for doctor, pts in (("senior", senior), ("junior", junior)):
                    lines = "".join(f"{x},{y}\n" for x, y in pts)
                    _write_text(tmp / "AnnotationsByMD" / f"400_{doctor}" / f"{image_id}.txt", lines + extra)

    return _write_once(root, params, fill)


def write_synthetic_hand(root: Path | str, n: int = 18, size: tuple[int, int] = (240, 176),
                         seed: int = 0) -> Path:
    """Write a synthetic hand-atlas root: images/<id>.jpg, setup/all.csv (id,x1,y1,...,x37,y37 integer
    pixels, no header) and setup/cv/set{1,2,3}/{train,test}.txt (3 folds, each id tested once).

    `size` is (H, W) (the DHA images are about 1950 x 1350). Returns root.
    """
    if n < 3:
        raise ValueError("write_synthetic_hand needs n >= 3 images (3 cross-validation folds).")
    params = {"dataset": "hand", "n": n, "size": list(size), "seed": seed}
    ids = [str(3101 + i) for i in range(n)]

    def fill(tmp: Path) -> None:
        rows = []
        for i, image_id in enumerate(ids):
            image, points = _draw(seed, "hand", i, size, 37)
            save_grey(image, tmp / "images" / f"{image_id}.jpg")
            rows.append(",".join([image_id] + [str(int(v)) for v in np.round(points).ravel()]))
        _write_text(tmp / "setup" / "all.csv", "\n".join(rows) + "\n")
        order = np.random.default_rng([seed, 98]).permutation(n)
        for fold in range(3):
            test = [ids[j] for j in sorted(order[fold::3])]
            train = [i for i in ids if i not in test]
            for split, chosen in (("train", train), ("test", test)):
                _write_text(tmp / "setup" / "cv" / f"set{fold + 1}" / f"{split}.txt", "\n".join(chosen) + "\n")

    return _write_once(root, params, fill)


def write_synthetic_spine(root: Path | str, n_training: int = 24, n_test: int = 8,
                          size: tuple[int, int] = (320, 128), seed: int = 0) -> Path:
    """Write a synthetic AASCE root: boostnet_labeldata/data/{training,test}/<name>.jpg of varying size
    (±10% around `size` (H, W)), labels/training/<name>.jpg.mat (p2 (68, 2): 17 vertebra-like boxes x 4
    corners TL, TR, BL, BR), labels/{training,test}/filenames.csv and labels/training/landmarks.csv
    (68 x/width then 68 y/height); test labels are withheld like the public data.

    Returns root (the folder that contains boostnet_labeldata).
    """
    import scipy.io  # lazy: only the .mat labels need scipy (the GPU session reads prepared caches)

    params = {"dataset": "spine", "n_training": n_training, "n_test": n_test, "size": list(size), "seed": seed}

    def fill(tmp: Path) -> None:
        base = tmp / "boostnet_labeldata"
        index = 0
        for split, count in (("training", n_training), ("test", n_test)):
            names, fractions = [], []
            (base / "data" / split).mkdir(parents=True, exist_ok=True)
            (base / "labels" / split).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng([seed, 97, index])
                shape = tuple(int(round(s * rng.uniform(0.9, 1.1))) for s in size)
                image, points = _draw(seed, "spine", index, shape, 68, layout="column")
                index += 1
                name = f"synthetic-{split}-{i + 1:03d} AP.jpg"
                names.append(name)
                save_grey(image, base / "data" / split / name)
                if split == "training":
                    p2 = np.round(points).astype(np.uint16)  # (68, 2) integer pixels, like the public .mat
                    scipy.io.savemat(str(base / "labels" / split / f"{name}.mat"), {"p2": p2})
                    fractions.append(np.concatenate([p2[:, 0] / shape[1], p2[:, 1] / shape[0]]))
            _write_text(base / "labels" / split / "filenames.csv", "\n".join(names) + "\n")
            if fractions:
                _write_text(base / "labels" / split / "landmarks.csv",
                             "\n".join(",".join(f"{v:.5f}" for v in row) for row in fractions) + "\n")

    return _write_once(root, params, fill)


def write_synthetic_datasets(root: Path | str, seed: int = 0) -> dict[str, Path]:
    """Write the three synthetic datasets with their default sizes under `root`.

 Returns {"isbi2015": root/isbi2015, "hand": root/hand_dha,
    "spine": root/spine_aasce} (the folder names of the real copies), each ready for its reader.
    """
    root = Path(root)
    return {
        "isbi2015": write_synthetic_isbi(root / "isbi2015", seed=seed),
        "hand": write_synthetic_hand(root / "hand_dha", seed=seed),
        "spine": write_synthetic_spine(root / "spine_aasce", seed=seed),
    }
