"""Bad inputs of ``farnet predict`` / ``evaluate`` and the image readers: EXIF orientation, folders with
subfolders and non-image files, two predictions into one folder, big images, batch sizes. Each case does the right
thing or ends in one sentence naming the file (or option) and the fix, with exit status 1 from the CLI."""
import os
import socket

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from engine_helpers import one_line_error
from PIL import Image

from farnet_lite.cli import main
from farnet_lite.config import TrainConfig
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import find_images, image_size, read_image, read_reduced, save_grey
from farnet_lite.engine.checkpoint import save_checkpoint
from farnet_lite.engine.evaluate import evaluate
from farnet_lite.engine.predict import predict
from farnet_lite.pictures.plots import OVERLAY_MAX_SIDE, overlay_copy
from farnet_lite.systems import build_model_from_config

BLOCKS = np.kron(np.arange(48, dtype=np.uint8).reshape(8, 6) * 5, np.ones((8, 8), np.uint8))   # (64, 48)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained FPN at a 32x32 input (19 landmarks) saved as a checkpoint: predict only needs its shapes."""
    config = TrainConfig.preset("synthetic-isbi", "paper", input_size=(32, 32), system="fpn", pretrained=False)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    return str(save_checkpoint(path, model=build_model_from_config(config), config=config, epoch=1))


def with_orientation(array, path, orientation, **options):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, exif=exif, **options)
    return path


# ----------------------------------------------------------------------------- EXIF orientation

@pytest.mark.parametrize("suffix, options", [(".png", {}), (".jpg", {"quality": 100})])
def test_exif_orientation_6_reads_upright(tmp_path, suffix, options):
    path = with_orientation(BLOCKS, tmp_path / f"sideways{suffix}", 6, **options)
    upright = np.rot90(BLOCKS, -1)                                   # orientation 6: turn 90 degrees clockwise
    image = read_image(path)[0]
    assert image.shape == (48, 64) and np.abs(image.astype(int) - upright).max() <= 1
    assert image_size(path) == (48, 64)                              # the header size, turned too


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_draft_decode_honours_every_orientation(tmp_path, orientation):
    path = with_orientation(BLOCKS, tmp_path / "o.jpg", orientation, quality=100)
    full = read_image(path)[0]
    reduced = read_reduced(path, (8, 8))                             # 64x48 / 4 >= 8x8: a draft by 4
    assert reduced.scale == 4 and reduced.original_size == full.shape
    means = full.reshape(full.shape[0] // 4, 4, full.shape[1] // 4, 4).mean(axis=(1, 3))
    np.testing.assert_allclose(reduced.image, means, atol=1)          # same pixels, same way up
    # an odd size would put the draft's padded last block at the top or left: decoded fully instead
    odd = with_orientation(BLOCKS[:61, :45], tmp_path / "odd.jpg", orientation, quality=100)
    assert read_reduced(odd, (8, 8)).scale == (4 if orientation in (1, 5) else 1)


# ----------------------------------------------------------------------------- folders

def write_tree(root):
    image = np.full((40, 30), 90, np.uint8)
    save_grey(image, root / "top.png")
    save_grey(image, root / "a" / "image.png")
    save_grey(image, root / "b" / "deeper" / "image.png")
    Image.fromarray(image).save(root / "a" / "anim.gif")
    Image.fromarray(image).save(root / "b" / "photo.webp")
    Image.fromarray(image).save(root / "no_suffix", format="PNG")
    (root / "README.txt").write_text("my x-rays\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def test_folders_are_searched_with_subfolders_and_other_files_are_listed(tmp_path):
    found = find_images([write_tree(tmp_path / "tree")])
    assert found.ids == ["a/anim.gif", "a/image.png", "b/deeper/image.png", "b/photo.webp", "no_suffix",
                         "top.png"]
    assert found.skipped == {str(tmp_path / "tree" / ".DS_Store"): "a hidden file",
                             str(tmp_path / "tree" / "README.txt"):
                                 "not an image file (neither Pillow nor pydicom recognises it)"}
    only_sub = tmp_path / "only_sub"
    save_grey(np.zeros((8, 8), np.uint8), only_sub / "a" / "x.png")
    assert find_images([only_sub]).ids == ["a/x.png"]               # relative to the folder given
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("-")
    with pytest.raises(FileNotFoundError, match=r"holds no image files .* in its subfolders neither \(left out: "
                                                r"sub/notes.txt: not an image file"):
        find_images([tmp_path / "empty"])


def test_links_to_folders_are_followed_once(tmp_path):
    save_grey(np.zeros((8, 8), np.uint8), tmp_path / "elsewhere" / "x.png")
    save_grey(np.zeros((8, 8), np.uint8), tmp_path / "tree" / "y.png")
    (tmp_path / "tree" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "tree" / "loop").symlink_to(tmp_path / "tree")
    found = find_images([tmp_path / "tree"])
    assert found.ids == ["linked/x.png", "y.png"]
    assert found.skipped == {str(tmp_path / "tree" / "loop"): "a link to a folder searched already"}


def test_predict_a_tree_lists_what_it_skipped(checkpoint, tmp_path, capsys):
    tree = write_tree(tmp_path / "tree")
    out = tree / "results"                                           # an output folder inside the input tree
    assert main(["predict", checkpoint, str(tree), "--output-dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert "6 images" in captured.out
    assert captured.err.splitlines() == [f"farnet predict: skipped {tree / '.DS_Store'}: a hidden file",
                                         f"farnet predict: skipped {tree / 'README.txt'}: not an image file "
                                         f"(neither Pillow nor pydicom recognises it)"]
    written = pd.read_csv(out / "predictions.csv")
    assert written["image_id"].unique().tolist() == ["a/anim.gif", "a/image.png", "b/deeper/image.png",
                                                     "b/photo.webp", "no_suffix", "top.png"]
    assert (out / "overlays" / "b" / "deeper" / "image.png.png").is_file()
    # again: the first run's results and overlays are not taken as inputs
    frame = predict(checkpoint, tree, output_dir=out, device="cpu")
    assert frame["image_id"].nunique() == 6
    assert frame.attrs["skipped"][str(out)] == "the output folder, not searched"


# ----------------------------------------------------------------------------- one output folder

def test_a_locked_output_folder_stops_the_second_predict(checkpoint, tmp_path, capsys):
    save_grey(np.full((40, 30), 90, np.uint8), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.csv").write_text("from the first run\n")
    (out / "run.lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")          # a live predict
    assert main(["predict", checkpoint, str(tmp_path / "in"), "--output-dir", str(out)]) == 1
    err = one_line_error(capsys)
    assert f"Run folder {out} is in use by process {os.getppid()}" in err and "--output-dir" in err
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "run.lock"]   # nothing of the second
    assert (out / "predictions.csv").read_text() == "from the first run\n"


def test_a_second_predict_replaces_the_first_whole_and_keeps_other_files(checkpoint, tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        save_grey(np.full((40, 30), 90, np.uint8), tmp_path / "in" / name)
    out = tmp_path / "out"
    predict(checkpoint, [tmp_path / "in" / "a.png", tmp_path / "in" / "b.png"], output_dir=out, device="cpu")
    (out / "notes.txt").write_text("mine\n")
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png.png", "b.png.png"]
    predict(checkpoint, tmp_path / "in" / "c.png", output_dir=out, device="cpu")
    assert pd.read_csv(out / "predictions.csv")["image_id"].unique().tolist() == ["c.png"]
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["c.png.png"]   # not a.png's beside c's CSV
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "overlays", "predictions.csv"]   # lock gone
    predict(checkpoint, tmp_path / "in" / "a.png", output_dir=out, device="cpu", overlay=False)
    assert not (out / "overlays").exists() and (out / "notes.txt").read_text() == "mine\n"


def test_a_failed_predict_leaves_the_previous_result(checkpoint, tmp_path):
    save_grey(np.full((40, 30), 90, np.uint8), tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    predict(checkpoint, tmp_path / "in", output_dir=out, device="cpu")
    before = (out / "predictions.csv").read_bytes()
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(DatasetError, match=r"broken\.png.*nothing was written"):
        predict(checkpoint, tmp_path / "in", output_dir=out, device="cpu")
    assert (out / "predictions.csv").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["overlays", "predictions.csv"]
    assert [p.name for p in (out / "overlays").iterdir()] == ["a.png.png"]


# ----------------------------------------------------------------------------- big images

def test_over_the_pixel_limit_says_so_not_corrupt(checkpoint, tmp_path, monkeypatch, capsys):
    path = tmp_path / "big.png"
    save_grey(np.zeros((20, 30), np.uint8), path)                     # 600 pixels
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 100)           # error above 2 x 100
    expected = (f"Image {path} has 600 pixels, over Pillow's limit of 200 pixels against decompression bombs "
                f"(PIL.Image.MAX_IMAGE_PIXELS); the file is not corrupt: downscale it first")
    for reader in (read_image, image_size, lambda p: read_reduced(p, (8, 8))):
        with pytest.raises(DatasetError) as info:
            reader(path)
        assert str(info.value).startswith(expected) and "corrupt, re-download" not in str(info.value)
    assert main(["predict", checkpoint, str(path), "--output-dir", str(tmp_path / "out")]) == 1
    err = one_line_error(capsys)
    assert expected in err and not (tmp_path / "out").exists()


def test_overlay_of_a_large_image_is_drawn_on_a_reduced_copy(checkpoint, tmp_path, monkeypatch):
    import farnet_lite.engine.predict as inference

    drawn = []
    real = inference.save_overlay
    monkeypatch.setattr(inference, "save_overlay", lambda path, image, pred, **kw: drawn.append(
        (image.shape, pred.copy(), kw["original_size"])) or real(path, image, pred, **kw))
    image = np.zeros((3000, 1000), np.uint8)                          # longest side 3000 > OVERLAY_MAX_SIDE
    save_grey(image, tmp_path / "tall.png")
    frame = predict(checkpoint, tmp_path / "tall.png", output_dir=tmp_path / "out", device="cpu")
    (shape, pred, original), = drawn
    assert shape == (OVERLAY_MAX_SIDE, round(1000 * OVERLAY_MAX_SIDE / 3000)) and original == (3000, 1000)
    np.testing.assert_allclose(pred, frame[["x", "y"]].to_numpy())     # points in original pixels, moved inside
    with Image.open(tmp_path / "out" / "overlays" / "tall.png.png") as written:
        assert max(written.size) <= 1000
    small = np.zeros((40, 30), np.uint8)
    assert overlay_copy(small) is small and overlay_copy(image).shape == shape


# ----------------------------------------------------------------------------- batch sizes

@pytest.mark.parametrize("command, value", [("predict", "0"), ("predict", "-1"), ("evaluate", "-2")])
def test_bad_batch_size_names_the_option(checkpoint, tmp_path, capsys, command, value):
    save_grey(np.zeros((8, 8), np.uint8), tmp_path / "a.png")
    args = [command, checkpoint] + ([str(tmp_path / "a.png")] if command == "predict" else [])
    assert main(args + ["--batch-size", value, "--output-dir", str(tmp_path / "out")]) == 1
    err = one_line_error(capsys)
    assert err == (f"farnet {command}: error: --batch-size is {value}; give the number of images per forward "
                   f"pass, a whole number of at least 1 (e.g. --batch-size 4).")
    assert not (tmp_path / "out").exists()


def test_bad_batch_size_in_python_names_the_argument(checkpoint, tmp_path):
    for call in (lambda: predict(checkpoint, np.zeros((8, 8), np.uint8), batch_size=0),
                 lambda: evaluate(checkpoint, batch_size=-2), lambda: predict(checkpoint, [], batch_size=2.5)):
        with pytest.raises(ValueError, match=r"^batch_size is (0|-2|2\.5); give the number of images per forward "
                                             r"pass, a whole number of at least 1 \(e\.g\. batch_size=4\)\.$"):
            call()
