"""The fast CPU path: allocator fix, threads, bf16 on native-bf16 CPUs, fused optimizer -- by values."""
from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from farnet_lite.config import TrainConfig
from farnet_lite.engine import cpu
from farnet_lite.engine import runtime as engine
from farnet_lite.engine.evaluate import predict_batch
from farnet_lite.heatmaps import LandmarkCodec
from farnet_lite.layers import HeatmapOutput


def test_allocator_fix_is_applied_once_and_can_be_switched_off(monkeypatch):
    first = cpu.tune_allocator()
    assert first in ("mallopt", "off", "unavailable") and cpu.tune_allocator() == first   # a second call: no-op
    monkeypatch.setitem(cpu._APPLIED, "allocator", None)
    monkeypatch.setenv("FARNET_MALLOPT", "0")
    assert cpu.tune_allocator() == "off"


def test_threads_respect_the_users_choice(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FARNET_THREADS", "1")
        assert cpu.use_all_cores() == 1
        monkeypatch.delenv("FARNET_THREADS")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert cpu.use_all_cores() == 1                       # the user chose: left alone
        assert "threads" in cpu.prepare_cpu(torch.device("cpu")) and cpu.prepare_cpu(torch.device("meta")) == ""
    finally:
        torch.set_num_threads(before)


def test_an_explicit_torch_thread_count_is_kept(monkeypatch):
    """A notebook's torch.set_num_threads(1) made after the kit was imported is not overridden; torch's own
    default is raised to every core, once per process, so lowering it after a first run is kept too."""
    before = torch.get_num_threads()
    for name in ("FARNET_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cpu, "cpu_cores", lambda: 3)
    monkeypatch.setattr(cpu, "TORCH_DEFAULT_THREADS", 2)              # torch's count at import
    monkeypatch.setitem(cpu._APPLIED, "threads", False)
    try:
        torch.set_num_threads(1)                                       # the user's choice
        assert cpu.use_all_cores() == 1 and not cpu._APPLIED["threads"]
        torch.set_num_threads(2)                                       # torch's default: nobody chose
        assert cpu.use_all_cores() == 3 and cpu._APPLIED["threads"]
        torch.set_num_threads(2)                                       # lowered after that first run: kept
        assert cpu.use_all_cores() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_the_cpu_is_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr(engine, "native_bf16", lambda: native)
    device = torch.device("cpu")
    assert engine.resolve_precision("auto", device) == (torch.bfloat16 if native else None)
    assert engine.resolve_precision("fp32", device) is None
    assert engine.resolve_precision("bf16", device) == torch.bfloat16
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert engine.resolve_precision("fp16", device) is None
    assert "fp16" in str(caught[0].message)
    assert [engine.precision_name(d) for d in (None, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


@pytest.mark.parametrize("optimizer", ["adam", "adadelta"])
def test_fused_optimizer_step_equals_the_for_loop(optimizer):
    torch.manual_seed(0)
    config = TrainConfig(optimizer=optimizer, lr=1e-2 if optimizer == "adam" else 1.0)
    nets = [nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [engine.build_optimizer(config, nets[0].parameters(), fused=True),
            engine.build_optimizer(config, nets[1].parameters(), fused=False)]
    if optimizer == "adam":
        assert opts[0].param_groups[0]["fused"] and not opts[1].param_groups[0]["foreach"]
    x = torch.randn(8, 6)
    for _ in range(5):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    moved = (nets[0][0].weight - nets[1][0].weight).abs().max()
    assert moved < 1e-6 and (nets[0][0].weight - nets[1][0].weight).abs().max() <= moved


class _BlobNet(nn.Module):
    """A fixed 'model' whose heatmaps are a blur of the image: a bright blob at p gives a peak at p."""

    def __init__(self, k: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, k, 7, padding=3, bias=False)
        grid = torch.arange(7.0) - 3
        kernel = torch.exp(-(grid[:, None] ** 2 + grid[None] ** 2) / 8.0)
        self.conv.weight.data[:] = kernel / kernel.sum() / 3

    def forward(self, x):
        return HeatmapOutput(final=self.conv(x))


def test_bf16_and_fp32_predictions_agree():
    """bf16 autocast moves decoded sub-pixel coordinates by far less than a pixel (here: < 0.1 px)."""
    points = torch.tensor([[10.3, 12.6], [30.0, 20.2], [45.7, 40.4]])                  # (K, 2) as (x, y)
    ys, xs = torch.meshgrid(torch.arange(48.0), torch.arange(56.0), indexing="ij")
    blobs = torch.stack([torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / 18.0) for x, y in points])
    images = (255 * blobs).to(torch.uint8)                                             # (K, H, W): one blob each
    config = TrainConfig(input_size=(64, 64), sigma=3.0, decode="subpixel")
    net = _BlobNet().eval()
    codec = LandmarkCodec((48, 56), 3.0, method="subpixel")
    fp32, _ = predict_batch(net, images, codec, config, None)                          # (K, K, 2)
    bf16, _ = predict_batch(net, images, codec, config, torch.bfloat16)
    found = fp32[torch.arange(3), torch.arange(3)]                                    # image i, landmark i
    assert (found - points).norm(dim=-1).max() < 0.5                                   # the model finds the blobs
    assert (bf16 - fp32).norm(dim=-1).max() < 0.1


TINY_STEP = """
import importlib.util, torch
spec = importlib.util.spec_from_file_location("kit_cpu", {path!r})   # farnet_lite/engine/cpu.py alone: a light import
cpu = importlib.util.module_from_spec(spec); spec.loader.exec_module(cpu)
print(cpu.tune_allocator())
torch.manual_seed(0); threads = torch.get_num_threads(); torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1))
opt = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
x = torch.randn(2, 3, 96, 96)
for _ in range(3):
    opt.zero_grad(); loss = net(x).pow(2).mean(); loss.backward(); opt.step()
torch.set_num_threads(threads)
print(repr(loss.item()), repr(float(net[0].weight.detach().sum())))
"""


def test_allocator_fix_leaves_training_bit_identical():
    """A few training steps give the same bits in a process without the fix and in one with it (two fresh
    processes, whatever FARNET_MALLOPT the test run itself was started with)."""
    code = TINY_STEP.format(path=cpu.__file__)
    runs = {flag: subprocess.run([sys.executable, "-c", code], env={"FARNET_MALLOPT": flag, "PATH": ""},
                                 capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
            for flag in ("0", "1")}
    without, here = runs["0"], runs["1"]
    assert without[0] == "off" and here[0] in ("mallopt", "unavailable")
    assert without[1] == here[1]


@pytest.mark.parametrize("kernel,stride,padding,dilation,bias", [(3, 1, 1, 1, True), (3, 2, 1, 1, False),
                                                                 (1, 1, 0, 1, True), (3, 1, 2, 2, True),
                                                                 ((3, 1), (2, 1), (1, 0), 1, True)])
def test_small_map_gemm_gives_the_convolutions_values_and_gradients(kernel, stride, padding, dilation, bias):
    """unfold + one matrix product = nn.Conv2d: output, input gradient and weight/bias gradients, on a map small
    enough for the GEMM path (checked), non-square and with asymmetric settings so that a swapped h/w fails."""
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 512, kernel, stride, padding, dilation, bias=bias)
    gemm = nn.Conv2d(6, 512, kernel, stride, padding, dilation, bias=bias)
    gemm.load_state_dict(ref.state_dict())
    assert cpu.use_small_map_gemm(nn.Sequential(gemm)) == 1 and isinstance(gemm, cpu.SmallMapConv2d)
    x = torch.randn(2, 6, 5, 3, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    assert gemm.uses_gemm(x)
    out, out_ref = gemm(x), ref(x_ref)
    assert out.shape == out_ref.shape and torch.allclose(out, out_ref, atol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    out_ref.backward(grad)
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(gemm.weight.grad, ref.weight.grad, atol=1e-4)
    if bias:
        assert torch.allclose(gemm.bias.grad, ref.bias.grad, atol=1e-4)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):              # autocast: conv's dtype too
        assert gemm(x).dtype == ref(x).dtype == torch.bfloat16


def test_small_map_gemm_only_where_the_weights_outweigh_the_map():
    """The GEMM path is taken for out_channels >= GEMM_RATIO x output positions and nowhere else; the state_dict
    keeps its keys; subclasses of Conv2d and other layers are left alone; a CPU run's prepare_model applies it."""
    net = nn.Sequential(nn.Conv2d(4, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ConvTranspose2d(64, 4, 2))
    keys = list(net.state_dict())
    assert cpu.use_small_map_gemm(net) == 1 and list(net.state_dict()) == keys
    assert type(net[2]) is nn.ConvTranspose2d and type(net[1]) is nn.BatchNorm2d
    conv = net[0]
    assert conv.uses_gemm(torch.zeros(1, 4, 2, 4))          # 64 >= 8 x 1 x 2 x 4
    assert not conv.uses_gemm(torch.zeros(1, 4, 3, 3))      # 64 < 8 x 9: oneDNN
    assert not conv.uses_gemm(torch.zeros(2, 4, 2, 4))      # batch counts: 64 < 8 x 16
    grouped = nn.Sequential(nn.Conv2d(4, 64, 3, padding="same", groups=2))
    cpu.use_small_map_gemm(grouped)
    assert not grouped[0].uses_gemm(torch.zeros(1, 4, 1, 1))
    for flag, expected in ((True, cpu.SmallMapConv2d), (False, nn.Conv2d)):
        model = nn.Sequential(nn.Conv2d(3, 8, 3))
        note = cpu.small_map_gemm_for(model, flag, torch.device("cpu"))
        assert type(model[0]) is expected and bool(note) == flag
        assert not cpu.small_map_gemm_for(nn.Sequential(nn.Conv2d(3, 8, 3)), flag, torch.device("meta"))
    assert TrainConfig().small_map_gemm


def test_small_map_gemm_leaves_farnets_step_unchanged():
    """A FARNet training step at 64x64 (its deepest layers on 2x2 maps take the GEMM path) gives the loss and
    every parameter's gradient of the plain network, to rounding.

    In float64: in float32 a random-init FARNet amplifies the two paths' different summation orders through 20
    BatchNorms until one gradient differs by > 1e-4 relative on some CPUs (seen on an AMD EPYC), a knife edge; in
    float64 the same amplification leaves them within 1e-8 on any CPU and thread count."""
    from farnet_lite.losses import coarse_to_fine_loss
    from farnet_lite.systems import build_model
    torch.manual_seed(0)
    nets = [build_model("msfa_fr", 5).double(), build_model("msfa_fr", 5).double()]
    nets[1].load_state_dict(nets[0].state_dict())
    assert cpu.use_small_map_gemm(nets[1]) > 100
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    points = torch.rand(2, 5, 2, dtype=torch.float64) * 64
    assert max((m for m in nets[1].modules() if isinstance(m, cpu.SmallMapConv2d)), key=lambda m: m.weight.numel()
               ).uses_gemm(torch.zeros(2, 2304, 2, 2))              # MSFA's largest 3x3, at L5 of a 64x64 input
    losses, grads = [], []
    for net in nets:
        loss = coarse_to_fine_loss(net(x), points, (64, 64), sigma=2.0)
        loss.backward()
        losses.append(loss.item())
        grads.append({name: p.grad for name, p in net.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-10)
    # a conv bias before BatchNorm has a zero gradient up to rounding: hence the absolute floor
    off = [n for n in grads[0] if (grads[0][n] - grads[1][n]).norm() > 1e-6 * grads[0][n].norm() + 1e-12]
    assert not off


def test_small_map_gemm_benchmark_script_reports_both_variants(tmp_path):
    """benchmarks/small_map_gemm.py runs and counts the convolutions that took the GEMM path (at 64x64, batch 1:
    MSFA's deep layers, but not FR's full-resolution ones)."""
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "small_map_gemm.py"
    spec = importlib.util.spec_from_file_location("small_map_gemm_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        figures = bench.main(["--sizes", "64x64", "--batch", "1", "--steps", "1", "--warmup", "0",
                              "--output", str(tmp_path / "f.json")])
    finally:
        torch.set_num_threads(threads)
    row = figures["sizes"]["64x64"]
    assert row["onednn_s"] > 0 and row["gemm_s"] > 0 and row["speedup"] == row["onednn_s"] / row["gemm_s"]
    assert 0 < row["gemm_convs"] < row["convs"] and json.loads((tmp_path / "f.json").read_text()) == figures
