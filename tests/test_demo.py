"""``python -m farnet_lite.demo --quick``: the demo pipeline runs end to end and writes its figure."""
import numpy as np

from farnet_lite.demo import mean_shape_baseline, run_demo


def test_mean_shape_baseline_by_hand():
    train = np.array([[[0.0, 0.0]], [[2.0, 4.0]]])            # two 10x10 images, one landmark
    sizes = np.array([[10.0, 10.0], [10.0, 10.0]])
    same = mean_shape_baseline(train, sizes, np.array([[10.0, 10.0]]))
    np.testing.assert_allclose(same, [[[1.0, 2.0]]])
    # image-relative: on a 20x20 image the mean (1, 2) maps to ((1 + .5) * 2 - .5, (2 + .5) * 2 - .5)
    np.testing.assert_allclose(mean_shape_baseline(train, sizes, np.array([[20.0, 20.0]])), [[[2.5, 4.5]]])


def test_quick_demo_runs_end_to_end(tmp_path):
    figure = tmp_path / "figures" / "demo_overlay.png"
    numbers = run_demo(tmp_path / "work", figure=figure, quick=True)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(numbers["model_mre_px"]) and numbers["baseline_mre_px"] > 0
    assert (tmp_path / "work" / "run" / "best.pt").is_file()
