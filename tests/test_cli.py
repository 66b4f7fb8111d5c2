"""The ``farnet`` command line: help, config resolution, train -> evaluate -> predict, errors, benchmark."""
import argparse
import json

import numpy as np
import pandas as pd
import pytest

from engine_helpers import cli_args, tiny_overrides
from farnet_lite.cli import COMMANDS, build_parser, main
from farnet_lite.config import DATASETS, TrainConfig, config_fields


def test_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())                  # undo argparse's line wrapping
    for name in config_fields():
        assert "--" + name.replace("_", "-") in text, name
    assert "(default: the dataset's; isbi2015: 800 640)" in text and "(default: ewc)" in text
    assert "(default: 300)" in text and "--resume" in text and "(default: paper)" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert all(f"{command}," in top or f"{command}." in top for command in COMMANDS)   # the description
    assert all(f" {command} " in top for command in COMMANDS)                            # the command list
    for command in ("evaluate", "predict", "benchmark", "reproduce"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "default" in capsys.readouterr().out


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _help_of(parser, action) -> str:
    return parser._get_formatter()._get_help_string(action) % dict(vars(action), prog=parser.prog)


def test_no_option_shows_two_defaults():
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            text = _help_of(parser, action).lower()
            said = text.count("default") + text.count("unset:") + text.count("when not given")
            assert said <= 1, (command, action.option_strings, text)


def test_every_field_with_choices_offers_them_and_one_flag_per_concept():
    fields = config_fields()
    for command, parser in _subparsers().items():
        for action in parser._actions:
            if action.dest in fields and action.option_strings:
                flag = "--" + action.dest.replace("_", "-")
                visible = action.help != argparse.SUPPRESS
                assert (flag in action.option_strings) == visible, (command, action.option_strings)
                choices = fields[action.dest].metadata.get("choices")
                if choices is not None:
                    assert tuple(action.choices) == choices, (command, action.dest)
    parsed = build_parser().parse_args(["benchmark", "--input-size", "64", "32", "--batch-size", "2"])
    assert (parsed.input_size, parsed.batch_size) == ([64, 32], 2)
    old = build_parser().parse_args(["benchmark", "--size", "64", "32", "--batch", "2"])     # hidden aliases
    assert (old.input_size, old.batch_size) == ([64, 32], 2)
    old = build_parser().parse_args(["evaluate", "x.pt", "--split", "test1", "test2"])
    assert old.eval_splits == ["test1", "test2"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["benchmark", "--backbone", "resnet50"])


def test_another_datasets_config_file_takes_that_datasets_splits(tmp_path, capsys):
    TrainConfig.preset("isbi2015", "paper").save(tmp_path / "config.json")
    assert main(["train", "--config", str(tmp_path / "config.json"), "--dataset", "hand", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    hand = DATASETS["hand"]
    assert (config["val_split"], config["eval_splits"], config["input_size"]) == (
        hand.val_split, list(hand.eval_splits), [512, 512])


def test_config_resolution_preset_then_options(capsys):
    assert main(["train", "--dataset", "hand", "--preset", "fast", "--epochs", "7", "--no-augment",
                 "--input-size", "256", "256", "--pretrained", "false", "--print-config"]) == 0
    config = json.loads(capsys.readouterr().out)
    assert (config["dataset"], config["batch_size"], config["epochs"], config["augment"]) == ("hand", 8, 7, False)
    assert config["input_size"] == [256, 256] and config["pretrained"] is False and config["fold"] == 1
    args = build_parser().parse_args(["train", "--pretrained", "weights/d121.pth"])
    assert args.pretrained == "weights/d121.pth" and not hasattr(args, "epochs")   # unset = preset's value


def test_train_evaluate_predict_through_the_cli(tmp_path, capsys):
    values = dict(tiny_overrides(tmp_path), epochs=1, batch_size=8)
    del values["data_root"]                  # as on a fresh machine: synthetic data written under --cache-dir
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 0
    out = capsys.readouterr().out
    assert "Run folder:" in out and "test1:" in out
    best = tmp_path / "run" / "best.pt"

    assert main(["evaluate", str(best), "--eval-splits", "test1", "test2", "--output-dir", str(tmp_path / "ev")]) == 0
    printed = capsys.readouterr().out
    assert "test1: 12 images" in printed and "test2: 12 images; unlabelled" in printed
    metrics = json.loads((tmp_path / "ev" / "metrics_test1.json").read_text())
    trained = json.loads((tmp_path / "run" / "metrics_test1.json").read_text())
    assert metrics["mre"] == pytest.approx(trained["mre"]) and not (tmp_path / "ev" / "metrics_test2.json").exists()

    images = tmp_path / "cache" / "synthetic" / "isbi2015" / "RawImage" / "Test2Data"
    assert main(["predict", str(best), str(images), "--no-overlay", "--output-dir", str(tmp_path / "all")]) == 0
    assert main(["predict", str(best), str(images / "301.bmp"), "--output-dir", str(tmp_path / "one")]) == 0
    frame = pd.read_csv(tmp_path / "all" / "predictions.csv", dtype={"image_id": str})
    assert list(frame.columns)[:5] == ["image_id", "landmark", "x", "y", "score"] and len(frame) == 12 * 19
    assert not (tmp_path / "all" / "overlays").exists()
    assert [p.name for p in (tmp_path / "one" / "overlays").iterdir()] == ["301.bmp.png"]   # <image_id>.png
    one = pd.read_csv(tmp_path / "one" / "predictions.csv", dtype={"image_id": str})
    pd.testing.assert_frame_equal(one, frame[frame.image_id == "301.bmp"].reset_index(drop=True))
    assert frame.x.between(-0.5, 192.5).all() and frame.y.between(-0.5, 239.5).all()   # 240 x 193 images
    # predict resizes the original BMP, evaluate reads the (JPEG) cache: nearly the same points
    evaluated = pd.read_csv(tmp_path / "ev" / "predictions_test2.csv", dtype={"image_id": str})
    diff = frame[["x", "y"]].to_numpy() - evaluated[["x", "y"]].to_numpy()
    assert np.median(np.abs(diff)) <= 240 / 32                     # at most one input pixel, typically


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "nope.pt"), str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.pt does not exist" in err
    assert main(["train", "--dataset", "isbi2015", "--output-dir", str(tmp_path / "r")]) == 1
    assert "needs --data-root" in capsys.readouterr().err


# farnet benchmark's run: tests/test_benchmark.py
