"""DistributedDataParallel through torchrun: 2 CPU processes (gloo) on a tiny synthetic run."""
import numpy as np
import pandas as pd
import pytest

from engine_helpers import cli_args, run_cli, tiny_overrides
from farnet_lite.evaluate import evaluate


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
