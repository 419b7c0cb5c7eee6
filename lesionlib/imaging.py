"""Reading images safely, and the one square framing shared by training and inference.

``load_image`` accepts a path, bytes or a file object and returns an RGB ``uint8`` array, or raises
``ImageLoadError`` with a message a reviewer can act on. It handles EXIF orientation, 16-bit, CMYK,
RGBA, palette and grayscale images, animated files (first frame), and refuses empty, truncated,
non-image, over-large (decompression bombs), tiny and extremely elongated files.

``frame_square`` is the model input framing, recorded in every model card: the full field of view
is resized to a square (aspect ratio not preserved), with area interpolation. ISIC 2017 images are
already squashed to squares, so this keeps HAM10000, PH2 and ISIC 2017 framed alike.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # about 7300 x 5500; larger files are refused as decompression bombs
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_SIDE = 32
MAX_ASPECT_RATIO = 4.0
FRAMING = ("full field of view resized to a square (aspect ratio not preserved), "
           "area interpolation, RGB uint8 0-255")


class ImageLoadError(ValueError):
    """An image could not be used; the message says why and what is expected."""


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"{path.name}: file not found.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageLoadError(f"{path.name}: file is {size / 2**20:.1f} MiB; the limit is "
                                 f"{MAX_FILE_BYTES / 2**20:.0f} MiB.")
        return path.read_bytes(), path.name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "upload"
    if hasattr(source, "read"):
        name = Path(getattr(source, "name", "upload") or "upload").name
        data = source.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ImageLoadError(f"{name}: file is larger than the "
                                 f"{MAX_FILE_BYTES / 2**20:.0f} MiB limit.")
        return data, name
    raise ImageLoadError(f"Cannot read an image from {type(source).__name__}; expected a path, "
                         "bytes or a file object.")


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype="float64")
        high = array.max() if array.size else 0
        scale = 255.0 / high if high > 255 else 1.0
        array = np.clip(array * scale, 0, 255).astype("uint8")
        return np.repeat(array[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    array = np.asarray(image.convert("RGB"), dtype="uint8")
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageLoadError(f"{name}: unexpected pixel layout {array.shape}.")
    return array


def load_image(source, name: str | None = None) -> np.ndarray:
    """Decode an image into an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Args:
        source: a path, raw bytes, or a binary file object (e.g. a Streamlit upload).
        name: how to call the file in error messages. Defaults to the file name.

    Raises:
        ImageLoadError: the file is empty, not an image, truncated or corrupt, too large in bytes
            or pixels, too small, or too elongated to be a dermoscopic image.
    """
    data, default_name = _read_bytes(source)
    name = name or default_name
    if not data:
        raise ImageLoadError(f"{name}: the file is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ImageLoadError(
                        f"{name}: {width}x{height} pixels is over the limit of "
                        f"{MAX_PIXELS:,} pixels (possible decompression bomb).")
                image.seek(0)  # multi-frame files (GIF, TIFF, APNG): use the first frame
                image.load()
                image = ImageOps.exif_transpose(image)
                array = _to_rgb(image, name)
    except ImageLoadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise ImageLoadError(f"{name}: not a readable image ({_describe(error)}). Expected a "
                             "JPEG or PNG dermoscopic photograph.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError,
            MemoryError, ZeroDivisionError, AttributeError, RuntimeError) as error:
        raise ImageLoadError(f"{name}: the image is corrupt or truncated "
                             f"({_describe(error)}).") from None
    _check_geometry(array, name)
    return array


def _describe(error: Exception) -> str:
    text = str(error).split("\n")[0][:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_geometry(array: np.ndarray, name: str) -> None:
    height, width = array.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise ImageLoadError(f"{name}: {width}x{height} pixels is too small; at least "
                             f"{MIN_SIDE}x{MIN_SIDE} is needed.")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageLoadError(f"{name}: aspect ratio {ratio:.1f}:1 ({width}x{height}) is too "
                             f"elongated for a dermoscopic image (at most {MAX_ASPECT_RATIO:g}:1).")


def frame_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the full field of view to ``size x size`` (the framing every model card records)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an RGB array (height, width, 3); received shape "
                         f"{image.shape}.")
    height, width = image.shape[:2]
    interpolation = cv2.INTER_AREA if min(height, width) >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def strip_metadata(image: np.ndarray) -> bytes:
    """Encode pixels as PNG with no EXIF or other metadata (for storing reviewed images)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()
