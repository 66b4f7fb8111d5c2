"""One run = one :class:`TrainConfig`: the paper's settings per dataset, a GPU ``fast`` preset and a CPU ``demo``.

Introduced in notebook 06_training_on_gpu.

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
  ``optimizer="adadelta"`` is there for anyone who wants to try it. fp32, as the published runs (on a GPU): the
  field's default ``auto`` would use bf16 on a GPU and on a bf16-native CPU; ``--precision auto`` is the fast CPU
  path for anyone who wants it (issue 16 measures what bf16 changes).
* ``official``: the official code's pipeline as a whole (ISBI only): 1-based target grid decoded 0-based, no /255,
  C0 as a 1x1 convolution, BatchNorm in training mode when predicting, Adam + step, the last epoch kept (no Test1
  selection), Test1 only, ground truth truncated by the scorer, fp32. Each is also a field of its own.
* ``fast`` (GPU) and ``demo`` (CPU): speed settings, see :meth:`TrainConfig.preset`.

Precision: a plain ``TrainConfig()`` (and every preset that does not set it: ``fast``) takes ``auto`` -- mixed
precision on a GPU (bf16 from compute capability 8.0, else fp16), bf16 autocast on a CPU that computes bf16
natively (AVX-512 BF16 / AMX, Arm ``bf16``), fp32 on any other CPU; the first line of a training run says which was used. ``paper``,
``official``, ``demo`` and ``quick`` pin fp32, so that their numbers are the same on every machine.

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
from farnet_lite.backbones import BACKBONES
from farnet_lite.datasets import DATASETS, DatasetSpec
from farnet_lite.systems import SYSTEMS

__all__ = ["DATASETS", "DatasetSpec", "PRESETS", "TrainConfig", "config_fields"]

PRESETS = ("paper", "official", "fast", "demo", "quick")
PAPER_EPOCHS = 300
"""Epochs of every paper run (§4.2) ..."""
VGG_EPOCHS = 900
"""... except the VGG backbones, which need 900 to converge (§4.3)."""



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


def _option(default, help: str, choices: Optional[Tuple] = None):
    """A TrainConfig field whose ``metadata`` carries its help text and choices (the CLI is built from them)."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": tuple(choices)}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as JSON with every run and checkpoint.

    Introduced in notebook 06_training_on_gpu.

    Sizes are ``(H, W)``; both must be multiples of 32 (the backbone's stride). Fields whose default is None
    and that describe the data (splits, input size, augmentation) take the dataset's values from its
    :class:`~farnet_lite.datasets.DatasetSpec` at construction. Every value is checked at construction: a
    misspelt name fails here, with the choices, before any data is read.
    """

    # --- data
    dataset: str = _option("isbi2015", "dataset name", tuple(DATASETS))
    data_root: Optional[str] = _option(None, "folder of the dataset in its public layout (synthetic datasets: "
                                             "written under --cache-dir when not given)")
    train_split: Optional[str] = _option(None, "split to train on")
    val_split: Optional[str] = _option(None, "split that selects best.pt (isbi2015: test1, as the paper; never "
                                             "test2); empty: no selection, the last epoch is kept")
    eval_splits: Optional[Tuple[str, ...]] = _option(None, "splits evaluated with best.pt after training "
                                                           "(predictions for all, metrics if labelled)")
    fold: int = _option(1, "hand: Payer et al.'s cross-validation set 1-3; spine: fold 1-5 of the training set")
    annotation: str = _option("mean", "isbi2015 ground truth: mean of the two doctors (paper), senior or junior",
                              ("mean", "senior", "junior"))
    input_size: Optional[Tuple[int, int]] = _option(None, "network input H W (multiples of 32)")
    # --- model (the Table 2 factory)
    system: str = _option("msfa_fr", "architecture of Table 2 (msfa_fr = FARNet: MSFA + FR)", SYSTEMS)
    backbone: str = _option("densenet121", "ImageNet backbone of Table 1", BACKBONES)
    pretrained: Union[bool, str] = _option(False, "ImageNet backbone weights: false, true (downloads once) or the "
                                                  "path of a state dict")
    c0_kernel: int = _option(3, "kernel of C0, the convolution on the input image (§3.1.2: 3; official code: 1)",
                             (1, 3))
    official_scaling: bool = _option(False, "ImageNet mean/std applied to 0-255 pixels without /255, as the "
                                            "official data.py")
    # --- loss (farnet_lite.losses)
    loss: str = _option("ewc", "heatmap loss: ewc (Eq. 3), l2 (Eq. 2) or aw (Adaptive Wing)", ("ewc", "l2", "aw"))
    sigma: float = _option(10.0, "Gaussian sigma of the target heatmaps, in pixels of each output's grid (Eq. 1)")
    sigma_scale: str = _option("output", "what sigma's pixels are: output (each output's grid at this run's input "
                                         "size, as the official code) or paper (the paper's grid, e.g. ISBI "
                                         "800x640, scaled to this run's: the paper's width in the image at any "
                                         "input size)", ("output", "paper"))
    alpha: float = _option(40.0, "EWC base alpha (Eq. 3)")
    origin: float = _option(0.0, "coordinate of the first pixel of the target grid; 1.0 reproduces the official "
                                 "code's offset")
    decode_origin: Optional[float] = _option(None, "grid origin the argmax is read with; unset: --origin (decoding "
                                                   "inverts encoding); 0 with --origin 1 is the official code's bias")
    decode: str = _option("argmax", "heatmap decoding: argmax (the paper's NMS, §3.2) or subpixel",
                          ("argmax", "subpixel"))
    # --- optimisation
    optimizer: str = _option("adam", "adam (official code) or adadelta", ("adam", "adadelta"))
    lr: float = _option(1e-4, "learning rate")
    weight_decay: float = _option(0.0, "weight decay")
    lr_schedule: str = _option("step", "constant, step (x0.1 at 2/3 of the epochs, as the official code) or cosine",
                               ("constant", "step", "cosine"))
    warmup_epochs: float = _option(0.0, "linear learning-rate warm-up, in epochs (cosine schedule)")
    epochs: int = _option(300, "number of epochs")
    batch_size: int = _option(1, "images per step and per process (per GPU under torchrun)")
    augment: Optional[bool] = _option(None, "random affine + intensity augmentation on the device")
    # --- evaluation
    eval_batchnorm: bool = _option(True, "BatchNorm with its running statistics when predicting (model.eval()); "
                                         "off: training-mode BatchNorm, one image per batch, as the official test.py")
    truncate_truth: bool = _option(False, "score against np.trunc of the ground truth, as the official scorer")
    # --- speed
    precision: str = _option("auto", "auto (GPU: bf16, else fp16; CPU: bf16 where native, else fp32), fp32, "
                                     "bf16 or fp16 (not on the CPU); paper, official, demo and quick presets: fp32",
                             ("auto", "fp32", "bf16", "fp16"))
    channels_last: bool = _option(False, "channels_last memory format (faster convolutions on recent GPUs)")
    small_map_gemm: bool = _option(True, "CPU: convolutions on maps much smaller than their weights (MSFA's deepest "
                                         "layers at small inputs) as unfold + one matrix product, ~1.4x faster "
                                         "64x64 steps; same weights, float-rounding differences (farnet_lite.cpu)")
    compile: bool = _option(False, "torch.compile the model")
    data_on_device: str = _option("auto", "keep the uint8 training images in GPU memory: auto (if they fit), "
                                          "yes or no", ("auto", "yes", "no"))
    num_workers: int = _option(2, "DataLoader workers when the images are not kept on the device")
    device: str = _option("auto", "auto, cpu, cuda or cuda:N")
    # --- bookkeeping
    seed: int = _option(0, "random seed (weights, data order, augmentation)")
    deterministic: bool = _option(True, "deterministic algorithms on the CPU (bit-identical reruns)")
    output_dir: str = _option("runs/run", "run folder: config.json, log.csv, last.pt, best.pt, predictions and "
                                          "metrics")
    cache_dir: Optional[str] = _option(None, "synthetic data and prepared caches; unset: $FARNET_CACHE, else "
                                             "~/.cache/farnet_lite")
    val_every: int = _option(1, "validate (and maybe save best.pt) every N epochs")
    save_checkpoints: bool = _option(True, "write last.pt and best.pt (off: smoke tests only; no "
                                           "resume, the last epoch is evaluated)")
    checkpoint_minutes: float = _option(10.0, "write last.pt (what --resume continues from) once this many minutes "
                                              "have passed since its last write, and after the last epoch or a "
                                              "Ctrl-C; 0: every epoch. best.pt is written whenever the selection "
                                              "improves")
    progress: bool = _option(True, "tqdm progress bars")

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

        * ``paper``: the setting behind the published numbers (module docstring, docs/FIDELITY.md): Adam 1e-4
          with x0.1 at 2/3 of the epochs, batch 1, fp32, 300 epochs (VGG: 900), ImageNet weights on the real
          datasets (the synthetic stand-ins stay offline: random init).
        * ``official``: the official code's pipeline (isbi2015 and its stand-in only; module docstring), fp32.
        * ``fast``: for a GPU -- batch 8, mixed precision (bf16 from compute capability 8.0, else fp16 + GradScaler),
          channels_last, cosine LR with 5 warm-up epochs and the learning rate scaled by sqrt(batch)
          (1e-4 x sqrt(8) ~ 2.8e-4, the usual rule for Adam), same 300 epochs (so ~8x fewer steps).
        * ``demo``: the CPU demo of ``python -m farnet_lite.demo`` -- 64x64 input, sigma 1.5 px, batch 8,
          Adam 1e-3, cosine LR, 6 epochs, FARNet on DenseNet-121 from random initialisation, fp32 (at 64x64
          bf16 is no faster on the CPU, and fp32 gives every machine the same numbers).
        * ``quick``: the course's quick mode (``farnet_lite.quickrun``, notebooks 06-12): FARNet on DenseNet-121
          from random initialisation, 96x64 input (H x W, taller than wide as a cephalogram: one input pixel spans
          2.5 mm vertically and 3.0 mm horizontally of a 2400x1935 image), sigma 2 px, batch 2, Adam 4e-3 with 0.3
          warm-up epochs and cosine decay, 1 epoch (75 steps on ISBI's 150 images), fp32, sub-pixel decoding, no
          checkpoint selection (the last epoch is scored, so Test1 stays held out). Chosen on ISBI Test1 among a
          few CPU trials, so Test1 flatters these settings a little: Test1 MRE 3.11 / 3.38 / 3.13 mm with seeds
          0 / 1 / 2 against the mean shape's 9.63 mm. The 64x64 preset before it scored 3.64 mm (Adam 2e-3) and
          3.44 mm (4e-3); 2 epochs at 64x64 reached 2.88 mm in twice the time. One epoch took 38-46 s on 2 cores
          with the small-map GEMM of farnet_lite.cpu (steps matter more than images per step here: 75 steps of 2
          images reached the Test1 MRE of 76 steps of 4).

        The dataset's splits, input size and augmentation come from its spec (unless overridden).
        Introduced in notebook 06_training_on_gpu.
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
            values.update(origin=1.0, decode_origin=0.0, official_scaling=True, c0_kernel=1, eval_batchnorm=False,
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
