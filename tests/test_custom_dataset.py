"""Your own landmark set from one CSV: parsing, held-out split, missing landmarks masked in the loss and metrics,
and `farnet train --dataset custom` end to end on the synthetic example."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from farnet_lite.data.custom import count_custom_landmarks, read_custom, read_custom_table, write_synthetic_custom
from farnet_lite.data.dicom import write_dicom
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import save_grey
from farnet_lite.datasets import DATASETS
from farnet_lite.engine.scoring import score_predictions
from farnet_lite.losses import coarse_to_fine_loss


def write_csv(folder, text, images=()):
    for name in images:
        save_grey(np.full((20, 16), 90, np.uint8), folder / name)
    path = folder / "marks.csv"
    path.write_text(text)
    return path


def test_format_any_k_missing_cells_and_unlabelled_rows(tmp_path):
    path = write_csv(tmp_path, "image,spacing_mm,split,x1,y1,x2,y2,x3,y3\n"
                               "a/img.png,0.5,train,1,2,3.5,4,5,6\n"
                               "b/img.png,,train,1,2,,,nan,NaN\n"
                               "c.png,0.5,test,,,,,,\n", images=("a/img.png", "b/img.png", "c.png"))
    assert count_custom_landmarks(path) == 3
    table = read_custom_table(path)
    np.testing.assert_array_equal(table.landmarks[0], [[1, 2], [3.5, 4], [5, 6]])
    assert np.isnan(table.landmarks[1, 1:]).all() and not np.isnan(table.landmarks[1, 0]).any()
    assert table.spacings[0] == 0.5 and math.isnan(table.spacings[1])
    train = read_custom(path, "train")
    assert train.ids == ("a/img.png", "b/img.png")                        # paths, not stems: both "img"
    assert train.num_landmarks == 3 and train.landmarks(1)[0].tolist() == [1.0, 2.0]
    test = read_custom(path, "test")
    assert test.landmarks(0) is None and test[0].image.shape == (20, 16)  # a row without landmarks
    assert len(read_custom(path, "val")) == 0


@pytest.mark.parametrize("text, message", [
    ("image,x1,y1\na.png,1,oops\n", r"line 2: column y1 holds 'oops'"),
    ("image,x1,y1\na.png,1,\n", r"line 2: landmark 1 has only one of x and y"),
    ("image,x1,y1,x2\na.png,1,2,3\n", r"missing y2"),
    ("file,x1,y1\na.png,1,2\n", r"needs the columns image,x1,y1"),
    ("image,split,x1,y1\na.png,training,1,2\n", r"split 'training' is not one of train, val, test"),
    ("image,x1,y1\n", r"no image rows"),
    ("image,spacing_mm,x1,y1\na.png,0,1,2\n", r"line 2: spacing_mm is 0; give the mm per pixel"),
])
def test_format_errors_name_file_line_and_fix(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(DatasetError, match=message) as info:
        read_custom_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("image,x1,y1,x2,y2\na.png,1,2,3,4,5\n",                               # row 1: was an AttributeError
     "line 2: 6 cells but the header has 5 columns, so every value after the extra cell would shift by one "
     "column; remove the stray comma (a decimal comma such as 412,5 must be written 412.5)"),
    ("image,x1,y1,x2,y2\na.png,1,2,3,4\n\nb.png,1,2,5,3,4\n",               # a later row; blank lines counted
     "line 4: 6 cells but the header has 5 columns"),
    ("image,x1,y1,x2,y2\na.png,1,2,3,4\nb.png,1,2\n",                       # was: landmark 2 "missing"
     "line 3: 3 cells but the header has 5 columns (x2 to y2 missing); write every column, leaving a cell "
     "empty (,,) for a missing landmark or value."),
    ("image,x1,y1,x2,y2\na.png,1,2,-3,4\n",
     "line 2: landmark 2 at x2=-3, y2=4 is negative, outside the image (pixels count from 0 at the top left); fix "
     "the coordinates (original image pixels, x across and y down), or leave x2,y2 empty for a missing landmark."),
    ("image,x1,y1\na.png,1,2\nb.png,16,5\n",                                # the images are 16 wide, 20 high
     "line 3: landmark 1 at x1=16, y1=5 lies outside the image b.png, which is 16 pixels wide and 20 high (x from "
     "0 to 15, y from 0 to 19); fix the coordinates"),
    ("image,x1,y1\na.png,,\nb.png,0.5,0.25\nc.png,0.75,1\n",
     "line 3: every coordinate of the file lies between 0 and 1, which looks like fractions of the image size, not "
     "pixels; write original image pixels (x times the image width, y times its height"),
    ("image,split,x1,y1\na.png,train,1,2\nb.png,train,3,4\n./a.png,test,1,2\n",
     "lines 2 and 4: image a.png is listed in split train and in split test, which leaks it from one split into "
     "the other (a test image seen in training scores too well); keep one row for each image."),
], ids=["extra-cell-row-1", "extra-cell-later", "short-row", "negative", "outside", "fractions", "train-and-test"])
def test_rows_that_would_shift_leak_or_miss_the_image_name_file_line_and_fix(tmp_path, text, message):
    path = write_csv(tmp_path, text, images=("a.png", "b.png", "c.png"))   # 20 x 16 (H x W) images
    with pytest.raises(DatasetError) as info:
        read_custom_table(path)
    assert str(info.value).startswith(f"{path}, {message}") and "\n" not in str(info.value)


def test_coordinates_on_the_image_edges_and_of_an_exif_turned_image_pass(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6                                                  # stored 20 x 16, displayed 16 x 20
    Image.fromarray(np.zeros((20, 16), np.uint8)).save(tmp_path / "turned.png", exif=exif)
    path = write_csv(tmp_path, "image,split,x1,y1,x2,y2\na.png,train,-0.5,19.5,15.5,-0.5\n"
                               "turned.png,test,19.5,15.5,,\n", images=("a.png",))
    table = read_custom_table(path)
    np.testing.assert_array_equal(table.landmarks[1, 0], [19.5, 15.5])
    with pytest.raises(DatasetError, match=r"line 2: landmark 1 at x1=16, y1=19 lies outside the image turned\.png, "
                                           r"which is 20 pixels wide and 16 high"):
        read_custom_table(write_csv(tmp_path, "image,x1,y1\nturned.png,16,19\n"))


def test_held_out_split_from_the_same_file(tmp_path):
    rows = "".join(f"img{i}.png,{i},{i}\n" for i in (7, 2, 9, 0, 4, 1, 8, 3, 6, 5))   # not in path order
    table = read_custom_table(write_csv(tmp_path, "image,x1,y1\n" + rows))
    by_name = {p.name: s for p, s in zip(table.paths, table.splits)}
    assert [by_name[f"img{i}.png"] for i in range(10)] == ["train", "train", "train", "val", "test"] * 2


def test_spacing_from_a_dicom_header_when_the_csv_has_none(tmp_path):
    write_dicom(tmp_path / "scan.dcm", np.zeros((8, 8), np.uint16), spacing=(0.15, 0.15))
    write_dicom(tmp_path / "aniso.dcm", np.zeros((8, 8), np.uint16), spacing=(0.1, 0.2))
    table = read_custom_table(write_csv(tmp_path, "image,spacing_mm,x1,y1\nscan.dcm,,1,1\nscan.dcm,0.3,1,1\n"
                                                  "aniso.dcm,,1,1\n"))
    assert table.spacings[0] == 0.15 and table.spacings[1] == 0.3 and math.isnan(table.spacings[2])


# ----------------------------------------------------------------------------- missing landmarks

def test_missing_landmarks_are_masked_out_of_the_loss():
    size = (16, 16)
    points = torch.tensor([[[5.0, 6.0], [float("nan"), float("nan")]]])   # (1, K=2, 2): landmark 2 missing
    pred = torch.zeros(1, 2, 16, 16)
    pred[0, 1] = 1.0                                                        # a confident peak everywhere
    only_first = coarse_to_fine_loss((pred[:, :1],), points[:, :1], size, sigma=2.0, loss="l2")
    masked = coarse_to_fine_loss((pred,), points, size, sigma=2.0, loss="l2",
                                 mask=torch.isfinite(points).all(-1))
    unmasked = coarse_to_fine_loss((pred,), points, size, sigma=2.0, loss="l2")   # trained towards zero
    assert masked.item() == pytest.approx(only_first.item(), rel=1e-6)
    assert unmasked.item() > masked.item() + 0.4
    nothing = coarse_to_fine_loss((pred.requires_grad_(),), points, size, sigma=2.0,
                                  mask=torch.zeros(1, 2, dtype=torch.bool))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.count_nonzero(pred.grad) == 0


def test_metrics_skip_missing_landmarks_and_use_each_images_spacing():
    truth = np.array([[[10.0, 10.0], [20.0, 20.0]], [[10.0, 10.0], [np.nan, np.nan]],
                      [[np.nan, np.nan], [np.nan, np.nan]]])                 # image 3: unlabelled
    pred = truth.copy()
    pred[:, :, 0] += 3.0                                                     # 3 px off everywhere
    pred[2] = 1.0
    summary, errors, labelled = score_predictions(pred, truth, np.full((3, 2), 50.0), DATASETS["custom"],
                                                  spacings=np.array([0.5, 0.1, np.nan]))
    assert labelled.tolist() == [True, True, False]
    np.testing.assert_allclose(errors, [[1.5, 1.5], [0.3, np.nan]])
    assert summary["unit"] == "mm" and summary["mre"] == pytest.approx((1.5 + 1.5 + 0.3) / 3)
    px, _, _ = score_predictions(pred, truth, np.full((3, 2), 50.0), DATASETS["custom"],
                                 spacings=np.array([0.5, np.nan, np.nan]))
    assert px["unit"] == "px" and px["mre"] == pytest.approx(3.0)          # a spacing unknown: all in pixels


# ----------------------------------------------------------------------------- end to end

def test_train_evaluate_predict_on_the_synthetic_example(tmp_path):
    from farnet_lite.cli import main

    csv_path = write_synthetic_custom(tmp_path / "mine", n=10)
    run = tmp_path / "run"
    code = main(["train", "--dataset", "custom", "--data-root", str(csv_path), "--input-size", "32", "32",
                 "--system", "fpn", "--epochs", "1", "--batch-size", "4", "--sigma", "1.5", "--pretrained", "false",
                 "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(run), "--no-progress",
                 "--num-workers", "0"])
    assert code == 0
    metrics = json.loads((run / "metrics_test.json").read_text())
    assert metrics["unit"] == "mm" and metrics["labelled_images"] == 2 and math.isfinite(metrics["mre"])
    ids = pd.read_csv(run / "predictions_val.csv")["image_id"].unique().tolist()
    assert ids == ["site_a/case03.png", "site_b/case03.dcm"]
