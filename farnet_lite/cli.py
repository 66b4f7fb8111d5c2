"""The ``farnet`` command: ``farnet train | evaluate | predict | benchmark | reproduce``.

Every option of ``farnet train`` is a field of :class:`~farnet_lite.config.TrainConfig`, built from the field's
metadata (its help text and choices live there only); the other commands reuse the same flag for the same concept
(``--input-size``, ``--batch-size``, ``--eval-splits``, ``--data-root``, ``--cache-dir``, ``--device``...). A run's
config is the preset (``--preset`` for ``--dataset``), or a saved ``--config`` JSON, or (``--resume PATH``) the
checkpoint's, with the options given on the command line on top. Examples::

    farnet train --dataset synthetic-isbi --epochs 5           # works on a fresh machine, no data needed
    farnet train --dataset isbi2015 --data-root data/isbi2015 --preset fast
    torchrun --nproc_per_node=4 -m farnet_lite.cli train --dataset isbi2015 --data-root ... --preset fast
    farnet train --output-dir runs/isbi2015-paper --resume     # continue after a crash
    farnet evaluate runs/isbi2015-paper/best.pt --eval-splits test1 test2
    farnet predict runs/isbi2015-paper/best.pt my_xrays/ --output-dir my_predictions
    farnet benchmark --input-size 800 640 --batch-size 8 --precision bf16
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

from farnet_lite.atomic import RunFolderLocked, os_error_sentence
from farnet_lite.config import GROUPS, PRESETS, TrainConfig, config_fields
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import IMAGE_FORMATS
from farnet_lite.engine.checkpoint import load_checkpoint
from farnet_lite.engine.evaluate import check_batch_size, evaluate
from farnet_lite.engine.options import DefaultsFormatter, add_alias, add_field_option, show_value
from farnet_lite.engine.predict import predict
from farnet_lite.engine.train import train
from farnet_lite.reproduction.benchmark import add_benchmark_arguments, run_benchmark
from farnet_lite.reproduction.experiments import TABLES
from farnet_lite.reproduction.reproduce import reproduce

COMMANDS = ("train", "evaluate", "predict", "benchmark", "reproduce")
SHOWN_SKIPPED = 20   # farnet predict: files of the input folders left out (not images), listed one per line


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field; unset options keep the base config's value (argparse.SUPPRESS). The
    default shown is what a bare ``farnet train`` runs: the paper preset of the default dataset."""
    shown_for = TrainConfig.preset(config_fields()["dataset"].default, "paper")
    groups = {key: parser.add_argument_group(title) for key, title in GROUPS.items()}
    groups["data"].description = (f"Unset options take the --preset's values for the --dataset; shown: --preset "
                                   f"paper --dataset {shown_for.dataset}.")
    for name, f in config_fields().items():
        group = groups[f.metadata["group"]]
        value = getattr(shown_for, name)
        if f.default is None and value is not None:
            text = f"the dataset's; {shown_for.dataset}: {show_value(value)}"
        elif value is None:
            text = None                                   # the help text says what unset means
        elif name == "output_dir":
            text = "runs/<dataset>-<preset>"
        else:
            text = show_value(value)
        add_field_option(group, name, shown=text)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config: base (checkpoint, --config file or preset) + the options given on the command line.

    ``--resume PATH`` continues the run in the folder that holds PATH (a run copied or moved elsewhere writes
    there, never into the folder its saved config names); with ``--output-dir`` given too, the run continues
    from PATH into that folder instead (PATH's folder is left as it is; see :func:`farnet_lite.engine.train.train`).
    """
    fields = config_fields()
    given = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    if isinstance(args.resume, str):
        base = load_checkpoint(args.resume)["config"].to_dict()
        base["output_dir"] = os.path.dirname(args.resume) or "."
    elif args.config:
        base = TrainConfig.load(args.config, strict=True).to_dict()
    else:
        base = TrainConfig.preset(given.get("dataset", fields["dataset"].default), args.preset).to_dict()
    if "dataset" in given and given["dataset"] != base["dataset"]:
        for name in ("train_split", "val_split", "eval_splits", "input_size", "augment"):
            base.pop(name, None)                          # another dataset: its own splits and size
    return TrainConfig.from_dict(dict(base, **given))


def _add_train(sub) -> None:
    train = sub.add_parser("train", formatter_class=DefaultsFormatter, help="train a model (one config = one run)",
                           description="Train a model; writes config.json, log.csv, last.pt, best.pt and the "
                                       "predictions/metrics of the evaluation splits to --output-dir.")
    train.add_argument("--preset", choices=PRESETS, default="paper",
                       help="paper: the paper's settings; fast: GPU (batch 8, mixed precision, cosine LR); "
                            "demo: small CPU run")
    train.add_argument("--config", metavar="JSON", default=None, help="start from a saved config.json")
    train.add_argument("--resume", nargs="?", const=True, default=False, metavar="LAST_PT",
                       help="continue from LAST_PT, in its folder (or in --output-dir when given), or from "
                            "--output-dir/last.pt when no path is given")
    train.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    _add_config_options(train)


def _add_evaluate(sub) -> None:
    evaluate = sub.add_parser("evaluate", formatter_class=DefaultsFormatter, help="evaluate a checkpoint on splits",
                              description="Predict dataset splits with a checkpoint; writes predictions_<split>"
                                          ".csv and, for labelled splits, metrics_<split>.json and "
                                          "per_landmark_<split>.csv.")
    evaluate.add_argument("checkpoint", help="a best.pt / last.pt written by farnet train")
    add_field_option(evaluate, "eval_splits", default=None, shown="the run's", help="splits to evaluate")
    add_alias(evaluate, "--split", "eval_splits")
    add_field_option(evaluate, "data_root", default=None, shown="the run's", help="dataset folder")
    add_field_option(evaluate, "cache_dir", default=None, shown="the run's", help="prepared-cache folder")
    add_field_option(evaluate, "batch_size", default=None, shown="the run's", help="images per forward")
    add_field_option(evaluate, "precision", default=None, shown="the run's")
    add_field_option(evaluate, "decode", default=None, shown="the run's")
    add_field_option(evaluate, "output_dir", default=None, shown="the checkpoint's folder",
                     help="where to write the predictions and metrics")
    add_field_option(evaluate, "device", default="auto", shown="auto")


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", formatter_class=DefaultsFormatter, help="landmarks on your own images",
                             description="Predict landmarks on image files or folders; writes predictions.csv "
                                         "(image_id = the path relative to the folder given, landmark, x, y, "
                                         "score, source; original pixels, plus x_mm, y_mm for files that state "
                                         "their pixel spacing) and one overlay PNG per image. Accepted formats: "
                                         f"{IMAGE_FORMATS}.")
    predict.add_argument("checkpoint", help="a best.pt / last.pt written by farnet train")
    predict.add_argument("inputs", nargs="+", help="image files and/or folders of images (PNG, JPEG, BMP, TIFF, "
                                                   "DICOM; subfolders included, other files listed as skipped)")
    add_field_option(predict, "output_dir", default="predictions", shown="predictions",
                     help="where to write the CSV and overlays")
    predict.add_argument("--overlay", action=argparse.BooleanOptionalAction, default=True,
                         help="write overlays/<image_id>.png (default: on)")
    add_field_option(predict, "device", default="auto", shown="auto")
    add_field_option(predict, "batch_size", default=4, shown="4", help="images per forward")
    predict.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                         help="an unreadable image: stop before writing anything, or skip it, predict the others "
                              "and list the skipped ones")


def _add_reproduce(sub) -> None:
    repro = sub.add_parser("reproduce", formatter_class=DefaultsFormatter, help="run a table of the paper and "
                           "write it beside the paper's numbers", description="Train the runs of a table that are "
                           "not finished yet (resuming partial ones), gather every matching result and write "
                           "<results-dir>/tables/<table>.csv and .md: ours, the paper's, the difference and how "
                           "ours was obtained.")
    repro.add_argument("table", choices=TABLES + ("all",), help="which table")
    repro.add_argument("--quick", action="store_true", help="tiny synthetic datasets, one epoch on the CPU: "
                       "checks the pipeline in minutes; the numbers are not results")
    add_field_option(repro, "data_root", default=None, help="folder holding the dataset folders (isbi2015/, "
                     "hand_dha/, spine_aasce/); required without --quick")
    repro.add_argument("--runs-dir", default=None, help="checkpoints (default: runs/reproduce, quick: runs/quick)")
    repro.add_argument("--results-dir", default=None, help="results and tables (default: results, quick: "
                       "runs/quick/results)")
    add_field_option(repro, "cache_dir", default=None)
    repro.add_argument("--preset", choices=tuple(p for p in PRESETS if p not in ("demo", "quick")), default="paper",
                       help="training settings (TrainConfig.preset)")
    add_field_option(repro, "epochs", default=None, shown="the preset's")
    add_field_option(repro, "pretrained", default=None, shown="the preset's: true on the real datasets")
    add_field_option(repro, "device", default="auto", shown="auto")
    repro.add_argument("--dry-run", action="store_true", help="list what would be trained; write nothing")
    repro.add_argument("--gather-only", action="store_true", help="train nothing: write the tables from the "
                       "results that exist")
    repro.add_argument("--progress", action="store_true", help="tqdm progress bars while training")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="farnet", formatter_class=DefaultsFormatter,
                                     description="FARNet landmark detection: " + ", ".join(COMMANDS) + ".")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    bench = sub.add_parser("benchmark", formatter_class=DefaultsFormatter, help="training / inference speed vs. "
                           "the official pipeline", description="Seconds per image (training, evaluation, 800x640 "
                           "prediction) and peak memory of today's path, the fast CPU path and a re-implementation of "
                           "the official pipeline, at equal batch size, each in a fresh process on the CPU.")
    add_benchmark_arguments(bench)
    _add_reproduce(sub)
    return parser


def _run(args) -> int:
    if args.command == "train":
        config = config_from_args(args)
        if args.print_config:
            print(config.to_json())
            return 0
        result = train(config, resume=args.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"Run folder: {result.run_dir}  (best epoch {result.best_epoch}, "
                  f"validation {result.best_metric:.4g})")
            for split, summary in result.metrics.items():
                print(f"{split}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in summary.items()}))
        return 0
    if args.command == "evaluate":
        check_batch_size(args.batch_size, "--batch-size")
        results = evaluate(args.checkpoint, args.eval_splits, data_root=args.data_root, output_dir=args.output_dir,
                           device=args.device, batch_size=args.batch_size, cache_dir=args.cache_dir,
                           precision=args.precision, decode=args.decode)
        for split, result in results.items():
            text = json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.summary.items()})
            print(f"{split}: {len(result.ids)} images; " + (text if result.summary else "unlabelled"))
        return 0
    if args.command == "predict":
        check_batch_size(args.batch_size, "--batch-size")
        frame = predict(args.checkpoint, args.inputs, output_dir=args.output_dir, overlay=args.overlay,
                        device=args.device, batch_size=args.batch_size, on_error=args.on_error)
        print(f"{frame['image_id'].nunique()} images -> {os.path.join(args.output_dir, 'predictions.csv')}")
        left_out = list(frame.attrs.get("skipped", {}).items())
        for path, reason in left_out[:SHOWN_SKIPPED]:
            print(f"farnet predict: skipped {path}: {reason}", file=sys.stderr)
        if len(left_out) > SHOWN_SKIPPED:
            print(f"farnet predict: skipped {len(left_out) - SHOWN_SKIPPED} more entries of the input folders "
                  f"({len(left_out)} in all)", file=sys.stderr)
        failed = frame.attrs.get("failed", {})
        for image_id, reason in failed.items():
            print(f"farnet predict: skipped {image_id}: {reason}", file=sys.stderr)
        return 1 if failed and frame.empty else 0   # nothing could be read: an error, even with --on-error skip
    if args.command == "reproduce":
        return _reproduce(args)
    run_benchmark(args)
    return 0


def _reproduce(args) -> int:
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
    try:
        return _run(args)
    except OSError as err:  # our own sentences carry no errno; a raw one (disk full, read-only...) gets one
        message = str(err) if err.errno is None else os_error_sentence(err)
        print(f"farnet {args.command}: error: {message}", file=sys.stderr)
        return 1
    except (DatasetError, FloatingPointError, ValueError, RunFolderLocked) as err:
        print(f"farnet {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command == "train":
            print("\nInterrupted; continue with the same command plus --resume (last.pt holds the last "
                  "finished epoch).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
