"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) on a tiny synthetic run."""
import numpy as np
import pandas as pd
import pytest
from engine_helpers import cli_args, run_cli, tiny_overrides

from farnet_lite.engine.evaluate import evaluate


def test_torchrun_two_cpu_processes(tmp_path):
    torch_distributed = pytest.importorskip("torch.distributed")
    if not torch_distributed.is_available() or not torch_distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    values = dict(tiny_overrides(tmp_path), input_size=(64, 64), epochs=2, batch_size=2, device="cpu")
    args = ["--standalone", "--nproc_per_node=2", "-m", "farnet_lite.cli", "train", "--dataset",
            "synthetic-isbi", *cli_args(values)]
    done = run_cli(args, module=("-m", "torch.distributed.run"), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("Run folder:") == 1                       # only rank 0 reports (and writes)
    run = tmp_path / "run"
    log = pd.read_csv(run / "log.csv")
    assert list(log.epoch) == [1, 2] and np.isfinite(log.val_mre).all()
    # the gathered predictions are complete, in dataset order, and equal a single-process evaluation
    ddp = pd.read_csv(run / "predictions_test1.csv", dtype={"image_id": str})
    assert len(ddp) == 4 * 19 and list(ddp.image_id.unique()) == ["151", "152", "153", "154"]
    single = evaluate(run / "best.pt", ["test1"], output_dir=tmp_path / "single", device="cpu")["test1"]
    np.testing.assert_allclose(ddp[["x", "y"]].to_numpy().reshape(4, 19, 2), single.pred, atol=1e-4)
    assert len(pd.read_csv(run / "predictions_test2.csv")) == 2 * 19


# Run under torchrun in place of `-m farnet_lite.cli`: every rank saves its augmentation generator's state at the
# start and the end of each epoch, then the CLI runs as usual.
RECORDER = """
import os, sys
import torch
import farnet_lite.engine.train as train_module
from farnet_lite import cli

out, rank, epoch_fn = sys.argv[1], int(os.environ.get("RANK", "0")), train_module.train_one_epoch

def recorded(model, source, order, optimizer, scheduler, scaler, config, amp_dtype, aug_generator, epoch, *args):
    torch.save(aug_generator.get_state(), f"{out}/start-{epoch}-{rank}.pt")
    loss = epoch_fn(model, source, order, optimizer, scheduler, scaler, config, amp_dtype, aug_generator, epoch, *args)
    torch.save(aug_generator.get_state(), f"{out}/end-{epoch}-{rank}.pt")
    return loss

train_module.train_one_epoch = recorded
sys.exit(cli.main(sys.argv[2:]))
"""


def test_resumed_ddp_ranks_keep_their_own_augmentation_rng(tmp_path):
    """Each rank draws its own augmentation; after --resume each rank continues its own generator, not rank 0's."""
    torch_distributed = pytest.importorskip("torch.distributed")
    if not torch_distributed.is_available() or not torch_distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import torch

    script, states = tmp_path / "recorder.py", tmp_path / "states"
    script.write_text(RECORDER)
    states.mkdir()
    values = dict(tiny_overrides(tmp_path), input_size=(32, 32), epochs=1, batch_size=2, device="cpu",
                  augment=True, lr_schedule="constant", checkpoint_minutes=0, eval_splits=["test1"])
    torchrun = ["--standalone", "--nproc_per_node=2", str(script), str(states)]
    first = run_cli([*torchrun, "train", "--dataset", "synthetic-isbi", *cli_args(values)],
                    module=("-m", "torch.distributed.run"), timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    last = tmp_path / "run" / "last.pt"
    resumed = run_cli([*torchrun, "train", "--resume", str(last), "--epochs", "2"],
                      module=("-m", "torch.distributed.run"), timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout

    def state(name):
        return torch.load(states / f"{name}.pt", weights_only=True)

    assert not torch.equal(state("end-1-0"), state("end-1-1"))                 # the ranks draw differently
    for rank in (0, 1):
        assert torch.equal(state(f"start-2-{rank}"), state(f"end-1-{rank}"))   # each rank resumed its own
    saved = torch.load(last, weights_only=True)["rng"]["per_rank"]["augment"]     # loadable with weights_only
    assert len(saved) == 2 and all(torch.equal(saved[r], state(f"end-2-{r}")) for r in (0, 1))   # every rank's
