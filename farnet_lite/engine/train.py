"""``train(config)``: the one training loop of farnet-lite (CLI, notebooks, demo and DDP all call it).

One epoch = every training image once, in an order drawn from a seeded generator; each step augments the batch
on the device (optional), computes the coarse-to-fine EWC loss against heatmaps drawn on the device from the
landmark coordinates (Eq. 1 and 3 of §3.2-3.3, coarse-to-fine as §3.4), and takes an optimizer step. After each
epoch the model is scored on the validation split (ISBI: Test1, as the paper; spine: the cross-validation fold; the
hand has none: the last epoch is kept). ``best.pt`` is written whenever the validation score improves; ``last.pt``,
with everything needed to continue exactly (``resume=True``), is written atomically when ``checkpoint_minutes`` have
passed since its last write (735 MB at DenseNet-121 with Adam's state: not every epoch), after the last epoch, and
when the run is stopped with Ctrl-C (SIGINT: the epoch under way is finished first; a second Ctrl-C stops at
once, and the run resumes from the last ``last.pt``). At the end, the best model is evaluated on
``config.eval_splits`` (predictions CSVs for every split, metrics for labelled ones); when the selected epoch is
not the last one, the last epoch is evaluated too, into ``last_epoch/``, and ``selection.json`` says which is which.

Run directory (``config.output_dir``)::

    config.json  log.csv  last.pt  best.pt  selection.json
    predictions_<split>.csv  metrics_<split>.json  per_landmark_<split>.csv
    last_epoch/  (the same files for the last epoch, when it is not the selected one)
"""
from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from farnet_lite.atomic import acquire_run_lock, release_run_lock, sweep_stale_temps
from farnet_lite.config import TrainConfig
from farnet_lite.engine import distributed
from farnet_lite.engine.checkpoint import (capture_rng, check_compatible, load_checkpoint, restore_rng, save_checkpoint,
                                           unwrap)
from farnet_lite.engine.cpu import prepare_cpu, small_map_gemm_for
from farnet_lite.engine.evaluate import evaluate_cache
from farnet_lite.engine.outputs import write_json, write_log
from farnet_lite.engine.run_folder import check_resume_folder, fresh_run_folder, resumed_best
from farnet_lite.engine.runtime import (BatchSource, batch_for_gpu, build_optimizer, build_scheduler, make_scaler,
                                        network_input, precision_name, prepare_model, resolve_device, resolve_precision,
                                        seed_everything, with_batch)
from farnet_lite.engine.scoring import selection_key
from farnet_lite.engine.splits import prepared_split
from farnet_lite.losses import coarse_to_fine_loss
from farnet_lite.systems import build_model_from_config


@dataclass
class TrainResult:
    """What :func:`train` returns: where the run lives, its best validation score and the final metrics."""

    run_dir: Path
    best_epoch: int                       # 1-based; -1 when no validation ran
    best_metric: float                    # validation MRE (mm; spine: MSE fraction), lower is better
    history: List[dict] = field(default_factory=list)           # one row of log.csv per epoch
    metrics: Dict[str, dict] = field(default_factory=dict)      # per evaluated labelled split
    last_metrics: Dict[str, dict] = field(default_factory=dict)  # the same for the last epoch


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


def _augmenter(config: TrainConfig):
    """``(images (B,1,H,W) float in [0,1], points, generator) -> (images, points)``, batched, on the device."""
    from farnet_lite.data.augment import augment

    params = config.spec.augmentation()   # ISBI (not augmented in the paper): the hand's mild ranges
    return lambda images, points, generator: augment(images, points, params, generator)


def train_one_epoch(model, source: BatchSource, order: torch.Tensor, optimizer, scheduler, scaler,
                    config: TrainConfig, amp_dtype, aug_generator, epoch: int,
                    info: distributed.DistInfo = distributed.DistInfo(), augment=None,
                    mask_missing: bool = False) -> float:
    """One pass over ``order`` (this rank's shard of the epoch's sample order); returns the mean loss.

    ``mask_missing``: leave the heatmaps of landmarks missing in the annotations (NaN before augmentation) out
    of the loss; a landmark that augmentation moves out of the image still gets its all-zero target.

    Raises :class:`NonFiniteLossError` naming the epoch and step when the loss is NaN or infinite.
    """
    model.train()
    device = source.device
    steps = math.ceil(len(order) / config.batch_size)
    total = torch.zeros((), device=device)
    bar = tqdm(total=steps, desc=f"epoch {epoch}/{config.epochs}", leave=False, dynamic_ncols=True,
               disable=not (config.progress and info.is_main))
    for step, (images, points) in enumerate(source.batches(order, config.batch_size), start=1):
        known = torch.isfinite(points).all(dim=-1) if mask_missing else None     # (B, K) annotated
        if augment is not None:
            floats = images.unsqueeze(1).float().div_(255.0)            # (B, 1, H, W) in [0, 1]
            images, points = augment(floats, points, aug_generator)
        x = network_input(images, config.channels_last, config.official_scaling)  # (B, 3, H, W)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            output = model(x)
        loss = coarse_to_fine_loss(output, points, config.input_size, sigma=config.target_sigma, loss=config.loss,
                                   alpha=config.alpha, origin=config.origin, mask=known)
        reported = distributed.mean_over_ranks(loss.detach(), info)
        value = float(reported)
        if not math.isfinite(value):
            bar.close()
            raise NonFiniteLossError(
                f"Training loss became {value} at epoch {epoch}, step {step}: lower the learning rate "
                f"(--lr, now {config.lr:g}), use --precision fp32 or bf16 instead of fp16, or check the "
                f"training landmarks; the last good checkpoint is {Path(config.output_dir) / 'last.pt'}.")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total += reported
        bar.update(1)
        bar.set_postfix(loss=f"{value:.4g}")
    bar.close()
    return float(total) / max(steps, 1)


class CheckpointTimer:
    """When ``last.pt`` is due: ``minutes`` after its last write (0: every epoch) and always at the last epoch."""

    def __init__(self, minutes: float):
        self.minutes, self.written = minutes, monotonic()

    def due(self, epoch: int, last_epoch: int) -> bool:
        return epoch >= last_epoch or monotonic() - self.written >= 60.0 * self.minutes

    def wrote(self) -> None:
        self.written = monotonic()


class StopAfterEpoch:
    """Context manager: while ``in_epochs``, the first Ctrl-C (SIGINT) asks the loop to finish the epoch, write
    ``last.pt`` and stop (``requested``); a second one, or any outside the epochs (data preparation, the final
    evaluation), raises KeyboardInterrupt at once. Only in the main thread (signals need it)."""

    def __init__(self):
        self.requested, self.in_epochs, self.installed, self.previous = False, False, False, None

    def __enter__(self) -> "StopAfterEpoch":
        if threading.current_thread() is threading.main_thread():
            self.previous, self.installed = signal.signal(signal.SIGINT, self._handle), True
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested or not self.in_epochs:
            raise KeyboardInterrupt
        self.requested = True
        print("\nStopping after this epoch, once last.pt is written; Ctrl-C again stops at once.", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self.installed:   # None: a handler set outside Python, which cannot be put back; the default then
            signal.signal(signal.SIGINT, signal.SIG_DFL if self.previous is None else self.previous)


def _resume_path(config: TrainConfig, resume) -> Optional[Path]:
    if resume is False or resume is None:
        return None
    path = Path(config.output_dir) / "last.pt" if resume is True else Path(resume)
    if resume is True and not path.is_file():
        print(f"No checkpoint at {path} yet: starting from scratch.")
        return None
    return path


def train(config: TrainConfig, resume: Union[bool, str, Path] = False) -> TrainResult:
    """Train ``config`` (see :class:`~farnet_lite.config.TrainConfig`) and evaluate its best checkpoint.

    ``resume``: False (start afresh), True (continue from ``output_dir/last.pt`` if it exists) or the path of a
    ``last.pt``. A resumed run continues exactly where the checkpoint left off: model, optimizer, scheduler,
    GradScaler, every RNG and the data order are restored, so on the CPU it ends with the same numbers as a
    run that was never interrupted. Under ``torchrun`` each process trains on its shard; rank 0 writes files.

    The run folder is ``config.output_dir`` (``farnet train --resume PATH``: the folder of PATH, unless
    ``--output-dir`` is given). A fresh run refuses a folder that holds a run (last.pt, best.pt or
    selection.json: resume it, or use another folder); ``resume=True`` without a last.pt there starts from
    scratch and removes the earlier run's outputs. A resumed path of another folder continues into
    ``output_dir`` only if that folder holds no run; its best.pt is copied along. The model evaluated at the end
    is a best.pt this run wrote (or the one its checkpoint says it wrote), never another run's.
    """
    device = resolve_device(config.device)
    info = distributed.setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    amp_dtype = resolve_precision(config.precision, device)
    cpu = prepare_cpu(device)            # allocator + all cores (farnet_lite.engine.cpu); '' on a GPU
    if info.is_main:                     # the run log's first line, also with progress=False
        print(f"Training in {precision_name(amp_dtype)} on {device}{'; ' + cpu if cpu else ''}.")
    run_dir = Path(config.output_dir)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu" and config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        if info.is_main:
            acquire_run_lock(run_dir)    # a second run in the same folder stops here, in one sentence
            sweep_stale_temps(run_dir)   # temporary files of writes a killed run left behind
        with StopAfterEpoch() as stop:   # Ctrl-C: finish the epoch, write last.pt, then KeyboardInterrupt
            return _train(config, resume, device, info, amp_dtype, run_dir, stop)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
        distributed.cleanup(info)
        if info.is_main:
            release_run_lock(run_dir)    # only if this process holds it


def check_resume(saved: TrainConfig, config: TrainConfig, path) -> None:
    """Refuse, in one sentence naming the file, to resume a checkpoint of another dataset or model."""
    if saved.dataset != config.dataset:
        raise ValueError(f"Checkpoint {path} was trained on {saved.dataset!r}, not {config.dataset!r}; resume it "
                         f"without --dataset, or start afresh with a new --output-dir.")
    check_compatible(saved, config, path)


def _train(config, resume, device, info, amp_dtype, run_dir, stop: StopAfterEpoch) -> TrainResult:
    # Long on purpose (~100 lines): the whole epoch loop -- resume, validation, selection, checkpoints -- reads
    # top to bottom as notebook 06 teaches it; each step in it is already a helper call.
    path = _resume_path(config, resume)
    if path is None:
        fresh_run_folder(run_dir, resume, info)     # before anything is read or trained
    else:
        check_resume_folder(run_dir, path)
    # on the CPU: its RNG states must be CPU tensors; load_state_dict moves weights and Adam's state to the device
    state = load_checkpoint(path, map_location="cpu") if path is not None else None
    if state is not None:
        check_resume(state["config"], config, path)  # before any cache is built
    seed_everything(config.seed)
    train_cache = prepared_split(config, config.train_split, info)
    val_cache = prepared_split(config, config.val_split, info) if config.val_split else None
    if train_cache.landmarks.shape[1] != config.num_landmarks:
        raise ValueError(f"The {config.train_split} split of {config.dataset} has {train_cache.landmarks.shape[1]}"
                         f" landmarks, but the config expects {config.num_landmarks}; check --data-root.")
    if not torch.isfinite(torch.from_numpy(train_cache.landmarks)).any():
        raise ValueError(f"The {config.train_split} split of {config.dataset} has no landmarks to train on; "
                         f"choose a labelled --train-split.")

    # a resumed run takes its weights from the checkpoint: no ImageNet download for it
    base = build_model_from_config(config, pretrained=False if path else None)
    gemm = small_map_gemm_for(base, config.small_map_gemm, device)     # CPU: small maps as one matrix product
    if gemm and info.is_main:
        print(gemm)
    base = prepare_model(base, device, config.channels_last)
    batch, why = batch_for_gpu(config, device, amp_dtype, sum(p.numel() for p in base.parameters()),
                               train_cache.images.nbytes if config.data_on_device != "no" else 0)
    batch = min(distributed.gather_objects(batch, info))         # every rank takes the same number of steps
    asked, (config, lr_note) = config.batch_size, with_batch(config, batch)   # on a GPU that holds fewer images
    if why and info.is_main:
        print(f"batch {asked} → {batch}: {why}" + (f"; {lr_note}" if lr_note else "") + ".")
    optimizer = build_optimizer(config, base.parameters())
    source = BatchSource(train_cache, device, config.data_on_device, config.num_workers)
    shard_len = len(distributed.shard(torch.arange(source.size), info))
    scheduler = build_scheduler(config, optimizer, math.ceil(shard_len / config.batch_size))
    scaler = make_scaler(amp_dtype, device)
    data_generator = torch.Generator().manual_seed(config.seed)                    # the epochs' sample order
    aug_generator = torch.Generator(device=device).manual_seed(config.seed + 1 + info.rank)
    generators = {"data": data_generator, "augment": aug_generator}

    start_epoch, best_metric, best_epoch, history = 0, math.inf, -1, []
    best_ours = False                    # run_dir/best.pt was written by this run (or the resumed one)
    if state is not None:
        base.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] is not None and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"], state["history"]
        best_metric, best_epoch = state["best_metric"], state["best_epoch"]
        best_ours = resumed_best(run_dir, path, best_epoch, history, info)
        if best_epoch > 0 and not best_ours:
            if info.is_main:
                print(f"No best.pt of epoch {best_epoch} (the best epoch {path} records) in {run_dir} or beside "
                      f"{path}: only the epochs after {start_epoch} can be selected now, else the last is reported.")
            best_metric, best_epoch = math.inf, -1
        if state["rng"] is not None:
            restore_rng(state["rng"], generators, rank=info.rank)     # each rank its own augmentation state
        if info.is_main:
            print(f"Resuming {path} after epoch {start_epoch} of {config.epochs}.")

    net = torch.compile(base) if config.compile else base
    model = (torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                       else None) if info.enabled else net)
    augment = _augmenter(config) if config.augment else None
    mask_missing = bool(np.isnan(train_cache.landmarks).any())   # a dataset with missing landmarks (custom CSV)
    if info.is_main:
        config.save(run_dir / "config.json")
    key = selection_key(config.spec)
    timer = CheckpointTimer(config.checkpoint_minutes)
    stop.in_epochs = True

    epochs = tqdm(range(start_epoch + 1, config.epochs + 1), desc="training", dynamic_ncols=True,
                  initial=start_epoch, total=config.epochs, disable=not (config.progress and info.is_main))
    for epoch in epochs:
        started = time.perf_counter()
        order = distributed.shard(torch.randperm(source.size, generator=data_generator), info)
        lr = optimizer.param_groups[0]["lr"]
        train_loss = train_one_epoch(model, source, order, optimizer, scheduler, scaler, config, amp_dtype,
                                     aug_generator, epoch, info, augment, mask_missing)
        row = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        improved = False
        if val_cache is not None and (epoch % config.val_every == 0 or epoch == config.epochs):
            summary = evaluate_cache(net, val_cache, config, device, amp_dtype, info=info).summary
            row["val_mre"] = summary.get("mre", math.nan)
            if key != "mre":
                row[f"val_{key}"] = summary.get(key, math.nan)
            score = summary.get(key, math.nan)
            improved = math.isfinite(score) and score < best_metric
            if improved:
                best_metric, best_epoch = score, epoch
                best_ours = best_ours or config.save_checkpoints
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        epochs.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("train_loss", "val_mre")})
        # every rank's augmentation state for last.pt (a collective, so every epoch on every rank; a few KB)
        augment_states = distributed.gather_objects(aug_generator.get_state(), info) if config.save_checkpoints else []
        if info.is_main:
            if improved and config.save_checkpoints:
                save_checkpoint(run_dir / "best.pt", model=base, config=config, epoch=epoch,
                                best_metric=best_metric, best_epoch=best_epoch, history=history)
            if config.save_checkpoints and (timer.due(epoch, config.epochs) or stop.requested):
                save_checkpoint(run_dir / "last.pt", model=base, config=config, epoch=epoch, optimizer=optimizer,
                                scheduler=scheduler, scaler=scaler, best_metric=best_metric, best_epoch=best_epoch,
                                history=history, rng=capture_rng(generators, per_rank={"augment": augment_states}))
                timer.wrote()
            write_log(run_dir / "log.csv", history)
        if stop.requested:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}; resume from {run_dir / 'last.pt'}")
    epochs.close()
    stop.in_epochs = False

    distributed.barrier(info)
    best_path = run_dir / "best.pt"
    last_epoch = history[-1]["epoch"] if history else 0
    best_ours = best_ours and config.save_checkpoints and best_path.is_file()   # never another run's best.pt
    selected = best_ours and 0 < best_epoch != last_epoch
    last_metrics = {}
    if selected:  # the paper validates on Test1 (§4.1.1); the official code keeps the last epoch: report both
        last_metrics = _evaluate_splits(net, config, device, amp_dtype, info, val_cache, run_dir / "last_epoch")
    if best_ours:
        unwrap(base).load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
    metrics = _evaluate_splits(net, config, device, amp_dtype, info, val_cache, run_dir)
    if info.is_main:
        _write_selection(run_dir, config, best_epoch, last_epoch, metrics, last_metrics if selected else metrics,
                         precision_name(amp_dtype))
    return TrainResult(run_dir=run_dir, best_epoch=best_epoch, best_metric=best_metric, history=history,
                       metrics=metrics, last_metrics=last_metrics if selected else metrics)


def _evaluate_splits(net, config: TrainConfig, device, amp_dtype, info, val_cache, out_dir: Path) -> Dict[str, dict]:
    """Evaluate the model as it is on every ``config.eval_splits`` (files into ``out_dir``); labelled summaries."""
    metrics = {}
    for split in config.eval_splits:
        cache = val_cache if split == config.val_split and val_cache is not None else \
            prepared_split(config, split, info)
        result = evaluate_cache(net, cache, config, device, amp_dtype, info=info,
                                output_dir=out_dir if info.is_main else None, split=split)
        if result.summary:
            metrics[split] = result.summary
    return metrics


def _write_selection(run_dir: Path, config: TrainConfig, best_epoch: int, last_epoch: int,
                     metrics: Dict[str, dict], last_metrics: Dict[str, dict], precision: str) -> None:
    """``selection.json``: which epoch the run's files report, the last epoch's numbers beside them, and the
    precision the run trained in (``precision="auto"`` resolves per machine: bf16 or fp32 on a CPU).

    With a validation split the reported checkpoint is the one selected on it (ISBI: Test1, §4.1.1) and the last
    epoch's files are in ``last_epoch/`` (the official code keeps the last epoch); without one (hand, official
    preset) the last epoch is reported.
    """
    selected = bool(config.val_split) and best_epoch > 0
    write_json(run_dir / "selection.json", {
        "reported": f"epoch {best_epoch}, selected on {config.val_split}" if selected else
                    f"last epoch ({last_epoch}), no selection",
        "selected_on": config.val_split or None, "best_epoch": best_epoch if selected else None,
        "last_epoch": last_epoch, "last_epoch_files": "last_epoch/" if selected and best_epoch != last_epoch
        else ".", "metrics": metrics, "last_epoch_metrics": last_metrics,
        "labels_not_present": [s for s in config.eval_splits if s not in metrics],  # predictions only
        "precision": precision})
