"""DICOM radiographs: pixels to a grey ``(H, W) uint8`` image the way a viewer shows them, and the pixel spacing.

A DICOM file stores raw detector values (often 12 bits in 16), not display grey levels. `read_dicom` applies, in
the order of the DICOM standard (PS3.3 C.11):

1. the modality transform ``value = stored * RescaleSlope + RescaleIntercept`` (absent tags: slope 1, intercept 0);
2. the VOI window (``WindowCenter`` / ``WindowWidth``, the first pair when several are given) with the standard's
   linear function; without a window the values' own range (min..max) is stretched to 0..255;
3. ``MONOCHROME1`` (bright = low values) is inverted, so bone is bright like in every other image of the kit.

The pixel spacing in mm comes from ``PixelSpacing`` (the patient plane) or, failing that, ``ImagerPixelSpacing``
(the detector plane); both are stored as (row spacing, column spacing) = (mm per pixel along y, along x).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from farnet_lite.data.errors import DatasetError

DICOM_SUFFIXES = (".dcm", ".dicom")
PathLike = Union[str, Path]


def is_dicom(path: PathLike) -> bool:
    """True for a ``.dcm`` / ``.dicom`` file or any file with the DICOM preamble ("DICM" at byte 128)."""
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _read(path: Path, pixels: bool):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=not pixels, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError) as err:
        raise DatasetError(f"Could not read DICOM file {path} ({type(err).__name__}: {err}); the file is "
                           f"truncated or not DICOM: export it again.") from err


def _first(value) -> Optional[float]:
    """A DICOM number that may be multi-valued (several windows): its first value, or None when absent."""
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if not isinstance(value, (str, bytes, int, float)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def spacing_of(dataset) -> Optional[Tuple[float, float]]:
    """(row, column) spacing in mm of a pydicom dataset: PixelSpacing, else ImagerPixelSpacing, else None."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(dataset, tag, None)
        try:
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if row > 0 and col > 0:
            return row, col
    return None


def window_to_uint8(values: np.ndarray, center: Optional[float], width: Optional[float]) -> np.ndarray:
    """Modality values ``(H, W)`` -> display grey levels ``(H, W) uint8`` (DICOM PS3.3 C.11.2.1.2.1, linear).

    With ``center`` / ``width`` the standard's window: below ``c - 0.5 - (w - 1) / 2`` black, above
    ``c - 0.5 + (w - 1) / 2`` white, linear in between. Without them, the values' own min..max range.
    """
    values = values.astype(np.float64)
    if center is not None and width is not None and width >= 1:
        scaled = ((values - (center - 0.5)) / max(width - 1.0, 1.0) + 0.5) * 255.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.round(np.clip(scaled, 0.0, 255.0)).astype(np.uint8)


def read_dicom(path: PathLike) -> Tuple[np.ndarray, Optional[Tuple[float, float]]]:
    """Decode a DICOM radiograph: ``(image (H, W) uint8, (row, column) spacing in mm or None)``.

 See the module docstring for the transforms; colour images are
    converted with the ITU-R 601 luma, like Pillow's "L". Raises DatasetError (one sentence naming the file)
    for a file that is not DICOM, holds several frames or uses a compression pydicom cannot decode here.
    """
    path = Path(path)
    ds = _read(path, pixels=True)
    if "PixelData" not in ds:
        raise DatasetError(f"DICOM file {path} holds no image (no PixelData); export the radiograph itself.")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as err:  # pydicom raises several types for missing codecs or broken pixel data
        raise DatasetError(f"Could not decode the pixels of DICOM file {path} ({type(err).__name__}: {err}); "
                           f"export it uncompressed, or install the codec pydicom names "
                           f"(e.g. `pip install pylibjpeg pylibjpeg-libjpeg`).") from err
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise DatasetError(f"DICOM file {path} holds {ds.NumberOfFrames} frames; export the one radiograph you "
                           f"want as a single-frame file.")
    if pixels.ndim == 3:  # (H, W, 3) colour
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    slope, intercept = _first(getattr(ds, "RescaleSlope", None)), _first(getattr(ds, "RescaleIntercept", None))
    values = pixels.astype(np.float64) * (1.0 if slope is None else slope) + (intercept or 0.0)
    image = window_to_uint8(values, _first(getattr(ds, "WindowCenter", None)),
                            _first(getattr(ds, "WindowWidth", None)))
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 255 - image  # MONOCHROME1: the lowest value is white
    return image, spacing_of(ds)


def dicom_spacing(path: PathLike) -> Optional[Tuple[float, float]]:
    """(row, column) pixel spacing in mm from a DICOM header (pixels not read), or None when it has none."""
    return spacing_of(_read(Path(path), pixels=False))


def dicom_size(path: PathLike) -> Tuple[int, int]:
    """(H, W) of a DICOM image from its header (Rows, Columns), pixels not read."""
    ds = _read(Path(path), pixels=False)
    try:
        return int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as err:
        raise DatasetError(f"DICOM file {path} has no Rows/Columns in its header; it holds no image: export "
                           f"the radiograph itself.") from err


def write_dicom(path: PathLike, pixels: np.ndarray, spacing: Optional[Tuple[float, float]] = None,
                photometric: str = "MONOCHROME2", bits_stored: Optional[int] = None, **tags) -> Path:
    """Write a minimal single-frame grey DICOM (uint8 or uint16 ``(H, W)`` pixels), e.g. for examples and tests.

    ``spacing`` = (row, column) mm -> PixelSpacing; ``tags`` are set
    as given (``RescaleSlope=2``, ``WindowCenter=1024``, ``ImagerPixelSpacing=[0.1, 0.1]``, ...).
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.ascontiguousarray(pixels)
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_dicom expects (H, W) uint8 or uint16 pixels, got {pixels.shape} {pixels.dtype}.")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "DX", "Synthetic^Example"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    bits = 8 * pixels.itemsize
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored or bits, (bits_stored or bits) - 1
    ds.PixelRepresentation = 0
    if spacing is not None:
        ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.PixelData = pixels.tobytes()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        ds.save_as(str(path), enforce_file_format=True)        # pydicom >= 3
    except TypeError:
        ds.is_little_endian, ds.is_implicit_VR = True, False   # pydicom 2.x
        ds.save_as(str(path), write_like_original=False)
    return path
