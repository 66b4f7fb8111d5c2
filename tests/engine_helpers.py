"""Tiny synthetic runs shared by the engine tests (test_engine, test_resume, test_ddp, test_cli).

The engine mechanics are tested on the lightest system (FPN on DenseNet-121, 8 M parameters) at a 32x32 input
on 8 + 4 + 2 synthetic ISBI-layout images, so that a 2-epoch run takes seconds on 2 CPU cores; FARNet itself
(msfa_fr) runs through the same engine in test_demo.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


from farnet_lite.config import TrainConfig
from farnet_lite.data.synthetic import write_synthetic_isbi

REPO = Path(__file__).resolve().parents[1]


def tiny_isbi(root) -> Path:
    """8 training, 4 Test1 (labelled) and 2 Test2 (unlabelled) synthetic cephalograms of 64x52 pixels."""
    return write_synthetic_isbi(Path(root), n_train=8, n_test1=4, n_test2=2, size=(64, 52), seed=0)


def tiny_overrides(tmp_path) -> dict:
    """TrainConfig fields of the tiny run (also given to the CLI as options)."""
    return dict(data_root=str(tiny_isbi(Path(tmp_path) / "data")), cache_dir=str(Path(tmp_path) / "cache"),
                output_dir=str(Path(tmp_path) / "run"), input_size=(32, 32), system="fpn", epochs=2,
                batch_size=4, lr=1e-3, sigma=1.5, progress=False, num_workers=0)


def tiny_config(tmp_path, **changes) -> TrainConfig:
    return TrainConfig.preset("synthetic-isbi", "paper", **dict(tiny_overrides(tmp_path), **changes))


def cli_args(values: dict) -> list:
    """``{"input_size": (32, 32), "progress": False, ...}`` -> ``["--input-size", "32", "32", "--no-progress"]``."""
    args = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (tuple, list)):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args


def run_cli(args, env=None, timeout=300, module=("-m", "farnet_lite.cli")) -> subprocess.CompletedProcess:
    """Run ``python -m farnet_lite.cli ARGS`` in a subprocess from the repository root."""
    full_env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, *module, *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(capsys) -> str:
    """The stderr of a CLI call that failed as it should: one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err
