"""Bad inputs of ``farnet train``: a reused run folder, a moved run resumed, values no run can use (``--sigma 0``,
``--val-every 0``, ``"epochs": "3"`` or an unknown key in a ``--config`` file, ``--device cuda`` without a GPU) and
a cache folder that cannot be written. Each case does the right thing, or ends before any training in one sentence
naming the folder, file or option and the fix, with exit status 1 from the CLI and nothing written."""
import errno
import hashlib
import json
import os
import shutil

import pandas as pd
import pytest
import torch
from engine_helpers import cli_args, tiny_config, tiny_overrides

from farnet_lite.cli import main
from farnet_lite.config import TrainConfig
from farnet_lite.engine import splits
from farnet_lite.engine.runtime import resolve_device
from farnet_lite.engine.train import train


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def snapshot(folder) -> dict:
    """Every file under ``folder`` with the hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def mre(run, split="test1") -> float:
    return json.loads((run / f"metrics_{split}.json").read_text())["mre"]


# ----------------------------------------------------------------------------- a run folder used twice

def test_a_fresh_run_refuses_a_folder_that_holds_a_run(tmp_path, capsys):
    values = dict(tiny_overrides(tmp_path), epochs=1)
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    before = snapshot(run)
    refused = (f"farnet train: error: Run folder {run} already holds a run (best.pt, last.pt, selection.json); "
               f"continue it with --resume (train(..., resume=True)), choose a new --output-dir, or delete the "
               f"folder first.")
    # another seed, no validation split: it used to print the first run's Test1 MRE (its best.pt) as its own
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(dict(values, seed=5, val_split=""))]) == 1
    assert one_line_error(capsys) == refused
    # another landmark count: it used to train fully, then die on a size mismatch loading the old best.pt
    hand = dict(values, cache_dir=str(tmp_path / "hand-cache"))
    del hand["data_root"]
    assert main(["train", "--dataset", "synthetic-hand", *cli_args(hand)]) == 1
    assert one_line_error(capsys) == refused
    assert not (tmp_path / "hand-cache").exists()                      # refused before any data was written
    assert snapshot(run) == before                                     # nothing read, nothing written
    with pytest.raises(ValueError, match=r"already holds a run \(best\.pt, last\.pt, selection\.json\)"):
        train(tiny_config(tmp_path, epochs=1, seed=5))


def test_resume_without_last_pt_starts_afresh_and_removes_the_old_result(tmp_path, capsys):
    first = train(tiny_config(tmp_path, epochs=1))
    run = first.run_dir
    (run / "last.pt").unlink()                                         # a run stopped before its first last.pt
    capsys.readouterr()
    other = tiny_config(tmp_path, epochs=1, seed=5, val_split="")
    result = train(other, resume=True)
    out = capsys.readouterr().out
    assert (f"Removing the earlier run's best.pt, log.csv, metrics_test1.json, per_landmark_test1.csv, "
            f"predictions_test1.csv, predictions_test2.csv, selection.json from {run}: this run starts from "
            f"scratch.") in out
    assert not (run / "best.pt").exists() and (run / "last.pt").is_file()
    assert json.loads((run / "selection.json").read_text())["reported"] == "last epoch (1), no selection"
    alone = train(tiny_config(tmp_path, epochs=1, seed=5, val_split="", output_dir=str(tmp_path / "alone")))
    assert result.metrics["test1"]["mre"] == alone.metrics["test1"]["mre"] == mre(run)   # this run's numbers
    assert result.metrics["test1"]["mre"] != first.metrics["test1"]["mre"]


def test_resume_never_evaluates_a_best_pt_the_run_did_not_write(tmp_path, capsys):
    config = tiny_config(tmp_path, epochs=2, checkpoint_minutes=0)
    finished = train(config)
    other = train(tiny_config(tmp_path, epochs=1, seed=5, output_dir=str(tmp_path / "other")))
    run = finished.run_dir
    shutil.copyfile(other.run_dir / "best.pt", run / "best.pt")       # another run's best.pt in the folder
    capsys.readouterr()
    again = train(config, resume=True)
    assert (f"No best.pt of epoch {finished.best_epoch} (the best epoch {run / 'last.pt'} records) in {run} or "
            f"beside {run / 'last.pt'}: only the epochs after 2 can be selected now, else the last is reported."
            ) in capsys.readouterr().out
    assert again.best_epoch == -1                                      # the last epoch is reported, from last.pt
    assert again.metrics["test1"]["mre"] == pytest.approx(finished.last_metrics["test1"]["mre"], rel=1e-9)
    assert again.metrics["test1"]["mre"] != pytest.approx(other.metrics["test1"]["mre"])
    assert json.loads((run / "selection.json").read_text())["reported"] == "last epoch (2), no selection"


# ----------------------------------------------------------------------------- a run copied or moved

def test_a_moved_run_resumes_in_its_new_folder_and_a_fork_in_its_own(tmp_path, capsys):
    values = dict(tiny_overrides(tmp_path), epochs=1, output_dir=str(tmp_path / "a"))
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 0
    original, moved = tmp_path / "a", tmp_path / "drive" / "a"
    shutil.copytree(original, moved)                                   # e.g. to a Drive folder or another machine
    before = snapshot(original)
    capsys.readouterr()

    # continued from the copy: it writes beside the copy's last.pt, never into the folder its config names
    assert main(["train", "--resume", str(moved / "last.pt"), "--epochs", "2"]) == 0
    assert f"Run folder: {moved}  (best epoch" in capsys.readouterr().out
    assert snapshot(original) == before
    assert torch.load(moved / "last.pt", weights_only=True)["epoch"] == 2
    assert list(pd.read_csv(moved / "log.csv").epoch) == [1, 2]
    assert TrainConfig.load(moved / "config.json").output_dir == str(moved)

    # with --output-dir: continued into that folder, with its best.pt, and the original left as it was
    fork = tmp_path / "fork"
    assert main(["train", "--resume", str(original / "last.pt"), "--epochs", "2", "--output-dir", str(fork)]) == 0
    capsys.readouterr()
    assert snapshot(original) == before
    last, best = (torch.load(fork / name, weights_only=True) for name in ("last.pt", "best.pt"))
    assert last["epoch"] == 2 and best["epoch"] == last["best_epoch"] and best["history"] == \
        [row for row in last["history"] if row["epoch"] <= best["epoch"]]            # the run's own best.pt
    assert TrainConfig.load(fork / "config.json").output_dir == str(fork)

    # ... but never into a folder that holds another run
    held = snapshot(moved)
    assert main(["train", "--resume", str(original / "last.pt"), "--output-dir", str(moved)]) == 1
    assert one_line_error(capsys) == (
        f"farnet train: error: Run folder {moved} already holds a run (best.pt, last.pt, selection.json) and "
        f"{original / 'last.pt'} is not its checkpoint; continue {original / 'last.pt'} in its own folder (leave "
        f"out --output-dir) or into an empty --output-dir.")
    assert snapshot(moved) == held and snapshot(original) == before


# ----------------------------------------------------------------------------- values no run can use

@pytest.mark.parametrize("changes, message", [
    (dict(sigma=0), "sigma (--sigma) must be a number above 0 (the Gaussian's width in pixels, Eq. 1), got 0."),
    (dict(sigma=-2), "sigma (--sigma) must be a number above 0 (the Gaussian's width in pixels, Eq. 1), got -2."),
    (dict(val_every=0), "val_every (--val-every) must be at least 1, got 0."),
    (dict(epochs=0), "epochs (--epochs) must be at least 1, got 0."),
    (dict(batch_size=0), "batch_size (--batch-size) must be at least 1, got 0."),
    (dict(num_workers=-1), "num_workers (--num-workers) must be at least 0, got -1."),
    (dict(lr=0), "lr (--lr) must be a number above 0 (the learning rate), got 0."),
    (dict(lr=-1e-3), "lr (--lr) must be a number above 0 (the learning rate), got -0.001."),
    (dict(alpha=0), "alpha (--alpha) must be a number above 0 (the EWC base of Eq. 3; 1 is the plain L2 loss), "
                    "got 0."),
    (dict(weight_decay=-1), "weight_decay (--weight-decay) must be 0 or more, got -1."),
    (dict(warmup_epochs=-0.5), "warmup_epochs (--warmup-epochs) must be 0 or more, got -0.5."),
    (dict(checkpoint_minutes=-1), "checkpoint_minutes must be 0 (every epoch) or more (--checkpoint-minutes), "
                                  "got -1."),
    (dict(seed=-1), "seed (--seed) must be between 0 and 2**32 - 1 (numpy's range), got -1."),
    (dict(input_size=(33, 32)), "input_size (--input-size) must be (H, W) with positive multiples of 32, got "
                                "(33, 32)."),
    (dict(input_size=(-32, 32)), "input_size (--input-size) must be (H, W) with positive multiples of 32, got "
                                 "(-32, 32)."),
    (dict(input_size=(32.5, 32)), "input_size (--input-size) must be 2 integers (H, W), got (32.5, 32) (tuple)."),
    (dict(epochs="3"), "epochs (--epochs) must be an integer, got '3' (str)."),
    (dict(epochs=True), "epochs (--epochs) must be an integer, got True (bool)."),
    (dict(lr="1e-3"), "lr (--lr) must be a number, got '1e-3' (str)."),
    (dict(augment="false"), "augment (--augment) must be true or false, got 'false' (str)."),
    (dict(eval_splits="test1"), "eval_splits (--eval-splits) must be a list of split names, got 'test1' (str)."),
    (dict(device="gpu"), "device (--device) must be auto, cpu, cuda or cuda:N (N: the GPU's index), got 'gpu'."),
])
def test_values_no_run_can_use_fail_at_construction_naming_the_option(changes, message):
    with pytest.raises(ValueError) as caught:
        TrainConfig(**changes)
    assert str(caught.value) == message
    assert TrainConfig(sigma=2, lr=1, epochs=3, input_size=[64, 32], device="cuda:1").input_size == (64, 32)


@pytest.mark.parametrize("args, message", [
    (["--val-every", "0"], "val_every (--val-every) must be at least 1, got 0."),
    (["--sigma", "-2"], "sigma (--sigma) must be a number above 0 (the Gaussian's width in pixels, Eq. 1), got -2.0."),
    (["--lr", "0"], "lr (--lr) must be a number above 0 (the learning rate), got 0.0."),
    (["--input-size", "33", "32"], "input_size (--input-size) must be (H, W) with positive multiples of 32, got "
                                   "(33, 32)."),
])
def test_bad_values_on_the_command_line_stop_before_the_run_folder(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-isbi", "--output-dir", str(run), *args]) == 1
    assert one_line_error(capsys) == f"farnet train: error: {message}"
    assert not run.exists()                                            # not an epoch lost: nothing started


def test_a_config_file_is_checked_and_named(tmp_path, capsys):
    path = tmp_path / "my.json"
    TrainConfig.preset("synthetic-isbi", "demo").save(path)
    assert main(["train", "--config", str(path), "--print-config"]) == 0   # a saved config.json loads as before
    assert json.loads(capsys.readouterr().out)["epochs"] == 6
    for text, message in [
        ('{"dataset": "synthetic-isbi", "epochs": "3"}', f"Config file {path}: epochs (--epochs) must be an integer, "
                                                         f"got '3' (str)."),
        ('{"epoch": 3}', f"Config file {path} has no option 'epoch' (did you mean 'epochs'?); fix or remove it "
                         f"(every option: farnet train --help)."),
        ('{"epoch": 3, "zzz": 1}', f"Config file {path} has no options 'epoch' (did you mean 'epochs'?), 'zzz'; fix "
                                   f"or remove them (every option: farnet train --help)."),
        ('{"epochs": 3,}', f"Config file {path} is not valid JSON (Expecting property name enclosed in double quotes "
                           f"at line 1, column 14); fix it, or write a new one with farnet train --print-config."),
        ('[3]', f"Config file {path} must hold one JSON object of field names and values, not a list; write one "
                f"with farnet train --print-config."),
    ]:
        path.write_text(text)
        assert main(["train", "--config", str(path), "--output-dir", str(tmp_path / "run")]) == 1
        assert one_line_error(capsys) == f"farnet train: error: {message}"
    assert not (tmp_path / "run").exists()
    # a config.json a newer version wrote (one more field) still loads where it is read back, not as --config
    path.write_text(json.dumps(dict(TrainConfig().to_dict(), newer_field=1)))
    assert TrainConfig.load(path) == TrainConfig()


# ----------------------------------------------------------------------------- devices this machine lacks

def test_a_device_this_machine_lacks_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    no_gpu = "this machine has no CUDA GPU (or no driver for it); use --device cpu or --device auto."
    with pytest.raises(ValueError) as caught:
        resolve_device("cuda")
    assert str(caught.value) == f"--device cuda was asked for but {no_gpu}"
    assert main(["train", "--dataset", "synthetic-isbi", "--device", "cuda", "--output-dir", str(tmp_path / "r")]) == 1
    assert one_line_error(capsys) == f"farnet train: error: --device cuda was asked for but {no_gpu}"
    assert not (tmp_path / "r").exists()
    checkpoint = str(tmp_path / "best.pt")
    assert main(["evaluate", checkpoint, "--device", "cuda:7", "--output-dir", str(tmp_path / "e")]) == 1
    assert one_line_error(capsys) == f"farnet evaluate: error: --device cuda:7 was asked for but {no_gpu}"
    assert main(["predict", checkpoint, str(tmp_path), "--device", "cuda", "--output-dir", str(tmp_path / "p")]) == 1
    assert one_line_error(capsys) == f"farnet predict: error: --device cuda was asked for but {no_gpu}"
    assert main(["evaluate", checkpoint, "--device", "gpu"]) == 1
    assert one_line_error(capsys) == ("farnet evaluate: error: Unknown device 'gpu' (--device); choose auto, cpu, "
                                      "cuda or cuda:N.")
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)      # one GPU, and cuda:7 asked for
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError) as caught:
        resolve_device("cuda:7")
    assert str(caught.value) == ("--device cuda:7 was asked for but this machine has 1 CUDA GPU (cuda:0); use "
                                 "--device cuda:0 or --device auto.")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(ValueError, match=r"has 4 CUDA GPUs \(cuda:0 to cuda:3\)"):
        resolve_device("cuda:4")
    assert resolve_device("cpu") == torch.device("cpu")


# ----------------------------------------------------------------------------- a cache folder that cannot be written

def test_a_cache_folder_under_a_file_names_the_folder_and_the_fix(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    cache = tmp_path / "file" / "cache"
    values = dict(tiny_overrides(tmp_path), epochs=1, cache_dir=str(cache))
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 1
    err = one_line_error(capsys)
    assert err.startswith(f"farnet train: error: Cannot write the cache folder {cache} (Not a directory: {cache}")
    assert err.endswith("); choose a writable folder with --cache-dir DIR or the FARNET_CACHE environment variable.")
    assert not list((tmp_path / "run").iterdir())                      # nothing written to the run folder


def test_a_read_only_home_names_cache_dir_and_farnet_cache(tmp_path, capsys, monkeypatch):
    home_cache = tmp_path / "home" / ".cache" / "farnet_lite"          # the default: pooch's ~/.cache/farnet_lite
    monkeypatch.delenv("FARNET_CACHE", raising=False)
    monkeypatch.setattr(splits, "default_cache_dir", lambda: home_cache)
    real_mkdir = os.mkdir

    def read_only_home(path, *args, **kwargs):       # what a read-only HOME does (tests run as root: chmod would
        if str(path).startswith(str(tmp_path / "home")):               # not stop the writes)
            code = errno.EROFS if os.path.isdir(os.path.dirname(path)) else errno.ENOENT
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", read_only_home)
    values = dict(tiny_overrides(tmp_path), epochs=1)
    del values["data_root"], values["cache_dir"]                       # synthetic data written to the default cache
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 1
    err = one_line_error(capsys)
    assert err == (f"farnet train: error: Cannot write the cache folder {home_cache} (Read-only file system: "
                   f"{tmp_path / 'home'}); choose a writable folder with --cache-dir DIR or the FARNET_CACHE "
                   f"environment variable.")
    # with data of its own, the prepared cache fails the same way
    values["data_root"] = tiny_overrides(tmp_path)["data_root"]
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(values)]) == 1
    assert "Cannot write the cache folder" in one_line_error(capsys)
