"""tools/gpu_session.py end to end on the CPU: `prepare` and the run on tiny synthetic data, through the command
line the GPU machine runs, with scipy, scikit-learn, pooch, pydicom and the notebook packages made unimportable
(the run must not need them).

The tiny run: FPN (the engine tests' light system) at 64x64 (ISBI) and 64x32 (spine), 2 epochs each.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from farnet_lite.data.isbi2015 import read_isbi2015
from farnet_lite.data.spine import paper_split_indices, read_spine
from farnet_lite.data.synthetic import write_synthetic_isbi, write_synthetic_spine
from farnet_lite.metrics import radial_errors

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_session", REPO / "tools" / "gpu_session.py")
gpu_session = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_session)

BLOCKED = ("scipy", "sklearn", "pooch", "pydicom", "ipywidgets", "IPython")   # the run must import none of them
OUTPUTS = {"benchmark.json", "isbi_metrics.json", "isbi_predictions.csv", "spine_metrics.json",
           "spine_predictions.csv", "log.txt", "provenance.json"}


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """Prepare the carry folder in-process, then run the session in a subprocess; the folders and the outputs."""
    root = tmp_path_factory.mktemp("gpu_session")
    data, carry, out, blocked = root / "data", root / "carry", root / "out", root / "blocked"
    write_synthetic_isbi(data / "isbi2015", n_train=8, n_test1=4, n_test2=3)
    write_synthetic_spine(data / "spine_aasce", n_training=12, n_test=3)
    gpu_session.main(["prepare", "--data-root", str(data), "--carry", str(carry), "--isbi-size", "64", "64",
                      "--spine-sizes", "64x32", "--workers", "0"])
    for name in BLOCKED:                                  # `import scipy` etc. fail in the run's interpreter
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked by the test')\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(blocked), str(REPO)]))
    command = [sys.executable, "tools/gpu_session.py", "--carry", str(carry), "--out", str(out), "--budget-s", "300",
               "--device", "cpu", "--system", "fpn", "--bench-batch", "2", "--bench-steps", "1", "--bench-warmup",
               "1", "--bench-workers", "0", "--compile-budget-s", "1", "--max-epochs", "2"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    blocked_check = subprocess.run([sys.executable, "-c", "import scipy"], env=env, capture_output=True, text=True)
    assert "blocked by the test" in blocked_check.stderr
    manifest = json.loads((carry / "manifest.json").read_text())
    return SimpleNamespace(data=data, carry=carry, out=out, manifest=manifest,
                           read=lambda name: json.loads((out / name).read_text()))


def entry(manifest, dataset, role):
    return next(f for f in manifest["files"] if f["dataset"] == dataset and f["role"] == role)


def test_prepare_writes_every_split_and_the_paper_spine_split(done):
    files = {(f["dataset"], f["role"]): f for f in done.manifest["files"]}
    assert set(files) == {("isbi2015", r) for r in ("train", "test1", "test2")} | \
        {("spine", r) for r in ("trainval", "test50", "test")}
    assert sorted(p.name for p in done.carry.glob("*.npz")) == sorted(f["file"] for f in files.values())
    assert [files["isbi2015", r]["labelled"] for r in ("train", "test1", "test2")] == [8, 4, 0]
    assert files["isbi2015", "train"]["size"] == [64, 64] and files["spine", "test"]["size"] == [64, 32]
    assert files["isbi2015", "train"]["original_size_median"] == [240, 193]
    training = read_spine(done.data / "spine_aasce", split="training")
    trainval, test50 = paper_split_indices(training)
    assert files["spine", "trainval"]["ids"] == [training.ids[i] for i in trainval]
    assert files["spine", "test50"]["ids"] == [training.ids[i] for i in test50]
    assert files["spine", "test"]["labelled"] == 0 and files["spine", "test"]["images"] == 3
    assert done.manifest["total_bytes"] == sum(f["bytes"] for f in files.values())
    assert done.manifest["git"]["commit"] is None or len(done.manifest["git"]["commit"]) == 40


def test_run_leaves_the_seven_files(done):
    assert {p.name for p in done.out.iterdir()} == OUTPUTS
    assert all(p.stat().st_size < 16 * 2**20 for p in done.out.iterdir())
    log = (done.out / "log.txt").read_text()
    assert "step spine: ok" in log and "step compile: partial" in log


def test_benchmark_has_both_pipelines_and_their_ratio(done):
    bench = done.read("benchmark.json")
    for name, batch in (("fast", 2), ("official_style", 1)):
        assert bench[name]["batch"] == batch
        assert bench[name]["train_images_per_s"] > 0 and bench[name]["infer_images_per_s"] > 0
        assert bench[name]["train_peak_mb"] > 0
    assert bench["fast"]["channels_last"] and not bench["official_style"]["channels_last"]
    assert bench["ratio_train"] == pytest.approx(bench["fast"]["train_images_per_s"]
                                                 / bench["official_style"]["train_images_per_s"])
    assert bench["ratio_infer"] == pytest.approx(bench["fast"]["infer_images_per_s"]
                                                 / bench["official_style"]["infer_images_per_s"])
    assert bench["input_size"] == [64, 64] and bench["original_size"] == [240, 193]


def test_isbi_predictions_match_ids_and_reproduce_the_reported_mre(done):
    frame = pd.read_csv(done.out / "isbi_predictions.csv", dtype={"image_id": str})
    assert list(frame.columns) == ["split", "image_id", "landmark", "x", "y", "score"]
    for split in ("test1", "test2"):
        rows = frame[frame.split == split]
        assert list(dict.fromkeys(rows.image_id)) == entry(done.manifest, "isbi2015", split)["ids"]
        assert len(rows) == 19 * len(entry(done.manifest, "isbi2015", split)["ids"])
        assert all(list(group) == list(range(1, 20)) for _, group in rows.groupby("image_id").landmark)
    metrics = done.read("isbi_metrics.json")
    assert metrics["status"] == "done" and metrics["epochs_reached"] == 2 and len(metrics["history"]) == 2
    assert metrics["metrics"]["test2"].startswith("labels not present")
    test1 = read_isbi2015(done.data / "isbi2015", split="test1")
    truth = np.stack([test1.landmarks(i) for i in range(len(test1))])              # (N, 19, 2) original px
    pred = frame[frame.split == "test1"][["x", "y"]].to_numpy().reshape(len(test1), 19, 2)
    assert metrics["metrics"]["test1"]["mre"] == pytest.approx(radial_errors(pred, truth, 0.1).mean(), rel=1e-4)
    assert metrics["best_score"] == min(row["val_mre"] for row in metrics["history"])


def test_spine_predictions_cover_test50_and_the_aasce_test(done):
    frame = pd.read_csv(done.out / "spine_predictions.csv", dtype={"image_id": str})
    for split in ("test50", "test"):
        ids = entry(done.manifest, "spine", split)["ids"]
        rows = frame[frame.split == split]
        assert list(dict.fromkeys(rows.image_id)) == ids and len(rows) == 68 * len(ids)
    assert np.isfinite(frame[["x", "y", "score"]].to_numpy()).all()
    metrics = done.read("spine_metrics.json")
    assert math.isfinite(metrics["metrics"]["test50"]["mse_fraction"])
    assert math.isfinite(metrics["metrics"]["test50"]["pearson"])
    assert metrics["metrics"]["test"].startswith("labels not present")
    assert metrics["train_images"] + metrics["val_images"] == entry(done.manifest, "spine", "trainval")["images"]


def test_provenance_records_command_commit_device_and_steps(done):
    prov = done.read("provenance.json")
    assert prov["command"].startswith("python3 tools/gpu_session.py --carry ") and "--out $OUT" in prov["command"]
    assert str(done.out) not in json.dumps(prov)
    assert prov["git"] == done.manifest["git"] and prov["environment"]["torch"] == torch.__version__
    steps = prov["steps"]
    assert [steps[s]["status"] for s in ("benchmark", "compile", "isbi", "spine")] == ["ok", "partial", "ok", "ok"]
    assert "did not finish within 1 s" in steps["compile"]["reason"]
    assert steps["isbi"]["epochs_reached"] == steps["spine"]["epochs_reached"] == 2
    assert all(steps[s]["wall_s"] > 0 for s in steps) and prov["wall_s"] >= sum(s["wall_s"] for s in steps.values())


def test_plan_epochs_fits_the_budget_and_the_cap():
    assert gpu_session.plan_epochs(done=1, used_s=10.0, epoch_s=10.0, budget_s=100.0, cap=300) == 10
    assert gpu_session.plan_epochs(done=2, used_s=12.0, epoch_s=2.0, budget_s=100.0, cap=300) == 46
    assert gpu_session.plan_epochs(done=1, used_s=10.0, epoch_s=1.0, budget_s=1000.0, cap=300) == 300
    assert gpu_session.plan_epochs(done=2, used_s=120.0, epoch_s=60.0, budget_s=100.0, cap=300) == 2


def test_spine_candidate_sizes_keep_two_to_one_and_multiples_of_32():
    sizes = gpu_session.spine_candidate_sizes((1024, 512))
    assert sizes[:3] == [(1024, 512), (960, 480), (896, 448)] and sizes[-1] == (256, 128)
    assert all(h == 2 * w and h % 32 == 0 and w % 32 == 0 for h, w in sizes)


def test_a_failing_step_is_recorded_and_the_next_one_runs(tmp_path):
    args = SimpleNamespace(out=str(tmp_path), carry="carry/gpu", budget_s=1e6)
    session = gpu_session.Session(args, {"files": [], "git": {"commit": None}}, torch.device("cpu"))

    def broken(budget_s):
        raise RuntimeError("out of memory")

    session.step("first", 10.0, broken)
    session.step("second", 10.0, lambda budget_s: {"epochs_reached": 3})
    session.step("third", 0.5, lambda budget_s: {}, minimum_s=1.0)
    steps = json.loads((tmp_path / "provenance.json").read_text())["steps"]
    assert steps["first"]["status"] == "error" and steps["first"]["error"] == "RuntimeError: out of memory"
    assert steps["second"] == dict(steps["second"], status="ok", epochs_reached=3, budget_s=10.0)
    assert steps["third"]["status"] == "skipped"


def test_compile_is_off_by_default_and_otherwise_runs_last_on_time_kept_back(tmp_path, monkeypatch):
    """The compile probe took 17 % of the budget and FARNet did not compile within 540 s on 2 CPU cores: off unless
    asked; asked, it runs after the training steps, on a budget they leave to it."""
    budgets = []
    monkeypatch.setattr(gpu_session, "run_benchmark", lambda session, args, b: budgets.append(("benchmark", b)))
    monkeypatch.setattr(gpu_session, "run_training", lambda session, args, dataset, b: budgets.append((dataset, b)))
    monkeypatch.setattr(gpu_session, "run_compile", lambda session, args, b: budgets.append(("compile", b)))
    monkeypatch.setattr(sys, "stdout", sys.stdout)            # run() puts the real streams back: undone at the end
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    (tmp_path / "carry").mkdir()
    (tmp_path / "carry" / "manifest.json").write_text(json.dumps({"files": [], "git": {"commit": None}}))
    for compile_s in (0.0, 30.0):
        budgets.clear()
        budget = time.perf_counter() - gpu_session.PROCESS_START + 1000.0     # 1000 s from now
        args = SimpleNamespace(carry=str(tmp_path / "carry"), out=str(tmp_path / f"out{compile_s:g}"), device="cpu",
                               budget_s=budget, reserve_s=15.0, compile_budget_s=compile_s, bench_budget_s=60.0,
                               isbi_share=0.6)
        steps = gpu_session.run(args)["steps"]
        assert list(steps) == ["benchmark", "isbi", "spine", "compile"]
        # the stubs take no time: each training step's budget is its share of the 1000 s, less the 30 kept back
        assert budgets[1][1] == pytest.approx(0.6 * (1000.0 - 15.0 - compile_s), abs=2.0)
        assert budgets[2][1] == pytest.approx(1000.0 - 15.0 - compile_s, abs=2.0)
        if not compile_s:
            assert steps["compile"]["status"] == "skipped" and "off by default" in steps["compile"]["reason"]
            assert [name for name, _ in budgets] == ["benchmark", "isbi2015", "spine"]
        else:
            assert [name for name, _ in budgets] == ["benchmark", "isbi2015", "spine", "compile"]
            assert budgets[3][1] == pytest.approx(30.0)          # the spine left the compile probe its 30 s


def test_the_transfer_counts_the_working_tree_and_refuses_too_much(done, tmp_path, monkeypatch, capsys):
    tracked = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, text=True,
                             check=True).stdout.split("\0")
    tree = gpu_session.transfer_tree_bytes()
    assert tree >= sum((REPO / n).stat().st_size for n in tracked if n and (REPO / n).is_file()) > 2**20
    assert json.loads((done.carry / "manifest.json").read_text())["transfer"]["limit_mib"] == 64.0
    gpu_session.check_transfer(60 * 2**20, 4 * 2**20)                               # 64.0 MiB: it travels
    with pytest.raises(ValueError, match=r"working tree \(60.0 MiB\) plus the carry \(4.1 MiB\) is 64.1 MiB, over"):
        gpu_session.check_transfer(60 * 2**20, int(4.1 * 2**20))
    prepare = ["prepare", "--data-root", str(done.data), "--isbi-size", "64", "64", "--spine-sizes", "64x32",
               "--workers", "0"]
    monkeypatch.setattr(gpu_session, "transfer_tree_bytes", lambda repo=None: int(62.5 * 2**20))
    with pytest.raises(ValueError, match="The working tree alone is 62.5 MiB of the 64 MiB"):
        gpu_session.main([*prepare, "--carry", str(tmp_path / "refused")])
    monkeypatch.setattr(gpu_session, "transfer_tree_bytes", lambda repo=None: 60 * 2**20)   # 3 MiB left
    manifest = gpu_session.main([*prepare, "--carry", str(tmp_path / "carry")]) or \
        json.loads((tmp_path / "carry" / "manifest.json").read_text())
    assert manifest["transfer"]["tree_bytes"] == 60 * 2**20
    assert "the carry may take 3.0 MiB" in capsys.readouterr().out
