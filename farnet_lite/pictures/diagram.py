"""FARNet's architecture as a figure, read from the model itself (paper §3.1: the text of Figs. 2 and 3).

Nothing about the architecture is typed in here. :func:`architecture_layout` runs one zero image through the model
with forward hooks on its blocks and records each block's output width and stride and which earlier maps it took in
(matched by tensor identity), so the figure follows whatever ``farnet_lite.model`` builds: MSFA or MSFA(+), with
FR, FR* or neither, on any backbone. :func:`draw_architecture` draws that layout and nothing else::

    python -m farnet_lite.pictures.diagram docs/architecture.png    # the README's figure: ISBI 2015 (K = 19, 800x640)

The PNG keeps the layout as JSON in its metadata (key ``farnet-layout``); tests/test_diagram.py compares it with
the current model, so the committed image cannot silently fall behind the code.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Rectangle
from torch import nn

from farnet_lite.atomic import atomic_path
from farnet_lite.backbones import check_input_size
from farnet_lite.datasets import ISBI2015
from farnet_lite.layers import DownBlock, UpBlock, count_parameters
from farnet_lite.losses import coarse_to_fine_loss
from farnet_lite.model import FARNet, FARNetConfig

PNG_KEY = "farnet-layout"
PROBE_SIZE = (64, 96)  # (H, W) of the zero image that measures widths and strides: small, H != W
# path -> (column of the figure, module of Fig. 2, arrow colour, legend entry)
PATHS = {"input": (0, "", "black", ""), "backbone": (1, "backbone", "tab:pink", "backbone"),
         "up1": (2, "MSFA", "tab:blue", "MSFA up path 1, Fig. 3(a)"),
         "down": (3, "MSFA", "tab:orange", "down path, Fig. 3(b)"), "up2": (4, "MSFA", "tab:green", "up path 2"),
         "head": (5, "MSFA", "tab:purple", "MSFA head"), "fr": (5, "FR", "tab:brown", "FR (§3.1.2)"),
         "fr_out": (6, "FR", "tab:brown", "")}
FRAMES = {"backbone": "tab:pink", "MSFA": "tab:blue", "FR": "tab:brown"}  # Fig. 2's dashed boxes


@dataclass(frozen=True)
class Node:
    """One feature map: ``channels`` wide, ``stride`` (input / map size) and ``size`` (h, w) at the layout's input."""
    name: str
    path: str  # a key of PATHS
    channels: int
    stride: int
    size: Tuple[int, int]
    op: str = ""  # what made it, read from its module (e.g. "up x2, cat, 1x1")

    @property
    def label(self) -> str:
        return f"{self.name}\n{self.channels} ch, 1/{self.stride}"


@dataclass(frozen=True)
class ArchitectureLayout:
    """Everything :func:`draw_architecture` draws. ``edges``: ``(source, target, role)``, role "main" (the path's
    running map) or "skip" (a lateral input); ``supervised``: ``(output field, node)``, each trained with ``loss``."""
    title: str
    input_size: Tuple[int, int]
    nodes: Tuple[Node, ...]
    edges: Tuple[Tuple[str, str, str], ...]
    supervised: Tuple[Tuple[str, str], ...]
    loss: str

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)  # ASCII only: fits a PNG text chunk

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def _kernels(module: nn.Module) -> str:
    return " + ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}" for c in module.modules() if isinstance(c, nn.Conv2d))


def _describe(block: nn.Module) -> str:
    """The operation of a Fig. 3 block (or a plain conv stack), read from its modules."""
    if not isinstance(block, (UpBlock, DownBlock)):
        return _kernels(block)
    first = "up x2" if isinstance(block, UpBlock) else f"{_kernels(block.down)} s2"
    fuse = "cat" if block.lateral is None else f"add({_kernels(block.lateral)})"
    return f"{first}, {fuse}, {_kernels(block.conv)}"


def _system_name(model: FARNet) -> str:
    msfa = "MSFA(+)" if model.config.fusion == "add" else "MSFA"
    return {None: msfa, "fr_naive": f"{msfa} + FR*", "fr": f"{msfa} + FR"}[model.config.refine]


class _Recorder:
    """Forward hooks that record every map ``(name, path, tensor, op)`` and, by tensor identity, the maps each block
    took in (``edges``). The tensors stay referenced in ``maps``, so no ``id`` is reused while recording."""

    def __init__(self):
        self.maps: List[tuple] = []
        self.edges: List[Tuple[str, str, str]] = []
        self.names: Dict[int, str] = {}  # id(tensor) -> map name
        self.fr_input: List[torch.Tensor] = []  # what FR's head took in, (B, 64 + 32 [+ K], H, W)

    def add(self, name, path, tensor, op="", sources=()):
        for role, source in sources:
            if id(source) not in self.names:
                raise RuntimeError(f"diagram: an input of {name} is no recorded map; teach farnet_lite/pictures/diagram.py "
                                   "the new block of farnet_lite/model.py")
            self.edges.append((self.names[id(source)], name, role))
        self.maps.append((name, path, tensor, op))
        self.names[id(tensor)] = name

    def backbone(self, module, args, levels):
        image, previous = args[0], args[0]
        self.add("image", "input", image)
        stem = getattr(module, "stem0", None)  # ResNet/DenseNet: L0 is C0 on the image; VGG: L0 is block 1
        for l, level in enumerate(levels):  # [L0 | None, L1, ..., L5]
            if level is not None:
                source = image if l == 1 and stem is not None else previous
                self.add(f"L{l}", "backbone", level, f"{_kernels(stem)} conv (C0)" if l == 0 and stem else "",
                         [("main", source)])
                previous = level

    def block(self, name, path):
        """A hook for a block called as ``block(x)`` or ``block(x, skip)`` (Fig. 3)."""
        return lambda module, args, out: self.add(name, path, out, _describe(module),
                                                  list(zip(("main", "skip"), args)))

    def fr(self, module, args, out):
        """FR is called as ``fr(features (H/2), c0 (H), heatmaps (H/2) | None)``."""
        c0, concat = args[1], self.fr_input.pop()
        parts = [("main" if i == 0 else "skip", a) for i, a in enumerate(args) if a is not None]
        what = [("" if a.shape[-1] == c0.shape[-1] else "up ") + self.names.get(id(a), "?") for _, a in parts]
        self.add("FR concat", "fr", concat, f"cat({', '.join(what)})", parts)
        self.add("FR heatmaps", "fr_out", out, _kernels(module.head), [("main", concat)])


def _probe(model: FARNet) -> Tuple[_Recorder, List[Tuple[str, str]]]:
    """Run a zero image through ``model`` with a :class:`_Recorder`; return it and the supervised outputs."""
    rec, msfa = _Recorder(), model.msfa
    hooks = [(model.backbone, rec.backbone), (msfa.top, rec.block("U5", "up1")), (msfa.top2, rec.block("A5", "up2"))]
    hooks += [(m, rec.block(f"U{4 - i}", "up1")) for i, m in enumerate(msfa.up1)]  # U4, U3, U2
    hooks += [(m, rec.block(f"D{3 + i}", "down")) for i, m in enumerate(msfa.down)]  # D3, D4, D5
    hooks += [(m, rec.block(f"A{4 - i}", "up2")) for i, m in enumerate(msfa.up2)]  # A4 .. A1
    if model.msfa_head is not None:
        hooks.append((model.msfa_head, rec.block("MSFA heatmaps", "head")))
    handles = [module.register_forward_hook(fn) for module, fn in hooks]
    if model.fr is not None:
        handles.append(model.fr.register_forward_hook(rec.fr))
        handles.append(model.fr.head.register_forward_pre_hook(lambda m, args: rec.fr_input.append(args[0])))
    training, device = model.training, next(model.parameters()).device
    try:
        model.eval()  # BatchNorm must not update its running statistics with a zero image
        with torch.no_grad():
            output = model(torch.zeros(1, 3, *PROBE_SIZE, device=device))
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return rec, [(field, rec.names[id(t)]) for field, t in zip(output._fields, output) if t is not None]


def architecture_layout(model: nn.Module, input_size: Tuple[int, int] = ISBI2015.input_size) -> ArchitectureLayout:
    """The layout of ``model`` (a :class:`~farnet_lite.model.FARNet`) for an ``input_size`` (H, W) input.

    Widths and strides are measured on a small zero image (strides do not depend on the input size) and the map
    sizes scaled to ``input_size``; the loss is ``coarse_to_fine_loss``'s default, applied to every output the
    model returns (§3.4). U-Net and FPN are refused with a TypeError.
    """
    if not isinstance(model, FARNet):
        raise TypeError(f"architecture_layout draws FARNet and its variants (systems msfa_add, msfa, msfa_fr_naive, "
                        f"msfa_fr), not {type(model).__name__}; U-Net and FPN are described in "
                        "farnet_lite/baselines.py")
    height, width = input_size
    check_input_size(torch.empty(0, 3, height, width))
    rec, supervised = _probe(model)
    nodes = []
    for name, path, tensor, op in rec.maps:
        stride = PROBE_SIZE[0] // tensor.shape[-2]
        if tuple(tensor.shape[-2:]) != (PROBE_SIZE[0] // stride, PROBE_SIZE[1] // stride):
            raise RuntimeError(f"diagram: {name} is {tuple(tensor.shape[-2:])} for a {PROBE_SIZE} input, not a "
                               "whole stride of it")
        nodes.append(Node(name, path, int(tensor.shape[1]), stride, (height // stride, width // stride), op))
    cfg = model.config
    title = (f"{_system_name(model)} on {cfg.backbone}, K = {cfg.num_landmarks}, input {height}x{width}: "
             f"{count_parameters(model) / 1e6:.1f} M parameters")
    loss = inspect.signature(coarse_to_fine_loss).parameters["loss"].default.upper()
    return ArchitectureLayout(title, (height, width), tuple(nodes), tuple(rec.edges), tuple(supervised), loss)


def _anchor(centre: Tuple[float, float], towards: Tuple[float, float], half=(0.42, 0.3)) -> Tuple[float, float]:
    """Where the line from ``centre`` to ``towards`` leaves a box of half-size ``half`` around ``centre``."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    scale = min(half[0] / abs(dx) if dx else float("inf"), half[1] / abs(dy) if dy else float("inf"))
    return centre[0] + dx * scale, centre[1] + dy * scale


def draw_architecture(model: nn.Module, input_size: Tuple[int, int] = ISBI2015.input_size, ax=None) -> Figure:
    """Draw :func:`architecture_layout` of ``model``: one box per map (name, width, stride), rows by level L0-L5
    (Fig. 2's horizontal levels), arrows for the backbone, MSFA's up / down / up paths and FR, dashed arrows for
    lateral inputs, red frames on the supervised outputs. Returns the figure (``ax``'s when given).
    """
    return _draw(architecture_layout(model, input_size), ax)


def _draw(layout: ArchitectureLayout, ax=None) -> Figure:
    """Draw ``layout`` (see :func:`draw_architecture`)."""
    if ax is None:
        fig = Figure(figsize=(13, 7.2))
        ax = fig.add_axes((0.0, 0.09, 1.0, 0.86))
    fig = ax.figure
    where = {n.name: (PATHS[n.path][0], -n.stride.bit_length() + 1) for n in layout.nodes}  # row -l for 1/2**l
    for module, colour in FRAMES.items():  # dashed frames around the modules, as in Fig. 2
        xy = [where[n.name] for n in layout.nodes if PATHS[n.path][1] == module]
        if xy:
            x0, x1 = min(x for x, _ in xy) - 0.47, max(x for x, _ in xy) + 0.47
            y0, y1 = min(y for _, y in xy) - 0.36, max(y for _, y in xy) + 0.36
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls="--", ec=colour, lw=1.2))
            ax.text(x0, y1 + 0.02, module, color=colour, fontsize=8, va="bottom", weight="bold")
    outputs = {node for _, node in layout.supervised}
    for n in layout.nodes:
        x, y = where[n.name]
        edge = "red" if n.name in outputs else PATHS[n.path][2]
        ax.add_patch(FancyBboxPatch((x - 0.41, y - 0.26), 0.82, 0.52, boxstyle="round,pad=0.02", fc="white",
                                    ec=edge, lw=2.0 if n.name in outputs else 1.2, zorder=3))
        ax.text(x, y + (0.1 if n.op else 0), n.label, ha="center", va="center", fontsize=7.5, zorder=4)
        ax.text(x, y - 0.05, textwrap.fill(n.op, 28), ha="center", va="top", fontsize=6, color="0.3", zorder=4)
    paths = {n.name: n.path for n in layout.nodes}
    for source, target, role in layout.edges:
        a, b = where[source], where[target]
        colour = PATHS[paths[target]][2] if role == "main" else "0.55"
        ax.annotate("", xy=_anchor(b, a), xytext=_anchor(a, b), zorder=2, arrowprops=dict(
            arrowstyle="-|>", color=colour, lw=1.4 if role == "main" else 0.9, ls="-" if role == "main" else "--",
            shrinkA=0, shrinkB=0, connectionstyle="arc3,rad=-0.12" if role == "skip" and a[0] + 1 < b[0] else None))
    for field, name in layout.supervised:
        x, y = where[name]
        ax.text(x + 0.56, y, f"{field}: {layout.loss} loss\nvs. Eq. 1 targets\nat 1/{layout.node(name).stride}",
                ha="left", va="center", fontsize=7, color="red")
    for stride in sorted({n.stride for n in layout.nodes}):
        level = stride.bit_length() - 1
        size = layout.input_size[0] // stride, layout.input_size[1] // stride
        ax.text(-0.6, -level, f"L{level}\n1/{stride}\n{size[0]}x{size[1]}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-1.3, 7.5)
    ax.set_ylim(-max(n.stride for n in layout.nodes).bit_length() + 0.55, 0.62)
    ax.set_axis_off()
    ax.set_title(layout.title, fontsize=10)
    legend = [Line2D([], [], color=PATHS[p][2], label=PATHS[p][3]) for p in PATHS if PATHS[p][3] and p in
              paths.values()] + [Line2D([], [], color="0.55", ls="--", label="lateral input"),
               Line2D([], [], color="red", lw=2, label=f"supervised, {layout.loss} (§3.4)")]
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=7.5, frameon=False)
    return fig


def readme_model() -> FARNet:
    """The model of the README's figure: FARNet on DenseNet-121 with ISBI 2015's K (the default system)."""
    return FARNet(FARNetConfig(num_landmarks=ISBI2015.num_landmarks))


def layout_in_png(path) -> Optional[str]:
    """The layout JSON stored in a PNG by :func:`main`, or None when it holds none."""
    from PIL import Image
    with Image.open(path) as image:
        return image.text.get(PNG_KEY)


def main(argv=None) -> None:
    """``python -m farnet_lite.pictures.diagram OUT.png``: draw :func:`readme_model` at ISBI 2015's input size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="PNG file to write, e.g. docs/architecture.png")
    args = parser.parse_args(argv)
    layout = architecture_layout(readme_model(), ISBI2015.input_size)
    with atomic_path(args.out) as tmp:
        _draw(layout).savefig(tmp, format="png", dpi=110, metadata={PNG_KEY: layout.to_json()})
    print(f"wrote {args.out} (layout {layout.digest()})")


if __name__ == "__main__":
    main()
