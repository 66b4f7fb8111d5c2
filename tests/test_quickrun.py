"""The course's shared quick run (farnet_lite.reproduction.quickrun) and the real-data lookup (datasets.real_data_root)."""
import json

import pytest

from farnet_lite.data.synthetic import MANIFEST
from farnet_lite.datasets import real_data_root
from farnet_lite.reproduction import quickrun

TINY = dict(system="unet", input_size=(32, 32), batch_size=4, epochs=1, deterministic=True)
"""A seconds-long stand-in for the quick preset's FARNet: the reuse logic does not depend on the model."""


def _fake_copy(folder, synthetic=False):
    (folder / "RawImage").mkdir(parents=True)
    if synthetic:
        (folder / MANIFEST).write_text("{}")
    return folder


def test_real_data_root_prefers_data_root_then_shared(tmp_path):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    data = repo / "notebooks" / "data"
    assert real_data_root("isbi2015", data, search_from=[repo / "notebooks", repo]) is None
    shared = _fake_copy(tmp_path / "shared" / "data" / "isbi2015")       # ../shared/data relative to the repo
    assert real_data_root("isbi2015", data, search_from=[repo / "notebooks", repo]) == shared.resolve()
    assert real_data_root("isbi2015", data, search_from=[repo / "notebooks"]) is None  # not ../ of notebooks/
    mine = _fake_copy(data / "isbi2015")                                 # notebook 00's download wins
    assert real_data_root("isbi2015", data, search_from=[repo]) == mine.resolve()
    (tmp_path / "shared" / "data" / "hand_dha").mkdir()                  # an empty folder is no copy
    assert real_data_root("hand", data, search_from=[repo]) is None
    with pytest.raises(ValueError, match="no public folder"):
        real_data_root("custom", data)


def test_real_data_root_skips_synthetic_copies(tmp_path):
    data = tmp_path / "data"
    _fake_copy(data / "isbi2015", synthetic=True)
    assert real_data_root("isbi2015", data, search_from=[]) is None
    (tmp_path / "base").mkdir()
    shared = _fake_copy(tmp_path / "shared" / "data" / "isbi2015")      # base/../shared/data/isbi2015
    assert real_data_root("isbi2015", data, search_from=[tmp_path / "base"]) == shared.resolve()


def test_quick_config_real_or_synthetic(tmp_path, monkeypatch):
    monkeypatch.setattr(quickrun, "QUICK_SYNTHETIC", dict(n_train=8, n_test1=4, n_test2=0))
    data, runs = tmp_path / "data", tmp_path / "runs"
    config = quickrun.quick_config(data, runs, search_from=[])
    assert config.dataset == "synthetic-isbi"
    manifest = json.loads((data / "synthetic" / "isbi2015-quick" / MANIFEST).read_text())
    assert (manifest["n_train"], manifest["n_test1"]) == (8, 4)
    assert config.output_dir == str(runs / "quick-synthetic-isbi") and config.val_split == ""
    _fake_copy(data / "isbi2015")
    real = quickrun.quick_config(data, runs, search_from=[])
    assert (real.dataset, real.data_root) == ("isbi2015", str((data / "isbi2015").resolve()))
    assert real.output_dir == str(runs / "quick-isbi2015") and real.eval_splits == ("test1",)
    same = {k: v for k, v in real.to_dict().items() if k not in ("dataset", "data_root", "output_dir")}
    assert same == {k: v for k, v in config.to_dict().items() if k not in ("dataset", "data_root", "output_dir")}


def test_quick_run_reuses_a_finished_run_and_retrains_a_changed_one(tmp_path, monkeypatch):
    monkeypatch.setattr(quickrun, "QUICK_SYNTHETIC", dict(n_train=8, n_test1=4, n_test2=0))
    args = dict(data_root=tmp_path / "data", runs_root=tmp_path / "runs", search_from=[])
    first = quickrun.quick_run(**args, **TINY)
    checkpoint = first.run_dir / "last.pt"
    saved = checkpoint.read_bytes()
    assert first.metrics["test1"]["n_images"] == 4

    def no_training(*a, **k):
        raise AssertionError("a finished quick run was trained again")

    monkeypatch.setattr(quickrun, "train", no_training)
    again = quickrun.quick_run(**args, **dict(TINY, progress=True, num_workers=2))   # bookkeeping only
    assert checkpoint.read_bytes() == saved
    assert again.run_dir == first.run_dir and again.best_epoch == -1
    assert again.metrics["test1"]["mre"] == pytest.approx(first.metrics["test1"]["mre"])
    assert [row["epoch"] for row in again.history] == [1]
    assert quickrun.finished_run(quickrun.quick_config(**args, **dict(TINY, lr=5e-4))) is None
    with pytest.raises(AssertionError, match="trained again"):
        quickrun.quick_run(**args, **dict(TINY, lr=5e-4))                 # another config: it must train
    assert not checkpoint.exists()                                        # ... in an emptied folder
