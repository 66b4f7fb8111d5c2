"""How much faster is a CPU training step with the small-map GEMM? (prints figures; farnet_lite.engine.cpu)

    python benchmarks/small_map_gemm.py --sizes 64x64 96x64 160x128 --batch 2 --steps 6 \\
        --output results/benchmark/small-map-gemm.json

FARNet (DenseNet-121, K = 19, random init) takes training steps on random images at each ``--sizes`` entry (H x W),
once with plain ``nn.Conv2d`` (oneDNN) and once after :func:`farnet_lite.engine.cpu.use_small_map_gemm`, from the same
weights, with the process-level fast CPU path applied (allocator, threads). The two variants alternate step by step,
so that a machine whose speed drifts (a shared CPU) slows both alike. Printed per size: the median seconds per step
of each, their ratio, and how many convolutions of the network took the GEMM path at that size. fp32, fused Adam.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from farnet_lite.config import TrainConfig
from farnet_lite.engine.cpu import SmallMapConv2d, prepare_cpu, use_small_map_gemm
from farnet_lite.engine.runtime import build_optimizer, network_input
from farnet_lite.losses import coarse_to_fine_loss
from farnet_lite.systems import build_model


def step_seconds(size, batch: int, steps: int, warmup: int) -> dict:
    """Median seconds per training step at ``size`` without and with the GEMM, and the convolutions it took."""
    torch.manual_seed(0)
    plain = build_model("msfa_fr", 19)
    gemm = copy.deepcopy(plain)
    use_small_map_gemm(gemm)
    images = torch.randint(0, 256, (batch, *size), dtype=torch.uint8)
    points = torch.rand(batch, 19, 2) * torch.tensor([size[1], size[0]])          # (B, K, 2) as (x, y)
    x = network_input(images)                                                    # (B, 3, H, W)
    nets = {"onednn": plain, "gemm": gemm}
    optimizers = {name: build_optimizer(TrainConfig(), net.parameters()) for name, net in nets.items()}
    times = {name: [] for name in nets}
    for i in range(warmup + steps):
        for name, net in nets.items():
            start = time.perf_counter()
            loss = coarse_to_fine_loss(net(x), points, size, sigma=2.0)
            optimizers[name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[name].step()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    probe = torch.zeros(batch, 3, *size)
    taken = []
    hooks = [m.register_forward_pre_hook(lambda m, args: taken.append(m.uses_gemm(args[0])))
             for m in gemm.modules() if isinstance(m, SmallMapConv2d)]
    with torch.no_grad():
        gemm(probe)
    for hook in hooks:
        hook.remove()
    medians = {name: statistics.median(t) for name, t in times.items()}
    return dict(onednn_s=medians["onednn"], gemm_s=medians["gemm"], speedup=medians["onednn"] / medians["gemm"],
                gemm_convs=sum(taken), convs=len(taken))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["64x64", "96x64", "160x128"], help="H x W input sizes")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant and size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    cpu = prepare_cpu(torch.device("cpu"))
    print(f"{cpu}; FARNet DenseNet-121, batch {args.batch}, fp32, median of {args.steps} steps, variants alternating")
    print(f"{'size':>8} {'oneDNN s/step':>14} {'GEMM s/step':>12} {'speed-up':>9} {'GEMM convs':>11}")
    rows = {}
    for text in args.sizes:
        size = tuple(int(v) for v in text.lower().split("x"))
        row = rows[text] = step_seconds(size, args.batch, args.steps, args.warmup)
        print(f"{text:>8} {row['onednn_s']:14.3f} {row['gemm_s']:12.3f} {row['speedup']:8.2f}x "
              f"{row['gemm_convs']:>5} of {row['convs']}")
    figures = dict(cpu=cpu, machine=platform.processor() or platform.machine(), torch=torch.__version__,
                   batch=args.batch, steps=args.steps, warmup=args.warmup, sizes=rows)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
