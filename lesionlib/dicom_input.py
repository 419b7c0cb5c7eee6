"""Dermoscopy stored as DICOM, decoded like any other image (``pydicom``).

Clinics store dermoscopy as DICOM: the "Dermoscopic Photography Image Storage" SOP class
(``1.2.840.10008.5.1.4.1.1.77.1.7``) and VL Photographic images (``...77.1.4``). ``decode`` turns
the pixel data of such a file into RGB ``uint8``: RGB and YBR colour spaces (YBR_FULL,
YBR_FULL_422; the JPEG and JPEG 2000 transfer syntaxes Pillow can decode), MONOCHROME1/2, any
bit depth up to 16 (scaled by the stored bits, never stretched per image), the first frame of a
multi-frame file. A file with no pixel data (a report, a structured document) or one that cannot
be decoded is a ``DicomError`` that says why.

Patient identifiers in the file (name, id, birth date...) are never read into anything this
module returns, and never appear in its messages or logs; the case reference stays the
reviewer's choice. Nothing here imports Streamlit or the rest of ``lesionlib.imaging``.
"""

from __future__ import annotations

import io
import logging

import numpy as np

logger = logging.getLogger(__name__)

DERMOSCOPY_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.7"
VL_PHOTOGRAPHIC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.4"
SUPPORTED_PHOTOMETRIC = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT",
                         "MONOCHROME1", "MONOCHROME2")


class DicomError(ValueError):
    """A DICOM file whose image cannot be used; the message says why (no patient data in it)."""


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM Part 10 file (a 128-byte preamble, then ``DICM``)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """The first frame of a DICOM file's image as an RGB ``uint8`` array ``(height, width, 3)``.

    Raises:
        DicomError: not readable as DICOM, no pixel data, an unsupported photometric
            interpretation or compression, or more than ``max_pixels`` pixels.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError) as error:
        logger.info("%s: DICOM read failed: %s", name, type(error).__name__)
        raise DicomError(f"{name}: the DICOM file is damaged or incomplete, so it cannot be "
                         "read.") from None
    if "PixelData" not in dataset:
        kind = _sop_class_name(dataset)
        if "Image" in kind:  # an image class without its pixels: cut short
            raise DicomError(f"{name}: the DICOM file is damaged or incomplete: it is a {kind} "
                             "file but its pixel data is missing.")
        raise DicomError(f"{name}: this DICOM file holds no image ({kind}); expected a "
                         "dermoscopic or VL photographic image.")
    photometric = str(dataset.get("PhotometricInterpretation", "")).upper()
    if photometric not in SUPPORTED_PHOTOMETRIC:
        raise DicomError(f"{name}: DICOM photometric interpretation {photometric or 'missing'!r} "
                         f"is not supported; expected one of {', '.join(SUPPORTED_PHOTOMETRIC)}.")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    if rows * columns > max_pixels:
        raise DicomError(f"{name}: {columns}x{rows} pixels is over the limit of "
                         f"{max_pixels:,} pixels.")
    try:
        pixels = np.asarray(dataset.pixel_array)  # pydicom converts YBR to RGB (as_rgb)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as error:
        syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
        logger.info("%s: DICOM pixel decoding failed: %s", name, type(error).__name__)
        raise DicomError(f"{name}: the DICOM pixel data cannot be decoded (transfer syntax "
                         f"{getattr(syntax, 'name', syntax) or 'unknown'}); export the image "
                         "uncompressed or as baseline JPEG.") from None
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        pixels = pixels[0]
    return _to_rgb(pixels, photometric, samples, int(dataset.get("BitsStored", 8) or 8), name)


def _to_rgb(pixels: np.ndarray, photometric: str, samples: int, bits: int,
            name: str) -> np.ndarray:
    if samples == 1 and pixels.ndim == 2:
        scaled = _scale(pixels, bits)
        if photometric == "MONOCHROME1":  # 0 is white
            scaled = 255 - scaled
        return np.repeat(scaled[..., None], 3, axis=2)
    if samples == 3 and pixels.ndim == 3 and pixels.shape[2] == 3:
        return _scale(pixels, bits)
    raise DicomError(f"{name}: the DICOM image's pixel layout {pixels.shape} with "
                     f"{samples} samples per pixel is not supported; expected RGB or greyscale.")


def _scale(pixels: np.ndarray, bits: int) -> np.ndarray:
    """To 0-255 by the stored bit depth (a fixed scale per depth, not per image)."""
    if pixels.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(pixels)
    values = np.asarray(pixels, dtype="float64")
    if values.min() < 0:  # signed samples: shift to unsigned
        values = values + 2.0 ** (bits - 1)
    return np.clip(values * (255.0 / (2.0**bits - 1)), 0, 255).round().astype("uint8")


def _sop_class_name(dataset) -> str:
    uid = dataset.get("SOPClassUID")
    return getattr(uid, "name", None) or str(uid or "no SOP class")
