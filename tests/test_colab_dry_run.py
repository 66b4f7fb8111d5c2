"""The code a Colab T4 runs, run here on the CPU: no GPU, so the device is faked where the code asks.

What a GPU run does differently, and how each is exercised here:

* the precision ``auto`` picks: from ``torch.cuda.get_device_capability`` (mocked: 7.5 a T4, 8.0 an A100, 9.0 an
  H100), fp16 with an enabled GradScaler (``torch.cuda.is_available`` mocked) below 8.0;
* the batch a GPU holds: from ``torch.cuda.mem_get_info`` (mocked: a T4's and an A100's free memory);
* ``--resume`` on a GPU: its RNG states arrive as tensors of another device (:class:`OnGPU` stands for CUDA ones:
  only ``.cpu()`` gives their values back), through ``restore_rng`` and through a whole resumed ``train()``;
* the DataLoader path (pinned batches copied with ``non_blocking``): forced with ``data_on_device="no"``;
  ``fits_on``'s 25 % rule from a mocked free memory.

Notebook 06's full-mode cells build the ``paper`` or ``fast`` config at 800x640 and call ``train(config,
resume=RESUME)``: at that size one CPU epoch takes hours, so the functions those cells reach are tested instead.
"""
from __future__ import annotations

import importlib.util
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from engine_helpers import tiny_config

from farnet_lite.config import TrainConfig
from farnet_lite.engine import runtime as engine
from farnet_lite.engine import train as train_module
from farnet_lite.engine.checkpoint import capture_rng, restore_rng
from farnet_lite.engine.runtime import (BatchSource, batch_for_gpu, build_optimizer, fit_batch_size, fits_on,
                                        make_scaler, resolve_precision, step_bytes_per_image, with_batch)
from farnet_lite.engine.train import train

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.device("cuda")
GiB = 2**30
FARNET_PARAMETERS = 42_345_363          # FARNet-DenseNet-121 with 19 landmarks (the paper's 1x1 L5 fusion)


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpu(monkeypatch):
    """A fake CUDA GPU: ``gpu(capability, free_gib, total_gib)`` sets what torch.cuda reports about it."""
    def fake(capability=(7, 5), free_gib=14.6, total_gib=15.0):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)   # a T4 says True too
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free_gib * GiB), int(total_gib * GiB)))
    return fake


# --- precision

@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((8, 0), torch.bfloat16),
                                                  ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_auto_precision_follows_the_compute_capability(gpu, capability, expected):
    gpu(capability)
    assert resolve_precision("auto", CUDA) == expected
    assert resolve_precision("fp32", CUDA) is None and resolve_precision("fp16", CUDA) == torch.float16


def test_bf16_asked_for_on_a_t4_warns_and_trains_in_fp16(gpu):
    gpu((7, 5))
    with pytest.warns(UserWarning, match=r"emulated on this GPU \(compute capability 7\.5.*training in fp16"):
        assert resolve_precision("bf16", CUDA) == torch.float16
    gpu((8, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_precision("bf16", CUDA) == torch.bfloat16


def test_cpu_precision_rules_are_unchanged(monkeypatch):
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(engine, "native_bf16", lambda: native)
        assert resolve_precision("auto", cpu) == (torch.bfloat16 if native else None)
        assert resolve_precision("bf16", cpu) == torch.bfloat16 and resolve_precision("fp32", cpu) is None
    with pytest.warns(UserWarning, match="fp16' is ignored on the CPU"):
        assert resolve_precision("fp16", cpu) is None


def test_fp16_on_cuda_gets_an_enabled_grad_scaler(gpu, monkeypatch):
    gpu((7, 5))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)     # GradScaler disables itself without CUDA
    amp_dtype = resolve_precision("auto", CUDA)
    assert make_scaler(amp_dtype, CUDA).is_enabled()
    assert not make_scaler(torch.bfloat16, CUDA).is_enabled() and not make_scaler(None, CUDA).is_enabled()


# --- the batch a GPU holds

def test_the_fast_preset_is_cut_to_what_a_t4_holds_and_lr_follows(gpu):
    fast = TrainConfig.preset("isbi2015", "fast")
    gpu((7, 5), free_gib=14.6, total_gib=15.0)
    amp_dtype = resolve_precision(fast.precision, CUDA)
    batch, why = batch_for_gpu(fast, CUDA, amp_dtype, FARNET_PARAMETERS, data_bytes=150 * 800 * 640)
    assert 1 < batch < 8
    assert why.startswith("a 15 GiB GPU (14.6 GiB free) holds about") and "800x640 in fp16" in why
    smaller, note = with_batch(fast, batch)
    assert smaller.batch_size == batch and smaller.lr == pytest.approx(1e-4 * math.sqrt(batch), rel=1e-3)
    assert note == f"lr 0.000283 → {smaller.lr:.3g} (× √({batch}/8), the fast preset's rule)"
    # the estimate behind it: batch images at the step's peak, the model and Adam, within 90 % of the free memory
    need = batch * step_bytes_per_image((800, 640), torch.float16) + 18 * FARNET_PARAMETERS + 150 * 800 * 640
    assert need <= 0.9 * 14.6 * GiB < need + step_bytes_per_image((800, 640), torch.float16)

    gpu((8, 0), free_gib=79.0, total_gib=80.0)                          # an A100 80 GB holds the whole batch
    assert batch_for_gpu(fast, CUDA, torch.bfloat16, FARNET_PARAMETERS) == (8, "")
    assert with_batch(fast, 8) == (fast, "")


def test_the_paper_preset_fits_a_t4_and_too_small_a_gpu_says_so(gpu):
    paper = TrainConfig.preset("isbi2015", "paper")
    gpu((7, 5), free_gib=14.6, total_gib=15.0)
    assert batch_for_gpu(paper, CUDA, None, FARNET_PARAMETERS) == (1, "")
    gpu((6, 1), free_gib=3.5, total_gib=4.0)
    batch, why = batch_for_gpu(paper, CUDA, None, FARNET_PARAMETERS)
    assert batch == 1 and why.startswith("even batch 1 at 800x640 in fp32 needs about") and "out-of-memory" in why
    assert fit_batch_size(8, (800, 640), None, 0, FARNET_PARAMETERS) == 1      # never below 1


def test_train_takes_the_batch_the_gpu_holds(tmp_path, monkeypatch, capsys):
    """train()'s side of the batch choice, on the CPU with batch_for_gpu answering as on a small GPU."""
    asked = []
    def small_gpu(config, device, amp_dtype, parameters, data_bytes=0):
        asked.append((config.batch_size, parameters, data_bytes))
        return 2, "a 15 GiB GPU (14.6 GiB free) holds about 2 images"
    monkeypatch.setattr(train_module, "batch_for_gpu", small_gpu)
    result = train(tiny_config(tmp_path, epochs=1, eval_splits=("test1",)))
    assert asked[0][0] == 4 and asked[0][1] > 1e6 and asked[0][2] == 8 * 32 * 32     # the 8 cached 32x32 images
    out = capsys.readouterr().out
    assert "batch 4 → 2: a 15 GiB GPU (14.6 GiB free) holds about 2 images; lr 0.001 → 0.000707 (× √(2/4), " \
           "the fast preset's rule)." in out
    saved = TrainConfig.load(result.run_dir / "config.json")
    assert saved.batch_size == 2 and saved.lr == pytest.approx(1e-3 / math.sqrt(2))


def test_the_batch_stays_on_the_cpu():
    config = TrainConfig.preset("isbi2015", "fast")
    assert batch_for_gpu(config, torch.device("cpu"), torch.bfloat16, FARNET_PARAMETERS) == (8, "")


def test_readme_memory_table_is_computed_from_the_measured_figure():
    table = load_script("activation_memory").memory_table()
    readme = (REPO / "README.md").read_text()
    assert table in readme, "README.md's memory table is stale: paste `python benchmarks/activation_memory.py --table`"


def test_the_measured_figures_are_the_engines():
    figures = json.loads(next((REPO / "results" / "benchmark").glob("activation-memory-*.json")).read_text())
    rows = {row["precision"]: row for row in figures["results"][0]["rows"] if row["input_size"] == [320, 256]}
    assert figures["results"][0]["backbone"] == "densenet121" and figures["results"][0]["system"] == "msfa_fr"
    for name in ("fp32", "half"):
        assert engine.ACTIVATION_BYTES_PER_PIXEL[name] == round(rows[name]["bytes_per_pixel"], 1)
        assert engine.STEP_PEAK_FACTOR[name] == round(rows[name]["peak_factor"], 2)


def test_saved_activations_scale_with_the_batch_and_the_pixels():
    """The measurement itself, on a light model: batch 2 minus batch 1, at two sizes."""
    from farnet_lite.systems import build_model

    script = load_script("activation_memory")
    torch.manual_seed(0)
    model = build_model("fpn", 19, backbone="densenet121").train()
    per_pixel = []
    for size in ((64, 64), (128, 64)):
        one, two = (script.saved_bytes(model, size, batch, None) for batch in (1, 2))
        per_pixel.append((two - one) / (size[0] * size[1]))
    assert per_pixel[0] == pytest.approx(per_pixel[1], rel=1e-6) and per_pixel[0] > 100


# --- resume on a GPU: RNG states on another device

class OnGPU(torch.Tensor):
    """Stands for a tensor that ``torch.load(map_location="cuda")`` put on a GPU: ``.cpu()`` gives its values
    back; any other use fails, as CPU-only code (numpy, ``Generator.set_state``) fails on a CUDA tensor."""

    @staticmethod
    def __new__(cls, value: torch.Tensor):
        fake = torch.Tensor._make_subclass(cls, torch.empty(0, dtype=value.dtype))   # no values of its own
        fake.value = value
        return fake

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:
            return args[0].value.clone()
        if func is torch.Tensor.__repr__:
            return "OnGPU(...)"
        raise TypeError(f"can't use a cuda:0 tensor here ({getattr(func, '__name__', func)}); call .cpu() first")


def on_gpu(value):
    """Every tensor inside ``value`` (dicts, lists) as an :class:`OnGPU`."""
    if isinstance(value, torch.Tensor):
        return OnGPU(value)
    if isinstance(value, dict):
        return {k: on_gpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_gpu(v) for v in value)
    return value


def test_on_gpu_stands_for_a_cuda_tensor():
    fake = on_gpu(torch.get_rng_state())
    with pytest.raises(TypeError, match="call .cpu"):
        fake.numpy()
    with pytest.raises((TypeError, RuntimeError)):
        torch.set_rng_state(fake)                   # what restore_rng did before it moved states to the CPU
    assert torch.equal(fake.cpu(), torch.get_rng_state())


def test_rng_states_loaded_onto_a_gpu_restore_and_old_single_states_still_do():
    data, augment = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    generators = {"data": data, "augment": augment}
    state = capture_rng(generators, per_rank={"augment": [augment.get_state()]})
    old = {k: v for k, v in capture_rng(generators).items()}          # older checkpoints: no per-rank states
    assert "per_rank" not in old

    def draws():
        return (np.random.rand(), torch.rand(2), torch.randperm(5, generator=data), torch.rand(3, generator=augment))

    first = draws()
    for saved in (state, old):
        restore_rng(on_gpu(saved), generators)
        again = draws()
        assert first[0] == again[0] and all(torch.equal(a, b) for a, b in zip(first[1:], again[1:]))


def test_per_rank_states_give_each_rank_its_own():
    generators = [torch.Generator().manual_seed(10 + rank) for rank in range(3)]
    states = [g.get_state() for g in generators[:2]]                   # saved by a 2-process run
    saved = capture_rng({"augment": generators[0]}, per_rank={"augment": states})
    for rank, expected in ((0, states[0]), (1, states[1]), (2, generators[2].get_state())):
        gen = torch.Generator().manual_seed(10 + rank)
        torch.rand(4, generator=gen)                                    # moved on since its seeding
        seeded = gen.get_state() if rank == 2 else None
        restore_rng(saved, {"augment": gen}, rank=rank)
        assert torch.equal(gen.get_state(), expected if rank < 2 else seeded)  # a 3rd rank keeps its own


def test_optimizer_state_follows_the_parameters_device():
    """train() loads a checkpoint on the CPU; Adam's state must then land on the GPU beside its parameters
    (``Optimizer.load_state_dict`` moves it; the meta device stands for the GPU here)."""
    config = TrainConfig()
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(config, model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    saved = optimizer.state_dict()
    on_meta = torch.nn.Linear(3, 2, device="meta")
    moved = build_optimizer(config, on_meta.parameters())
    moved.load_state_dict(saved)
    for state in moved.state.values():
        assert state["exp_avg"].device.type == "meta" and state["exp_avg_sq"].device.type == "meta"


def test_a_resumed_run_with_its_rng_states_on_a_gpu_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    """--resume after a Colab disconnect: last.pt's RNG states come back on another device (the checkpoint must be
    read on the CPU; restore_rng takes them anyway), and the augmented run continues exactly."""
    values = dict(epochs=2, augment=True, lr_schedule="constant", checkpoint_minutes=0, eval_splits=("test1",))
    straight = train(tiny_config(tmp_path, **dict(values, output_dir=str(tmp_path / "a"))))
    train(tiny_config(tmp_path, **dict(values, epochs=1, output_dir=str(tmp_path / "b"))))     # then disconnected

    load, seen = train_module.load_checkpoint, []
    def as_on_a_gpu(path, map_location="cpu", **kwargs):
        seen.append(map_location)
        state = load(path, map_location=map_location, **kwargs)
        state["rng"] = on_gpu(state["rng"])
        return state
    monkeypatch.setattr(train_module, "load_checkpoint", as_on_a_gpu)
    resumed = train(tiny_config(tmp_path, **dict(values, output_dir=str(tmp_path / "b"))), resume=True)
    assert seen[0] == "cpu"
    log_a, log_b = (pd.read_csv(tmp_path / run / "log.csv").drop(columns="seconds") for run in ("a", "b"))
    pd.testing.assert_frame_equal(log_a, log_b)
    assert resumed.metrics["test1"]["mre"] == straight.metrics["test1"]["mre"]
    a, b = (torch.load(tmp_path / run / "last.pt", weights_only=True) for run in ("a", "b"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"]["per_rank"]["augment"][0], b["rng"]["per_rank"]["augment"][0])


# --- the DataLoader path (the cache does not fit the GPU)

def test_fits_on_keeps_a_quarter_of_the_free_gpu_memory(gpu):
    images = torch.zeros(10, 32, 32, dtype=torch.uint8)                                # 10240 bytes
    gpu(free_gib=4 * 10240 / GiB + 1e-9)
    assert fits_on(images, CUDA) and not fits_on(images, CUDA, fraction=0.2)
    gpu(free_gib=4 * 10240 / GiB)
    assert not fits_on(images, CUDA)                                                   # exactly 25 %: no
    assert fits_on(images, torch.device("cpu"))
    cache = SimpleNamespace(images=images.numpy(), landmarks=np.zeros((10, 19, 2), np.float32))
    source = BatchSource(cache, CUDA, "auto", num_workers=0)          # no CUDA call: the DataLoader path
    assert not source.on_device and source.pin_memory


def test_the_dataloader_path_gives_the_same_batches(tmp_path):
    rng = np.random.default_rng(0)
    cache = SimpleNamespace(images=rng.integers(0, 256, (7, 16, 12), dtype=np.uint8),
                            landmarks=rng.uniform(0, 10, (7, 19, 2)).astype(np.float32))
    order = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    direct = list(BatchSource(cache, cpu, "yes").batches(order, 3))
    with pytest.warns(UserWarning, match="no accelerator is found"):     # torch drops pinning without a GPU
        loaded = list(BatchSource(cache, cpu, "no", num_workers=1, pin_memory=True).batches(order, 3))
    assert [len(images) for images, _ in loaded] == [3, 3, 1]
    for (a_images, a_points), (b_images, b_points) in zip(direct, loaded):
        assert torch.equal(a_images, b_images) and torch.equal(a_points, b_points)


def test_notebook_06_on_a_t4_runs_full_mode_and_says_fp16(gpu, monkeypatch, capsys):
    """Notebook 06's parameter and GPU cells, executed with a fake T4: full mode, and the precision auto picks."""
    notebook = json.loads((REPO / "notebooks" / "06_training_on_gpu.ipynb").read_text())
    cells = ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]
    parameters = next(c for c in cells if c.startswith("# Parameters."))
    device_cell = next(c for c in cells if c.startswith("if torch.cuda.is_available():"))
    assert "is_bf16_supported" not in "\n".join(cells)
    gpu((7, 5))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.delenv("FARNET_QUICK", raising=False)
    import os
    namespace = {"os": os, "IN_COLAB": True}
    exec(parameters, namespace)
    namespace["DEVICE"] = torch.device("cuda")
    exec(device_cell, namespace)
    assert namespace["QUICK"] is False and namespace["RESUME"] is True
    assert "GPU: Tesla T4 (compute capability 7.5) | precision='auto' trains in fp16" in capsys.readouterr().out
