"""One prepared GPU session : benchmark, FARNet on ISBI 2015 at 800x640 and the spine, in one command.

A GPU is lent for minutes, so everything is prepared here and the GPU machine runs ONE command::

    .venv/bin/python tools/gpu_session.py prepare --data-root ../shared/data --carry carry/gpu     # here (CPU)
    PYTHONPATH=. python3 tools/gpu_session.py --carry carry/gpu --out "$OUT" --budget-s 540         # there (GPU)

``prepare`` resizes every split once into the kit's prepared caches (``farnet_lite.data.cache``) in the git-ignored
``carry/gpu``: ISBI 2015 ``train`` / ``test1`` / ``test2`` at 800x640 (mean of the two doctors, as the paper) and the
spine on the paper's protocol (§4.1.3; ``farnet_lite.data.spine.paper_split_indices``): ``trainval`` (431 of the
481 labelled images), ``test50`` (the other 50) and ``test`` (the 128 AASCE test images, unlabelled in our copy),
at the largest (H, W) = (2w, w) whose caches keep the folder under ``--max-mib`` (60 MiB) and the whole transfer
-- the working tree (tracked and untracked-not-ignored files, ``shared/``) plus the carry -- under the device tool's
``--transfer-mib`` (64 MiB); ``prepare`` refuses, in one sentence, a carry that would not travel.
``manifest.json`` lists every file (role, ids, bytes, sha256) and the git commit (the GPU machine has no git).

The run reads only those caches and needs only what the GPU machine's Python has (torch, torchvision, numpy, pandas,
matplotlib, pillow, tqdm; no scipy, scikit-learn, pooch or pydicom). Steps, each given its own time budget, each
recorded (ok / partial / error / skipped) in provenance.json even when another fails or runs out of time:

1. ``benchmark``: train and inference images/s and peak memory at the ISBI size: the kit's fast path (bf16
   autocast, channels_last, batch 8, uint8 cache in GPU memory) against the official-style pipeline (fp32, batch 1,
   NCHW, full-size JPEGs decoded and heatmaps built per sample on the CPU), both from ``farnet_lite.reproduction.benchmark``,
   with the ratio.
2. ``isbi``: FARNet-DenseNet-121 from random initialisation with the ``fast`` preset, as many of its 300 epochs as
   the budget allows (the cosine schedule is re-planned from the measured time of epochs 1 and 2; a run that would
   overrun stops early), the best epoch selected on Test1 (§4.1.1); predictions for Test1 and Test2, metrics where
   labels are present (Test1's last epoch too, in the history).
3. ``spine``: the same with the spine ``fast`` preset (augmentation on), selected on fold 1 of the 5-fold split of
   ``trainval`` (§4.5.3); predictions for ``test50`` (scored) and ``test`` (the AASCE 128).
4. ``compile``, only when ``--compile-budget-s`` gives it time, and last, its budget kept back from the training
   steps: the fast path under ``torch.compile`` in a subprocess killed at its budget, and whether its compile time
   pays for itself over the paper's 300-epoch ISBI schedule. Off by default: its former 90 s were 17 % of a 540 s
   session, and FARNet's forward + backward did not compile within 540 s on 2 CPU cores.

Files under ``--out`` (7, each far below 16 MiB, no checkpoints): benchmark.json, isbi_metrics.json,
isbi_predictions.csv, spine_metrics.json, spine_predictions.csv (``split,image_id,landmark,x,y,score``: original
pixels, 0-based, pixel centres at integers, landmark 1-based), log.txt (everything printed) and provenance.json
(command, commit, device, torch, budget and wall time per step, epochs reached), rewritten after every step and
the metrics after every epoch, so a run killed at the device's time limit still leaves them.
"""
from __future__ import annotations

import time

PROCESS_START = time.perf_counter()   # the budget counts from here, before torch is imported

import argparse  # noqa: E402  (imported after the clock starts)
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    import pandas as pd

    from farnet_lite.atomic import atomic_path
    from farnet_lite.config import TrainConfig
    from farnet_lite.data.augment import augment
    from farnet_lite.data.cache import default_cache_name, encode_image, load_cache, prepare_cache, resize_image
    from farnet_lite.datasets import cv_fold_indices
    from farnet_lite.reproduction.benchmark import bench_engine, bench_official_style
    from farnet_lite.engine.evaluate import evaluate_cache
    from farnet_lite.engine.outputs import predictions_frame, write_frame, write_json
    from farnet_lite.engine.runtime import (BatchSource, build_optimizer, build_scheduler, cuda_native_bf16,
                                            make_scaler, prepare_model, resolve_device, resolve_precision,
                                            seed_everything)
    from farnet_lite.engine.scoring import selection_key
    from farnet_lite.engine.train import train_one_epoch
    from farnet_lite.systems import build_model_from_config
except ImportError as err:
    if str(getattr(err, "name", "")).startswith("farnet_lite"):
        sys.exit(f"tools/gpu_session.py cannot import the kit ({err}); run it from the repository root with "
                 f"PYTHONPATH=. (or after `pip install -e .`).")
    raise

MANIFEST = "manifest.json"
REPO = Path(__file__).resolve().parents[1]
TRANSFER_MIB = 64.0                              # the device tool: working tree + carried paths, at most 64 MiB
TREE_GROWTH_MIB = 1.0                            # kept free: the tree may grow between `prepare` and the run
ISBI_ROLES = ("train", "test1", "test2")
SPINE_ROLES = ("trainval", "test50", "test")     # the 431, the 50 (of the 481 labelled), the AASCE 128
SPINE_FOLD = 1                                   # the selection fold of the 5-fold split of trainval


# ----------------------------------------------------------------------------- prepare (here, on the CPU)

def spine_candidate_sizes(largest) -> list:
    """(H, W) from the paper's spine size down: H in steps of 64 and W = H / 2, both multiples of 32."""
    height, width = int(largest[0]), int(largest[1])
    return [(h, h * width // height) for h in range(height, 255, -64)]


def estimate_cache_bytes(datasets, sizes, samples: int = 16) -> dict:
    """``{size: bytes}`` that caching every image of ``datasets`` at each size would take, extrapolated from
    ``samples`` images spread over them, resized and encoded exactly as ``prepare_cache`` does."""
    items = [(d, i) for d in datasets for i in range(len(d))]
    picks = [items[int(j)] for j in np.linspace(0, len(items) - 1, min(samples, len(items)))]
    images = [np.asarray(d[i].image) for d, i in picks]
    return {size: len(items) * float(np.mean([len(encode_image(resize_image(im, size))) for im in images]))
            for size in sizes}


def _build(dataset, name: str, role: str, size, carry: Path, workers) -> dict:
    """Cache ``dataset`` as ``carry/<name>_<role>_<H>x<W>.npz``; its manifest entry."""
    path = prepare_cache(dataset, size, carry / default_cache_name(name, role, size), num_workers=workers)
    cache = load_cache(path)
    return {"file": path.name, "dataset": name, "role": role, "size": list(cache.size), "images": len(cache),
            "labelled": int(cache.labelled.sum()), "bytes": path.stat().st_size, "ids": list(cache.ids),
            "original_size_median": [int(v) for v in np.median(cache.original_sizes, axis=0)],
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _git_commit() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}


def transfer_tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what travels to the GPU machine besides the carry: the tracked files, the untracked files git does
    not ignore, and ``shared/`` in the checkout (a symbolic link counts as itself)."""
    names = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    paths = {repo / name for name in names if name}
    if (repo / "shared").is_dir():
        paths |= {p for p in (repo / "shared").rglob("*")}
    return sum(os.lstat(p).st_size for p in paths if p.is_symlink() or (p.exists() and not p.is_dir()))


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_transfer(tree_bytes: int, carry_bytes: int, limit_mib: float = TRANSFER_MIB) -> None:
    """Refuse, in one sentence, a working tree + carry that the device tool would not send."""
    total = (tree_bytes + carry_bytes) / 2**20
    if total > limit_mib:
        raise ValueError(f"The working tree ({tree_bytes / 2**20:.1f} MiB) plus the carry ({carry_bytes / 2**20:.1f} "
                         f"MiB) is {total:.1f} MiB, over the {limit_mib:.0f} MiB the device tool sends; lower "
                         f"--max-mib or pass smaller --spine-sizes, or remove large untracked files from the tree.")


def _prepare_spine(root: Path, carry: Path, limit_bytes: float, sizes, workers) -> tuple:
    """The three spine caches at the largest of ``sizes`` whose files fit ``limit_bytes``; (entries, split note)."""
    from farnet_lite.data import spine

    training, aasce = spine.read_spine(root, split="training"), spine.read_spine(root, split="test")
    trainval, test50 = spine.paper_split_indices(training)
    parts = {"trainval": training.subset(trainval), "test50": training.subset(test50), "test": aasce}
    committed = set(spine.read_split_file()) if spine.SPINE_SPLIT_FILE.is_file() else set()
    split = ("farnet_lite/data/spine_431_50.csv" if committed == {Path(p).name for p in training.paths}
             else f"farnet_lite.data.spine.paper_split(seed={spine.SPINE_SPLIT_SEED})")
    estimates = estimate_cache_bytes(list(parts.values()), sizes)
    print("spine estimates: " + ", ".join(f"{h}x{w} {b / 2**20:.1f} MiB" for (h, w), b in estimates.items()))
    for size in [s for s in sizes if estimates[s] <= 0.97 * limit_bytes] or sizes[-1:]:
        entries = [_build(ds, "spine", role, size, carry, workers) for role, ds in parts.items()]
        if sum(e["bytes"] for e in entries) <= limit_bytes:
            return entries, split
        for entry in entries:
            (carry / entry["file"]).unlink()
    raise ValueError(f"Even the spine at {sizes[-1]} does not fit {limit_bytes / 2**20:.1f} MiB beside the ISBI "
                     f"caches in {carry}; raise --max-mib or pass smaller --spine-sizes.")


def prepare(args) -> dict:
    """Build every cache of the run under ``args.carry`` and write its manifest; return the manifest."""
    from farnet_lite.data.isbi2015 import read_isbi2015

    started = time.perf_counter()
    carry, root = Path(args.carry), Path(args.data_root)
    tree = transfer_tree_bytes()                       # what travels beside the carry: it shares the 64 MiB
    carry_mib = min(args.max_mib, args.transfer_mib - TREE_GROWTH_MIB - tree / 2**20)
    print(f"transfer: working tree {tree / 2**20:.1f} MiB, so the carry may take {carry_mib:.1f} MiB "
          f"(--max-mib {args.max_mib:g}; {args.transfer_mib:g} MiB in all, {TREE_GROWTH_MIB:g} kept free)")
    if carry_mib <= 1.0:
        raise ValueError(f"The working tree alone is {tree / 2**20:.1f} MiB of the {args.transfer_mib:g} MiB the "
                         f"device tool sends: no room for the carry; remove large untracked files from the tree.")
    carry.mkdir(parents=True, exist_ok=True)
    isbi_size = tuple(args.isbi_size or TrainConfig.preset("isbi2015", "fast").input_size)
    files = [_build(read_isbi2015(root / "isbi2015", split=role, annotation="mean"), "isbi2015", role, isbi_size,
                    carry, args.workers) for role in ISBI_ROLES]
    limit = carry_mib * 2**20 - 2**20 - sum(f["bytes"] for f in files)     # 1 MiB kept for the manifest
    sizes = args.spine_sizes or spine_candidate_sizes(TrainConfig.preset("spine", "fast").input_size)
    spine_files, split = _prepare_spine(root / "spine_aasce", carry, limit, sizes, args.workers)
    files += spine_files
    for stale in {p.name for p in carry.glob("*.npz")} - {f["file"] for f in files}:
        (carry / stale).unlink()                      # caches of another size would travel and eat the limit
    manifest = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "git": _git_commit(),
                "data_root": args.data_root, "carry": args.carry, "max_mib": args.max_mib, "spine_split": split,
                "transfer": {"tree_bytes": tree, "limit_mib": args.transfer_mib},
                "total_bytes": sum(f["bytes"] for f in files), "prepare_s": round(time.perf_counter() - started),
                "files": files}
    with atomic_path(carry / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    for f in files:
        print(f"{f['file']}: {f['images']} images ({f['labelled']} labelled), {f['bytes'] / 2**20:.1f} MiB")
    carried = folder_bytes(carry)
    print(f"{carry}: {manifest['total_bytes'] / 2**20:.1f} MiB of caches, {manifest['prepare_s']} s; with the "
          f"working tree {(tree + carried) / 2**20:.1f} MiB travel, of {args.transfer_mib:g}")
    check_transfer(tree, carried, args.transfer_mib)
    return manifest


# ----------------------------------------------------------------------------- run (there, on the GPU)

class Tee:
    """A stream that also writes to log.txt (the run's stdout and stderr: warnings and tracebacks too)."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        self.flush()

    def flush(self):
        self.stream.flush()
        self.log.flush()


class Session:
    """The clock, the output folder, the carried caches and provenance.json of one run."""

    def __init__(self, args, manifest: dict, device: torch.device):
        self.out, self.carry, self.budget_s = Path(args.out), Path(args.carry), float(args.budget_s)
        self.manifest, self.device = manifest, device
        keys = ("file", "role", "images", "labelled", "size", "bytes")
        carried = [{k: f[k] for k in keys} for f in manifest["files"]]
        self.provenance = {"command": command_line(args), "git": manifest.get("git"), "carry": args.carry,
                           "carry_files": carried, "data_root": manifest.get("data_root"),
                           "spine_split": manifest.get("spine_split"), "budget_s": self.budget_s,
                           "environment": environment(device), "steps": {}}

    def elapsed(self) -> float:
        return time.perf_counter() - PROCESS_START

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def log(self, message: str) -> None:
        print(f"[{self.elapsed():6.1f} s] {message}", flush=True)

    def save(self) -> None:
        self.provenance["wall_s"] = round(self.elapsed(), 1)
        write_json(self.out / "provenance.json", self.provenance)

    def step(self, name: str, budget_s: float, fn, minimum_s: float = 0.0, off: str = "") -> dict:
        """Run ``fn(budget_s) -> dict`` and record it; an exception is logged and recorded, never raised.
        ``off``: the step is not run, and this is the reason recorded."""
        record, started = {"budget_s": round(budget_s, 1), "status": "ok"}, time.perf_counter()
        if off:
            record.update(status="skipped", reason=off)
        elif budget_s <= minimum_s:
            record.update(status="skipped", reason=f"a budget of {budget_s:.0f} s (more than {minimum_s:.0f} s needed)")
        else:
            self.log(f"step {name}: budget {budget_s:.0f} s")
            try:
                record.update(fn(budget_s) or {})
            except Exception as err:  # noqa: BLE001  (a failed step must not stop the next one)
                traceback.print_exc()
                record.update(status="error", error=f"{type(err).__name__}: {err}")
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        record["wall_s"] = round(time.perf_counter() - started, 2)
        if record["wall_s"] > max(budget_s, 0.0) and record["status"] != "skipped":
            record["over_budget"] = True
        self.provenance["steps"][name] = record
        self.log(f"step {name}: {record['status']} in {record['wall_s']:.1f} s")
        self.save()
        return record

    def entry(self, dataset: str, role: str) -> dict:
        found = [f for f in self.manifest["files"] if f["dataset"] == dataset and f["role"] == role]
        if not found:
            raise FileNotFoundError(f"{self.carry / MANIFEST} lists no {dataset} {role} cache; re-run "
                                    f"`python tools/gpu_session.py prepare`.")
        return found[0]

    def load(self, dataset: str, role: str):
        """The ``PreparedCache`` of one manifest entry, once its sha256 matches the manifest."""
        entry = self.entry(dataset, role)
        path = self.carry / entry["file"]
        if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            raise ValueError(f"{path} differs from its manifest entry; re-run `python tools/gpu_session.py prepare`.")
        return load_cache(path)


def command_line(args) -> str:
    """The command as run, the output folder written as $OUT (the other paths as given: relative to the repo)."""
    return " ".join(["python3", "tools/gpu_session.py", *("$OUT" if w == args.out else w for w in sys.argv[1:])])


def environment(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "cpu_count": os.cpu_count(), "device_type": device.type}
    if device.type == "cuda":
        info.update(device=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), bf16_native=cuda_native_bf16(device),
                    capability=".".join(map(str, torch.cuda.get_device_capability(device))),
                    memory_gib=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1))
    else:
        info["device"] = f"CPU ({platform.machine()}), {torch.get_num_threads()} threads"
    return info


def session_config(dataset: str, size, device: torch.device, **overrides) -> TrainConfig:
    """The ``fast`` preset of ``dataset`` at the carried ``size``: random init, no run files, no progress bars."""
    values = dict(input_size=tuple(size), pretrained=False, device=str(device), progress=False,
                  save_checkpoints=False, num_workers=0)
    return TrainConfig.preset(dataset, "fast", **dict(values, **overrides))


def bench_config(args, size, device) -> TrainConfig:
    """The fast path of the benchmark: bf16 autocast, channels_last, batch ``--bench-batch``, constant LR."""
    return session_config("isbi2015", size, device, system=args.system, batch_size=args.bench_batch,
                          precision="bf16", channels_last=True, lr_schedule="constant", warmup_epochs=0.0)


# --- step 1: benchmark

def run_benchmark(session: Session, args, budget_s: float) -> dict:
    """The fast path and the official-style pipeline at the ISBI size; writes benchmark.json."""
    device, train = session.device, session.entry("isbi2015", "train")
    fast = bench_config(args, train["size"], device)
    official = dataclasses.replace(fast, batch_size=1, precision="fp32", channels_last=False)
    original = tuple(train["original_size_median"])          # the full-size JPEGs the official style decodes
    result = {"input_size": train["size"], "original_size": list(original), "steps": args.bench_steps,
              "warmup": args.bench_warmup, "device": session.provenance["environment"]["device"]}
    runs = {"fast": (fast, lambda: bench_engine(fast, device, args.bench_steps, args.bench_warmup)),
            "official_style": (official, lambda: bench_official_style(
                official, device, original, args.bench_steps, args.bench_warmup, args.bench_workers))}
    for name, (config, bench) in runs.items():
        precision = str(resolve_precision(config.precision, device) or torch.float32).replace("torch.", "")
        try:
            result[name] = dict(bench(), batch=config.batch_size, precision=precision,
                                channels_last=config.channels_last)
        except Exception as err:  # noqa: BLE001  (the other pipeline is still measured)
            traceback.print_exc()
            result[name] = {"error": f"{type(err).__name__}: {err}"}
        session.log(f"benchmark {name}: {result[name]}")
    if "error" not in result["fast"] and "error" not in result["official_style"]:
        for kind in ("train", "infer"):
            result[f"ratio_{kind}"] = (result["fast"][f"{kind}_images_per_s"]
                                       / result["official_style"][f"{kind}_images_per_s"])
    write_json(session.out / "benchmark.json", result)
    return {"status": "ok" if "ratio_train" in result else "error"}


def compile_probe(args) -> None:
    """The ``compile`` step's subprocess: time the first compiled training step, then ``--bench-steps`` more."""
    device = resolve_device(args.device)
    config = bench_config(args, args.size, device)
    amp_dtype = resolve_precision(config.precision, device)
    model = prepare_model(build_model_from_config(config), device, config.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    scheduler, scaler = build_scheduler(config, optimizer, 1), make_scaler(amp_dtype, device)
    rng, (h, w) = np.random.default_rng(0), config.input_size
    count = config.batch_size * (1 + args.bench_steps)
    data = dataclasses.make_dataclass("RandomCache", ["images", "landmarks"])(
        rng.integers(0, 256, (count, h, w), dtype=np.uint8),                          # (N, H, W)
        rng.uniform(0.1, 0.9, (count, config.num_landmarks, 2)) * [w - 1, h - 1])     # (N, K, 2)
    source, net, seconds = BatchSource(data, device, "yes"), torch.compile(model), []
    for order in (torch.arange(config.batch_size), torch.arange(config.batch_size, count)):
        start = time.perf_counter()
        train_one_epoch(net, source, order, optimizer, scheduler, scaler, config, amp_dtype,
                        torch.Generator(device=device), 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    step = seconds[1] / args.bench_steps
    print(json.dumps({"first_step_s": seconds[0], "compile_s": seconds[0] - step, "batch": config.batch_size,
                      "train_images_per_s": config.batch_size / step}))


def run_compile(session: Session, args, budget_s: float) -> dict:
    """:func:`compile_probe` in a subprocess killed at ``budget_s``; its figures go into benchmark.json."""
    train = session.entry("isbi2015", "train")
    command = [sys.executable, str(Path(__file__)), "compile-probe", "--device", str(session.device),
               "--size", *map(str, train["size"]), "--system", args.system, "--bench-batch", str(args.bench_batch),
               "--bench-steps", str(args.bench_steps)]
    # its own process group, so that a kill at the budget also ends the compiler's worker processes
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as probe:
        try:
            stdout, stderr = probe.communicate(timeout=budget_s)
        except subprocess.TimeoutExpired:
            stdout = None
        finally:
            try:
                os.killpg(probe.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if stdout is None:
        return {"status": "partial", "reason": f"torch.compile did not finish within {budget_s:.0f} s"}
    if probe.returncode != 0:
        raise RuntimeError(f"the compile probe exited with {probe.returncode}: {stderr[-2000:]}")
    figures = json.loads(stdout.strip().splitlines()[-1])
    path = session.out / "benchmark.json"
    bench = json.loads(path.read_text()) if path.is_file() else {}
    eager = bench.get("fast", {}).get("train_images_per_s")
    if eager:
        images = TrainConfig.preset("isbi2015", "paper").epochs * train["images"]
        figures["saved_over_paper_schedule_s"] = images * (1 / eager - 1 / figures["train_images_per_s"])
        figures["pays"] = figures["saved_over_paper_schedule_s"] > figures["compile_s"]
    write_json(path, dict(bench, fast_compiled=figures))
    return {"compile_s": round(figures["compile_s"], 1), "pays": figures.get("pays")}


# --- steps 2 and 3: training within a budget

def plan_epochs(done: int, used_s: float, epoch_s: float, budget_s: float, cap: int) -> int:
    """Epochs to schedule: the ``done`` ones plus as many ``epoch_s`` as fit in the rest of ``budget_s``, at most
    ``cap`` and at least ``done``."""
    return int(min(cap, done + max(0, math.floor((budget_s - used_s) / max(epoch_s, 1e-9)))))


def fit(config: TrainConfig, train_cache, val_cache, device, budget_s: float, on_epoch) -> dict:
    """Train from random init for as many epochs as fit in ``budget_s`` (at most ``config.epochs``), keeping the
    state that scores best on ``val_cache``. After epochs 1 and 2, ``epochs`` is re-planned from the measured
    epoch time (the LR schedule reads it at every step); later, an epoch that would overrun is not started."""
    config = dataclasses.replace(config)                          # re-planning changes this copy only
    amp_dtype, cap, key = resolve_precision(config.precision, device), config.epochs, selection_key(config.spec)
    seed_everything(config.seed)
    model = prepare_model(build_model_from_config(config), device, config.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    source = BatchSource(train_cache, device, config.data_on_device, config.num_workers)
    scheduler = build_scheduler(config, optimizer, math.ceil(source.size / config.batch_size))
    scaler, data_generator = make_scaler(amp_dtype, device), torch.Generator().manual_seed(config.seed)
    aug_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    params = config.spec.augmentation()
    augmenter = (lambda images, points, g: augment(images, points, params, g)) if config.augment else None
    history, best, best_state, started = [], (math.inf, -1), None, time.perf_counter()
    while len(history) < config.epochs:
        epoch, epoch_start, lr = len(history) + 1, time.perf_counter(), optimizer.param_groups[0]["lr"]
        loss = train_one_epoch(model, source, torch.randperm(source.size, generator=data_generator), optimizer,
                               scheduler, scaler, config, amp_dtype, aug_generator, epoch, augment=augmenter)
        summary = evaluate_cache(model, val_cache, config, device, amp_dtype).summary
        if math.isfinite(summary.get(key, math.nan)) and summary[key] < best[0]:
            best, best_state = (summary[key], epoch), {k: v.detach().clone() for k, v in model.state_dict().items()}
        seconds, used = time.perf_counter() - epoch_start, time.perf_counter() - started
        history.append({"epoch": epoch, "train_loss": loss, "lr": lr, "val_mre": summary.get("mre"),
                        f"val_{key}": summary.get(key), "seconds": seconds})
        if epoch <= 2:
            config.epochs = max(epoch, plan_epochs(epoch, used, seconds, budget_s, cap))
        overrun = 2 < epoch < config.epochs and used + 1.1 * seconds > budget_s
        on_epoch(dict(history=history, epochs_planned=config.epochs))
        if overrun:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return dict(model=model, config=config, amp_dtype=amp_dtype, history=history, best_epoch=best[1],
                best_score=best[0], epochs_reached=len(history), epochs_planned=config.epochs, epoch_cap=cap)


def predict_splits(fitted: dict, caches: dict, device) -> tuple:
    """Predictions of the fitted model on every cache (a frame with a ``split`` column) and their metrics."""
    frames, metrics = [], {}
    for split, cache in caches.items():
        result = evaluate_cache(fitted["model"], cache, fitted["config"], device, fitted["amp_dtype"])
        frames.append(predictions_frame(result.ids, result.pred, result.scores))
        frames[-1].insert(0, "split", split)
        metrics[split] = result.summary or "labels not present in this copy: predictions only"
    return pd.concat(frames, ignore_index=True), metrics


def subset_cache(cache, indices):
    """The images ``indices`` of a ``PreparedCache``: same grid, metric and name."""
    index = np.asarray(indices, dtype=np.int64)
    return dataclasses.replace(cache, images=cache.images[index], landmarks=cache.landmarks[index],
                               original_sizes=cache.original_sizes[index], ids=tuple(cache.ids[i] for i in index))


def run_training(session: Session, args, dataset: str, budget_s: float) -> dict:
    """Step ``isbi`` or ``spine``: fit within the budget, then the predictions and metrics files."""
    name = "isbi" if dataset == "isbi2015" else "spine"
    if dataset == "isbi2015":
        train, val = session.load(dataset, "train"), session.load(dataset, "test1")
        scored = {"test1": val, "test2": session.load(dataset, "test2")}
        selection = "test1 (the paper's validation set, §4.1.1)"
    else:
        trainval = session.load(dataset, "trainval")
        train, val = (subset_cache(trainval, i) for i in cv_fold_indices(list(trainval.ids), SPINE_FOLD))
        scored = {"test50": session.load(dataset, "test50"), "test": session.load(dataset, "test")}
        selection = f"fold {SPINE_FOLD} of the 5-fold split of trainval ({len(val)} of {len(trainval)} images)"
    epochs = {"epochs": args.max_epochs} if args.max_epochs else {}
    config = session_config(dataset, train.size, session.device, system=args.system, **epochs)
    path = session.out / f"{name}_metrics.json"
    base = {"dataset": dataset, "preset": "fast", "pretrained": False, "input_size": list(train.size),
            "train_images": len(train), "val_images": len(val), "selected_on": selection, "config": config.to_dict()}
    fitted = fit(config, train, val, session.device, 0.92 * budget_s - 2.0,       # the rest: predictions, files
                 lambda state: write_json(path, dict(base, status="training", **state)))
    frame, metrics = predict_splits(fitted, scored, session.device)
    write_frame(session.out / f"{name}_predictions.csv", frame, index=False)
    summary = {k: fitted[k] for k in ("epochs_reached", "epochs_planned", "epoch_cap", "best_epoch", "best_score")}
    write_json(path, dict(base, status="done", **summary, last_epoch=fitted["history"][-1], metrics=metrics,
                          history=fitted["history"]))
    session.log(f"{name}: {fitted['epochs_reached']} epochs, best {fitted['best_epoch']}; {metrics}")
    return dict(summary, status="ok" if fitted["epochs_reached"] == fitted["epoch_cap"] else "partial")


def run(args) -> dict:
    """The session: the steps in their budgets, every file under ``args.out``; returns provenance.json's content."""
    manifest_path, out = Path(args.carry) / MANIFEST, Path(args.out)
    if not manifest_path.is_file():
        sys.exit(f"{manifest_path} is missing; build it with `python tools/gpu_session.py prepare --data-root "
                 f"../shared/data --carry {args.carry}` and carry that folder.")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a", buffering=1) as log:
        sys.stdout, sys.stderr = Tee(sys.__stdout__, log), Tee(sys.__stderr__, log)
        try:
            device = resolve_device(args.device)
            torch.backends.cudnn.benchmark = device.type == "cuda"
            session = Session(args, json.loads(manifest_path.read_text()), device)
            session.log(f"{session.provenance['environment']}; budget {session.budget_s:.0f} s")
            if args.device == "auto" and device.type != "cuda":
                session.provenance["error"] = "no CUDA GPU visible: nothing run (--device cpu runs on the CPU)"
                session.save()
                sys.exit("No CUDA GPU is visible here; nothing was run. Pass --device cpu to run on the CPU anyway.")
            reserve, compile_s = args.reserve_s, max(0.0, args.compile_budget_s)   # compile: last, kept back
            session.step("benchmark", min(args.bench_budget_s, session.remaining() - reserve),
                         lambda b: run_benchmark(session, args, b))
            session.step("isbi", args.isbi_share * (session.remaining() - reserve - compile_s),
                         lambda b: run_training(session, args, "isbi2015", b), minimum_s=1.0)
            session.step("spine", session.remaining() - reserve - compile_s,
                         lambda b: run_training(session, args, "spine", b), minimum_s=1.0)
            session.step("compile", min(compile_s, session.remaining() - reserve),
                         lambda b: run_compile(session, args, b),
                         off="" if compile_s else "off by default (--compile-budget-s 0): FARNet's forward + "
                                                  "backward did not compile within 540 s on 2 CPU cores")
            session.provenance["files"] = sorted(p.name for p in out.iterdir() if p.is_file())
            session.save()
            session.log(f"done: {session.provenance['files']}")
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return session.provenance


def size_arg(text: str) -> tuple:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and argv[0] in ("prepare", "compile-probe") else "run"
    parser = argparse.ArgumentParser(prog=f"tools/gpu_session.py{'' if command == 'run' else ' ' + command}",
                                     description=__doc__.split("\n")[0])
    if command == "prepare":
        parser.add_argument("--data-root", required=True, help="the folder holding isbi2015/ and spine_aasce/")
        parser.add_argument("--carry", default="carry/gpu", help="the git-ignored folder that travels")
        parser.add_argument("--isbi-size", type=int, nargs=2, metavar=("H", "W"), help="default: the preset's")
        parser.add_argument("--spine-sizes", type=size_arg, nargs="+", help="candidates, largest first (768x384 "
                            "...); default: from the preset's 1024x512 down")
        parser.add_argument("--max-mib", type=float, default=60.0, help="size limit of the whole carry folder")
        parser.add_argument("--transfer-mib", type=float, default=TRANSFER_MIB, help="size limit of the working "
                            "tree + the carry (the device tool's)")
        parser.add_argument("--workers", type=int, default=None, help="processes (default min(4, CPUs))")
        prepare(parser.parse_args(argv))
        return
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (cpu: the end-to-end test)")
    parser.add_argument("--system", default="msfa_fr", help="Table 2 system (msfa_fr = FARNet; the CPU test: fpn)")
    parser.add_argument("--bench-batch", type=int, default=8, help="batch of the fast path (the fast preset's)")
    parser.add_argument("--bench-steps", type=int, default=20, help="timed benchmark steps")
    if command == "compile-probe":
        parser.add_argument("--size", type=int, nargs=2, required=True, metavar=("H", "W"))
        compile_probe(parser.parse_args(argv))
        return
    parser.add_argument("--carry", default="carry/gpu", help="the folder written by `prepare`")
    parser.add_argument("--out", required=True, help="output folder ($OUT on the GPU machine)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget from the process start")
    parser.add_argument("--reserve-s", type=float, default=15.0, help="kept free at the end of the budget")
    parser.add_argument("--bench-warmup", type=int, default=5, help="untimed benchmark steps")
    parser.add_argument("--bench-workers", type=int, default=4, help="DataLoader workers of the official style")
    parser.add_argument("--bench-budget-s", type=float, default=60.0, help="budget of the two eager pipelines")
    parser.add_argument("--compile-budget-s", type=float, default=0.0, help="the torch.compile probe, run last with "
                        "this budget kept back from training (default 0: off)")
    parser.add_argument("--isbi-share", type=float, default=0.6, help="share of the time left that ISBI gets")
    parser.add_argument("--max-epochs", type=int, default=None, help="epoch cap (default: the preset's 300)")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
