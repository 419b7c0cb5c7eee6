"""Property tests: whatever bytes arrive, load_image returns RGB uint8 or raises ImageLoadError."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lesionlib import imaging
from lesionlib.imaging import ImageLoadError, load_image

FUZZ_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


def _seed_files() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    files = {}
    for file_format, options in (("JPEG", {"quality": 80}), ("PNG", {}), ("GIF", {}),
                                 ("TIFF", {}), ("BMP", {})):
        buffer = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        if file_format in ("JPEG", "PNG"):
            options = dict(options, exif=exif.tobytes())
        Image.fromarray(pixels).save(buffer, format=file_format, **options)
        files[file_format] = buffer.getvalue()
    return files


SEEDS = _seed_files()


def check_contract(data: bytes) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF, not our concern here
            array = load_image(data, name="fuzz")
    except ImageLoadError as error:
        assert str(error).startswith("fuzz: ") or "upload" in str(error)
        return
    assert isinstance(array, np.ndarray)
    assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
    height, width = array.shape[:2]
    assert min(height, width) >= imaging.MIN_SIDE
    assert max(height, width) / min(height, width) <= imaging.MAX_ASPECT_RATIO
    assert height * width <= imaging.MAX_PIXELS


@st.composite
def mutated_image_bytes(draw) -> bytes:
    """A valid image file with a few bytes flipped, overwritten, inserted, deleted or cut off."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        # mutations cluster in the headers, where the parsers make their decisions
        limit = len(data) - 1 if draw(st.booleans()) else min(len(data) - 1, 200)
        position = draw(st.integers(min_value=0, max_value=max(limit, 0)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif action == "set" and data:
            data[position] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position:position + draw(st.integers(min_value=1, max_value=32))]
        elif action == "truncate":
            del data[position:]
    return bytes(data)


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes_only_raise_image_load_error(data):
    check_contract(data)


@FUZZ_SETTINGS
@given(st.sampled_from(sorted(SEEDS)).map(SEEDS.get).flatmap(
    lambda seed: st.binary(max_size=64).map(lambda tail: seed[:8] + tail)))
def test_valid_signature_then_garbage_only_raises_image_load_error(data):
    check_contract(data)


@FUZZ_SETTINGS
@given(mutated_image_bytes())
def test_mutated_jpeg_and_png_only_raise_image_load_error(data):
    check_contract(data)


@pytest.mark.parametrize("file_format", sorted(SEEDS))
def test_unmutated_seeds_load(file_format):
    """The seeds themselves are valid, so the mutation test starts from real files."""
    array = load_image(SEEDS[file_format])
    assert array.dtype == np.uint8 and array.shape[2] == 3
