"""The byte-bounded cache of decoded images (lesionlib.bounded_cache, resources._decode)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lesionlib.bounded_cache import ByteBoundedCache


def block(kib: int, value: int = 0) -> np.ndarray:
    return np.full(kib * 1024, value, dtype=np.uint8)


def test_least_recently_used_entries_go_first_and_the_bound_holds():
    cache = ByteBoundedCache(10 * 1024)
    for index in range(4):
        assert cache.put(index, block(3, index))
    assert len(cache) == 3 and 0 not in cache and cache.nbytes == 9 * 1024
    assert cache.get(1)[0] == 1  # 1 is now the most recently used
    cache.put("big", block(4))
    assert 2 not in cache and 1 in cache and 3 in cache and "big" in cache
    assert cache.nbytes <= cache.max_bytes


def test_a_value_over_the_bound_is_not_kept_and_replacing_a_key_recounts():
    cache = ByteBoundedCache(4 * 1024)
    assert not cache.put("huge", block(5))
    assert "huge" not in cache and cache.nbytes == 0
    cache.put("a", block(2))
    cache.put("a", block(3))
    assert cache.nbytes == 3 * 1024 and len(cache) == 1
    assert cache.get("missing", "default") == "default"
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


@pytest.mark.parametrize("bound", [0, -1, 1.5, True, "1"])
def test_the_bound_must_be_a_positive_integer(bound):
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        ByteBoundedCache(bound)


def test_unsized_values_are_refused():
    with pytest.raises(TypeError, match="expected a numpy array or bytes"):
        ByteBoundedCache(10).put("x", object())


def png(seed: int, size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_app_decode_cache_is_bounded_by_bytes(monkeypatch):
    from app import resources

    monkeypatch.setattr(resources, "DECODE_CACHE_BYTES", 3 * 300 * 400 * 3)
    resources.decoded_images.clear()
    try:
        cases = [resources.case_from_bytes(f"u{seed}.png", png(seed, (300, 400)))
                 for seed in range(6)]
        cache = resources.decoded_images()
        assert len(cache) == 3 and cache.nbytes <= resources.DECODE_CACHE_BYTES
        assert cases[-1].sha256 in cache and cases[0].sha256 not in cache
        again = resources.case_from_bytes("u5.png", png(5, (300, 400)))
        assert again.image is cases[-1].image  # a second look decodes nothing
        assert not again.image.flags.writeable  # shared between sessions: read-only
    finally:
        resources.decoded_images.clear()
