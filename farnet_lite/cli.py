"""The ``farnet`` command: ``farnet train | evaluate | predict | benchmark | reproduce``.

Introduced in notebook 06_training_on_gpu.

Every option of ``farnet train`` is a field of :class:`~farnet_lite.config.TrainConfig`; a run's config is the
preset (``--preset`` for ``--dataset``), or a saved ``--config`` JSON, or (``--resume PATH``) the checkpoint's,
with the options given on the command line on top. Examples::

    farnet train --dataset synthetic-isbi --epochs 5           # works on a fresh machine, no data needed
    farnet train --dataset isbi2015 --data-root data/isbi2015 --preset fast
    torchrun --nproc_per_node=4 -m farnet_lite.cli train --dataset isbi2015 --data-root ... --preset fast
    farnet train --output-dir runs/isbi2015-paper --resume     # continue after a crash
    farnet evaluate runs/isbi2015-paper/best.pt --split test1 test2
    farnet predict runs/isbi2015-paper/best.pt my_xrays/ --output-dir my_predictions
    farnet benchmark --size 800 640 --batch 8 --precision bf16
    farnet reproduce table3 --quick                             # the table pipeline on tiny synthetic data
    farnet reproduce table3 --data-root data --preset fast      # Table 3 on the real ISBI 2015 (GPU)

A mistake a user can make (a missing file, a wrong data root, a mismatched checkpoint, a diverging loss) ends
with one line on stderr and exit status 1; ``FARNET_DEBUG=1`` shows the full traceback instead.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from farnet_lite.config import DATASETS, PRESETS, TrainConfig, config_fields

HELP = {
    "dataset": "dataset name",
    "data_root": "folder of the dataset in its public layout (synthetic datasets: written under --cache-dir "
                 "when not given)",
    "train_split": "split to train on",
    "val_split": "split that selects best.pt (isbi2015: test1, as the paper; never test2)",
    "eval_splits": "splits evaluated with best.pt after training (predictions for all, metrics if labelled)",
    "fold": "hand: Payer et al.'s cross-validation set 1-3; spine: fold 1-5 of the training set",
    "annotation": "isbi2015 ground truth: mean of the two doctors (paper), senior or junior",
    "input_size": "network input H W (multiples of 32)",
    "system": "architecture of Table 2: unet, fpn, msfa_add, msfa, msfa_fr_naive, msfa_fr (= FARNet)",
    "backbone": "vgg16, vgg19, resnet101, resnet152, densenet121, densenet169",
    "pretrained": "ImageNet backbone weights: false, true (downloads once) or the path of a state dict",
    "loss": "heatmap loss: ewc (Eq. 3), l2 (Eq. 2) or aw (Adaptive Wing)",
    "sigma": "Gaussian sigma of the target heatmaps, in pixels of each output's grid (Eq. 1)",
    "alpha": "EWC base alpha (Eq. 3)",
    "origin": "coordinate of the first pixel of the target grid; 1.0 reproduces the official code's offset",
    "decode": "heatmap decoding: argmax (paper) or subpixel",
    "optimizer": "adam (paper) or adadelta",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "lr_schedule": "constant, step (x0.1 at 2/3 of the epochs, as the official code) or cosine",
    "warmup_epochs": "linear learning-rate warm-up, in epochs",
    "epochs": "number of epochs",
    "batch_size": "images per step and per process",
    "augment": "random affine + intensity augmentation on the device",
    "precision": "auto (bf16, else fp16 on GPUs), fp32, bf16 or fp16; always fp32 on the CPU",
    "channels_last": "channels_last memory format (faster convolutions on recent GPUs)",
    "compile": "torch.compile the model",
    "data_on_device": "keep the uint8 training images in GPU memory: auto (if they fit), yes or no",
    "num_workers": "DataLoader workers when the images are not kept on the device",
    "device": "auto, cpu, cuda or cuda:N",
    "seed": "random seed (weights, data order, augmentation)",
    "deterministic": "deterministic algorithms on the CPU (bit-identical reruns)",
    "output_dir": "run folder: config.json, log.csv, last.pt, best.pt, predictions and metrics",
    "cache_dir": "synthetic data and prepared caches (default $FARNET_CACHE or ~/.cache/farnet_lite)",
    "val_every": "validate every N epochs",
    "save_checkpoints": "write last.pt and best.pt every epoch (off: smoke tests only; no resume, the last epoch "
                        "is evaluated)",
    "progress": "tqdm progress bars",
}
"""One line of help per TrainConfig field."""

_CHOICES = {"loss": ("ewc", "l2", "aw"), "optimizer": ("adam", "adadelta"), "decode": ("argmax", "subpixel"),
            "lr_schedule": ("constant", "step", "cosine"), "precision": ("auto", "fp32", "bf16", "fp16"),
            "data_on_device": ("auto", "yes", "no"), "annotation": ("mean", "senior", "junior"),
            "dataset": tuple(DATASETS)}


def _bool_or_path(text: str):
    low = text.lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return text


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; unset options keep the preset's value (argparse.SUPPRESS)."""
    paper = TrainConfig.preset("isbi2015", "paper")
    group = parser.add_argument_group("run configuration (defaults: the --preset for the --dataset; shown "
                                      "for isbi2015 / paper)")
    for name, f in config_fields().items():
        flag = "--" + name.replace("_", "-")
        value = getattr(paper, name)
        shown = " ".join(map(str, value)) if isinstance(value, tuple) else value
        kwargs = dict(default=argparse.SUPPRESS, help=f"{HELP[name]} (default: {shown})")
        if name == "dataset":
            kwargs["help"] = f"{HELP[name]} (default: isbi2015)"
        if isinstance(value, bool) and name != "pretrained":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif name == "input_size":
            kwargs.update(nargs=2, type=int, metavar=("H", "W"))
        elif name == "eval_splits":
            kwargs.update(nargs="+", metavar="SPLIT")
        elif name == "pretrained":
            kwargs.update(type=_bool_or_path, metavar="false|true|PATH")
        else:
            kwargs["type"] = type(value) if value is not None else str
            if name in _CHOICES:
                kwargs["choices"] = _CHOICES[name]
        group.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: base (checkpoint, --config file or preset) + the options given on the command line."""
    fields = config_fields()
    given = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    if isinstance(args.resume, str):
        from farnet_lite.checkpoint import load_checkpoint
        base = load_checkpoint(args.resume)["config"].to_dict()
    elif args.config:
        base = TrainConfig.load(args.config).to_dict()
    else:
        base = TrainConfig.preset(given.get("dataset", "isbi2015"), args.preset).to_dict()
    return TrainConfig.from_dict(dict(base, **given))


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show ``(default: X)`` only where the help text does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    formatter = _DefaultsFormatter
    parser = argparse.ArgumentParser(prog="farnet", formatter_class=formatter,
                                     description="FARNet landmark detection: train, evaluate, predict, benchmark.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", formatter_class=formatter, help="train a model (one config = one run)",
                           description="Train a model; writes config.json, log.csv, last.pt, best.pt and the "
                                       "predictions/metrics of the evaluation splits to --output-dir.")
    train.add_argument("--preset", choices=PRESETS, default="paper",
                       help="paper: the paper's settings; fast: GPU (batch 8, mixed precision, cosine LR); "
                            "demo: small CPU run")
    train.add_argument("--config", metavar="JSON", default=None, help="start from a saved config.json")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="LAST_PT",
                       help="continue from LAST_PT, or from --output-dir/last.pt when no path is given")
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    _add_config_options(train)

    evaluate = sub.add_parser("evaluate", formatter_class=formatter, help="evaluate a checkpoint on splits",
                              description="Predict dataset splits with a checkpoint; writes predictions_<split>"
                                          ".csv and, for labelled splits, metrics_<split>.json and "
                                          "per_landmark_<split>.csv.")
    evaluate.add_argument("checkpoint", help="a best.pt / last.pt written by farnet train")
    evaluate.add_argument("--split", nargs="+", default=None, help="splits (default: the run's eval splits)")
    evaluate.add_argument("--data-root", default=None, help="dataset folder (default: the run's)")
    evaluate.add_argument("--cache-dir", default=None, help="prepared-cache folder (default: the run's)")
    evaluate.add_argument("--output-dir", default=None, help="where to write (default: the checkpoint's folder)")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    evaluate.add_argument("--batch-size", type=int, default=None, help="images per forward (default: the run's)")
    evaluate.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16", "fp16"),
                          help="inference precision (default: the run's)")

    predict = sub.add_parser("predict", formatter_class=formatter, help="landmarks on your own images",
                             description="Predict landmarks on image files or folders; writes predictions.csv "
                                         "(image_id,landmark,x,y,score in original pixels) and one overlay PNG "
                                         "per image.")
    predict.add_argument("checkpoint", help="a best.pt / last.pt written by farnet train")
    predict.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    predict.add_argument("--output-dir", default="predictions", help="where to write the CSV and overlays")
    predict.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                         help="write overlays/<image_id>.png")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    predict.add_argument("--batch-size", type=int, default=4, help="images per forward")

    from farnet_lite.benchmark import add_benchmark_arguments
    bench = sub.add_parser("benchmark", formatter_class=formatter, help="training / inference speed vs. the "
                           "official pipeline", description="Measure training and inference images/s and peak "
                           "memory of this engine and of a re-implementation of the official pipeline.")
    add_benchmark_arguments(bench)

    from farnet_lite.experiments import TABLES
    repro = sub.add_parser("reproduce", formatter_class=formatter, help="run a table of the paper and write it "
                           "beside the paper's numbers", description="Train the runs of a table that are not "
                           "finished yet (resuming partial ones), gather every matching result and write "
                           "<results-dir>/tables/<table>.csv and .md: ours, the paper's, the difference and how "
                           "ours was obtained.")
    repro.add_argument("table", choices=TABLES + ("all",), help="which table")
    repro.add_argument("--quick", action="store_true", help="tiny synthetic datasets, one epoch on the CPU: "
                       "checks the pipeline in minutes; the numbers are not results")
    repro.add_argument("--data-root", default=None, help="folder holding isbi2015/, hand_dha/, spine_aasce/ "
                       "(required without --quick)")
    repro.add_argument("--runs-dir", default=None, help="checkpoints (default runs/reproduce, quick: runs/quick)")
    repro.add_argument("--results-dir", default=None, help="results and tables (default results, quick: "
                       "runs/quick/results)")
    repro.add_argument("--cache-dir", default=None, help="prepared caches (default $FARNET_CACHE)")
    repro.add_argument("--preset", choices=("paper", "fast"), default="paper", help="training settings")
    repro.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's 300)")
    repro.add_argument("--pretrained", type=_bool_or_path, default=False, help="ImageNet weights: false, true "
                       "or the path of a state dict")
    repro.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    repro.add_argument("--dry-run", action="store_true", help="list what would be trained; write nothing")
    repro.add_argument("--gather-only", action="store_true", help="train nothing: write the tables from the "
                       "results that exist")
    repro.add_argument("--progress", action="store_true", help="tqdm progress bars while training")
    return parser


def _run(args) -> int:
    if args.command == "train":
        config = config_from_args(args)
        if args.print_config:
            print(config.to_json())
            return 0
        from farnet_lite.train import train
        result = train(config, resume=args.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"Run folder: {result.run_dir}  (best epoch {result.best_epoch}, "
                  f"validation {result.best_metric:.4g})")
            for split, summary in result.metrics.items():
                print(f"{split}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in summary.items()}))
        return 0
    if args.command == "evaluate":
        from farnet_lite.evaluate import evaluate
        results = evaluate(args.checkpoint, args.split, data_root=args.data_root, output_dir=args.output_dir,
                           device=args.device, batch_size=args.batch_size, cache_dir=args.cache_dir,
                           precision=args.precision)
        for split, result in results.items():
            text = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.summary.items()})
            print(f"{split}: {len(result.ids)} images; " + (text if result.summary else "unlabelled"))
        return 0
    if args.command == "predict":
        from farnet_lite.evaluate import predict
        frame = predict(args.checkpoint, args.inputs, output_dir=args.output_dir, overlay=args.overlay,
                        device=args.device, batch_size=args.batch_size)
        print(f"{frame['image_id'].nunique()} images -> {os.path.join(args.output_dir, 'predictions.csv')}")
        return 0
    if args.command == "reproduce":
        return _reproduce(args)
    from farnet_lite.benchmark import run_benchmark
    run_benchmark(args)
    return 0


def _reproduce(args) -> int:
    from farnet_lite.experiments import TABLES, reproduce
    for table in (TABLES if args.table == "all" else (args.table,)):
        result = reproduce(table, quick=args.quick, data_root=args.data_root, runs_dir=args.runs_dir,
                           results_dir=args.results_dir, cache_dir=args.cache_dir, preset=args.preset,
                           epochs=args.epochs, pretrained=args.pretrained, device=args.device,
                           dry_run=args.dry_run, train_missing=not args.gather_only, progress=args.progress)
        print(result.markdown)
        if result.md_path is not None:
            print(f"Written: {result.csv_path} and {result.md_path}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``farnet`` console script (and ``python -m farnet_lite.cli``)."""
    args = build_parser().parse_args(argv)
    if os.environ.get("FARNET_DEBUG"):
        return _run(args)
    from farnet_lite.data.sample import DatasetError
    try:
        return _run(args)
    except (FileNotFoundError, DatasetError, FloatingPointError, ValueError) as err:
        print(f"farnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "train":
            print("\nInterrupted; continue with the same command plus --resume (last.pt holds the last "
                  "finished epoch).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
