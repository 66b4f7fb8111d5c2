"""DICOM in, mm out: tiny DICOMs written with pydicom in tmp_path, read as a viewer shows them, spacing carried."""
import numpy as np
import pytest

from farnet_lite.data.dicom import dicom_spacing, is_dicom, read_dicom, window_to_uint8, write_dicom
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.imageio import IMAGE_SUFFIXES, image_size, load_grey, pixel_spacing

RAMP = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 300)        # 0 .. 3300: 12-bit values in 16 bits


def test_16_bit_values_are_stretched_over_their_range_without_a_window(tmp_path):
    path = write_dicom(tmp_path / "a.dcm", RAMP, bits_stored=12)
    image, spacing = read_dicom(path)
    assert image.dtype == np.uint8 and image.shape == (3, 4) and spacing is None
    np.testing.assert_array_equal(image, np.round(RAMP / 3300 * 255).astype(np.uint8))


def test_monochrome1_is_inverted(tmp_path):
    plain = read_dicom(write_dicom(tmp_path / "m2.dcm", RAMP))[0]
    inverted = read_dicom(write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1"))[0]
    np.testing.assert_array_equal(inverted, 255 - plain)
    assert inverted[0, 0] == 255 and inverted[-1, -1] == 0                 # lowest value is white


def test_rescale_then_voi_window(tmp_path):
    # modality values = 2 * stored - 100; window centre 3000, width 4000 -> black below 1000, white from 5000
    path = write_dicom(tmp_path / "w.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=3000,
                       WindowWidth=4000)
    image = read_dicom(path)[0]
    values = RAMP * 2.0 - 100
    expected = np.clip(((values - 2999.5) / 3999 + 0.5) * 255, 0, 255)
    np.testing.assert_array_equal(image, np.round(expected).astype(np.uint8))
    assert image[0, 0] == 0 and image[0, 2] == 6 and image[-1, -1] == 255  # 1100 -> 6; 6500 -> white
    # several windows: the first one is used
    multi = write_dicom(tmp_path / "multi.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100,
                        WindowCenter=[3000, 500], WindowWidth=[4000, 100])
    np.testing.assert_array_equal(read_dicom(multi)[0], image)


def test_window_function_matches_the_standard():
    # c = 10.5, w = 2: black up to 9.5, white above 10.5, ((x - 10) / 1 + 0.5) * 255 in between
    values = np.array([[0.0, 9.5, 10.0, 10.5, 11.0]])
    out = window_to_uint8(values, center=10.5, width=2.0)
    np.testing.assert_array_equal(out, [[0, 0, 128, 255, 255]])


def test_pixel_spacing_and_imager_pixel_spacing(tmp_path):
    both = write_dicom(tmp_path / "s.dcm", RAMP, spacing=(0.2, 0.3), ImagerPixelSpacing=[0.5, 0.5])
    imager = write_dicom(tmp_path / "i.dcm", RAMP, ImagerPixelSpacing=[0.14, 0.15])
    assert dicom_spacing(both) == (0.2, 0.3) and read_dicom(both)[1] == (0.2, 0.3)   # (row, column) = (y, x)
    assert dicom_spacing(imager) == (0.14, 0.15)
    assert pixel_spacing(both) == (0.2, 0.3) and pixel_spacing(tmp_path / "none.png") is None


def test_load_grey_and_image_size_read_dicom_beside_other_formats(tmp_path):
    assert ".dcm" in IMAGE_SUFFIXES
    path = write_dicom(tmp_path / "scan.dcm", RAMP)
    np.testing.assert_array_equal(load_grey(path), read_dicom(path)[0])
    assert image_size(path) == (3, 4)
    no_suffix = tmp_path / "IM0001"                                         # a DICOM file without a suffix
    no_suffix.write_bytes(path.read_bytes())
    assert is_dicom(no_suffix) and load_grey(no_suffix).shape == (3, 4)


def test_8_bit_dicom(tmp_path):
    pixels = np.array([[0, 128], [200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "b.dcm", pixels))[0], pixels)


def test_broken_dicom_is_one_sentence(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", RAMP)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])                                # truncated pixel data
    with pytest.raises(DatasetError, match=r"t\.dcm") as info:
        load_grey(path)
    assert "\n" not in str(info.value)
    (tmp_path / "e.dcm").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"e\.dcm"):
        load_grey(tmp_path / "e.dcm")
