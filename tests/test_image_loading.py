"""lesionlib.imaging.load_image on awkward, broken and hostile files."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from lesionlib import imaging
from lesionlib.imaging import ImageLoadError, load_image


def encode(image: Image.Image, file_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **options)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with no pixel data at all."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def assert_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.dtype == np.uint8 and array.shape == (height, width, 3)


@pytest.fixture
def photo_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    return encode(Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)), "JPEG")


def test_plain_jpeg_png_path_and_file_object(tmp_path, photo_jpeg):
    path = tmp_path / "lesion.jpg"
    path.write_bytes(photo_jpeg)
    assert_rgb(load_image(path), 120, 160)
    assert_rgb(load_image(str(path)), 120, 160)
    assert_rgb(load_image(photo_jpeg), 120, 160)
    png = encode(Image.fromarray(load_image(photo_jpeg)), "PNG")
    assert_rgb(load_image(io.BytesIO(png)), 120, 160)


def test_upload_that_was_already_read_is_read_from_the_start(photo_jpeg):
    upload = io.BytesIO(photo_jpeg)
    upload.read()  # e.g. hashed by the page before decoding
    assert_rgb(load_image(upload), 120, 160)


def test_text_mode_file_object_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello")
    with path.open("r") as handle:
        with pytest.raises(ImageLoadError, match="text mode"):
            load_image(handle)


def test_non_image_file_with_jpg_name(tmp_path):
    path = tmp_path / "report.jpg"
    path.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" * 20)
    expected = r"report\.jpg: this is not an image file we can read \(expected a JPEG"
    with pytest.raises(ImageLoadError, match=expected):
        load_image(path)


def test_zero_bytes(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=r"empty\.png: the file is empty \(0 bytes\)"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(b"")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageLoadError, match="a folder; expected an image file"):
        load_image(tmp_path)


def test_unsupported_source_type():
    with pytest.raises(ImageLoadError, match="Cannot read an image from int"):
        load_image(42)


@pytest.mark.parametrize("file_format", ["JPEG", "PNG"])
def test_truncated_files(photo_jpeg, file_format):
    data = photo_jpeg if file_format == "JPEG" else encode(
        Image.fromarray(load_image(photo_jpeg)), "PNG")
    with pytest.raises(ImageLoadError, match="the file is damaged or incomplete"):
        load_image(data[: len(data) // 2], name=f"half.{file_format.lower()}")


def test_oversized_bytes_are_refused_before_decoding(monkeypatch, photo_jpeg):
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1000)
    for source in (photo_jpeg, io.BytesIO(photo_jpeg)):
        with pytest.raises(ImageLoadError, match="larger than the 0 MiB limit"):
            load_image(source)


@pytest.mark.parametrize("width, height", [(8000, 8000), (100_000, 100_000), (2**31 - 1, 2)])
def test_decompression_bomb_header_is_refused_without_allocating(width, height):
    # 8000 x 8000 is over our limit but under Pillow's own; the others trip Pillow's guard first
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(png_header_only(width, height), name="bomb.png")


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), color) for color in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100,
                  loop=0)
    with Image.open(io.BytesIO(data)) as check:
        assert check.n_frames == 2
    array = load_image(data)
    assert_rgb(array, 64, 64)
    assert tuple(array[32, 32]) == (255, 0, 0)


def test_16_bit_greyscale_png_is_scaled_by_bit_depth_not_stretched():
    values = np.full((64, 64), 4096, dtype=np.uint16)  # 1/16 of full scale: a dark image
    values[0, 0] = 65535
    values[0, 1] = 0
    ok, encoded = cv2.imencode(".png", values)
    assert ok
    with Image.open(io.BytesIO(encoded.tobytes())) as check:
        assert check.mode.startswith("I")
    array = load_image(encoded.tobytes())
    assert_rgb(array, 64, 64)
    assert tuple(array[10, 10]) == (16, 16, 16)
    assert tuple(array[0, 0]) == (255, 255, 255) and tuple(array[0, 1]) == (0, 0, 0)
    dark = np.full((64, 64), 4096, dtype=np.uint16)  # same level, no bright pixel
    assert tuple(load_image(cv2.imencode(".png", dark)[1].tobytes())[5, 5]) == (16, 16, 16)


def test_16_bit_colour_png():
    bgr = np.zeros((48, 64, 3), dtype=np.uint16)
    bgr[..., 2] = 65535  # red, in OpenCV's BGR order
    bgr[..., 1] = 32896  # green at half scale
    array = load_image(cv2.imencode(".png", bgr)[1].tobytes())
    assert_rgb(array, 48, 64)
    assert tuple(array[0, 0]) == (255, 128, 0)


def test_cmyk_jpeg_becomes_rgb():
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)
    with Image.open(io.BytesIO(data)) as check:
        assert check.mode == "CMYK"
    red, green, blue = load_image(data)[32, 32].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_rgba_is_composited_on_white():
    image = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 255, 0, 0))  # fully transparent
    array = load_image(encode(image, "PNG"))
    assert_rgb(array, 64, 64)
    assert tuple(array[0, 0]) == (255, 255, 255) and tuple(array[10, 10]) == (255, 0, 0)


def test_palette_with_and_without_transparency():
    image = Image.new("P", (64, 64), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    assert tuple(load_image(encode(image, "PNG"))[10, 10]) == (10, 200, 30)
    transparent = load_image(encode(image, "PNG", transparency=0))
    assert tuple(transparent[0, 0]) == (255, 255, 255) and tuple(transparent[5, 5]) == (10, 200,
                                                                                         30)


@pytest.mark.parametrize("mode", ["L", "LA", "1", "I", "F"])
def test_single_channel_modes_become_three_equal_channels(mode):
    grey = Image.new("L", (64, 64), 200)
    image = grey.convert(mode) if mode != "F" else Image.fromarray(
        np.full((64, 64), 200 / 255, dtype=np.float32), mode="F")
    file_format = "TIFF" if mode in ("I", "F") else "PNG"  # Pillow writes I and F as TIFF
    array = load_image(encode(image, file_format))
    assert_rgb(array, 64, 64)
    expected = 255 if mode == "1" else 200
    assert tuple(array[3, 3]) == (expected, expected, expected)


def test_exif_orientation_6_swaps_width_and_height():
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)  # 80 wide, 40 high as stored
    pixels[:, :40] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6
    array = load_image(encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(),
                              quality=95))
    assert_rgb(array, 80, 40)  # rotated 90 degrees clockwise for display
    assert array[5, 20, 0] > 200 and array[75, 20, 0] < 60  # the red half is now on top


def test_tiny_image():
    with pytest.raises(ImageLoadError, match=r"10x12 pixels is too small; at least 32x32"):
        load_image(encode(Image.new("RGB", (10, 12)), "PNG"))


def test_extreme_aspect_ratio():
    with pytest.raises(ImageLoadError, match=r"aspect ratio 10.0:1 \(400x40\) is too elongated"):
        load_image(encode(Image.new("RGB", (400, 40)), "PNG"))
    assert_rgb(load_image(encode(Image.new("RGB", (160, 40)), "PNG")), 40, 160)  # 4:1 is fine


def test_formats_outside_the_accepted_list_are_refused():
    eps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n"
           b"newpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n")
    with Image.open(io.BytesIO(eps)) as check:  # Pillow alone would take it (via Ghostscript)
        assert check.format == "EPS"
    with pytest.raises(ImageLoadError, match="not an image file we can read.*JPEG or PNG"):
        load_image(eps)
    icon = encode(Image.new("RGB", (64, 64), (9, 9, 9)), "ICO")
    with pytest.raises(ImageLoadError, match="not an image file we can read"):
        load_image(icon)
    for file_format in ("BMP", "WEBP", "TIFF"):
        assert_rgb(load_image(encode(Image.new("RGB", (64, 48), (9, 9, 9)), file_format)), 48,
                   64)


def test_strip_metadata_output_has_no_exif():
    exif = Image.Exif()
    exif[0x010F] = "SecretCamMaker"
    jpeg = encode(Image.new("RGB", (64, 64), (1, 2, 3)), "JPEG", exif=exif.tobytes())
    png = imaging.strip_metadata(load_image(jpeg))
    assert b"SecretCamMaker" not in png
    with Image.open(io.BytesIO(png)) as stored:
        assert stored.format == "PNG" and len(stored.getexif()) == 0


# ------------------------------------------------------------------ bounded memory on big files

def test_big_16_bit_png_is_reduced_while_decoding_without_float_copies():
    import tracemalloc

    values = np.full((3000, 4000), 4096, dtype=np.uint16)  # 12 Mpixel, 1/16 of full scale
    values[:8, :8] = 65535  # one bright 8x8 block: averaged, not lost
    data = cv2.imencode(".png", values)[1].tobytes()
    tracemalloc.start()
    try:
        array = load_image(data, name="big.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    factor = imaging.reduction_factor(4000, 3000)
    assert factor == 4 and max(array.shape[:2]) <= imaging.MAX_WORKING_SIDE
    assert_rgb(array, 750, 1000)
    assert tuple(array[100, 100]) == (16, 16, 16)  # same bit-depth scaling as a small file
    assert tuple(array[0, 0]) == (255, 255, 255)
    # numpy/Python allocations only (Pillow's own buffers are not traced): a float64 copy of
    # the full image would be 96 MB, a 16-bit one 24 MB; the reduced image, in float64, 6 MB
    assert peak < 4000 * 3000 * 2, f"peak traced memory {peak / 2**20:.0f} MiB"


def test_big_jpeg_is_scaled_by_the_decoder_and_matches_a_full_decode():
    rng = np.random.default_rng(3)
    small = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    big = cv2.resize(small, (3200, 2400), interpolation=cv2.INTER_CUBIC)  # smooth content
    data = encode(Image.fromarray(big), "JPEG", quality=95)
    array = load_image(data)
    assert max(array.shape[:2]) <= imaging.MAX_WORKING_SIDE
    assert array.shape[1] / array.shape[0] == pytest.approx(4 / 3, rel=0.01)
    with Image.open(io.BytesIO(data)) as full:
        reference = cv2.resize(np.asarray(full.convert("RGB")), array.shape[1::-1],
                               interpolation=cv2.INTER_AREA)
    assert np.abs(array.astype(int) - reference.astype(int)).mean() < 3


@pytest.mark.parametrize("mode", ["P", "1", "RGBA", "I", "F", "LA"])
def test_big_images_of_every_mode_are_reduced(mode):
    image = Image.new("RGB", (2100, 1500), (200, 100, 50)).convert(
        "L" if mode in ("1", "I", "F", "LA") else "RGB").convert(mode)
    file_format = "TIFF" if mode in ("I", "F") else "PNG"
    array = load_image(encode(image, file_format))
    assert array.dtype == np.uint8 and array.shape == (500, 700, 3)


def test_normal_sized_images_decode_exactly_as_pillow_does():
    """The sample images (HAM10000, 600x450) are not resampled: the models' figures stay put."""
    from conftest import SAMPLE_DIR

    files = sorted(SAMPLE_DIR.glob("*.jpg"))
    assert files
    for path in files:
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGB"))
        assert max(expected.shape) <= imaging.MAX_WORKING_SIDE
        np.testing.assert_array_equal(load_image(path), expected)
    edge = np.random.default_rng(4).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    np.testing.assert_array_equal(load_image(encode(Image.fromarray(edge), "PNG")), edge)


def test_technical_detail_goes_to_the_log_not_the_message(photo_jpeg, caplog):
    with caplog.at_level("INFO", logger="lesionlib.imaging"):
        with pytest.raises(ImageLoadError) as caught:
            load_image(photo_jpeg[: len(photo_jpeg) // 2], name="half.jpg")
    message = str(caught.value)
    assert message.startswith("half.jpg: the file is damaged or incomplete")
    assert "OSError" not in message and "bytes not processed" not in message
    assert "half.jpg" in caplog.text and "Error" in caplog.text
