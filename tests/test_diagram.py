"""The architecture figure (farnet_lite/pictures/diagram.py): its layout is the model's own shapes and data flow, the figure
draws that layout, and the README's committed docs/architecture.png is drawn from the current model."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.text import Annotation

from farnet_lite.baselines import UNet
from farnet_lite.datasets import ISBI2015
from farnet_lite.model import FARNet, FARNetConfig
from farnet_lite.pictures.diagram import (PNG_KEY, architecture_layout, draw_architecture, layout_in_png, main,
                                          readme_model)

README_IMAGE = Path(__file__).resolve().parents[1] / "docs" / "architecture.png"
REGENERATE = "python -m farnet_lite.pictures.diagram docs/architecture.png"


@pytest.fixture(scope="module")
def model():
    """The README's model: FARNet (MSFA + FR) on DenseNet-121, K = 19."""
    return readme_model()


@pytest.fixture(scope="module")
def layout(model):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return architecture_layout(model, (800, 640))
    finally:
        torch.set_num_threads(threads)


def _shapes(model, size=(64, 96)):
    """``(levels, msfa features, output)`` of a zero image, computed here without the diagram's hooks."""
    model.eval()
    with torch.no_grad():
        images = torch.zeros(1, 3, *size)
        levels = model.backbone(images)
        return levels, model.msfa(levels), model(images)


def _stride(tensor, size=(64, 96)) -> int:
    assert size[0] * tensor.shape[-1] == size[1] * tensor.shape[-2], "a map with another aspect ratio"
    return size[0] // tensor.shape[-2]


def test_widths_and_strides_are_the_models_own(model, layout):
    levels, features, output = _shapes(model)
    for l, level in enumerate(levels):
        node = layout.node(f"L{l}")
        assert (node.channels, node.stride) == (level.shape[1], _stride(level)) == (model.backbone.channels[l], 2 ** l)
        assert node.size == (800 // 2 ** l, 640 // 2 ** l)
    a1, final, coarse = layout.node("A1"), layout.node("FR heatmaps"), layout.node("MSFA heatmaps")
    assert (a1.channels, a1.stride) == (features.shape[1], _stride(features))
    assert (final.channels, final.stride, final.size) == (output.final.shape[1], _stride(output.final), (800, 640))
    assert (coarse.channels, coarse.stride) == (output.coarse.shape[1], _stride(output.coarse))
    # the numbers of §3.1 and of DenseNet-121 (backbones.py's table), as a reader would check them in the figure
    assert (layout.node("L3").channels, layout.node("L3").stride, layout.node("L3").size) == (512, 8, (100, 80))
    assert [layout.node(f"L{l}").channels for l in range(6)] == [32, 64, 256, 512, 1024, 1024]
    assert [layout.node(f"U{l}").channels for l in (5, 4, 3, 2)] == [256] * 4
    assert [layout.node(f"D{l}").channels for l in (3, 4, 5)] == [512, 1024, 1024]
    assert [layout.node(f"A{l}").channels for l in (5, 4, 3, 2, 1)] == [256, 256, 256, 128, 64]
    assert [layout.node(f"A{l}").stride for l in (5, 4, 3, 2, 1)] == [32, 16, 8, 4, 2]
    assert layout.node("FR concat").channels == 64 + 32 + 19
    assert layout.node("U4").op == "up x2, cat, 1x1" and layout.node("D5").op == "3x3 s2, cat, 1x1"


def test_edges_are_the_data_flow_of_the_forward_pass(layout):
    skips = {(a, b) for a, b, role in layout.edges if role == "skip"}
    assert skips == {("L4", "U4"), ("L3", "U3"), ("L2", "U2"), ("U3", "D3"), ("U4", "D4"), ("U5", "D5"),
                     ("D4", "A4"), ("D3", "A3"), ("U2", "A2"), ("L1", "A1"),
                     ("L0", "FR concat"), ("MSFA heatmaps", "FR concat")}
    mains = {(a, b) for a, b, role in layout.edges if role == "main"}
    assert {("image", "L0"), ("image", "L1"), ("L5", "U5"), ("U2", "D3"), ("D5", "A5"), ("A2", "A1"),
            ("A1", "MSFA heatmaps"), ("A1", "FR concat"), ("FR concat", "FR heatmaps")} <= mains
    assert ("L0", "L1") not in mains  # DenseNet's L1 is conv0 on the image; L0 is the separate C0 stem
    assert layout.node("FR concat").op == "cat(up A1, L0, up MSFA heatmaps)"
    assert layout.supervised == (("final", "FR heatmaps"), ("coarse", "MSFA heatmaps"))
    assert layout.loss == "EWC"


def test_a_changed_model_changes_the_layout(model, layout):
    plus = FARNet(FARNetConfig(5, fusion="add", refine=None), backbone=model.backbone)  # MSFA(+), K = 5
    plus = architecture_layout(plus, (800, 640))
    assert plus.title.startswith("MSFA(+) on densenet121, K = 5")
    assert plus.node("U4").op == "up x2, add(1x1), 3x3" and plus.node("MSFA heatmaps").channels == 5
    assert plus.supervised == (("final", "MSFA heatmaps"),)
    assert not {"FR concat", "FR heatmaps"} & {n.name for n in plus.nodes}
    naive = FARNet(FARNetConfig(19, backbone="densenet169", refine="fr_naive"))  # FR*, wider L4 / L5
    other = architecture_layout(naive, (512, 512))
    assert [other.node(n).channels for n in ("L4", "L5", "D4", "D5")] == list(naive.backbone.channels[4:]) * 2
    assert naive.backbone.channels[4:] == (1280, 1664) and other.node("FR concat").channels == 64 + 32
    assert other.supervised == (("final", "FR heatmaps"),) and other.node("L3").size == (64, 64)
    assert len({layout.digest(), plus.digest(), other.digest()}) == 3


def test_what_cannot_be_drawn_is_refused_in_one_sentence(model):
    with pytest.raises(TypeError, match="draws FARNet and its variants .* not UNet"):
        architecture_layout(UNet(3))
    with pytest.raises(ValueError, match="not a multiple of 32"):
        architecture_layout(model, (800, 650))


def test_the_figure_draws_every_label_and_edge_of_the_layout(model, layout):
    fig = draw_architecture(model, (800, 640))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    for node in layout.nodes:
        assert node.label in texts, f"{node.name} missing"
        assert not node.op or node.op in {t.replace("\n", " ") for t in texts}
    assert "L3\n1/8\n100x80" in texts and ax.get_title() == layout.title
    assert sum("EWC loss" in t for t in texts) == 2  # both supervised outputs (§3.4)
    assert len([t for t in ax.texts if isinstance(t, Annotation)]) == len(layout.edges)
    assert "MSFA + FR on densenet121, K = 19, input 800x640" in layout.title


def test_the_readme_image_is_drawn_from_the_current_model(model, layout, tmp_path, monkeypatch):
    assert model.config == FARNetConfig(ISBI2015.num_landmarks) and ISBI2015.input_size == (800, 640)
    monkeypatch.setattr("farnet_lite.pictures.diagram.readme_model", lambda: model)  # one DenseNet build less
    main([str(tmp_path / "a.png")])  # the tool writes the layout it drew into the PNG
    assert layout_in_png(tmp_path / "a.png") == layout.to_json()
    assert README_IMAGE.is_file(), f"{README_IMAGE} is missing; write it with `{REGENERATE}`"
    stored = layout_in_png(README_IMAGE)
    assert stored is not None, f"{README_IMAGE} holds no {PNG_KEY} metadata; regenerate it with `{REGENERATE}`"
    assert stored == layout.to_json(), (f"{README_IMAGE} was drawn from an older model; regenerate it with "
                                        f"`{REGENERATE}` and commit it")
