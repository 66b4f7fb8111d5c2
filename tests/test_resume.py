"""Never lose a run: a training killed with SIGKILL resumes to exactly the numbers of an uninterrupted one."""
import json
import os
import signal

import pandas as pd
import pytest
import torch
from engine_helpers import cli_args, run_cli, tiny_overrides

from farnet_lite.config import TrainConfig
from farnet_lite.engine import train as train_module
from farnet_lite.engine.train import CheckpointTimer, StopAfterEpoch, train

# The kill hook lives here, not in the package: the subprocess patches the training module, then runs the CLI.
KILLER = """
import os, signal, sys
import torch
import farnet_lite.engine.train as train_module
from farnet_lite import cli

where, at = sys.argv[1], int(sys.argv[2])
calls = []

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "mid-epoch":      # at training step `at` of this process, between forward and optimizer step
    loss_fn = train_module.coarse_to_fine_loss
    def hook(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            die()
        return loss_fn(*args, **kwargs)
    train_module.coarse_to_fine_loss = hook
elif where == "mid-write":      # half-way through the `at`-th write of last.pt: a truncated temporary file
    save = torch.save
    def hook(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)
        if str(f).rsplit("/", 1)[-1].startswith(".last."):
            calls.append(1)
            if len(calls) == at:
                os.truncate(f, os.path.getsize(f) // 2)
                die()
    torch.save = hook
sys.exit(cli.main(sys.argv[3:]))
"""


def kill_run(where, at, args):
    return run_cli([where, at, *args], module=("-c", KILLER))


def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
    """Killed in the middle of epoch 2, then half-way through writing last.pt: the run still ends bit-identical."""
    monkeypatch.setenv("FARNET_THREADS", "1")   # the same thread count here and in the subprocesses (farnet_lite.engine.cpu)
    values = dict(tiny_overrides(tmp_path), epochs=3, augment=True,   # augmentation: its RNG must resume too
                  checkpoint_minutes=0)                                # last.pt after every epoch
    # 1. uninterrupted (in this process; one thread, like the subprocesses)
    straight = train(TrainConfig.preset("synthetic-isbi", "paper", **dict(values, output_dir=str(tmp_path / "a"))))

    # 2. the same run in a subprocess that SIGKILLs itself at step 3 (epoch 2, step 1 of 2)
    run_b = tmp_path / "b"
    killed = kill_run("mid-epoch", 3, ["train", "--dataset", "synthetic-isbi",
                                       *cli_args(dict(values, output_dir=str(run_b)))])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(run_b / "last.pt", weights_only=True)["epoch"] == 1
    assert len(pd.read_csv(run_b / "log.csv")) == 1 and not (run_b / "metrics_test1.json").exists()
    assert (run_b / "run.lock").is_file()                              # left behind by the dead process

    # 3. resumed, and killed half-way through its first write of last.pt (end of epoch 2)
    killed = kill_run("mid-write", 1, ["train", "--resume", str(run_b / "last.pt")])
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert torch.load(run_b / "last.pt", weights_only=True)["epoch"] == 1
    assert [p.name for p in run_b.glob(".last.*.tmp.pt")]              # the truncated temporary file

    # 4. resume from the checkpoint alone (its config), as a user would after a crash
    resumed = run_cli(["train", "--resume", str(run_b / "last.pt")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming" in resumed.stdout
    assert not list(run_b.glob(".*.tmp*")) and not (run_b / "run.lock").exists()

    log_a, log_b = pd.read_csv(tmp_path / "a" / "log.csv"), pd.read_csv(run_b / "log.csv")
    assert list(log_b.epoch) == [1, 2, 3]
    pd.testing.assert_frame_equal(log_a.drop(columns="seconds"), log_b.drop(columns="seconds"), rtol=1e-6)
    metrics_b = json.loads((run_b / "metrics_test1.json").read_text())
    assert metrics_b["mre"] == pytest.approx(straight.metrics["test1"]["mre"], rel=1e-6)
    pred_a = pd.read_csv(tmp_path / "a" / "predictions_test2.csv")
    pred_b = pd.read_csv(run_b / "predictions_test2.csv")
    pd.testing.assert_frame_equal(pred_a, pred_b, rtol=1e-6)
    state_a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    state_b = torch.load(run_b / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(state_a[k].float(), state_b[k].float(), atol=1e-6) for k in state_a)


def test_resume_true_without_checkpoint_starts_fresh(tmp_path, capsys):
    config = TrainConfig.preset("synthetic-isbi", "paper", **dict(tiny_overrides(tmp_path), epochs=1))
    result = train(config, resume=True)
    assert "No checkpoint" in capsys.readouterr().out and len(result.history) == 1
    # resuming a finished run trains no further epoch and re-evaluates best.pt
    again = train(config, resume=True)
    assert again.history == result.history and again.metrics["test1"]["mre"] == result.metrics["test1"]["mre"]


def test_checkpoint_timer_waits_for_its_minutes(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(train_module, "monotonic", lambda: now[0])
    timer = CheckpointTimer(minutes=10)
    now[0] = 599.0
    assert not timer.due(1, last_epoch=5) and timer.due(5, last_epoch=5)      # the last epoch: always
    now[0] = 600.0
    assert timer.due(2, last_epoch=5)
    timer.wrote()
    now[0] = 1199.0
    assert not timer.due(3, last_epoch=5) and CheckpointTimer(minutes=0).due(1, last_epoch=5)


def test_ctrl_c_waits_for_the_epoch_only_inside_the_epochs():
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with StopAfterEpoch():                       # preparing data: stops at once
            signal.raise_signal(signal.SIGINT)
    with StopAfterEpoch() as stop:
        stop.in_epochs = True
        signal.raise_signal(signal.SIGINT)           # the first: noted, the epoch goes on
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)       # the second: at once
    assert signal.getsignal(signal.SIGINT) is handler


def test_last_pt_only_when_due_and_ctrl_c_resumes_exactly(tmp_path, monkeypatch):
    """With a long interval last.pt is written once, after the last epoch; a Ctrl-C in epoch 2 finishes that
    epoch, writes last.pt, stops, and the resumed run ends exactly as the uninterrupted one."""
    writes = []
    save = train_module.save_checkpoint
    def counting_save(path, **kwargs):
        writes.append((path.name, kwargs["epoch"]))
        return save(path, **kwargs)
    monkeypatch.setattr(train_module, "save_checkpoint", counting_save)
    values = dict(tiny_overrides(tmp_path), epochs=3, lr_schedule="constant", checkpoint_minutes=1e6)
    straight = train(TrainConfig.preset("synthetic-isbi", "paper", **dict(values, output_dir=str(tmp_path / "a"))))
    assert [epoch for name, epoch in writes if name == "last.pt"] == [3]
    assert [name for name, _ in writes].count("best.pt") >= 1            # the result: whenever it improves

    writes.clear()
    loss_fn, steps = train_module.coarse_to_fine_loss, []
    def ctrl_c_at_step_3(*args, **kwargs):                             # epoch 2, step 1 of 2
        steps.append(1)
        if len(steps) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return loss_fn(*args, **kwargs)
    monkeypatch.setattr(train_module, "coarse_to_fine_loss", ctrl_c_at_step_3)
    config = TrainConfig.preset("synthetic-isbi", "paper", **dict(values, output_dir=str(tmp_path / "b")))
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="stopped after epoch 2"):
        train(config)
    assert len(steps) == 4 and [epoch for name, epoch in writes if name == "last.pt"] == [2]
    assert signal.getsignal(signal.SIGINT) is handler                      # the handler is put back

    resumed = train(config, resume=True)
    assert [epoch for name, epoch in writes if name == "last.pt"] == [2, 3]
    log_a, log_b = pd.read_csv(tmp_path / "a" / "log.csv"), pd.read_csv(tmp_path / "b" / "log.csv")
    pd.testing.assert_frame_equal(log_a.drop(columns="seconds"), log_b.drop(columns="seconds"))
    assert resumed.metrics["test1"]["mre"] == straight.metrics["test1"]["mre"]
    state_a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    state_b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
