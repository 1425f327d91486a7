"""Image intake: turn uploaded bytes or a file into one normalised RGB array.

Everything downstream (the SAM encoder, the canvas, the exports) can then
assume an upright (H, W, 3) uint8 image, and every way an upload can be bad
surfaces as an :class:`~samdash.errors.ImageError` with a sentence to show.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from typing import IO

import numpy as np
from PIL import Image, ImageOps

from samdash.errors import ImageError

try:
    import cv2
except ImportError:  # opencv is in the requirements; Pillow's box filter stands in
    cv2 = None

SUPPORTED_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "tif", "tiff", "bmp", "gif")

# Pillow decoders tried on an upload. Naming them keeps Pillow from handing
# untrusted bytes to rarer plugins (EPS, for one, runs Ghostscript).
_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")
_FORMAT_NAMES = "PNG, JPEG, WebP, TIFF, BMP or GIF"

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded, upright RGB image with a hash of its pixels.

    ``rgb`` is read-only so the pixels cannot drift from ``content_hash``,
    which caches (embeddings, canvas keys) rely on. Compare images by
    ``content_hash``; equality of the objects themselves is identity.
    """

    rgb: np.ndarray = field(repr=False)
    content_hash: str
    name: str

    @classmethod
    def from_array(cls, rgb: np.ndarray, name: str = "image") -> LoadedImage:
        """Wrap an (H, W, 3) uint8 array; it is copied so later edits to the
        caller's array cannot change the pixels behind the hash."""
        return cls.owning(np.array(rgb, order="C", copy=True), name)

    @classmethod
    def owning(cls, rgb: np.ndarray, name: str, content_hash: str | None = None) -> LoadedImage:
        """Wrap an (H, W, 3) uint8 array nobody else holds (a decoder's output): frozen as it is, not copied;
        hashed unless ``content_hash`` says what its pixels hash to already."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
        rgb = np.ascontiguousarray(rgb)
        rgb.flags.writeable = False
        return cls(rgb=rgb, content_hash=content_hash or pixel_hash(rgb), name=name)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def pixel_hash(rgb: np.ndarray) -> str:
    """A 128-bit BLAKE2b digest of shape and pixels: the same picture gives the
    same key whatever file format it arrived in (≈ 40 ms for 12 MP)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{rgb.shape}{rgb.dtype.str}".encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def load_image(data: bytes, name: str = "image", max_pixels: int = 50_000_000) -> LoadedImage:
    """Decode an upload held in memory, as the upload widget delivers it."""
    return _decode(io.BytesIO(data), name, max_pixels)


def load_image_file(
    path: str | os.PathLike[str], max_pixels: int = 50_000_000, name: str | None = None, content_hash: str | None = None
) -> LoadedImage:
    """Decode an image file, streaming it so a huge non-image costs nothing.

    ``content_hash`` is the hash of its pixels when it is already known (a
    file stored under it): hashing 12 MP again would take longer than a
    third of the decode.
    """
    name = name or os.path.basename(os.fspath(path))
    try:
        with open(path, "rb") as fp:
            return _decode(fp, name, max_pixels, content_hash)
    except OSError as exc:
        raise ImageError(f"{name} cannot be opened ({exc.strerror or exc}).") from exc


def display_copy(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """A copy whose longest side is at most ``max_side``, and its scale.

    Display px = image px × scale. Shrinking uses area averaging, which keeps
    thin edges visible; an image that already fits comes back as the same
    array with scale 1.0, so callers pay nothing for small images.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, min(max_side, round(width * scale))), max(1, min(max_side, round(height * scale))))
    if cv2 is not None:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale
    small = Image.fromarray(image).resize(size, Image.Resampling.BOX)
    return np.asarray(small).copy(), scale


def thumbnail_jpeg(image: np.ndarray, max_side: int = 160) -> bytes:
    """A small JPEG of an RGB image, for lists of many images (made once, when the image is added)."""
    small, _ = display_copy(image, max_side)
    buffer = io.BytesIO()
    Image.fromarray(small).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _decode(fp: IO[bytes], name: str, max_pixels: int, content_hash: str | None = None) -> LoadedImage:
    """Open, size-check, decode and normalise, mapping every failure to ImageError."""
    if fp.read(1) == b"":
        raise ImageError(f"{name} is empty (0 bytes), so there is no image to read.")
    fp.seek(0)
    try:
        with Image.open(fp, formats=_FORMATS) as im:
            # Image.open has only parsed the header: refuse oversized images
            # before a single pixel is decompressed.
            _check_size(name, im.width * im.height, max_pixels)
            im.load()
            rgb = _to_rgb(ImageOps.exif_transpose(im))
    except ImageError:
        raise
    except Image.UnidentifiedImageError as exc:
        raise ImageError(
            f"{name} is not an image samdash can read (its contents are not {_FORMAT_NAMES})."
        ) from exc
    except Image.DecompressionBombError as exc:
        # Pillow's own guard fires at open for sizes above 2 × Image.MAX_IMAGE_PIXELS,
        # before the size can be read here; its message carries the pixel count.
        raise ImageError(_bomb_message(name, str(exc), max_pixels)) from exc
    except MemoryError as exc:
        raise ImageError(f"{name} is too large to decode in the memory available.") from exc
    except Exception as exc:
        # Decoders signal bad data with many types: OSError, SyntaxError,
        # ValueError, EOFError, struct.error, zlib.error…
        reason = str(exc) or type(exc).__name__
        raise ImageError(f"{name} is damaged or incomplete and cannot be decoded ({reason}).") from exc
    return LoadedImage.owning(rgb, name, content_hash)


def _check_size(name: str, pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise ImageError(
            f"{name} has {pixels:,} pixels, over the limit of {max_pixels:,}; "
            "shrink it first or raise SAMDASH_MAX_IMAGE_PIXELS."
        )


def _bomb_message(name: str, pillow_message: str, max_pixels: int) -> str:
    pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    limit = min(max_pixels, pillow_limit) if pillow_limit else max_pixels
    found = _BOMB_PIXELS.search(pillow_message)
    count = f"{int(found.group(1)):,} pixels" if found else "more pixels than Pillow will decode"
    return f"{name} has {count}, over the limit of {limit:,}; it looks like a decompression bomb."


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8; transparency is flattened onto white
    so a cut-out on a transparent background stays visible and segmentable."""
    if im.mode in _HIGH_DEPTH_MODES:
        gray = _gray_to_uint8(np.asarray(im), im.mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _gray_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale one-channel data deeper than 8 bits to 0–255.

    16-bit data takes its high byte (v >> 8, i.e. v / 256 floored), the usual
    full-range mapping: a dark 16-bit photo stays dark, and a file always maps
    the same way whatever its content. 32-bit integer and float data have no
    fixed range: values already within 0–255 are kept, anything else is
    stretched from its minimum to its maximum so the picture is visible.
    """
    if mode.startswith("I;16"):
        return (values.astype(np.uint16) >> 8).astype(np.uint8)
    data = values.astype(np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    low, high = float(data[finite].min()), float(data[finite].max())
    if low < 0 or high > 255:
        data = (data - low) * (255.0 / (high - low)) if high > low else np.zeros_like(data)
    return np.clip(np.rint(np.where(finite, data, 0.0)), 0, 255).astype(np.uint8)
