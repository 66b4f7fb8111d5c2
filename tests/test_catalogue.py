"""The bad-input catalogue: each case ends in one sentence (file named, fix said) or does the safe thing.

Run-folder lock, stale temporary files, OS errors at the CLI, resume checks before any cache, the cache's content
fingerprint, unique prediction ids, ``predict --on-error``, float TIFFs.
"""
import errno
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from engine_helpers import cli_args, one_line_error, tiny_config, tiny_overrides
from PIL import Image

from farnet_lite.atomic import (RunFolderLocked, acquire_run_lock, atomic_path, os_error_sentence, release_run_lock,
                                run_lock, sweep_stale_temps)
from farnet_lite.cli import main
from farnet_lite.engine.train import train


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny finished run (1 epoch): its folder holds best.pt / last.pt; also the config's data and cache."""
    tmp = tmp_path_factory.mktemp("trained")
    torch.set_num_threads(1)
    config = tiny_config(tmp, epochs=1)
    train(config)
    return config


# ----------------------------------------------------------------------------- run-folder lock

def test_second_run_in_the_same_folder_stops_in_one_sentence(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")  # a live process
    code = main(["train", "--dataset", "synthetic-isbi", *cli_args(tiny_overrides(tmp_path))])
    err = one_line_error(capsys)
    assert code == 1 and f"Run folder {run} is in use by process {os.getppid()}" in err and "--output-dir" in err
    assert sorted(p.name for p in run.iterdir()) == ["run.lock"]          # nothing written by the second run
    assert (run / "run.lock").read_text().split()[0] == str(os.getppid())  # and the holder's lock kept
    assert not (tmp_path / "cache" / "prepared").exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / "run.lock").write_text(f"{dead_pid()} {socket.gethostname()}\n")
    with run_lock(tmp_path) as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
    assert not lock.exists()
    release_run_lock(tmp_path)                                           # releasing twice is harmless
    (tmp_path / "run.lock").write_text(f"{os.getppid()}\n")             # a live process, host not written
    with pytest.raises(RunFolderLocked, match="in use by process"):
        acquire_run_lock(tmp_path)


# ----------------------------------------------------------------------------- temporary files

def test_stale_temporary_files_of_dead_writers_are_swept(tmp_path):
    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".last.{dead}.tmp.pt", tmp_path / f".log.{dead}.tmp.csv"]
    kept = [tmp_path / f".last.{alive}.tmp.pt", tmp_path / "last.pt", tmp_path / ".hidden.txt"]
    for path in stale + kept:
        path.write_bytes(b"x" * 10)
    assert sorted(sweep_stale_temps(tmp_path)) == sorted(stale)
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)


def test_atomic_path_names_the_target_when_the_write_fails(tmp_path):
    target = tmp_path / "metrics.json"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("{}")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert info.value.filename == str(target) and not list(tmp_path.iterdir())
    sentence = os_error_sentence(info.value)
    assert str(target) in sentence and "disk is full" in sentence


# ----------------------------------------------------------------------------- OS errors at the CLI

@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                       (errno.EACCES, "permissions")])
def test_os_errors_while_training_are_one_sentence(tmp_path, capsys, monkeypatch, code, fix):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "run" / "config.json"))
    monkeypatch.setattr("farnet_lite.config.TrainConfig.save", refuse)
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(dict(tiny_overrides(tmp_path),
                                                                        epochs=1))]) == 1
    err = one_line_error(capsys)
    assert "run/config.json" in err and fix in err
    assert not (tmp_path / "run" / "run.lock").exists()                  # released on the way out


def test_failed_checkpoint_write_is_one_sentence(tmp_path, capsys, monkeypatch):
    import farnet_lite.engine.checkpoint as checkpoint

    def full(obj, f, *args, **kwargs):  # what torch.save raises on a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(checkpoint.torch, "save", full)
    assert main(["train", "--dataset", "synthetic-isbi", *cli_args(dict(tiny_overrides(tmp_path),
                                                                        epochs=1))]) == 1
    err = one_line_error(capsys)
    assert "best.pt" in err or "last.pt" in err
    assert "disk" in err and not list((tmp_path / "run").glob(".*.tmp*"))


# ----------------------------------------------------------------------------- resume

def test_resume_into_another_dataset_is_refused_before_any_cache(trained, tmp_path, capsys):
    cache = tmp_path / "other-cache"
    code = main(["train", "--dataset", "synthetic-hand", "--resume", str(tmp_path / "x" / "last.pt")])
    assert code == 1 and "does not exist" in one_line_error(capsys)
    last = f"{trained.output_dir}/last.pt"
    code = main(["train", "--dataset", "synthetic-hand", "--resume", last, "--cache-dir", str(cache),
                 "--output-dir", str(tmp_path / "run")])
    err = one_line_error(capsys)
    assert code == 1 and "trained on 'synthetic-isbi', not 'synthetic-hand'" in err and last in err
    assert not cache.exists()


# ----------------------------------------------------------------------------- cache fingerprint

def test_a_changed_image_rebuilds_the_cache(tmp_path):
    from farnet_lite.data.cache import load_cache, prepare_cache
    from farnet_lite.data.custom import read_custom
    from farnet_lite.data.imageio import save_grey

    for name, value in (("a.png", 50), ("b.png", 100)):
        save_grey(np.full((8, 8), value, np.uint8), tmp_path / name)
    (tmp_path / "marks.csv").write_text("image,split,x1,y1\na.png,train,1,1\nb.png,train,2,2\n")
    dataset = read_custom(tmp_path / "marks.csv", "train")
    path = prepare_cache(dataset, (8, 8), tmp_path / "c.npz", num_workers=0, codec="png", progress=False)
    assert load_cache(path).images[1].max() == 100
    save_grey(np.full((8, 8), 200, np.uint8), tmp_path / "b.png")       # same name, size and landmarks
    os.utime(tmp_path / "b.png", ns=(10**18, 10**18))
    prepare_cache(dataset, (8, 8), path, num_workers=0, codec="png", progress=False)
    assert load_cache(path).images[1].max() == 200


# ----------------------------------------------------------------------------- predict

def test_predict_ids_are_relative_paths_and_the_csv_keeps_the_source(trained, tmp_path):
    from farnet_lite.data.dicom import write_dicom
    from farnet_lite.data.imageio import save_grey
    from farnet_lite.engine.predict import predict

    image = np.random.default_rng(0).integers(0, 255, (40, 30), dtype=np.uint8)
    for name in ("a/image.png", "b/image.png", "b/image.jpg"):
        save_grey(image, tmp_path / "in" / name)
    write_dicom(tmp_path / "in" / "c" / "scan.dcm", image.astype(np.uint16) * 16, spacing=(0.2, 0.5))
    out = tmp_path / "out"
    frame = predict(f"{trained.output_dir}/best.pt", [tmp_path / "in" / d for d in ("a", "b", "c")],
                    output_dir=out)
    ids = ["a/image.png", "b/image.jpg", "b/image.png", "c/scan.dcm"]
    assert frame["image_id"].unique().tolist() == ids and len(frame) == 4 * trained.num_landmarks
    written = pd.read_csv(out / "predictions.csv")
    assert written["image_id"].unique().tolist() == ids
    assert written["source"].unique().tolist() == [str(tmp_path / "in" / i) for i in ids]
    assert sorted(str(p.relative_to(out / "overlays")) for p in (out / "overlays").rglob("*.png")) == \
        sorted(f"{i}.png" for i in ids)
    # mm where the file says its spacing: (row, column) = (y, x) mm per pixel
    scan = written[written["image_id"] == "c/scan.dcm"]
    np.testing.assert_allclose(scan["x_mm"], scan["x"] * 0.5, atol=1e-4)     # the CSV keeps 6 digits
    np.testing.assert_allclose(scan["y_mm"], scan["y"] * 0.2, atol=1e-4)
    assert written[written["image_id"] != "c/scan.dcm"]["x_mm"].isna().all()


def test_predict_on_error_stop_writes_nothing_and_skip_writes_the_rest(trained, tmp_path, capsys):
    from farnet_lite.data.imageio import save_grey

    folder = tmp_path / "in"
    for name in ("ok1.png", "ok2.png"):
        save_grey(np.full((40, 30), 80, np.uint8), folder / name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    best = f"{trained.output_dir}/best.pt"
    assert main(["predict", best, str(folder), "--output-dir", str(tmp_path / "stop")]) == 1
    err = one_line_error(capsys)
    assert "broken.png" in err and "--on-error skip" in err and not (tmp_path / "stop").exists()
    assert main(["predict", best, str(folder), "--output-dir", str(tmp_path / "skip"), "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "2 images" in captured.out
    written = pd.read_csv(tmp_path / "skip" / "predictions.csv")
    assert written["image_id"].unique().tolist() == ["ok1.png", "ok2.png"]


def test_predict_help_lists_the_accepted_formats(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(word in text for word in ("PNG", "JPEG", "BMP", "TIFF", "DICOM", "--on-error"))


# ----------------------------------------------------------------------------- images

def test_float_tiff_is_scaled_by_its_range_or_refused(tmp_path):
    from farnet_lite.data.errors import DatasetError
    from farnet_lite.data.imageio import load_grey

    values = np.linspace(0.0, 1.0, 24, dtype=np.float32).reshape(4, 6)
    Image.fromarray(values, mode="F").save(tmp_path / "unit.tif")
    image = load_grey(tmp_path / "unit.tif")
    np.testing.assert_array_equal(image, np.round(values * 255).astype(np.uint8))   # not a black image
    values[1, 1] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(DatasetError, match=r"nan\.tif.*not finite"):
        load_grey(tmp_path / "nan.tif")
