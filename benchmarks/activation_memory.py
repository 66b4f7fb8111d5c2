"""How many bytes of activations one training image keeps alive: the figure behind the GPU batch choice.

    python benchmarks/activation_memory.py --peak             # FARNet-DenseNet-121; what engine.py holds
    python benchmarks/activation_memory.py --backbones densenet121 vgg16 --systems fpn msfa_fr --sizes 160x128

Runs on the CPU; no GPU needed. Two figures per precision (fp32, and half: bf16 autocast here; CUDA's fp16
autocast casts the same ops, convolutions and matrix products, to the same 2-byte size):

1. **Saved activations.** One training forward (network input -> model -> coarse-to-fine EWC loss) runs under
   ``torch.autograd.graph.saved_tensors_hooks``, which sees every tensor autograd keeps for the backward pass.
   Each storage is counted once (a tensor saved by two ops, or views of one storage); the model's parameters are
   left out. The figure per image is batch 2 minus batch 1 (what is the same at any batch, such as autocast's
   half-precision copies of the weights, cancels), divided by the input's pixel count: bytes per input pixel.
   Two input sizes show that it does not depend on the size.
2. **Peak of a whole step** (``--peak``): forward + loss + backward at batch 1 and 2 in fresh processes whose
   allocations all go through mmap (``MALLOC_MMAP_THRESHOLD_``), so that the peak resident memory follows the live
   tensors; (peak at batch 2 - peak at batch 1) / saved activations per image is how much more than (1) a step
   needs at its peak (the activations' gradients during the backward pass, the kernels' scratch buffers).

Autograd saves the same tensors on a GPU as on the CPU (cuDNN's convolution and batch norm keep their inputs as
the CPU kernels do), so (1) carries over; (2) is a CPU figure, used on a GPU as an estimate (cuDNN's workspaces
differ from oneDNN's), which is why :func:`farnet_lite.engine.runtime.fit_batch_size` also keeps part of the free memory
unused. The printed ``ACTIVATION_BYTES_PER_PIXEL`` and ``STEP_PEAK_FACTOR`` lines are what
``farnet_lite/engine/runtime.py`` holds; paste them there when the model changes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from farnet_lite.engine.runtime import (BYTES_PER_PARAMETER, MEMORY_SHARE, fit_batch_size, network_input,
                                        step_bytes_per_image, step_memory_bytes)
from farnet_lite.losses import coarse_to_fine_loss
from farnet_lite.systems import build_model

PRECISIONS = {"fp32": None, "half": torch.bfloat16}
GPUS = (("T4", 15), ("L4", 24), ("A100", 40), ("A100", 80), ("H100", 80))
"""The README table's GPUs and their memory in GiB (as Colab and nvidia-smi round it)."""
CONTEXT_GIB = 0.5
"""Memory the CUDA context and libraries take before the run asks how much is free (assumed, not measured)."""
TABLE_PRESETS = (("isbi2015", "paper"), ("isbi2015", "official"), ("isbi2015", "fast"), ("hand", "paper"),
                 ("hand", "fast"), ("spine", "paper"), ("spine", "fast"), ("isbi2015", "quick"), ("isbi2015", "demo"))


def random_batch(size, batch: int):
    """``batch`` random uint8 images (B, H, W) and landmark coordinates (B, 19, 2) inside them."""
    h, w = size
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, h, w), dtype=torch.uint8, generator=generator)
    points = torch.rand(batch, 19, 2, generator=generator) * torch.tensor([w - 1.0, h - 1.0])
    return images, points


def training_loss(model, images, points, size, amp_dtype):
    with torch.autocast("cpu", dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        output = model(network_input(images))
    return coarse_to_fine_loss(output, points, size, sigma=10.0, loss="ewc", alpha=40.0)


def saved_bytes(model, size, batch: int, amp_dtype) -> int:
    """Bytes of the distinct storages autograd saves in one training forward + loss of ``batch`` random images."""
    images, points = random_batch(size, batch)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = training_loss(model, images, points, size, amp_dtype)
    del loss
    return sum(storages.values())


def step_peak(args) -> None:
    """The ``--peak`` subprocess: one untimed step (gradients allocated), then the peak RSS of a second one."""
    torch.manual_seed(0)
    model = build_model(args.system, 19, backbone=args.backbone, pretrained=False).train()
    size, amp_dtype = (args.height, args.width), PRECISIONS[args.precision]
    images, points = random_batch(size, args.batch)
    training_loss(model, images, points, size, amp_dtype).backward()
    model.zero_grad(set_to_none=False)
    Path("/proc/self/clear_refs").write_text("5")       # Linux: reset the peak RSS (VmHWM) to the current RSS
    before = peak_rss()
    training_loss(model, images, points, size, amp_dtype).backward()
    print(json.dumps({"peak_bytes": peak_rss(), "before_bytes": before}))


def peak_rss() -> int:
    """VmHWM of this process (Linux), in bytes."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure_peak(system: str, backbone: str, size, precision: str, batch: int) -> int:
    command = [sys.executable, str(Path(__file__)), "--step-peak", "--system", system, "--backbone", backbone,
               "--height", str(size[0]), "--width", str(size[1]), "--precision", precision, "--batch", str(batch)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")    # every tensor mmapped: RSS follows live memory
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"]


def measure(system: str, backbone: str, sizes, peak: bool) -> dict:
    torch.manual_seed(0)
    model = build_model(system, 19, backbone=backbone, pretrained=False).train()
    rows = []
    for name, amp_dtype in PRECISIONS.items():
        for size in sizes:
            started = time.perf_counter()
            one, two = saved_bytes(model, size, 1, amp_dtype), saved_bytes(model, size, 2, amp_dtype)
            row = {"precision": name, "input_size": list(size), "batch1_bytes": one, "batch2_bytes": two,
                   "per_image_bytes": two - one, "bytes_per_pixel": (two - one) / (size[0] * size[1])}
            text = f"{system}/{backbone} {name} {size[0]}x{size[1]}: saved {row['per_image_bytes'] / 2**20:.1f} MiB " \
                   f"per image, {row['bytes_per_pixel']:.1f} B per pixel"
            if peak and size == max(sizes):
                p1, p2 = (measure_peak(system, backbone, size, name, b) for b in (1, 2))
                row.update(peak_batch1_bytes=p1, peak_batch2_bytes=p2, peak_per_image_bytes=p2 - p1,
                           peak_factor=(p2 - p1) / (two - one))
                text += f"; step peak {(p2 - p1) / 2**20:.1f} MiB per image = {row['peak_factor']:.2f} x saved"
            row["seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            print(text, flush=True)
    return {"system": system, "backbone": backbone, "rows": rows}


def memory_table() -> str:
    """README.md's table: what a training step of each preset needs and the batch each GPU gets (estimated from
    farnet_lite/engine/runtime.py's measured figures, as ``train()`` does on a GPU)."""
    from farnet_lite.config import TrainConfig
    from farnet_lite.systems import build_model_from_config

    head = " | ".join(f"{name} {gib} GiB" for name, gib in GPUS)
    lines = [f"| preset | input (H×W) | precision | batch | GiB per image | GiB per step | {head} |",
             "|---|---|---|---:|---:|---:|" + "---:|" * len(GPUS)]
    for dataset, preset in TABLE_PRESETS:
        config = TrainConfig.preset(dataset, preset)
        with torch.device("meta"):
            parameters = sum(p.numel() for p in build_model_from_config(config, pretrained=False).parameters())
        amp_dtype = None if config.precision == "fp32" else torch.float16     # auto on a GPU: fp16 or bf16
        size, batch = config.input_size, config.batch_size
        cells = []
        for _, gib in GPUS:
            free = (gib - CONTEXT_GIB) * 2**30
            fitted = fit_batch_size(batch, size, amp_dtype, free, parameters)
            fits = step_memory_bytes(fitted, size, amp_dtype, parameters) <= MEMORY_SHARE * free
            cells.append(str(fitted) if fits else "1, too little")
        lines.append(f"| {dataset} `{preset}` | {size[0]}×{size[1]} | {'fp32' if amp_dtype is None else 'half'} | "
                     f"{batch} | {step_bytes_per_image(size, amp_dtype) / 2**30:.2f} | "
                     f"{step_memory_bytes(batch, size, amp_dtype, parameters) / 2**30:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", nargs="+", default=["msfa_fr"], help="Table 2 systems (msfa_fr = FARNet)")
    parser.add_argument("--backbones", nargs="+", default=["densenet121"])
    parser.add_argument("--sizes", nargs="+", default=["160x128", "320x256"], help="H x W, multiples of 32")
    parser.add_argument("--peak", action="store_true", help="also the peak of a whole step, at the largest size")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("--table", action="store_true", help="print README.md's memory table (no measurement)")
    parser.add_argument("--step-peak", action="store_true", help=argparse.SUPPRESS)     # the --peak subprocess
    for name, kind in (("system", str), ("backbone", str), ("height", int), ("width", int), ("precision", str),
                       ("batch", int)):
        parser.add_argument(f"--{name}", type=kind, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step_peak:
        step_peak(args)
        return
    if args.table:
        print(memory_table())
        return
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    results = [measure(system, backbone, sizes, args.peak) for system in args.systems for backbone in args.backbones]
    for result in results:      # the largest size's figures (the one closest to 800x640)
        largest = {row["precision"]: row for row in result["rows"] if tuple(row["input_size"]) == max(sizes)}
        print(f"{result['system']}/{result['backbone']}: ACTIVATION_BYTES_PER_PIXEL = "
              f"{ {name: round(row['bytes_per_pixel'], 1) for name, row in largest.items()} }")
        if args.peak:
            print(f"{result['system']}/{result['backbone']}: STEP_PEAK_FACTOR = "
                  f"{ {name: round(row['peak_factor'], 2) for name, row in largest.items()} }")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python benchmarks/activation_memory.py " + " ".join(
                sys.argv[1:] if argv is None else argv), "torch": torch.__version__, "machine": platform.machine(),
                "threads": torch.get_num_threads(), "results": results}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
