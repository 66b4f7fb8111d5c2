"""Synthetic radiographs and the writers of the three public layouts (farnet_lite/data/synthetic.py)."""
import numpy as np
import pytest
import scipy.io

from farnet_lite.data.errors import DatasetError
from farnet_lite.data.synthetic import (MANIFEST, synthetic_radiograph, write_synthetic_hand,
                                        write_synthetic_isbi, write_synthetic_spine)


@pytest.mark.parametrize("size,k,layout", [((256, 256), 19, "grid"), ((240, 193), 19, "grid"),
                                           ((200, 150), 37, "grid"), ((320, 128), 68, "column"),
                                           ((64, 96), 5, "grid"), ((128, 128), 1, "grid")])
def test_radiograph_shapes_and_landmarks_inside(size, k, layout):
    for seed in range(5):
        image, points = synthetic_radiograph(seed, size, k, layout)
        assert image.shape == size and image.dtype == np.uint8
        assert points.shape == (k, 2) and points.dtype == np.float64
        assert (points >= 0).all() and (points[:, 0] <= size[1] - 1).all() and (points[:, 1] <= size[0] - 1).all()


def test_radiograph_is_deterministic():
    a, pa = synthetic_radiograph(7, (128, 128), 19)
    b, pb = synthetic_radiograph(7, (128, 128), 19)
    c, pc = synthetic_radiograph(8, (128, 128), 19)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa, pb)
    assert np.abs(pa - pc).max() > 1.0 and (a != c).mean() > 0.5


def test_landmarks_sit_on_salient_structure():
    """Grey-level range in a 5x5 window is much larger at landmarks than at random pixels."""
    rng = np.random.default_rng(0)
    at_landmarks, at_random = [], []
    for seed in range(8):
        image, points = synthetic_radiograph(seed, (192, 192), 19, noise=False)
        image = image.astype(float)

        def contrast(x, y):
            x, y = int(round(x)), int(round(y))
            window = image[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3]
            return window.max() - window.min()

        at_landmarks += [contrast(x, y) for x, y in points]
        at_random += [contrast(*rng.uniform(0, 191, 2)) for _ in range(19)]
    assert np.median(at_landmarks) > 3 * np.median(at_random)


def test_pose_variation_makes_the_mean_shape_a_poor_predictor():
    """Across images, landmarks move by several percent of the image size (rotation, scale, shift)."""
    points = np.stack([synthetic_radiograph(seed, (128, 128), 19)[1] for seed in range(40)])
    spread = np.linalg.norm(points - points.mean(0), axis=-1).mean()  # mean-shape MRE on the training set
    assert 6.0 < spread < 25.0
    # ... while the relative geometry inside one shape stays rigid-ish: corners 0 and 1 of shape 0
    width = np.linalg.norm(points[:, 1] - points[:, 0], axis=-1)
    assert width.std() / width.mean() < 0.15


def test_isbi_writer_layout(tmp_path):
    root = write_synthetic_isbi(tmp_path / "isbi", n_train=4, n_test1=2, n_test2=3, size=(60, 48))
    images = {d: sorted(p.name for p in (root / "RawImage" / d).iterdir())
              for d in ("TrainingData", "Test1Data", "Test2Data")}
    assert images == {"TrainingData": ["001.bmp", "002.bmp", "003.bmp", "004.bmp"],
                      "Test1Data": ["151.bmp", "152.bmp"], "Test2Data": ["301.bmp", "302.bmp", "303.bmp"]}
    for doctor in ("senior", "junior"):
        names = sorted(p.name for p in (root / "AnnotationsByMD" / f"400_{doctor}").iterdir())
        assert names == ["001.txt", "002.txt", "003.txt", "004.txt", "151.txt", "152.txt"]  # Test2 withheld
    senior = (root / "AnnotationsByMD" / "400_senior" / "002.txt").read_text().splitlines()
    junior = (root / "AnnotationsByMD" / "400_junior" / "002.txt").read_text().splitlines()
    assert len(senior) > 19
    s = np.array([line.split(",") for line in senior[:19]], dtype=int)  # integer pixels
    j = np.array([line.split(",") for line in junior[:19]], dtype=int)
    assert np.abs(s - j).max() <= 2 and (s != j).any()


def test_writer_is_idempotent_and_deterministic(tmp_path):
    root = write_synthetic_hand(tmp_path / "a", n=6, size=(64, 48))
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert write_synthetic_hand(tmp_path / "a", n=6, size=(64, 48)) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamp  # nothing rewritten
    other = write_synthetic_hand(tmp_path / "b", n=6, size=(64, 48))
    for path in root.rglob("*"):
        if path.is_file():
            assert path.read_bytes() == (other / path.relative_to(root)).read_bytes()
    write_synthetic_hand(tmp_path / "a", n=9, size=(64, 48))  # new parameters: rewritten
    assert len(list((root / "images").iterdir())) == 9 and '"n": 9' in (root / MANIFEST).read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_writer_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "keep.txt").write_text("precious")
    with pytest.raises(DatasetError, match="not empty"):
        write_synthetic_isbi(tmp_path / "real")
    assert (tmp_path / "real" / "keep.txt").read_text() == "precious"


def test_hand_writer_csv_and_folds(tmp_path):
    root = write_synthetic_hand(tmp_path / "hand", n=9, size=(64, 48))
    rows = [line.split(",") for line in (root / "setup" / "all.csv").read_text().splitlines()]
    assert len(rows) == 9 and all(len(r) == 75 for r in rows)
    assert all(float(v).is_integer() for r in rows for v in r[1:])
    ids = {r[0] for r in rows}
    assert ids == {p.stem for p in (root / "images").glob("*.jpg")}
    tests = [set((root / "setup" / "cv" / f"set{f}" / "test.txt").read_text().split()) for f in (1, 2, 3)]
    trains = [set((root / "setup" / "cv" / f"set{f}" / "train.txt").read_text().split()) for f in (1, 2, 3)]
    assert set.union(*tests) == ids and sum(map(len, tests)) == 9
    assert all(t | tr == ids and not t & tr for t, tr in zip(tests, trains))


def test_spine_writer_layout(tmp_path):
    root = write_synthetic_spine(tmp_path / "spine", n_training=3, n_test=2, size=(160, 64))
    base = root / "boostnet_labeldata"
    names = (base / "labels" / "training" / "filenames.csv").read_text().splitlines()
    assert len(names) == 3 and all((base / "data" / "training" / n).is_file() for n in names)
    assert sorted(p.name for p in (base / "labels" / "test").iterdir()) == ["filenames.csv"]  # labels withheld
    p2 = scipy.io.loadmat(str(base / "labels" / "training" / f"{names[0]}.mat"))["p2"]
    assert p2.shape == (68, 2)
    # corners of one vertebra: top-left is left of top-right and above bottom-left
    assert p2[0, 0] < p2[1, 0] and p2[0, 1] < p2[2, 1] and p2[3, 0] > p2[2, 0]
    # vertebrae go down the image
    assert (np.diff(p2[0::4, 1]) > 0).all()
