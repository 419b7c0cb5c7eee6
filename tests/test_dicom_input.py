"""DICOM dermoscopy in: RGB and YBR_FULL_422 files built here decode like the same image as a
PNG; a DICOM without pixel data or with an unsupported layout is a clear error; patient
identifiers never reach the decoded image's messages."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from lesionlib import dicom_input, imaging
from lesionlib.imaging import ImageLoadError

PATIENT = "DOE^JANE"


def rgb_image(height: int = 120, width: int = 160) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack([rows * 2 % 256, columns % 256, (rows + columns) % 256],
                    axis=2).astype("uint8")


def dicom_bytes(pixels: bytes | None, rows: int, columns: int, photometric: str = "RGB",
                samples: int = 3, bits: int = 8, sop_class=dicom_input.DERMOSCOPY_SOP_CLASS,
                frames: int | None = None) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = sop_class
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Modality = "XC"
    dataset.PatientName = PATIENT
    dataset.PatientID = "MRN-0042"
    if pixels is not None:
        dataset.Rows, dataset.Columns = rows, columns
        dataset.SamplesPerPixel = samples
        dataset.PhotometricInterpretation = photometric
        dataset.BitsAllocated = 16 if bits > 8 else 8
        dataset.BitsStored = bits
        dataset.HighBit = bits - 1
        dataset.PixelRepresentation = 0
        if samples == 3:
            dataset.PlanarConfiguration = 0
        if frames:
            dataset.NumberOfFrames = frames
        dataset.PixelData = pixels
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ybr_full_422(image: np.ndarray) -> bytes:
    """``image`` as YBR_FULL_422 pixel data: Y per pixel, Cb and Cr per pair (Y1 Y2 Cb Cr)."""
    rgb = image.astype("float64")
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    cb = -0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2] + 128
    cr = 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2] + 128
    y, cb, cr = (np.clip(channel.round(), 0, 255).astype("uint8") for channel in (y, cb, cr))
    pairs = np.stack([y[:, 0::2], y[:, 1::2], cb[:, 0::2], cr[:, 0::2]], axis=2)
    return pairs.tobytes()


def test_rgb_dicom_decodes_to_its_pixels():
    image = rgb_image()
    decoded = imaging.load_image(dicom_bytes(image.tobytes(), *image.shape[:2]), name="a.dcm")
    assert decoded.dtype == np.uint8 and np.array_equal(decoded, image)


def test_ybr_full_422_is_converted_to_rgb():
    image = np.zeros((64, 96, 3), "uint8")
    image[:, :, 0], image[:, :, 1], image[:, :, 2] = 180, 90, 60  # a skin-like flat colour
    image[20:40, 30:60] = (60, 40, 30)  # a darker lesion, on even columns
    data = dicom_bytes(ybr_full_422(image), 64, 96, photometric="YBR_FULL_422")
    decoded = imaging.load_image(data, name="b.dcm")
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image.astype(int)).max() <= 3  # rounding of YCbCr


def test_sixteen_bit_greyscale_and_monochrome1():
    values = np.linspace(0, 4095, 48 * 64).round().reshape(48, 64).astype("<u2")
    decoded = imaging.load_image(dicom_bytes(values.tobytes(), 48, 64, "MONOCHROME2", 1, 12))
    assert decoded.shape == (48, 64, 3)
    assert decoded[0, 0, 0] == 0 and decoded.max() == 255  # 12 stored bits: 4095 is white
    inverted = imaging.load_image(dicom_bytes(values.tobytes(), 48, 64, "MONOCHROME1", 1, 12))
    assert np.array_equal(inverted, 255 - decoded)


def test_a_dicom_without_an_image_is_a_clear_error_without_patient_data():
    data = dicom_bytes(None, 0, 0, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # a basic SR
    with pytest.raises(ImageLoadError, match="holds no image") as error:
        imaging.load_image(data, name="report.dcm")
    assert PATIENT not in str(error.value) and "MRN" not in str(error.value)


def test_unsupported_and_damaged_dicoms_say_why():
    palette = dicom_bytes(bytes(32 * 32), 32, 32, "PALETTE COLOR", 1)
    with pytest.raises(ImageLoadError, match="PALETTE COLOR.*not supported"):
        imaging.load_image(palette, name="p.dcm")
    whole = dicom_bytes(rgb_image().tobytes(), 120, 160)
    for cut in (400, len(whole) - 5000):  # before the pixel data; inside it
        with pytest.raises(ImageLoadError, match="t.dcm: the DICOM .*(damaged|decoded)"):
            imaging.load_image(whole[:cut], name="t.dcm")


def test_multi_frame_uses_the_first_frame_and_large_images_are_reduced():
    first, second = rgb_image(40, 48), np.zeros((40, 48, 3), "uint8")
    data = dicom_bytes(first.tobytes() + second.tobytes(), 40, 48, frames=2)
    assert np.array_equal(imaging.load_image(data), first)
    big = rgb_image(1200, 1500)
    reduced = imaging.load_image(dicom_bytes(big.tobytes(), 1200, 1500))
    assert max(reduced.shape[:2]) <= imaging.MAX_WORKING_SIDE


def test_predict_scores_a_dicom_file(tmp_path, tiny_weights_dir):
    from lesionlib import inference, registry

    path = tmp_path / "lesion.dcm"
    image = rgb_image()
    path.write_bytes(dicom_bytes(image.tobytes(), *image.shape[:2]))
    classifier = registry.load_classifier("tiny0.test", weights_dir=tiny_weights_dir)
    frame = inference.predict_files(classifier, [path])
    assert frame.loc[0, "error"] == "" and frame.loc[0, "prediction"] != ""


def test_what_feedback_stores_of_a_dicom_upload_holds_no_patient_identifier():
    image = rgb_image()
    stored = imaging.strip_metadata(imaging.load_image(dicom_bytes(image.tobytes(), 120, 160)))
    assert stored.startswith(b"\x89PNG") and b"DOE" not in stored and b"MRN" not in stored
