"""Readers of the three public layouts (farnet_lite/data/{isbi2015,hand,spine}.py) on synthetic copies,
and every bad input of the data-layer issue (§6): each one a DatasetError naming the file, or a skip."""
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

from farnet_lite.data.hand import read_hand
from farnet_lite.data.imageio import image_size, load_grey
from farnet_lite.data.isbi2015 import read_isbi2015, read_isbi_annotation
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.sample import LandmarkDataset, MetricSpec, dataset_summary
from farnet_lite.data.spine import read_spine
from farnet_lite.data.synthetic import write_synthetic_datasets


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return write_synthetic_datasets(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def isbi_copy(roots, tmp_path):
    return shutil.copytree(roots["isbi2015"], tmp_path / "isbi2015")


# ----------------------------------------------------------------------------- ISBI 2015

def test_isbi_splits_counts_and_labels(roots):
    train, test1, test2 = (read_isbi2015(roots["isbi2015"], s) for s in ("train", "test1", "test2"))
    assert (len(train), len(test1), len(test2)) == (24, 12, 12)
    assert (train.num_labelled, test1.num_labelled, test2.num_labelled) == (24, 12, 0)
    assert train.ids[0] == "001" and test1.ids[0] == "151" and test2.ids[-1] == "312"
    assert train.metric == MetricSpec("spacing", 0.1) and train.metric_kind == "spacing"
    sample = train[0]
    assert sample.image.shape == (240, 193) and sample.image.dtype == np.uint8
    assert sample.landmarks.shape == (19, 2) and sample.landmarks.dtype == np.float64
    assert test2[3].landmarks is None and test2.landmarks(3) is None


def test_isbi_mean_is_average_of_doctors_and_extra_lines_ignored(roots):
    root = roots["isbi2015"]
    senior_txt = root / "AnnotationsByMD" / "400_senior" / "007.txt"
    junior_txt = root / "AnnotationsByMD" / "400_junior" / "007.txt"
    assert len(senior_txt.read_text().splitlines()) > 19  # trailing lines like the originals
    first = [int(v) for v in senior_txt.read_text().splitlines()[0].split(",")]
    senior = read_isbi2015(root, "train", annotation="senior").landmarks(6)
    junior = read_isbi2015(root, "train", annotation="junior").landmarks(6)
    mean = read_isbi2015(root, "train").landmarks(6)
    np.testing.assert_array_equal(senior[0], first)
    np.testing.assert_array_equal(senior, read_isbi_annotation(senior_txt))
    np.testing.assert_array_equal(junior, read_isbi_annotation(junior_txt))
    np.testing.assert_allclose(mean, (senior + junior) / 2)


def test_dataset_sequence_protocol(roots):
    ds = read_isbi2015(roots["isbi2015"], "test1")
    assert ds[-1].image_id == ds.ids[-1] == "162"
    assert [s.image_id for s in ds[2:5]] == list(ds.ids[2:5])
    assert len(list(iter(ds))) == len(ds) == 12
    assert ds.image_size(0) == (240, 193) == ds[0].size
    with pytest.raises(IndexError):
        ds[12]
    sub = ds.subset([3, 1])
    assert sub.ids == (ds.ids[3], ds.ids[1]) and sub.metric == ds.metric
    np.testing.assert_array_equal(sub[0].landmarks, ds[3].landmarks)


def test_dataset_summary_counts_and_ranges(roots):
    summary = dataset_summary(read_spine(roots["spine"], "training"))
    assert summary["count"] == summary["labelled"] == 24 and summary["num_landmarks"] == 68
    assert 288 <= summary["height"][0] <= summary["height"][1] <= 352  # 320 ± 10%
    assert summary["x"][0] >= 0 and summary["y"][1] <= summary["height"][1] - 1
    assert dataset_summary(read_spine(roots["spine"], "test"))["x"] is None


# ----------------------------------------------------------------------------- hand

def test_hand_folds_partition_and_match_csv(roots):
    root = roots["hand"]
    tests = [set(read_hand(root, fold, "test").ids) for fold in (1, 2, 3)]
    everything = read_hand(root, split="all")
    assert len(everything) == 18 and sum(len(t) for t in tests) == 18 and set.union(*tests) == set(everything.ids)
    train = read_hand(root, 1, "train")
    assert len(train) == 12 and not set(train.ids) & tests[0]
    row = (root / "setup" / "all.csv").read_text().splitlines()[4].split(",")
    index = everything.ids.index(row[0])
    np.testing.assert_array_equal(everything.landmarks(index), np.array(row[1:], float).reshape(37, 2))
    assert everything.metric == MetricSpec("wrist") and everything[0].image.shape == (240, 176)


def test_hand_partial_images_in_a_dha_tree(roots, tmp_path):
    root = shutil.copytree(roots["hand"], tmp_path / "hand")
    images = sorted((root / "images").glob("*.jpg"))
    for path in images[:5]:
        path.unlink()
    nested = root / "images" / "ASI" / "F" / "10"  # the DHA race / sex / age tree
    nested.mkdir(parents=True)
    shutil.move(str(images[7]), nested / images[7].name)
    with pytest.warns(UserWarning, match="found 13 of 18"):
        ds = read_hand(root, split="all")
    assert len(ds) == 13 and sorted(ds.missing_ids) == sorted(p.stem for p in images[:5])
    assert ds.paths[ds.ids.index(images[7].stem)] == nested / images[7].name


def test_hand_errors(roots, tmp_path):
    root = shutil.copytree(roots["hand"], tmp_path / "hand")
    shutil.rmtree(root / "images")
    with pytest.raises(DatasetError, match="None of the 18"):
        read_hand(root, split="all")
    with pytest.raises(DatasetError, match="all.csv"):
        read_hand(tmp_path)  # no setup/all.csv: not a hand root
    root = shutil.copytree(roots["hand"], tmp_path / "hand2")
    csv = root / "setup" / "all.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:2] + [lines[2] + ",17"] + lines[3:]) + "\n")
    bad_id = lines[2].split(",")[0]
    with pytest.raises(DatasetError, match=r"Row 3 of .*all\.csv"):
        read_hand(root, split="all")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = read_hand(root, split="all", on_error="skip")
    assert len(ds) == 17 and bad_id in ds.skipped and bad_id not in ds.ids


# ----------------------------------------------------------------------------- spine

def test_spine_reads_p2_in_filename_order(roots):
    base = roots["spine"] / "boostnet_labeldata"
    ds = read_spine(roots["spine"], "training")
    assert ds.root == base and read_spine(base).ids == ds.ids  # root or its parent
    names = (base / "labels" / "training" / "filenames.csv").read_text().splitlines()
    assert [f"{i}.jpg" for i in ds.ids] == names and " " in names[0]
    p2 = scipy.io.loadmat(str(base / "labels" / "training" / f"{names[5]}.mat"))["p2"]
    np.testing.assert_array_equal(ds.landmarks(5), p2)
    height, width = ds.image_size(5)
    row = np.loadtxt(base / "labels" / "training" / "landmarks.csv", delimiter=",")[5]
    np.testing.assert_allclose(row[:68] * width, p2[:, 0], atol=0.01)  # 68 x/width then 68 y/height
    np.testing.assert_allclose(row[68:] * height, p2[:, 1], atol=0.01)
    assert ds.metric == MetricSpec("fraction")
    test = read_spine(roots["spine"], "test")
    assert len(test) == 8 and test.num_labelled == 0 and test[0].image.ndim == 2


def test_spine_bad_mat_files(roots, tmp_path):
    root = shutil.copytree(roots["spine"], tmp_path / "spine")
    labels = root / "boostnet_labeldata" / "labels" / "training"
    name = (labels / "filenames.csv").read_text().splitlines()[2]
    scipy.io.savemat(str(labels / f"{name}.mat"), {"p1": np.zeros((68, 2))})
    with pytest.raises(DatasetError, match=f"{name}.mat has no variable 'p2'"):
        read_spine(root)
    scipy.io.savemat(str(labels / f"{name}.mat"), {"p2": np.zeros((67, 2))})
    with pytest.raises(DatasetError, match=r"shape \(67, 2\), expected \(68, 2\)"):
        read_spine(root)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = read_spine(root, on_error="skip")
    assert len(ds) == 23 and name[:-4] in ds.skipped
    (labels / f"{name}.mat").unlink()
    with pytest.raises(DatasetError, match="has no label file"):
        read_spine(root)
    with pytest.raises(DatasetError, match="not a spine"):
        read_spine(tmp_path)


def test_spine_missing_image_for_label(roots, tmp_path):
    root = shutil.copytree(roots["spine"], tmp_path / "spine")
    name = (root / "boostnet_labeldata" / "labels" / "training" / "filenames.csv").read_text().splitlines()[0]
    (root / "boostnet_labeldata" / "data" / "training" / name).unlink()
    with pytest.raises(DatasetError, match="does not exist"):
        read_spine(root)


# ----------------------------------------------------------------------------- ISBI bad inputs

def test_isbi_missing_image_for_annotation(isbi_copy):
    (isbi_copy / "RawImage" / "TrainingData" / "005.bmp").unlink()
    with pytest.raises(DatasetError, match=r"Annotation 005\.txt has no image .*TrainingData/005"):
        read_isbi2015(isbi_copy, "train")
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = read_isbi2015(isbi_copy, "train", on_error="skip")
    assert len(ds) == 23 and "005" not in ds.ids and "005" in ds.skipped


def test_isbi_short_and_non_numeric_annotations(isbi_copy):
    txt = isbi_copy / "AnnotationsByMD" / "400_senior" / "003.txt"
    lines = txt.read_text().splitlines()
    txt.write_text("\n".join(lines[:12]) + "\n")
    with pytest.raises(DatasetError, match=r"003\.txt has 12 lines but needs at least 19"):
        read_isbi2015(isbi_copy, "train")
    txt.write_text("\n".join(lines[:4] + ["12,abc"] + lines[5:]) + "\n")
    with pytest.raises(DatasetError, match=r"Line 5 of annotation file .*003\.txt is '12,abc'"):
        read_isbi2015(isbi_copy, "train")
    assert read_isbi2015(isbi_copy, "train", annotation="junior").landmarks(2).shape == (19, 2)
    (isbi_copy / "AnnotationsByMD" / "400_junior" / "004.txt").unlink()
    with pytest.raises(DatasetError, match=r"no junior annotation .*004\.txt"):
        read_isbi2015(isbi_copy, "train", annotation="junior")


def test_isbi_not_a_root(tmp_path):
    with pytest.raises(DatasetError, match="is not an ISBI 2015 root"):
        read_isbi2015(tmp_path)


def test_truncated_jpeg_is_reported_on_access_and_skipped_by_verify(roots, tmp_path):
    root = shutil.copytree(roots["hand"], tmp_path / "hand")
    victim = sorted((root / "images").glob("*.jpg"))[3]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    ds = read_hand(root, split="all")  # construction does not decode
    index = ds.ids.index(victim.stem)
    with pytest.raises(DatasetError, match=f"Could not decode image .*{victim.name}"):
        ds[index]
    with pytest.warns(UserWarning, match="skipped 1"):
        good = ds.verify(on_error="skip")
    assert len(good) == 17 and victim.stem in good.skipped
    with pytest.raises(DatasetError, match=victim.name):
        ds.verify()


# ----------------------------------------------------------------------------- image io

def test_load_grey_modes(tmp_path):
    grey = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")  # 3 identical channels
    np.testing.assert_array_equal(load_grey(tmp_path / "rgb.png"), grey)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grey
    np.testing.assert_array_equal(load_grey(tmp_path / "deep.png"), np.round(grey * 255.0 / grey.max()))
    assert image_size(tmp_path / "rgb.png") == (6, 10)
    with pytest.raises(DatasetError, match="missing.png does not exist"):
        load_grey(tmp_path / "missing.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="junk.jpg"):
        image_size(tmp_path / "junk.jpg")


def test_landmark_dataset_checks_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(3, 2\), expected \(2, 2\)"):
        LandmarkDataset("toy", "train", ["a"], [tmp_path / "a.png"], [np.zeros((3, 2))], MetricSpec("wrist"), 2)
    with pytest.raises(ValueError, match="spacing_mm"):
        MetricSpec("spacing")


def test_isbi_without_annotations_yields_images(isbi_copy):
    shutil.rmtree(isbi_copy / "AnnotationsByMD")
    with pytest.warns(UserWarning, match="no annotation files for split 'train'"):
        ds = read_isbi2015(isbi_copy, "train")
    assert len(ds) == 24 and ds.num_labelled == 0 and ds[0].landmarks is None
