"""One run = one :class:`TrainConfig`: the paper's settings per dataset, a GPU ``fast`` preset and a CPU ``demo``.

The same presets serve the CLI (``farnet train --dataset isbi2015 --preset paper``) and the notebooks
(``TrainConfig.preset("isbi2015", "paper")``). A config is saved as ``config.json`` in every run directory and,
as a JSON string, inside every checkpoint, so a run can always be re-created and resumed.

Presets (:meth:`TrainConfig.preset`; where each setting comes from, field by field: docs/FIDELITY.md):

* ``paper``: the setting that produced the published numbers (§4.2): input 800x640 (H x W) for the ISBI 2015
  cephalograms without augmentation, 512x512 for the hand and 1024x512 for the spine with augmentation;
  sigma = 10 (Eq. 1); EWC with alpha = 40 (Eq. 3); ImageNet weights (§3.1; real datasets); batch 1; 300 epochs,
  900 for the VGG backbones (§4.3). Where the text and the official code disagree the preset takes the defensible
  one: Adam at 1e-4 divided by 10 at 2/3 of the epochs (official ``MultiStepLR([200], 0.1)`` over 300) instead of
  the text's Adadelta at 1e-4, which barely moves the weights in 300 epochs (notebook 06 measures it);
  ``optimizer="adadelta"`` is there for anyone who wants to try it. fp32, as the published runs.
* ``official``: the official code's pipeline as a whole (ISBI only): 1-based target grid decoded 0-based, no /255,
  C0 as a 1x1 and MSFA's L5 fusion as a 3x3 convolution, BatchNorm in training mode when predicting, Adam +
  step, the last epoch kept (no Test1
  selection), Test1 only, ground truth truncated by the scorer, fp32. Each is also a field of its own.
* ``fast`` (GPU) and ``demo`` (CPU): speed settings, see :meth:`TrainConfig.preset`.

Precision: presets that do not pin fp32 (``fast``, a plain ``TrainConfig()``) take ``auto`` -- mixed precision on a
GPU, bf16 on a CPU that computes it natively, else fp32; the first line of a training run says which was used.

Validation follows the paper: ISBI selects the checkpoint on Test1 (never on Test2) and also reports the last
epoch; the hand keeps the last epoch (Payer et al.'s protocol: the reported fold never selects a checkpoint); the
spine selects on fold ``fold`` of a 5-fold split of its 431 train/val images and is reported on the 50 held out.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import numbers
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from farnet_lite.atomic import atomic_path
from farnet_lite.datasets import DATASETS, DatasetSpec

__all__ = ["DATASETS", "DatasetSpec", "GROUPS", "PRESETS", "TrainConfig", "config_fields"]

PRESETS = ("paper", "official", "fast", "demo", "quick", "scratch")
PAPER_EPOCHS = 300
"""Epochs of every paper run (§4.2) ..."""
VGG_EPOCHS = 900
"""... except the VGG backbones, which need 900 to converge (§4.3)."""
SCRATCH_EPOCHS = 24
"""Epochs of the ``scratch`` preset (results/ablations: 12 epochs at 160x128 reach Test1 1.61 mm, 4 reach 1.93)."""


def scratch_size(paper_size) -> Tuple[int, int]:
    """The ``scratch`` preset's input: a fifth of the paper's (H, W), each side a multiple of 32, at least 64
    (ISBI 800x640 -> 160x128, hand 512x512 -> 96x96, spine 1024x512 -> 192x96)."""
    return tuple(max(64, 32 * round(side / 5 / 32)) for side in paper_size)


def _flag(name: str) -> str:
    """How a message names a field: ``val_every (--val-every)``, for the notebooks and the command line alike."""
    return f"{name} (--{name.replace('_', '-')})"


@functools.lru_cache(maxsize=None)
def _type_hints() -> Dict[str, object]:
    return typing.get_type_hints(TrainConfig)


def _type_problem(hint, value) -> Optional[str]:
    """None when ``value`` fits the annotation ``hint``, else what the field needs (for the message)."""
    args = typing.get_args(hint)
    if type(None) in args:                                 # Optional[X]
        if value is None:
            return None
        rest = tuple(a for a in args if a is not type(None))
        hint = rest[0] if len(rest) == 1 else typing.Union[rest]
        args = typing.get_args(hint)
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, numbers.Integral) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return None if isinstance(value, numbers.Real) and not isinstance(value, bool) else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if set(args) == {bool, str}:
        return None if isinstance(value, (bool, str)) else "true, false or the path of a state dict"
    if typing.get_origin(hint) is tuple:
        items = typing.get_args(hint)
        if items[-1] is Ellipsis:                          # Tuple[str, ...]: split names
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            return None if ok else "a list of split names"
        ok = isinstance(value, (list, tuple)) and len(value) == len(items) and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
        return None if ok else f"{len(items)} integers (H, W)"
    return None


GROUPS = {
    "data": "data: what is read and how it is split",
    "model": "model: the architecture (Tables 1 and 2)",
    "targets": "targets, loss and decoding (Eqs. 1-3, §3.2)",
    "optimisation": "optimisation",
    "official": "the official code's quirks (docs/FIDELITY.md; --preset official sets them all)",
    "speed": "speed (same weights, same numbers up to float rounding)",
    "run": "the run: seed, folders, checkpoints",
}
"""The sections of :class:`TrainConfig` (``metadata["group"]``); ``farnet train --help`` shows one group each."""


def _option(group: str, default, help: str, choices: Optional[Tuple] = None):
    """A TrainConfig field of section ``group``; its ``metadata`` holds the help text and choices the CLI shows."""
    metadata = {"group": group, "help": help}
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as JSON with every run and checkpoint.

    Sizes are ``(H, W)``; both must be multiples of 32 (the backbone's stride). Fields whose default is None
    and that describe the data (splits, input size, augmentation) take the dataset's values from its
    :class:`~farnet_lite.datasets.DatasetSpec` at construction. Every value is checked at construction: a
    misspelt name fails here, with the choices, before any data is read.
    """

    # --- data: what is read and how it is split
    dataset: str = _option("data", "isbi2015", "dataset name", tuple(DATASETS))
    data_root: Optional[str] = _option("data", None, "folder of the dataset in its public layout (synthetic "
                                                     "datasets: written under --cache-dir when not given)")
    train_split: Optional[str] = _option("data", None, "split to train on")
    val_split: Optional[str] = _option("data", None, "split that selects best.pt (isbi2015: test1, as the paper; "
                                                     "never test2); empty: no selection, the last epoch is kept")
    eval_splits: Optional[Tuple[str, ...]] = _option("data", None, "splits evaluated with best.pt after training "
                                                                   "(predictions for all, metrics if labelled)")
    fold: int = _option("data", 1, "hand: Payer et al.'s cross-validation set 1-3; spine: fold 1-5 of the "
                                   "training set")
    annotation: str = _option("data", "mean", "isbi2015 ground truth: mean of the two doctors (paper), senior or "
                                              "junior", ("mean", "senior", "junior"))
    input_size: Optional[Tuple[int, int]] = _option("data", None, "network input H W (multiples of 32)")
    augment: Optional[bool] = _option("data", None, "random affine + intensity augmentation on the device")
    # --- model (farnet_lite.systems: the names are checked where the model is built)
    system: str = _option("model", "msfa_fr", "architecture of Table 2: unet, fpn, msfa_add, msfa, msfa_fr_naive "
                                              "or msfa_fr (FARNet: MSFA + FR)")
    backbone: str = _option("model", "densenet121", "ImageNet backbone of Table 1 (farnet_lite.backbones.BACKBONES)")
    pretrained: Union[bool, str] = _option("model", False, "ImageNet backbone weights: false, true (downloads "
                                                           "once) or the path of a state dict")
    c0_kernel: int = _option("model", 3, "kernel of C0, the convolution on the input image (§3.1.2: 3; official "
                                         "code: 1)", (1, 3))
    msfa_l5_kernel: int = _option("model", 1, "kernel of MSFA's L5 fusion in the down path (§3.1: 1, as at L3 and "
                                              "L4; official code: 3)", (1, 3))
    # --- targets, loss and decoding (one codec: farnet_lite.engine.runtime.run_codec)
    loss: str = _option("targets", "ewc", "heatmap loss: ewc (Eq. 3), l2 (Eq. 2) or aw (Adaptive Wing)",
                        ("ewc", "l2", "aw"))
    sigma: float = _option("targets", 10.0, "Gaussian sigma of the target heatmaps (Eq. 1), in pixels of the "
                                            "grid --sigma-scale names")
    sigma_scale: str = _option("targets", "output", "what sigma's pixels are: output (each output's grid at this "
                                                    "run's input size, as the official code) or paper (the "
                                                    "paper's grid, e.g. ISBI 800x640, scaled to this run's: the "
                                                    "paper's width in the image at any input size)",
                               ("output", "paper"))
    alpha: float = _option("targets", 40.0, "EWC base alpha (Eq. 3)")
    decode: str = _option("targets", "argmax", "heatmap decoding: argmax (the paper's NMS, §3.2) or subpixel",
                          ("argmax", "subpixel"))
    # --- optimisation
    optimizer: str = _option("optimisation", "adam", "adam (official code) or adadelta", ("adam", "adadelta"))
    lr: float = _option("optimisation", 1e-4, "learning rate")
    weight_decay: float = _option("optimisation", 0.0, "weight decay")
    lr_schedule: str = _option("optimisation", "step", "constant, step (x0.1 at 2/3 of the epochs, as the official "
                                                       "code) or cosine", ("constant", "step", "cosine"))
    warmup_epochs: float = _option("optimisation", 0.0, "linear learning-rate warm-up, in epochs (cosine schedule)")
    epochs: int = _option("optimisation", 300, "number of epochs")
    batch_size: int = _option("optimisation", 1, "images per step and per process (per GPU under torchrun)")
    # --- the official code's quirks (docs/FIDELITY.md; the official preset sets them all)
    official_scaling: bool = _option("official", False, "ImageNet mean/std applied to 0-255 pixels without /255, "
                                                        "as the official data.py")
    origin: float = _option("official", 0.0, "coordinate of the first pixel of the target grid; 1.0 reproduces "
                                             "the official code's offset")
    decode_origin: Optional[float] = _option("official", None, "grid origin the argmax is read with; unset: "
                                                               "--origin (decoding inverts encoding); 0 with "
                                                               "--origin 1 is the official code's bias")
    eval_batchnorm: bool = _option("official", True, "BatchNorm with its running statistics when predicting "
                                                     "(model.eval()); off: training-mode BatchNorm, one image per "
                                                     "batch, as the official test.py")
    truncate_truth: bool = _option("official", False, "score against np.trunc of the ground truth, as the "
                                                      "official scorer")
    # --- speed (the same weights and numbers up to float rounding)
    precision: str = _option("speed", "auto", "auto (GPU: bf16 from compute capability 8.0, else fp16; CPU: bf16 "
                                              "where native, else fp32), fp32, bf16 or fp16 (not on the CPU)",
                             ("auto", "fp32", "bf16", "fp16"))
    channels_last: bool = _option("speed", False, "channels_last memory format (faster convolutions on recent "
                                                  "GPUs)")
    small_map_gemm: bool = _option("speed", True, "CPU: convolutions on maps much smaller than their weights "
                                                  "(MSFA's deepest layers at small inputs) as unfold + one matrix "
                                                  "product; same weights, float-rounding differences "
                                                  "(farnet_lite.engine.cpu)")
    compile: bool = _option("speed", False, "torch.compile the model")
    data_on_device: str = _option("speed", "auto", "keep the uint8 training images in GPU memory: auto (if they "
                                                   "fit), yes or no", ("auto", "yes", "no"))
    num_workers: int = _option("speed", 2, "DataLoader workers when the images are not kept on the device")
    device: str = _option("speed", "auto", "auto, cpu, cuda or cuda:N")
    # --- the run: seed, folders, checkpoints
    seed: int = _option("run", 0, "random seed (weights, data order, augmentation)")
    deterministic: bool = _option("run", True, "deterministic algorithms on the CPU (bit-identical reruns)")
    output_dir: str = _option("run", "runs/run", "run folder: config.json, log.csv, last.pt, best.pt, predictions "
                                                 "and metrics")
    cache_dir: Optional[str] = _option("run", None, "synthetic data and prepared caches; unset: $FARNET_CACHE, "
                                                    "else ~/.cache/farnet_lite")
    val_every: int = _option("run", 1, "validate (and maybe save best.pt) every N epochs")
    save_checkpoints: bool = _option("run", True, "write last.pt and best.pt (off: smoke tests only; no resume, "
                                                  "the last epoch is evaluated)")
    checkpoint_minutes: float = _option("run", 10.0, "write last.pt (what --resume continues from) once this many "
                                                     "minutes have passed since its last write, and after the last "
                                                     "epoch or a Ctrl-C; 0: every epoch. best.pt is written "
                                                     "whenever the selection improves")
    progress: bool = _option("run", True, "tqdm progress bars")

    def __post_init__(self):
        for name in ("data_root", "cache_dir", "output_dir", "pretrained"):   # a Path given for a path: its text
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        self._check_types()
        self._check_choices()
        spec = self.spec
        # The dataset's own values for the fields left unset (None).
        self.train_split = spec.train_split if self.train_split is None else self.train_split
        self.val_split = spec.val_split if self.val_split is None else self.val_split
        self.eval_splits = tuple(spec.eval_splits if self.eval_splits is None else self.eval_splits)
        self.input_size = tuple(int(v) for v in (spec.input_size if self.input_size is None else self.input_size))
        self.augment = spec.augment if self.augment is None else bool(self.augment)
        self._check_values(spec)

    def _check_choices(self) -> None:
        """Every field with choices (dataset, system, backbone, loss, ...) must hold one of them."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices is not None and getattr(self, f.name) not in choices:
                raise ValueError(f"Unknown {f.name} {getattr(self, f.name)!r}; choose one of "
                                 f"{', '.join(map(str, choices))}.")

    def _check_values(self, spec: DatasetSpec) -> None:
        """Splits and fold of the dataset, sizes, counts."""
        for split in (self.train_split, *self.eval_splits) + ((self.val_split,) if self.val_split else ()):
            if split not in spec.splits:
                raise ValueError(f"{spec.name} has no split {split!r}; its splits are {', '.join(spec.splits)}.")
        if not 1 <= self.fold <= spec.folds:
            raise ValueError(f"fold must be between 1 and {spec.folds} for {spec.name}, got {self.fold}.")
        if len(self.input_size) != 2 or any(v <= 0 or v % 32 for v in self.input_size):
            raise ValueError(f"{_flag('input_size')} must be (H, W) with positive multiples of 32, got "
                             f"{self.input_size}.")
        for name, least in (("epochs", 1), ("batch_size", 1), ("val_every", 1), ("num_workers", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{_flag(name)} must be at least {least}, got {getattr(self, name)}.")
        if not self.checkpoint_minutes >= 0:
            raise ValueError(f"checkpoint_minutes must be 0 (every epoch) or more (--checkpoint-minutes), got "
                             f"{self.checkpoint_minutes}.")
        for name, what in (("sigma", "the Gaussian's width in pixels, Eq. 1"), ("lr", "the learning rate"),
                           ("alpha", "the EWC base of Eq. 3; 1 is the plain L2 loss")):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{_flag(name)} must be a number above 0 ({what}), got {getattr(self, name)}.")
        for name in ("weight_decay", "warmup_epochs"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{_flag(name)} must be 0 or more, got {getattr(self, name)}.")
        if not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"{_flag('seed')} must be between 0 and 2**32 - 1 (numpy's range), got {self.seed}.")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"{_flag('device')} must be auto, cpu, cuda or cuda:N (N: the GPU's index), got "
                             f"{self.device!r}.")

    def _check_types(self) -> None:
        """Every field holds a value of its annotated type (a --config JSON can hold ``"epochs": "3"``); ints
        pass for floats, nothing passes for a bool but a bool."""
        for name, hint in _type_hints().items():
            value = getattr(self, name)
            kind = _type_problem(hint, value)
            if kind is not None:
                raise ValueError(f"{_flag(name)} must be {kind}, got {value!r} ({type(value).__name__}).")

    @property
    def spec(self) -> DatasetSpec:
        """The :class:`~farnet_lite.datasets.DatasetSpec` of ``self.dataset``."""
        return DATASETS[self.dataset]

    @property
    def target_sigma(self) -> float:
        """The Gaussian sigma the targets are drawn (and sub-pixel peaks decoded) with, in pixels of each output's
        grid at ``input_size``: ``sigma``, or with ``sigma_scale="paper"`` ``sigma`` scaled from the paper's input
        size to this run's (ISBI at 320x256: 10 -> 4 px)."""
        return self.spec.grid_sigma(self.sigma, self.sigma_scale, self.input_size)

    @property
    def num_landmarks(self) -> int:
        return self.spec.landmarks_in(self.data_root)

    @classmethod
    def preset(cls, dataset: str, setting: str = "paper", **overrides) -> "TrainConfig":
        """The config for ``dataset`` under ``setting``, then ``overrides`` (any field) on top.

        * ``paper``: the setting behind the published numbers (module docstring, docs/FIDELITY.md); ImageNet
          weights on the real datasets (the synthetic stand-ins stay offline: random init).
        * ``official``: the official code's pipeline (isbi2015 and its stand-in only; module docstring), fp32.
        * ``fast``: for a GPU -- batch 8, mixed precision, channels_last, cosine LR with 5 warm-up epochs and the
          learning rate scaled by sqrt(batch) (the usual rule for Adam), the same 300 epochs.
        * ``demo``: the CPU demo of ``python -m farnet_lite.demo`` -- 64x64 input, sigma 1.5 px, batch 8, Adam
          1e-3, cosine LR, 6 epochs, random initialisation, fp32 (the same numbers on every machine).
        * ``quick``: the course's quick mode (``farnet_lite.reproduction.quickrun``, notebooks 06-12): the
          random initialisation at 96x64, sigma 2 px, batch 2, Adam 4e-3 with warm-up and cosine decay, one epoch
          (75 steps on ISBI), sub-pixel decoding, fp32, no checkpoint selection (the
          last epoch is scored, so Test1 stays held out).
        * ``scratch``: FARNet-DenseNet-121 from random initialisation on any device, each choice measured on ISBI
          Test1 by paired ablations (results/ablations, docs/FIDELITY.md): the paper's target width in the image
          (sigma 10 of the 800x640 grid, ``sigma_scale="paper"``), a fifth of the paper's input size (ISBI 160x128),
          batch 2, Adam 4e-3 with 0.3 warm-up epochs and cosine decay over 24 epochs, sub-pixel decoding, fp32,
          the dataset's own selection split and augmentation.

        The dataset's splits, input size and augmentation come from its spec (unless overridden).
        """
        values = dict(dataset=dataset, output_dir=f"runs/{dataset}-{setting}")
        backbone = overrides.get("backbone", config_fields()["backbone"].default)
        if setting in ("paper", "official", "fast"):
            values.update(epochs=VGG_EPOCHS if str(backbone).startswith("vgg") else PAPER_EPOCHS,
                          pretrained=dataset in DATASETS and not DATASETS[dataset].synthetic)
        if setting == "paper":
            values.update(precision="fp32")
        elif setting == "official":
            if dataset in DATASETS and DATASETS[dataset].layout != "isbi2015":
                raise ValueError(f"the official code handles ISBI 2015 only; use --preset paper for {dataset}.")
            values.update(origin=1.0, decode_origin=0.0, official_scaling=True, c0_kernel=1, msfa_l5_kernel=3,
                          eval_batchnorm=False,
                          optimizer="adam", lr_schedule="step", val_split="", eval_splits=("test1",),
                          truncate_truth=True, precision="fp32")
        elif setting == "fast":
            values.update(batch_size=8, precision="auto", channels_last=True, lr_schedule="cosine",
                          warmup_epochs=5.0, lr=round(1e-4 * math.sqrt(8), 6))
        elif setting == "demo":
            values.update(input_size=(64, 64), sigma=1.5, batch_size=8, lr=1e-3, lr_schedule="cosine",
                          warmup_epochs=1.0, epochs=6, num_workers=0, precision="fp32")
        elif setting == "quick":
            values.update(input_size=(96, 64), sigma=2.0, batch_size=2, lr=4e-3, lr_schedule="cosine",
                          warmup_epochs=0.3, epochs=1, num_workers=0, precision="fp32", decode="subpixel",
                          val_split="", eval_splits=("test1",) if dataset in ("isbi2015", "synthetic-isbi") else None)
        elif setting == "scratch":
            values.update(input_size=scratch_size(DATASETS[dataset].input_size) if dataset in DATASETS else None,
                          sigma=10.0, sigma_scale="paper", batch_size=2, lr=4e-3, lr_schedule="cosine",
                          warmup_epochs=0.3, epochs=SCRATCH_EPOCHS, num_workers=0, precision="fp32",
                          decode="subpixel", pretrained=False)
        else:
            raise ValueError(f"Unknown preset {setting!r}; choose one of {', '.join(PRESETS)}.")
        values.update(overrides)
        return cls(**values)

    # --- serialisation (plain JSON: checkpoints stay loadable with torch.load(weights_only=True))
    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["input_size"] = list(self.input_size)
        values["eval_splits"] = list(self.eval_splits)
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Rebuild a config; unknown keys (from a newer version) are ignored, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        return cls.from_dict(json.loads(text))

    def save(self, path) -> Path:
        """Write ``config.json`` atomically (farnet_lite.atomic)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path, strict: bool = False) -> "TrainConfig":
        """Read a ``config.json``; a mistake in it (not JSON, a wrong value) is one sentence naming the file.

        ``strict`` (``farnet train --config``, a file a person edits): a key that is no field is refused, with
        the closest field name; otherwise it is ignored (a config.json that a newer version wrote).
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Config file {path} is not valid JSON ({err.msg} at line {err.lineno}, column "
                             f"{err.colno}); fix it, or write a new one with farnet train --print-config.") from None
        if not isinstance(values, dict):
            raise ValueError(f"Config file {path} must hold one JSON object of field names and values, not a "
                             f"{type(values).__name__}; write one with farnet train --print-config.")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in values if key not in known]
        if strict and unknown:
            named = ", ".join(repr(key) + "".join(f" (did you mean {m!r}?)" for m in
                                                   difflib.get_close_matches(str(key), known, n=1))
                              for key in unknown)
            plural = len(unknown) > 1
            raise ValueError(f"Config file {path} has no option{'s' if plural else ''} {named}; fix or remove "
                             f"{'them' if plural else 'it'} (every option: farnet train --help).")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as err:
            raise ValueError(f"Config file {path}: {err}") from None


def config_fields() -> Dict[str, dataclasses.Field]:
    """The fields of :class:`TrainConfig` by name (the CLI builds one option per field from their metadata)."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}
