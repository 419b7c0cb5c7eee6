"""Peak memory of the dashboard's upload path on many large uploads, against a baseline.

Each upload is a 6000x6600 16-bit greyscale PNG of about 100 KB (mostly flat, so it compresses
well, as an attacker's or a scanner's file would); every upload differs by a text chunk, so each
has its own sha256 and goes through decoding and the decode cache like a new case. The baseline
is the resident memory (RSS) of this same process after importing the dashboard's resources and
decoding one HAM10000 sample image; the script then reports the peak RSS over all uploads.

    python scripts/benchmarks/benchmark_upload_memory.py                 # 1,000 uploads, target 1.5 GB
    python scripts/benchmarks/benchmark_upload_memory.py --uploads 5 --repo ../main   # another checkout

Exits 1 when the peak is over ``--limit-gb``.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
WIDTH, HEIGHT = 6000, 6600


def rss_bytes() -> int:
    """The current resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def big_16_bit_png() -> bytes:
    """A 6000x6600 16-bit greyscale PNG: a bright square on black."""
    import cv2
    import numpy as np

    pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)
    pixels[1000:5000, 1000:5000] = 30000
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise RuntimeError("OpenCV could not encode the test PNG.")
    return encoded.tobytes()


def with_text_chunk(png: bytes, text: str) -> bytes:
    """The same PNG with a tEXt chunk before IEND (same pixels, different bytes and sha256)."""
    body = b"Comment\x00" + text.encode("ascii")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(
        ">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF)
    end = png.rindex(b"IEND") - 4
    return png[:end] + chunk + png[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=1000)
    parser.add_argument("--limit-gb", type=float, default=1.5)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[2],
                        help="the checkout whose resources is measured (default: this one)")
    arguments = parser.parse_args(argv)
    sys.path.insert(0, str(arguments.repo.resolve()))
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from app import resources

    sample = sorted((arguments.repo / "sample_images").glob("*.jpg"))[0]
    resources.case_from_file(sample)
    baseline = rss_bytes()
    png = big_16_bit_png()
    started = time.perf_counter()
    shape = None
    for index in range(arguments.uploads):
        upload = with_text_chunk(png, str(index))
        case = resources.case_from_bytes(f"upload{index}.png", upload)
        shape = case.image.shape
    elapsed = time.perf_counter() - started
    peak = peak_rss_bytes()
    cache = getattr(resources, "decoded_images", None)
    held = f"{cache().nbytes / 2**20:.0f} MiB in {len(cache())} images" if cache else "n/a"
    print(f"checkout: {arguments.repo.resolve()}")
    print(f"uploads: {arguments.uploads} x {len(png) / 1024:.0f} KB PNG, {WIDTH}x{HEIGHT} "
          f"16-bit -> decoded {shape} ({elapsed / max(1, arguments.uploads):.2f} s each)")
    print(f"baseline RSS (after imports and one sample image): {baseline / 2**20:.0f} MiB")
    print(f"peak RSS: {peak / 2**20:.0f} MiB (+{(peak - baseline) / 2**20:.0f} MiB over the "
          f"baseline); RSS at the end: {rss_bytes() / 2**20:.0f} MiB; decode cache: {held}")
    within = peak <= arguments.limit_gb * 1e9
    print(f"target: peak <= {arguments.limit_gb} GB: {'met' if within else 'NOT met'}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
