"""The readers on the real datasets in ../shared/data (skipped when that folder is absent).

Counts of images and annotations, landmarks inside their images (sizes from the file headers, no decoding),
and a decoded sample per dataset.
"""
from pathlib import Path

import numpy as np
import pytest

from farnet_lite.data.hand import read_hand, read_hand_annotations, read_hand_ids
from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.data.sample import dataset_summary
from farnet_lite.data.spine import read_spine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

pytestmark = [pytest.mark.realdata,
              pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")]


def outside_image(dataset):
    """[(id, landmark index)] of labelled landmarks outside [0, W-1] x [0, H-1]."""
    found = []
    for i in range(len(dataset)):
        points = dataset.landmarks(i)
        if points is None:
            continue
        height, width = dataset.image_size(i)
        bad = (points < 0).any(1) | (points[:, 0] > width - 1) | (points[:, 1] > height - 1)
        found += [(dataset.ids[i], int(k)) for k in np.flatnonzero(bad)]
    return found


def test_isbi2015_counts_and_extent():
    root = DATA / "isbi2015"
    splits = {s: read_isbi2015(root, s) for s in ("train", "test1", "test2")}
    assert [len(d) for d in splits.values()] == [150, 150, 100]
    assert [d.num_labelled for d in splits.values()] == [150, 150, 0]
    assert splits["train"].ids[0] == "001" and splits["test1"].ids[0] == "151" and splits["test2"].ids[-1] == "400"
    for dataset in splits.values():
        assert {dataset.image_size(i) for i in range(len(dataset))} == {(2400, 1935)}
        assert outside_image(dataset) == []
    sample = splits["test2"][0]
    assert sample.image.shape == (2400, 1935) and sample.image.dtype == np.uint8 and sample.landmarks is None
    senior = read_isbi2015(root, "train", annotation="senior")
    junior = read_isbi2015(root, "train", annotation="junior")
    mean = splits["train"]
    for i in (0, 77, 149):
        np.testing.assert_allclose(mean.landmarks(i), (senior.landmarks(i) + junior.landmarks(i)) / 2)
        assert np.all(senior.landmarks(i) == np.round(senior.landmarks(i)))  # integer pixels
    # the two doctors agree to a few mm on average (0.1 mm/px): a sanity check of the pairing of files
    gap = np.mean([np.linalg.norm(senior.landmarks(i) - junior.landmarks(i), axis=1).mean() for i in range(150)])
    assert 5 < gap < 60


def test_hand_partial_images_and_setup():
    root = DATA / "hand_dha"
    table = read_hand_annotations(root / "setup" / "all.csv")
    assert len(table) == 910
    with pytest.warns(UserWarning, match="found 12 of 910"):
        everything = read_hand(root, split="all")
    assert len(everything) == 12 and len(everything.missing_ids) == 898
    assert all(i in table for i in everything.ids)
    folds = [(set(read_hand_ids(root / "setup" / "cv" / f"set{f}" / "train.txt")),
              set(read_hand_ids(root / "setup" / "cv" / f"set{f}" / "test.txt"))) for f in (1, 2, 3)]
    cv_ids = set.union(*(test for _, test in folds))
    assert len(cv_ids) == 895 and cv_ids <= set(table)
    assert all(not train & test and len(train | test) == 895 for train, test in folds)
    counts = []
    for fold in (1, 2, 3):
        with pytest.warns(UserWarning, match="annotated images"):
            counts.append(len(read_hand(root, fold, "test")))
    assert sum(counts) == len(set(everything.ids) & cv_ids)
    assert outside_image(everything) == []
    sample = everything[0]
    assert sample.image.ndim == 2 and sample.image.shape == everything.image_size(0)


def test_spine_counts_extent_and_csv():
    root = DATA / "spine_aasce"
    training, test = read_spine(root, "training"), read_spine(root, "test")
    assert (len(training), training.num_labelled) == (481, 481)
    assert (len(test), test.num_labelled) == (128, 0)
    # One public annotation (vertebra 16's bottom-left corner in this image) lies 57 px below the image.
    assert outside_image(training) == [("sunhl-1th-25-Jul-2016-49 A AP", 63)]
    rows = np.loadtxt(training.root / "labels" / "training" / "landmarks.csv", delimiter=",", max_rows=5)
    for i in range(5):
        height, width = training.image_size(i)
        p2 = training.landmarks(i)
        np.testing.assert_allclose(rows[i, :68], p2[:, 0] / width, atol=1e-4)  # same order as filenames.csv
        np.testing.assert_allclose(rows[i, 68:], p2[:, 1] / height, atol=1e-4)
    sample = test[0]
    assert sample.image.ndim == 2 and sample.image.shape == test.image_size(0) and sample.landmarks is None


def test_summaries_of_real_datasets():
    summary = dataset_summary(read_spine(DATA / "spine_aasce", "test"))
    assert summary["count"] == 128 and summary["labelled"] == 0 and summary["x"] is None
    assert summary["height"][0] < summary["height"][1]  # varying sizes
    summary = dataset_summary(read_isbi2015(DATA / "isbi2015", "train"))
    assert summary["height"] == (2400, 2400) and summary["width"] == (1935, 1935)
    assert 0 < summary["x"][0] < summary["x"][1] < 1935
