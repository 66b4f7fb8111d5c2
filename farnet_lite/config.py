"""One run = one :class:`TrainConfig`: the paper's settings per dataset, a GPU ``fast`` preset and a CPU ``demo``.

Introduced in notebook 06_training_on_gpu.

The same presets serve the CLI (``farnet train --dataset isbi2015 --preset paper``) and the notebooks
(``TrainConfig.preset("isbi2015", "paper")``). A config is saved as ``config.json`` in every run directory and,
as a JSON string, inside every checkpoint, so a run can always be re-created and resumed.

Paper settings (§4.2): input 800x640 (H x W) for the ISBI 2015 cephalograms without augmentation, 512x512
for the hand and 1024x512 for the spine radiographs with augmentation; Gaussian sigma = 10 (Eq. 1); EWC with
alpha = 40 (Eq. 3); Adam, learning rate 1e-4 (Adadelta selectable); 300 epochs; batch size 1. The official code
divides the learning rate by 10 after epoch 200 (``MultiStepLR([200], 0.1)``): ``lr_schedule="step"``.

Validation follows the paper: ISBI selects the checkpoint on Test1 (never on Test2), the hand on Payer et al.'s
cross-validation fold (set1/2/3: ``fold``), the spine on fold ``fold`` of a 5-fold split of its training set.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union


@dataclass(frozen=True)
class DatasetSpec:
    """What the engine needs to know about one dataset (and its synthetic stand-in).

    Introduced in notebook 06_training_on_gpu.

    ``layout`` names the reader (``isbi2015`` | ``hand`` | ``spine``); ``metric`` is how errors are scored:
    ``spacing`` (mm = px x ``spacing_mm``), ``wrist`` (mm via the 50 mm wrist width) or ``fraction`` (spine MSE
    as a fraction of the image size, plus Pearson). ``radii`` are the SDR radii in mm. Split names are those of
    :func:`farnet_lite.splits.open_split`.
    """

    name: str
    layout: str
    num_landmarks: int
    input_size: Tuple[int, int]
    augment: bool
    metric: str
    spacing_mm: Optional[float]
    radii: Tuple[float, ...]
    train_split: str
    val_split: str
    eval_splits: Tuple[str, ...]
    synthetic: bool = False


_ISBI = dict(layout="isbi2015", num_landmarks=19, augment=False, metric="spacing", spacing_mm=0.1,
             radii=(2.0, 2.5, 3.0, 4.0), train_split="train", val_split="test1", eval_splits=("test1", "test2"))
_HAND = dict(layout="hand", num_landmarks=37, augment=True, metric="wrist", spacing_mm=None,
             radii=(2.0, 4.0, 10.0), train_split="train", val_split="test", eval_splits=("test",))
_SPINE = dict(layout="spine", num_landmarks=68, augment=True, metric="fraction", spacing_mm=None,
              radii=(), train_split="cv-train", val_split="cv-val", eval_splits=("cv-val", "test"))

DATASETS: Dict[str, DatasetSpec] = {
    "isbi2015": DatasetSpec(name="isbi2015", input_size=(800, 640), **_ISBI),
    "hand": DatasetSpec(name="hand", input_size=(512, 512), **_HAND),
    "spine": DatasetSpec(name="spine", input_size=(1024, 512), **_SPINE),
    # Synthetic radiographs in exactly the public layouts (farnet_lite.data.synthetic), written on demand.
    # Same readers and metrics; a smaller input so that CPU runs finish.
    "synthetic-isbi": DatasetSpec(name="synthetic-isbi", input_size=(160, 128), synthetic=True, **_ISBI),
    "synthetic-hand": DatasetSpec(name="synthetic-hand", input_size=(128, 128), synthetic=True, **_HAND),
    "synthetic-spine": DatasetSpec(name="synthetic-spine", input_size=(256, 128), synthetic=True, **_SPINE),
}
"""The datasets the engine knows, by name. Introduced in notebook 06_training_on_gpu."""

PRESETS = ("paper", "fast", "demo")


@dataclass
class TrainConfig:
    """Everything that defines a run. Saved as JSON with every run and checkpoint.

    Introduced in notebook 06_training_on_gpu.

    Sizes are ``(H, W)``; both must be multiples of 32 (the backbone's stride).
    """

    # --- data
    dataset: str = "isbi2015"                 # a key of DATASETS
    data_root: Optional[str] = None           # None: synthetic data under cache_dir; required for real data
    train_split: str = "train"
    val_split: str = "test1"                  # the split the best checkpoint is selected on
    eval_splits: Tuple[str, ...] = ("test1", "test2")  # evaluated with the best checkpoint after training
    fold: int = 1                             # hand: Payer's set1/2/3; spine: fold k of the 5-fold split
    annotation: str = "mean"                  # isbi2015: "mean" of the two doctors (paper), "senior", "junior"
    input_size: Tuple[int, int] = (800, 640)
    # --- model (farnet_lite.model.build_model)
    system: str = "msfa_fr"                   # Table 2 name; "msfa_fr" = FARNet (MSFA + FR)
    backbone: str = "densenet121"
    pretrained: Union[bool, str] = False      # ImageNet weights: True (downloads once) or a state-dict path
    # --- loss (farnet_lite.losses)
    loss: str = "ewc"                         # "ewc" (Eq. 3) | "l2" (Eq. 2) | "aw" (Adaptive Wing)
    sigma: float = 10.0                       # Eq. 1, pixels of each output's own grid
    alpha: float = 40.0                       # Eq. 3
    origin: float = 0.0                       # heatmap grid origin; 1.0 reproduces the official code's offset
    decode: str = "argmax"                    # "argmax" (paper) | "subpixel"
    # --- optimisation
    optimizer: str = "adam"                   # "adam" | "adadelta"
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "step"                 # "constant" | "step" (x0.1 at 2/3 of the epochs) | "cosine"
    warmup_epochs: float = 0.0                # linear warm-up (cosine schedule)
    epochs: int = 300
    batch_size: int = 1                       # per process (per GPU under torchrun)
    augment: bool = False                     # random affine + intensity, on the device, batched
    # --- speed
    precision: str = "fp32"                   # "auto" | "fp32" | "bf16" | "fp16" (fp32 is forced on CPU)
    channels_last: bool = False
    compile: bool = False                     # torch.compile the model
    data_on_device: str = "auto"              # "auto" | "yes" | "no": keep the uint8 cache in GPU memory
    num_workers: int = 2                      # DataLoader workers when the cache is not on the device
    device: str = "auto"                      # "auto" | "cpu" | "cuda" | "cuda:1" ...
    # --- bookkeeping
    seed: int = 0
    deterministic: bool = True                # torch.use_deterministic_algorithms on CPU
    output_dir: str = "runs/run"
    cache_dir: Optional[str] = None           # synthetic data and prepared caches; None: ~/.cache/farnet_lite
    val_every: int = 1                        # validate (and maybe save best.pt) every n epochs
    save_checkpoints: bool = True             # False: no last.pt / best.pt (smoke tests; no resume, last epoch scored)
    progress: bool = True                     # tqdm progress bars

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.eval_splits = tuple(self.eval_splits)
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}.")
        if len(self.input_size) != 2 or any(v <= 0 or v % 32 for v in self.input_size):
            raise ValueError(f"input_size must be (H, W) with multiples of 32, got {self.input_size}.")
        checks = dict(loss=("ewc", "l2", "aw"), optimizer=("adam", "adadelta"),
                      lr_schedule=("constant", "step", "cosine"), precision=("auto", "fp32", "bf16", "fp16"),
                      decode=("argmax", "subpixel"), data_on_device=("auto", "yes", "no"))
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1.")

    @property
    def spec(self) -> DatasetSpec:
        """The :class:`DatasetSpec` of ``self.dataset``."""
        return DATASETS[self.dataset]

    @property
    def num_landmarks(self) -> int:
        return self.spec.num_landmarks

    @classmethod
    def preset(cls, dataset: str, setting: str = "paper", **overrides) -> "TrainConfig":
        """The config for ``dataset`` under ``setting``, then ``overrides`` (any field) on top.

        * ``paper``: the paper's settings (module docstring): Adam 1e-4, batch 1, 300 epochs, fp32, step LR.
        * ``fast``: for a GPU -- batch 8, mixed precision (bf16 where supported, else fp16 + GradScaler),
          channels_last, cosine LR with 5 warm-up epochs and the learning rate scaled by sqrt(batch)
          (1e-4 x sqrt(8) ~ 2.8e-4, the usual rule for Adam), same 300 epochs (so ~8x fewer steps).
        * ``demo``: the CPU demo of ``python -m farnet_lite.demo`` -- 64x64 input, sigma 1.5 px, batch 8,
          Adam 1e-3, cosine LR, 6 epochs, FARNet on DenseNet-121 from random initialisation.

        Introduced in notebook 06_training_on_gpu.
        """
        if dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}.")
        spec = DATASETS[dataset]
        values = dict(dataset=dataset, train_split=spec.train_split, val_split=spec.val_split,
                      eval_splits=spec.eval_splits, input_size=spec.input_size, augment=spec.augment,
                      output_dir=f"runs/{dataset}-{setting}")
        if setting == "paper":
            pass
        elif setting == "fast":
            values.update(batch_size=8, precision="auto", channels_last=True, lr_schedule="cosine",
                          warmup_epochs=5.0, lr=round(1e-4 * math.sqrt(8), 6))
        elif setting == "demo":
            values.update(input_size=(64, 64), sigma=1.5, batch_size=8, lr=1e-3, lr_schedule="cosine",
                          warmup_epochs=1.0, epochs=6, num_workers=0)
        else:
            raise ValueError(f"Unknown preset {setting!r}; choose one of {PRESETS}.")
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
        """Write ``config.json`` atomically (temp file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json() + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "TrainConfig":
        return cls.from_json(Path(path).read_text())


def config_fields() -> Dict[str, dataclasses.Field]:
    """The fields of :class:`TrainConfig` by name (the CLI builds one option per field)."""
    return {f.name: f for f in dataclasses.fields(TrainConfig)}

