"""Checkpoints that never lose a run: atomic writes, everything needed to resume exactly, safe loading.

A checkpoint is a plain dict saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``
(no pickled code runs when a file is opened): tensors, numbers, strings, lists and dicts only. The config is a
JSON string; random-number-generator states are tensors. ``last.pt`` is written every
``TrainConfig.checkpoint_minutes`` (and after the last epoch, and on Ctrl-C) and ``best.pt`` whenever the
validation metric improves; both go to a temporary file first and are renamed with ``os.replace``, so a run killed
at any moment leaves the previous checkpoint intact. A run killed between two writes of ``last.pt`` resumes from
the older one and trains the epochs after it again (on the CPU to the same numbers, rewriting ``best.pt`` too).
"""
from __future__ import annotations

import errno
import json
import random
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from farnet_lite.atomic import atomic_path
from farnet_lite.config import TrainConfig
from farnet_lite.systems import build_model_from_config

FORMAT_VERSION = 3
"""2: MSFA's down path is three ``DownBlock`` s (keys ``msfa.down.<i>.{down,lateral,conv}``; 1 had ``down_fuse``).
3: the config names MSFA's L5 fusion kernel (``msfa_l5_kernel``); format 2 always had the official 3x3, and is
read as such."""
READABLE_VERSIONS = (2, 3)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP and/or ``torch.compile`` wrappers (whose state-dict keys are prefixed)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def capture_rng(generators: Dict[str, torch.Generator], per_rank: Optional[Dict[str, list]] = None) -> dict:
    """Every random state a resumed run needs: python, numpy, torch (CPU and CUDA) and the named generators.

    ``per_rank``: ``{name: [state of rank 0, state of rank 1, ...]}`` for generators that differ from rank to rank
    under DDP (the augmentation's, gathered to rank 0 with :func:`farnet_lite.engine.distributed.gather_objects`), so
    that each rank resumes its own. Returned as tensors, lists and plain numbers so that
    ``torch.load(weights_only=True)`` accepts them.
    """
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [py_version, torch.tensor(py_state, dtype=torch.int64), py_gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss),
                  float(np_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: gen.get_state() for name, gen in generators.items()},
    }
    if per_rank:
        state["per_rank"] = {name: [_on_cpu(s) for s in states] for name, states in per_rank.items()}
    return state


def _on_cpu(value):
    """A tensor on the CPU (RNG states must be CPU ByteTensors; a checkpoint mapped to a GPU holds CUDA ones)."""
    return value.cpu() if isinstance(value, torch.Tensor) else value


def restore_rng(state: dict, generators: Dict[str, torch.Generator], rank: int = 0) -> None:
    """Inverse of :func:`capture_rng`, whatever device the state's tensors were loaded onto (each is moved to the
    CPU first; ``torch.Generator(device="cuda")`` takes a CPU ByteTensor too).

    A generator with per-rank states takes rank ``rank``'s; a rank beyond those saved (resumed on more processes)
    keeps the state it was seeded with. Checkpoints without per-rank states (written by earlier versions) restore the
    one saved state on every rank, as they always did.
    """
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(int(v) for v in _on_cpu(py_state).tolist()), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, _on_cpu(np_keys).numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(_on_cpu(state["torch"]))
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_on_cpu(s) for s in state["cuda"]])
    per_rank = state.get("per_rank") or {}
    for name, gen in generators.items():
        if name in per_rank:
            if rank < len(per_rank[name]):
                gen.set_state(_on_cpu(per_rank[name][rank]))
        else:
            gen.set_state(_on_cpu(state["generators"][name]))


def atomic_save(obj, path) -> Path:
    """``torch.save`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    torch reports a failed write (a full disk) as a cryptic RuntimeError: it becomes an OSError naming ``path``
    (the CLI prints it as one sentence), and the temporary file is removed.
    """
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:
            raise OSError(errno.EIO, "Could not write the checkpoint, most likely because the disk is full",
                          str(path)) from err
    return Path(path)


def save_checkpoint(path, *, model: nn.Module, config: TrainConfig, epoch: int,
                    optimizer: Optional[torch.optim.Optimizer] = None, scheduler=None, scaler=None,
                    best_metric: float = float("inf"), best_epoch: int = -1, history: Optional[list] = None,
                    rng: Optional[dict] = None) -> Path:
    """Write one checkpoint atomically. ``epoch`` is the number of epochs completed (1-based)."""
    state = {
        "format_version": FORMAT_VERSION,
        "config": config.to_json(),
        "epoch": int(epoch),
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "best_metric": float(best_metric),
        "best_epoch": int(best_epoch),
        "history": list(history or []),
        "rng": rng,
        "num_landmarks": int(config.num_landmarks),   # a custom dataset's K: the model loads without its CSV
    }
    return atomic_save(state, path)


def load_checkpoint(path, map_location="cpu", mmap: bool = False) -> dict:
    """Read a checkpoint with ``weights_only=True``; one clear sentence if it is missing or unreadable.

    The returned dict has ``"config"`` already parsed into a :class:`TrainConfig`. ``mmap``: map the file instead
    of reading it, so that tensors nobody touches (a ``last.pt``'s optimizer state, two thirds of it) are never
    read; copy what you keep (:func:`load_model` does).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist; check the path or train a model first "
                                f"with `farnet train`.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # truncated file, not a torch file, or pickled code refused by weights_only
        raise ValueError(f"Checkpoint {path} could not be read ({type(err).__name__}); it is corrupt or not a "
                         f"farnet-lite checkpoint: use another file or re-train.") from err
    if not isinstance(state, dict) or "config" not in state or "model" not in state:
        raise ValueError(f"Checkpoint {path} is not a farnet-lite checkpoint (no config/model inside); "
                         f"use a last.pt or best.pt written by `farnet train`.")
    if state.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"Checkpoint {path} has format {state.get('format_version')} but this farnet-lite reads "
                         f"formats {', '.join(map(str, READABLE_VERSIONS))} (its layer names changed); re-train, or load it with the "
                         f"farnet-lite version that wrote it.")
    values = json.loads(state["config"])
    if state["format_version"] == 2:
        values.setdefault("msfa_l5_kernel", 3)          # format 2 had no choice: the official 3x3
    state["config"] = TrainConfig.from_dict(values)
    return state


def check_compatible(saved: TrainConfig, wanted: TrainConfig, path) -> None:
    """Refuse, in one sentence naming the file, a checkpoint whose model cannot be loaded into ``wanted``'s."""
    for name in ("num_landmarks", "system", "backbone", "c0_kernel", "msfa_l5_kernel"):
        have, need = getattr(saved, name), getattr(wanted, name)
        if have != need:
            raise ValueError(f"Checkpoint {path} was trained with {name}={have!r} but this run needs "
                             f"{name}={need!r}; use a checkpoint of the same dataset and model, or a new "
                             f"--output-dir to start afresh.")


def load_model(path, device="cpu", expect: Optional[TrainConfig] = None) -> Tuple[nn.Module, TrainConfig]:
    """The trained model of a checkpoint, in ``eval()`` mode on ``device``, and its config. Its plain convolutions
    stay plain: the run that uses it applies the CPU's small-map GEMM if it wants
    (:func:`farnet_lite.engine.cpu.small_map_gemm_for`), as training does.

    ``expect``: refuse (one sentence naming the file) a checkpoint of another landmark count, system or backbone.
    """
    state = load_checkpoint(path, mmap=True)
    config = state["config"]
    if expect is not None:
        check_compatible(config, expect, path)
    with torch.device("meta"):      # no random initialisation of 61 M weights that the checkpoint overwrites
        model = build_model_from_config(config, pretrained=False, num_landmarks=state.get("num_landmarks"))
    model = model.to_empty(device="cpu")
    try:
        model.load_state_dict(state["model"])     # copies out of the mapped file
    except RuntimeError as err:
        raise ValueError(f"Checkpoint {path} does not match the model its config describes "
                         f"({config.system}/{config.backbone}); it was "
                         f"written by another version of farnet-lite: re-train.") from err
    return model.to(torch.device(device)).eval(), config
