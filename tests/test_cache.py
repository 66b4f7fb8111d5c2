"""Prepared cache (farnet_lite/data/cache.py): grid round trips, image content, freshness, atomicity, errors."""
from pathlib import Path

import numpy as np
import pytest
import torch

from farnet_lite.data import cache as cache_module
from farnet_lite.data.cache import (CacheError, load_cache, prepare_cache, read_fingerprint,
                                    resize_image)
from farnet_lite.data.imageio import read_image, read_reduced, save_grey
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.sample import LandmarkDataset, MetricSpec, Sample
from farnet_lite.heatmaps import rescale_points

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPACING = MetricSpec("spacing", 0.1)


def dot_image(size, point, sigma=3.0):
    """(H, W) uint8 with a Gaussian dot (peak 250) centred at the float point (x, y)."""
    yy, xx = np.mgrid[0:size[0], 0:size[1]].astype(np.float64)
    blob = np.exp(-((xx - point[0]) ** 2 + (yy - point[1]) ** 2) / (2 * sigma ** 2))
    return np.round(250 * blob).astype(np.uint8)


def centroid(image):
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float64)
    w = image.astype(np.float64)
    return np.array([(w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()])


def make_samples():
    """Three samples of different sizes, each with a dot at its first landmark; the last is unlabelled."""
    specs = [((300, 240), [[101.3, 150.6], [10.0, 20.0]]),
             ((257, 199), [[60.5, 200.25], [198.0, 0.0]]),
             ((180, 150), None)]
    samples = []
    for i, (size, points) in enumerate(specs):
        points = None if points is None else np.array(points)
        image = dot_image(size, points[0] if points is not None else (75.0, 90.0), sigma=6.0)
        samples.append(Sample(f"{i:03d}", image, points, SPACING))
    return samples


def test_points_round_trip_and_dot_lands_where_rescale_points_says(tmp_path):
    samples = make_samples()
    size = (100, 80)
    path = prepare_cache(samples, size, tmp_path / "c.npz", num_workers=0, codec="png", progress=False)
    cache = load_cache(path)
    assert cache.images.shape == (3, 100, 80) and cache.images.dtype == np.uint8
    assert cache.ids == ("000", "001", "002")
    np.testing.assert_array_equal(cache.original_sizes, [[300, 240], [257, 199], [180, 150]])
    assert cache.metric == SPACING and cache.size == size
    np.testing.assert_array_equal(cache.labelled, [True, True, False])
    assert np.isnan(cache.landmarks[2]).all()
    for i in range(2):
        # original -> cache (stored) -> original: within 0.01 px (it is exact up to float rounding)
        expected = rescale_points(samples[i].landmarks, samples[i].size, size)
        np.testing.assert_allclose(cache.landmarks[i], expected, atol=1e-12)
        np.testing.assert_allclose(cache.to_original(cache.landmarks[i], i), samples[i].landmarks, atol=0.01)
        # the resized dot sits where rescale_points puts the landmark (PIL's grid = our pixel-centre grid)
        assert np.abs(centroid(cache.images[i]) - cache.landmarks[i, 0]).max() < 0.1
    # batched + torch: (N, K, 2) with an index array, as evaluation does
    back = cache.to_original(torch.as_tensor(cache.landmarks[:2]), np.array([0, 1]))
    assert isinstance(back, torch.Tensor)
    np.testing.assert_allclose(back.numpy(), np.stack([s.landmarks for s in samples[:2]]), atol=0.01)


def test_resize_is_antialiased_and_keeps_mean():
    # a 1-px checkerboard downscaled 4x must become flat grey (area-like), not a sampled pattern
    board = (np.indices((64, 64)).sum(0) % 2 * 200).astype(np.uint8)
    small = resize_image(board, (16, 16))
    assert small.shape == (16, 16)
    assert abs(float(small.mean()) - 100.0) < 2 and small.std() < 3


def test_jpeg_codec_is_close_and_smaller(tmp_path):
    rng = np.random.default_rng(0)
    base = dot_image((200, 160), (80.0, 100.0), sigma=30.0).astype(np.int16)
    image = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
    samples = [Sample("a", image, np.array([[80.0, 100.0]]), SPACING)]
    png = load_cache(prepare_cache(samples, (200, 160), tmp_path / "p.npz", num_workers=0, codec="png",
                                   progress=False))
    jpg_path = prepare_cache(samples, (200, 160), tmp_path / "j.npz", num_workers=0, progress=False)
    np.testing.assert_array_equal(png.images[0], image)  # PNG is lossless, same size = no resampling
    error = np.abs(load_cache(jpg_path).images[0].astype(int) - image).mean()
    assert error < 2.0
    assert jpg_path.stat().st_size < (tmp_path / "p.npz").stat().st_size


def test_skipped_when_up_to_date_and_rebuilt_when_inputs_change(tmp_path, monkeypatch):
    samples = make_samples()
    path = prepare_cache(samples, (100, 80), tmp_path / "c.npz", num_workers=0, progress=False)
    stamp = path.stat().st_mtime_ns
    fingerprint = read_fingerprint(path)
    assert fingerprint["size"] == [100, 80] and fingerprint["ids"] == ["000", "001", "002"]

    def fail(index):
        raise AssertionError("an up-to-date cache must not be rebuilt")
    monkeypatch.setattr(cache_module, "_prepare_one", fail)
    assert prepare_cache(samples, (100, 80), path, num_workers=0, progress=False) == path
    assert path.stat().st_mtime_ns == stamp
    monkeypatch.undo()

    samples[0].landmarks = samples[0].landmarks + 1.0  # e.g. another annotation choice
    prepare_cache(samples, (100, 80), path, num_workers=0, progress=False)
    assert read_fingerprint(path) != fingerprint
    np.testing.assert_allclose(load_cache(path).to_original(load_cache(path).landmarks[0], 0),
                               samples[0].landmarks, atol=0.01)
    prepare_cache(samples, (64, 64), path, num_workers=0, progress=False)
    assert load_cache(path).images.shape == (3, 64, 64)


class Failing(list):
    def __getitem__(self, index):
        if index == 2:
            raise DatasetError("image 002 is corrupt")
        return list.__getitem__(self, index)


def test_failure_leaves_nothing_behind(tmp_path):
    samples = Failing(make_samples())
    with pytest.raises(DatasetError, match="002"):
        prepare_cache(samples, (50, 40), tmp_path / "c.npz", num_workers=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_parallel_build_equals_serial_on_a_dataset_of_files(tmp_path):
    paths, points = [], []
    for i, sample in enumerate(make_samples()[:2]):
        paths.append(tmp_path / f"{i}.png")
        save_grey(sample.image, paths[-1])
        points.append(sample.landmarks)
    dataset = LandmarkDataset("toy", "train", ["a", "b"], paths, points, SPACING, 2, tmp_path)
    serial = load_cache(prepare_cache(dataset, (96, 64), tmp_path / "s.npz", num_workers=0, progress=False))
    parallel = load_cache(prepare_cache(dataset, (96, 64), tmp_path / "p.npz", num_workers=2, progress=False))
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.landmarks, parallel.landmarks)
    assert parallel.name == "toy" and parallel.split == "train" and parallel.ids == ("a", "b")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files


def test_missing_corrupt_and_foreign_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare_cache"):
        load_cache(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(CacheError, match="garbage.npz.*rebuild"):
        load_cache(garbage)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(CacheError, match="foreign.npz"):
        load_cache(foreign)
    # a truncated real cache
    good = prepare_cache(make_samples(), (50, 40), tmp_path / "good.npz", num_workers=0, progress=False)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CacheError, match="truncated.npz"):
        load_cache(truncated)
    assert read_fingerprint(truncated) is None


def dot_jpeg(path, size=(1001, 803), point=(700.0, 880.0), sigma=14.0):
    """A JPEG (sizes not multiples of 8, so the draft's last blocks are padded) with a broad dot at `point`."""
    save_grey(dot_image(size, point, sigma), path)
    return path


def test_reduced_decode_uses_jpeg_draft_only_and_reports_the_original_size(tmp_path):
    jpeg = dot_jpeg(tmp_path / "a.jpg")
    image, original, scale = read_reduced(jpeg, (100, 80))          # 8 * (100, 80) <= (1001, 803)
    assert (original, scale) == ((1001, 803), 8)
    assert image.shape == (126, 101) and image.dtype == np.uint8   # ceil((1001, 803) / 8) >= (100, 80)
    assert read_reduced(jpeg, (300, 250))[1:] == ((1001, 803), 2)  # 4 * 250 > 803, 2 * 300 <= 1001
    full = read_image(jpeg)[0]
    image, original, scale = read_reduced(jpeg, (600, 80))         # 2 * 600 > 1001: no draft, full decode
    assert (original, scale) == ((1001, 803), 1)
    np.testing.assert_array_equal(image, full)
    png = tmp_path / "a.png"
    save_grey(full, png)
    image, original, scale = read_reduced(png, (100, 80))          # PNG: always the full decode
    assert (original, scale) == ((1001, 803), 1)
    np.testing.assert_array_equal(image, full)
    with pytest.raises(DatasetError, match="absent.jpg does not exist"):
        read_reduced(tmp_path / "absent.jpg", (100, 80))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg.read_bytes()[:2000])
    with pytest.raises(DatasetError, match="broken.jpg.*truncated or corrupt"):
        read_reduced(broken, (100, 80))


def test_draft_cache_keeps_geometry_and_matches_the_full_decode(tmp_path):
    points = [np.array([[700.0, 880.0], [3.0, 4.0]]), np.array([[120.5, 60.25], [790.0, 990.0]])]
    paths = [dot_jpeg(tmp_path / "0.jpg"), dot_jpeg(tmp_path / "1.jpg", (900, 810), points[1][0], 12.0)]
    dataset = LandmarkDataset("toy", "train", ["a", "b"], paths, points, SPACING, 2, tmp_path)
    full_samples = [Sample(i, read_image(p)[0], q, SPACING) for i, p, q in zip("ab", paths, points)]
    size = (60, 50)                                                  # draft scale 8 for both images
    draft = load_cache(prepare_cache(dataset, size, tmp_path / "d.npz", num_workers=0, codec="png",
                                     progress=False))
    full = load_cache(prepare_cache(full_samples, size, tmp_path / "f.npz", num_workers=0, codec="png",
                                    progress=False))
    assert draft.fingerprint["decode"] == cache_module.DRAFT_DECODE
    assert full.fingerprint["decode"] == cache_module.FULL_DECODE
    np.testing.assert_array_equal(draft.original_sizes, [[1001, 803], [900, 810]])
    np.testing.assert_array_equal(draft.original_sizes, full.original_sizes)
    np.testing.assert_allclose(draft.landmarks, full.landmarks, atol=1e-9)
    for i in range(2):
        np.testing.assert_allclose(draft.to_original(draft.landmarks[i], i), points[i], atol=1e-9)
        assert np.abs(draft.images[i].astype(int) - full.images[i]).mean() < 2.0
        # the dot lands where the full decode and rescale_points put it: resizing the whole padded draft
        # (no box) would stretch it by (808 / 803) and move it ~0.27 cache px
        assert np.abs(centroid(draft.images[i]) - centroid(full.images[i])).max() < 0.05
        assert np.abs(centroid(draft.images[i]) - draft.landmarks[i, 0]).max() < 0.1


def test_fingerprint_names_the_decoder_so_old_caches_are_rebuilt(tmp_path, monkeypatch):
    dataset = LandmarkDataset("toy", "train", ["a"], [dot_jpeg(tmp_path / "a.jpg")],
                              [np.array([[700.0, 880.0]])], SPACING, 1, tmp_path)
    monkeypatch.setattr(cache_module, "DRAFT_DECODE", "an older decoder")
    path = prepare_cache(dataset, (60, 50), tmp_path / "c.npz", num_workers=0, progress=False)
    old = read_fingerprint(path)
    monkeypatch.undo()
    prepare_cache(dataset, (60, 50), path, num_workers=0, progress=False)
    new = read_fingerprint(path)
    assert old["decode"] == "an older decoder" and new["decode"] == "jpeg-draft>=2x"
    assert {k: v for k, v in old.items() if k != "decode"} == {k: v for k, v in new.items() if k != "decode"}


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED / "isbi2015").is_dir(), reason="real data (../shared/data) absent")
def test_real_isbi_subset(tmp_path):
    from farnet_lite.data.isbi2015 import read_isbi2015
    dataset = read_isbi2015(SHARED / "isbi2015", "train").subset([0, 1])
    cache = load_cache(prepare_cache(dataset, (800, 640), tmp_path / "c.npz", num_workers=0, progress=False))
    assert cache.images.shape == (2, 800, 640)
    np.testing.assert_array_equal(cache.original_sizes, [[2400, 1935], [2400, 1935]])
    for i in range(2):
        np.testing.assert_allclose(cache.to_original(cache.landmarks[i], i), dataset.landmarks(i), atol=0.01)
