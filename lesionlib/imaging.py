"""Reading images safely, and the one square framing shared by training and inference.

``load_image`` accepts a path, bytes or a file object and returns an RGB ``uint8`` array, or raises
``ImageLoadError`` with a message a reviewer can act on, in plain words (the decoder's technical
detail goes to this module's logger only). It handles EXIF orientation, 16-bit, CMYK, RGBA,
palette and grayscale images, animated files (first frame), and refuses empty, truncated,
non-image, over-large (decompression bombs), tiny and extremely elongated files.

Memory is bounded: an image whose longer side exceeds ``MAX_WORKING_SIDE`` is shrunk by a whole
factor while it is decoded (JPEG: the decoder's own DCT scaling via ``draft``; others: a box
average of the decoded pixels, in their own bit depth) before any conversion, so a 6000x6600
16-bit PNG never becomes a full-size float array. Images up to ``MAX_WORKING_SIDE`` (every
HAM10000, ISIC 2017 and PH2 image; the models read 96-260 px) are decoded exactly as before.

``frame_square`` is the model input framing, recorded in every model card: the full field of view
is resized to a square (aspect ratio not preserved), with area interpolation. ISIC 2017 images are
already squashed to squares, so this keeps HAM10000, PH2 and ISIC 2017 framed alike.
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lesionlib import dicom_input

MAX_PIXELS = 40_000_000  # about 7300 x 5500; larger files are refused as decompression bombs
MAX_FILE_BYTES = 50 * 1024 * 1024
MIN_SIDE = 32
MAX_ASPECT_RATIO = 4.0
# Longer side of the decoded working image; larger images are reduced while decoding.
MAX_WORKING_SIDE = 1024
MAX_NAME_CHARS = 100
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w.\- ]+")
# Decoders tried on untrusted bytes. Everything else Pillow knows (EPS hands the file to
# Ghostscript, plus dozens of legacy formats) is refused as "not a readable image".
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP")  # JPEG covers MPO
DAMAGED = "the file is damaged or incomplete, so the image cannot be read"
NOT_AN_IMAGE = ("this is not an image file we can read (expected a JPEG or PNG dermoscopic "
                "photograph)")
FRAMING = ("full field of view resized to a square (aspect ratio not preserved), "
           "area interpolation, RGB uint8 0-255")

logger = logging.getLogger(__name__)


class ImageLoadError(ValueError):
    """An image could not be used; the message says why and what is expected."""


def safe_file_name(name, default: str = "upload") -> str:
    """A file name fit to show and store: the last path part, letters, digits, ``_.-`` and
    spaces only (anything else, e.g. Markdown or HTML syntax, becomes ``-``), at most
    ``MAX_NAME_CHARS`` characters; ``default`` when nothing is left."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = " ".join(_UNSAFE_NAME_CHARACTERS.sub("-", base).split()).strip(" .-")
    if len(cleaned) > MAX_NAME_CHARS:
        stem, dot, suffix = cleaned.rpartition(".")
        keep = suffix[:10] if dot and stem else ""
        cleaned = cleaned[:MAX_NAME_CHARS - len(keep) - 1].rstrip(" .-") + (
            f".{keep}" if keep else "")
    return cleaned or default


def _not_a_file(path: Path) -> str:
    """Why ``path`` (not a regular file) cannot be read, in a reviewer's words."""
    if path.is_symlink():
        return ("a symbolic link whose target is missing or loops back on itself; expected an "
                "image file.")
    if path.is_dir():
        return "a folder; expected an image file."
    if path.exists():
        return "not a regular file (a FIFO, socket or device); expected an image file."
    return "file not found."


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"{path.name}: {_not_a_file(path)}")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageLoadError(f"{path.name}: file is {size / 2**20:.1f} MiB; the limit is "
                                 f"{MAX_FILE_BYTES / 2**20:.0f} MiB.")
        try:
            return path.read_bytes(), path.name
        except OSError as error:
            logger.info("%s: read failed: %s", path, _describe(error))
            raise ImageLoadError(f"{path.name}: the file cannot be read (it may be locked, "
                                 "moved or unreadable for this server).") from None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_file_size(len(data), "upload")
        return data, "upload"
    if hasattr(source, "read"):
        name = Path(str(getattr(source, "name", "upload") or "upload")).name
        if hasattr(source, "seek"):
            try:
                source.seek(0)  # an upload that was already read once (e.g. by getvalue) or hashed
            except (OSError, ValueError):
                pass  # not seekable: read from where it is
        data = source.read(MAX_FILE_BYTES + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(f"{name}: the file was opened in text mode (read() returned "
                                 f"{type(data).__name__}); open it in binary mode ('rb').")
        _check_file_size(len(data), name)
        return bytes(data), name
    raise ImageLoadError(f"Cannot read an image from {type(source).__name__}; expected a path, "
                         "bytes or a file object.")


def _check_file_size(size: int, name: str) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageLoadError(f"{name}: file is larger than the "
                             f"{MAX_FILE_BYTES / 2**20:.0f} MiB limit.")


def _to_rgb(image: Image.Image, name: str) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.nan_to_num(np.asarray(image, dtype="float64"), nan=0.0, posinf=0.0,
                              neginf=0.0)
        array = np.clip(array * _grey_scale_factor(image.mode, array), 0, 255).round()
        return np.repeat(array.astype("uint8")[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    array = np.asarray(image.convert("RGB"), dtype="uint8")
    if array.ndim != 3 or array.shape[2] != 3:
        logger.info("%s: unexpected pixel layout %s", name, array.shape)
        raise ImageLoadError(f"{name}: the image's pixel layout is not supported; save it as an "
                             "ordinary colour JPEG or PNG.")
    return array


def reduction_factor(width: int, height: int, max_side: int = MAX_WORKING_SIDE) -> int:
    """The whole factor that brings the longer side to at most ``max_side`` (1: unchanged)."""
    return max(1, math.ceil(max(width, height) / max_side))


def _draft_for_jpeg(image: Image.Image, factor: int) -> None:
    """Let the JPEG decoder scale by 1/2, 1/4 or 1/8 itself (never below the target size)."""
    if factor > 1 and image.format in ("JPEG", "MPO"):
        width, height = image.size
        image.draft(image.mode, (math.ceil(width / factor), math.ceil(height / factor)))


def _reduce(image: Image.Image, max_side: int = MAX_WORKING_SIDE) -> Image.Image:
    """Shrink a decoded image by a box average so its longer side is at most ``max_side``.

    16-bit greyscale is averaged in 16 bits, inside Pillow; palette and bilevel images are
    expanded first, since their indices cannot be averaged.
    """
    factor = reduction_factor(*image.size, max_side=max_side)
    if factor == 1:
        return image
    width, height = image.size
    if image.mode.startswith("I;16"):  # Image.reduce has no 16-bit mode; BOX is the same mean
        target = (math.ceil(width / factor), math.ceil(height / factor))
        return image.resize(target, Image.Resampling.BOX)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("1", "PA"):
        image = image.convert("L" if image.mode == "1" else "RGBA")
    return image.reduce(factor)


def _grey_scale_factor(mode: str, array: np.ndarray) -> float:
    """Scale from the file's bit depth to 0-255 (fixed per depth: never stretched per image)."""
    high = float(array.max()) if array.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and 255 < high <= 65535):
        return 255.0 / 65535.0  # 16-bit samples
    if mode == "I" and high > 65535:
        return 255.0 / (2.0**32 - 1)
    if mode == "F" and high <= 1.0:
        return 255.0  # floating point images in 0-1
    return 1.0


def load_image(source, name: str | None = None) -> np.ndarray:
    """Decode an image into an RGB ``uint8`` array of shape ``(height, width, 3)``.

    Args:
        source: a path, raw bytes, or a binary file object (e.g. a Streamlit upload).
        name: how to call the file in error messages. Defaults to the file name.

    Returns:
        The pixels; when the longer side exceeds ``MAX_WORKING_SIDE``, reduced by the smallest
        whole factor that brings it within.

    Raises:
        ImageLoadError: the file is empty, not an image, truncated or corrupt, too large in bytes
            or pixels, too small, or too elongated to be a dermoscopic image.
    """
    data, default_name = _read_bytes(source)
    name = name or default_name
    if not data:
        raise ImageLoadError(f"{name}: the file is empty (0 bytes).")
    if dicom_input.is_dicom(data):
        return _load_dicom(data, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                _check_pixel_count(*image.size, name)
                _check_geometry(*image.size, name)
                image.seek(0)  # multi-frame files (GIF, TIFF, APNG): use the first frame
                _draft_for_jpeg(image, reduction_factor(*image.size))
                image.load()
                image = ImageOps.exif_transpose(_reduce(image))
                array = _to_rgb(image, name)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        logger.info("%s: refused as a decompression bomb: %s", name, _describe(error))
        raise ImageLoadError(f"{name}: the image is too large: it claims more than "
                             f"{MAX_PIXELS:,} pixels (possible decompression bomb).") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: {NOT_AN_IMAGE}. Other formats accepted: "
                             f"{', '.join(ACCEPTED_FORMATS[2:])}, DICOM.") from None
    except MemoryError:
        raise ImageLoadError(f"{name}: not enough memory to decode this image.") from None
    except Exception as error:  # noqa: BLE001 - any decoder failure on untrusted bytes
        # Pillow's plugins raise OSError, SyntaxError, struct.error, ValueError, IndexError...
        # on malformed files; all of them mean the same thing to a reviewer.
        logger.info("%s: decoding failed: %s", name, _describe(error))
        raise ImageLoadError(f"{name}: {DAMAGED}. Export or copy the image again.") from None
    _check_geometry(array.shape[1], array.shape[0], name)
    return array


def _load_dicom(data: bytes, name: str) -> np.ndarray:
    """A DICOM file's first frame, checked and reduced like any other image."""
    try:
        array = dicom_input.decode(data, name, MAX_PIXELS)
    except dicom_input.DicomError as error:
        raise ImageLoadError(str(error)) from None
    _check_geometry(array.shape[1], array.shape[0], name)
    if reduction_factor(array.shape[1], array.shape[0]) > 1:
        array = np.asarray(_reduce(Image.fromarray(array)), dtype="uint8")
    return array


def _check_pixel_count(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImageLoadError(f"{name}: {width}x{height} pixels is over the limit of "
                             f"{MAX_PIXELS:,} pixels (the image is too large; possible "
                             "decompression bomb).")


def _describe(error: Exception) -> str:
    text = str(error).split("\n")[0][:160]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_geometry(width: int, height: int, name: str) -> None:
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
