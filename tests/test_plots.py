"""Figure helpers (farnet_lite/pictures/plots.py) and the landmark viewer (farnet_lite/pictures/viewer.py), headless (Agg)."""
import base64

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch

from farnet_lite import metrics
from farnet_lite.pictures import plots, viewer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image(height=40, width=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)


def _scatters(ax, color):
    """The scatter collections of ``ax`` drawn in ``color``."""
    return [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_facecolors())
            and np.allclose(c.get_facecolors()[0], to_rgba(color))]


def _boxes(ax):
    """The box patches of a seaborn box plot (its legend proxies are Rectangles)."""
    return [p for p in ax.patches if isinstance(p, PathPatch)]


def test_save_figure_writes_png_and_reproducible_pdf(tmp_path):
    fig = plots.plot_ewc_weight()
    png, pdf = plots.save_figure(fig, "fig4", directory=tmp_path / "figures")
    assert png == tmp_path / "figures" / "fig4.png" and pdf.suffix == ".pdf"
    assert png.read_bytes()[:8] == PNG_MAGIC and pdf.read_bytes()[:5] == b"%PDF-"
    first = pdf.read_bytes()
    plots.save_figure(fig, "fig4", directory=tmp_path / "figures")
    assert pdf.read_bytes() == first                        # no creation date: identical bytes
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["fig4.pdf", "fig4.png"]  # no temp files


def test_sdr_curve_matches_metrics_sdr():
    rng = np.random.default_rng(1)
    errors = rng.gamma(2.0, 1.2, size=(25, 19))
    errors[rng.random(errors.shape) < 0.1] = np.nan
    errors[0, :4] = [2.0, 2.5, 3.0, 4.0]                    # values exactly on the radii count as detected
    radii = [2.0, 2.5, 3.0, 4.0]
    expected = metrics.sdr(errors, radii)
    assert np.allclose(plots.sdr_curve(errors, radii), [expected[r] for r in radii], rtol=0, atol=1e-12)
    assert plots.sdr_curve([1.0, 3.0, np.nan, 5.0], [0, 1, 4, 10]).tolist() == pytest.approx([0, 100 / 3, 200 / 3, 100])
    assert np.isnan(plots.sdr_curve(np.full(5, np.nan), [1, 2])).all()


def test_sdr_curves_and_per_landmark_boxes():
    rng = np.random.default_rng(2)
    errors = {"ours": rng.gamma(2, 1, (6, 4)), "baseline": rng.gamma(2, 1.5, (6, 4)), "empty": np.full((3, 4), np.nan)}
    fig = plots.plot_sdr_curves(errors)
    (ax,) = fig.axes
    curves = [line for line in ax.lines if line.get_label() in errors]
    assert len(curves) == 3 and len(ax.lines) == 3 + 4      # one curve per label + 4 dotted marks
    assert curves[0].get_xdata()[-1] == pytest.approx(10.0)  # errors < 10: default radii end at 10
    assert np.isnan(curves[2].get_ydata()).all()             # all-NaN errors: empty curve
    assert isinstance(plots.plot_sdr_curves({}), Figure)

    names = ["a", "b", "c", "d"]
    fig = plots.plot_per_landmark_errors({"ours": errors["ours"], "baseline": errors["baseline"]}, names=names)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 a", "2 b", "3 c", "4 d"]
    assert len(_boxes(ax)) == 4 * 2                            # one box per (landmark, label)
    one = plots.plot_per_landmark_errors({"ours": errors["ours"]}).axes[0]
    assert len(_boxes(one)) == 4 and len(one.get_xticklabels()) == 4
    with pytest.raises(ValueError, match="landmarks"):
        plots.plot_per_landmark_errors({"ours": np.ones(5)})


def test_image_figures():
    pred = np.array([[5.0, 6.0], [10.0, 20.0], [25.0, 35.0]])
    truth = np.array([[6.0, 6.0], [np.nan, np.nan], [24.0, 30.0]])
    fig = plots.plot_predictions([("a", _image(), pred, truth), ("b", _image(30, 50), pred, np.full((3, 2), np.nan)),
                                  ("c", _image(20, 20), pred, None)], title="Fig. 5")
    a, b, c = fig.axes
    assert [len(_scatters(ax, "red")[0].get_offsets()) for ax in (a, b, c)] == [3, 3, 3]
    assert len(_scatters(a, "blue")[0].get_offsets()) == 2      # the NaN truth row is unlabelled
    assert _scatters(b, "blue") == [] and _scatters(c, "blue") == []
    (segments,) = [col for col in a.collections if isinstance(col, LineCollection)]
    assert len(segments.get_segments()) == 2
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["prediction", "ground truth"]
    width_ratios = a.get_gridspec().get_width_ratios()
    assert width_ratios == pytest.approx([30 / 40, 50 / 30, 1.0])

    fig = plots.plot_dataset_examples([("ceph", _image(), pred), ("spine", _image(50, 20), np.ones((45, 2)))])
    assert len(fig.axes) == 2 and len(fig.axes[0].texts) == 3 and len(fig.axes[1].texts) == 45
    assert fig.axes[1].texts[0].get_fontsize() < fig.axes[0].texts[0].get_fontsize()  # K >= 40: smaller numbers

    fig = plots.plot_ewc_weight()
    left, right = fig.axes
    assert len(left.lines) == len(right.lines) == 5
    paper = [line for line in left.lines if "(paper)" in line.get_label()]
    assert len(paper) == 1 and paper[0].get_ydata()[-1] == pytest.approx(40.0) and paper[0].get_linewidth() > 2
    assert right.lines[3].get_ydata()[0] == pytest.approx(40.0)   # d = 0: y = 1, weight = alpha


def test_training_curves_and_metric_bars():
    logs = {"run a": pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.25], "lr": 1e-3,
                                   "val_mre": [3.0, np.nan, 2.0], "seconds": 1.0}),
            "run b": pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.0], "lr": 1e-3, "seconds": 1.0})}
    loss, mre = plots.plot_training_curves(logs).axes
    assert len(loss.lines) == 2 and loss.get_yscale() == "log"
    assert len(mre.lines) == 1 and mre.lines[0].get_xdata().tolist() == [1, 3]

    table = pd.DataFrame({"row": ["FARNet", "U-Net", "FPN", "FARNet"], "metric": ["MRE", "MRE", "MRE", "SDR 2mm"],
                          "ours": [1.5, 2.0, np.nan, 80.0], "paper": [1.12, np.nan, 1.3, 85.0]})
    (ax,) = plots.plot_metric_bars(table, "MRE").axes
    heights = sorted(round(p.get_height(), 3) for p in ax.patches)
    assert heights == [1.12, 1.3, 1.5, 2.0]                  # 2 ours + 2 paper bars, NaNs omitted
    assert sum(t.get_text() == "n/a" for t in ax.texts) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["FARNet", "U-Net", "FPN"]
    table3 = pd.DataFrame({"row": ["FARNet", "FARNet"], "split": ["test1", "test2"], "metric": "mre",
                           "title": "MRE (mm)", "ours": [1.2, 1.5], "paper": [1.12, 1.42]})
    (ax,) = plots.plot_metric_bars(table3, "mre").axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["FARNet / test1", "FARNet / test2"]
    assert ax.get_ylabel() == "MRE (mm)" and len(ax.patches) == 4
    with pytest.raises(ValueError, match="SDR 2mm"):
        plots.plot_metric_bars(table, "SD")


def _split(n=4, k=3):
    rng = np.random.default_rng(3)
    images = [_image(32, 24, seed=i) for i in range(n)]
    truth = rng.uniform(0, 23, (n, k, 2))
    return images, truth, truth + 1.0


def test_viewer_static_and_fallback():
    images, truth, pred = _split()
    calls = []
    heatmaps = lambda i: calls.append(i) or np.random.default_rng(i).random((3, 16, 12))  # half resolution
    fig = viewer.show_landmark_viewer(images, truth=truth, pred=pred, heatmaps=heatmaps, static=True)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and calls == [0, 1, 2]
    ax = fig.axes[0]
    assert len(ax.images) == 2 and ax.images[1].get_extent() == [-0.5, 23.5, 31.5, -0.5]  # stretched heatmap
    assert len(_scatters(ax, "red")[0].get_offsets()) == 3 and len(_scatters(ax, "blue")[0].get_offsets()) == 3
    fallback = viewer.show_landmark_viewer(images[:2], truth=truth[:2], static=False)   # pytest: no kernel
    assert isinstance(fallback, Figure) and len(fallback.axes) == 2
    with pytest.raises(ValueError, match="N=4"):
        viewer.show_landmark_viewer(images, truth=truth[:2])


def test_viewer_widgets_redraw_on_change():
    pytest.importorskip("ipywidgets")
    images, truth, pred = _split()
    view = viewer._build_widgets(images, truth, pred, heatmaps=lambda i: np.ones((3, 8, 6)), names=["a", "b", "c"])
    assert view.draws == 1 and view.landmark.options[1] == ("2 b", 1)
    first = view.output.outputs[0]["data"]["image/png"]
    assert base64.b64decode(first)[:8] == PNG_MAGIC
    view.slider.value = 2
    assert view.draws == 2 and view.output.outputs[0]["data"]["image/png"] != first and len(view.output.outputs) == 1
    view.show_heatmap.value = True
    assert view.draws == 3 and len(view.figure().axes[0].images) == 2
    view.show_pred.value = False
    assert view.draws == 4 and _scatters(view.figure().axes[0], "red") == []
    assert type(view.box).__name__ == "VBox"
