"""Image intake: formats, modes, orientation, size guards and bad input."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from samdash import imaging
from samdash.errors import ImageError
from samdash.imaging import LoadedImage, display_copy, load_image, load_image_file


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def blocks(height: int = 32, width: int = 48) -> np.ndarray:
    """Flat colour blocks: lossy codecs reproduce them closely away from edges."""
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[: height // 2, : width // 2] = (220, 30, 40)
    rgb[: height // 2, width // 2 :] = (30, 200, 60)
    rgb[height // 2 :, : width // 2] = (40, 50, 210)
    rgb[height // 2 :, width // 2 :] = (240, 240, 30)
    return rgb


def noise(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares a size but whose data is a few bytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + data


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_round_trip_exactly(fmt: str, params: dict) -> None:
    rgb = noise()
    loaded = load_image(encode(Image.fromarray(rgb), fmt, **params), "x")
    np.testing.assert_array_equal(loaded.rgb, rgb)
    assert (loaded.width, loaded.height) == (30, 20)


@pytest.mark.parametrize(("fmt", "params"), [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})])
def test_lossy_formats_round_trip_within_tolerance(fmt: str, params: dict) -> None:
    rgb = blocks()
    loaded = load_image(encode(Image.fromarray(rgb), fmt, **params), "x")
    assert loaded.rgb.shape == rgb.shape
    assert np.abs(loaded.rgb.astype(int) - rgb.astype(int)).mean() < 4


def test_gif_gives_its_first_frame() -> None:
    first = Image.new("RGB", (16, 12), (255, 0, 0))
    second = Image.new("RGB", (16, 12), (0, 0, 255))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    loaded = load_image(data, "anim.gif")
    assert loaded.rgb.shape == (12, 16, 3)
    assert (loaded.rgb == (255, 0, 0)).all()


@pytest.mark.parametrize(("orientation", "turns"), [(6, -1), (8, 1)])
def test_exif_orientation_is_applied(orientation: int, turns: int) -> None:
    rgb = blocks(32, 48)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(rgb), "JPEG", quality=95, exif=exif)
    loaded = load_image(data, "phone.jpg")
    upright = np.rot90(rgb, k=turns)  # 6: turn clockwise, 8: anticlockwise
    assert loaded.rgb.shape == upright.shape == (48, 32, 3)
    assert np.abs(loaded.rgb.astype(int) - upright.astype(int)).mean() < 4


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    loaded = load_image(encode(Image.fromarray(gray), "PNG"))
    np.testing.assert_array_equal(loaded.rgb, np.repeat(gray[:, :, None], 3, axis=2))


def test_la_is_composited_over_white() -> None:
    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent
    la.putpixel((0, 0), (0, 255))  # black, opaque
    rgb = load_image(encode(la, "PNG")).rgb
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert (rgb[1:, :] == 255).all()


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    rgba[0, 1] = (255, 0, 0, 128)
    rgba[0, 2] = (0, 0, 0, 0)
    rgba[1, :] = (0, 0, 255, 255)
    rgb = load_image(encode(Image.fromarray(rgba), "PNG")).rgb.astype(int)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert rgb[0, 1, 0] == 255 and abs(rgb[0, 1, 1] - 127) <= 1 and abs(rgb[0, 1, 2] - 127) <= 1
    assert tuple(rgb[0, 2]) == (255, 255, 255)
    assert (rgb[1] == (0, 0, 255)).all()


def test_rgba_webp_is_composited_over_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgb = load_image(encode(rgba, "WEBP", lossless=True)).rgb
    assert (rgb == 255).all()


def test_palette_image_becomes_rgb() -> None:
    p = Image.fromarray(blocks(8, 8)).quantize(colors=4)
    assert p.mode == "P"
    np.testing.assert_array_equal(load_image(encode(p, "PNG")).rgb, np.asarray(p.convert("RGB")))


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_is_composited_over_white(fmt: str) -> None:
    p = Image.new("P", (4, 4), 0)
    p.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    p.putpixel((0, 0), 1)
    rgb = load_image(encode(p, fmt, transparency=0)).rgb
    assert tuple(rgb[0, 0]) == (200, 10, 10)
    assert (rgb.reshape(-1, 3)[1:] == 255).all()


def test_rgb_png_with_transparent_colour_is_composited_over_white() -> None:
    im = Image.new("RGB", (2, 1), (0, 0, 0))
    im.putpixel((1, 0), (9, 9, 9))
    rgb = load_image(encode(im, "PNG", transparency=(0, 0, 0))).rgb
    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[0, 1]) == (9, 9, 9)


def test_cmyk_tiff_converts_exactly() -> None:
    cmyk = Image.new("CMYK", (3, 2), (0, 255, 255, 0))  # red
    cmyk.putpixel((0, 0), (0, 0, 0, 255))  # black
    rgb = load_image(encode(cmyk, "TIFF")).rgb
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert (rgb.reshape(-1, 3)[1:] == (255, 0, 0)).all()


def test_cmyk_jpeg_converts() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))
    rgb = load_image(encode(cmyk, "JPEG", quality=95)).rgb.astype(int)
    assert np.abs(rgb - (255, 0, 0)).max() < 8


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_takes_the_high_byte(fmt: str) -> None:
    values = np.array([[0, 255, 256, 32768, 65280, 65535]], dtype=np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    rgb = load_image(encode(im, fmt)).rgb
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 0, 1, 128, 255, 255])
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_32_bit_integers_are_stretched_when_out_of_byte_range() -> None:
    im = Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32))
    assert im.mode == "I"
    np.testing.assert_array_equal(load_image(encode(im, "TIFF")).rgb[0, :, 0], [0, 128, 255])


def test_32_bit_integers_within_byte_range_are_kept() -> None:
    im = Image.fromarray(np.array([[0, 7, 200]], dtype=np.int32))
    np.testing.assert_array_equal(load_image(encode(im, "TIFF")).rgb[0, :, 0], [0, 7, 200])


def test_float_images_are_stretched() -> None:
    im = Image.fromarray(np.array([[0.0, 0.5, 1000.0]], dtype=np.float32))
    assert im.mode == "F"
    np.testing.assert_array_equal(load_image(encode(im, "TIFF")).rgb[0, :, 0], [0, 0, 255])


def test_one_bit_becomes_black_and_white() -> None:
    bits = Image.new("1", (8, 2), 0)
    bits.putpixel((3, 1), 1)
    for fmt in ("PNG", "BMP", "TIFF"):
        rgb = load_image(encode(bits, fmt)).rgb
        assert tuple(rgb[1, 3]) == (255, 255, 255)
        assert rgb.sum() == 3 * 255


def test_over_max_pixels_is_refused_with_count_and_limit() -> None:
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError, match=r"big\.png has 10,000 pixels, over the limit of 5,000"):
        load_image(data, "big.png", max_pixels=5_000)
    assert load_image(data, "big.png", max_pixels=10_000).width == 100


def test_oversized_header_is_refused_before_decoding() -> None:
    data = png_header_only(8_000, 8_000)  # 64 MP declared, 64 bytes of data
    start = time.perf_counter()
    # A decode would fail on the missing data; the size message shows it never ran.
    with pytest.raises(ImageError, match="64,000,000 pixels, over the limit of 50,000,000"):
        load_image(data, "huge.png")
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize(
    ("max_pixels", "limit"),
    [(50_000_000, "50,000,000"), (10**12, f"{2 * Image.MAX_IMAGE_PIXELS:,}")],
    ids=["app-limit", "pillow-limit"],
)
def test_decompression_bomb_is_refused_quickly(max_pixels: int, limit: str) -> None:
    data = png_header_only(100_000, 100_000)  # Pillow's own guard fires inside Image.open
    start = time.perf_counter()
    with pytest.raises(ImageError, match=rf"bomb\.png has 10,000,000,000 pixels, over the limit of {limit}"):
        load_image(data, "bomb.png", max_pixels=max_pixels)
    assert time.perf_counter() - start < 1


def test_real_compressible_bomb_is_refused_quickly() -> None:
    data = encode(Image.new("L", (4_000, 3_000)), "PNG")  # 12 MP of zeros in a few KB
    assert len(data) < 100_000
    start = time.perf_counter()
    with pytest.raises(ImageError, match="12,000,000 pixels"):
        load_image(data, "zeros.png", max_pixels=1_000_000)
    assert time.perf_counter() - start < 0.5


def truncated(fmt: str) -> bytes:
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("data", "wording"),
    [
        (b"", "is empty"),
        (np.random.default_rng(1).bytes(4096), "is not an image samdash can read"),
        (b"just some notes, not a picture\n" * 10, "is not an image samdash can read"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "is not an image samdash can read"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "is not an image samdash can read"),
        (truncated("PNG"), "is damaged or incomplete"),
        (truncated("JPEG"), "is damaged or incomplete"),
        (encode(Image.new("RGB", (8, 8)), "PNG")[:20], "photo.jpg"),
    ],
    ids=["empty", "random", "text", "pdf", "eps", "truncated-png", "truncated-jpeg", "header-only"],
)
def test_bad_bytes_raise_image_error_naming_the_file(data: bytes, wording: str) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(data, "photo.jpg")
    message = str(caught.value)
    assert message.startswith("photo.jpg ")
    assert wording in message


def test_corrupt_png_checksum_is_refused() -> None:
    data = bytearray(encode(Image.fromarray(noise()), "PNG"))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(ImageError, match="^x.png "):
        load_image(bytes(data), "x.png")


def test_load_image_file_names_the_file(tmp_path) -> None:
    path = tmp_path / "scan.bmp"
    path.write_bytes(encode(Image.fromarray(noise()), "BMP"))
    loaded = load_image_file(path)
    assert loaded.name == "scan.bmp"
    np.testing.assert_array_equal(loaded.rgb, noise())

    (tmp_path / "notes.png").write_text("hello")
    with pytest.raises(ImageError, match="^notes.png is not an image"):
        load_image_file(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="^missing.png cannot be opened"):
        load_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="pixels, over the limit of 10"):
        load_image_file(str(path), max_pixels=10)


def test_hash_depends_on_pixels_not_file_format() -> None:
    rgb = noise()
    png = load_image(encode(Image.fromarray(rgb), "PNG"), "a.png")
    bmp = load_image(encode(Image.fromarray(rgb), "BMP"), "a.bmp")
    assert png.content_hash == bmp.content_hash
    assert len(png.content_hash) == 32

    changed = rgb.copy()
    changed[0, 0, 0] ^= 1
    assert load_image(encode(Image.fromarray(changed), "PNG")).content_hash != png.content_hash
    # Same bytes in another shape must not collide.
    reshaped = rgb.reshape(30, 20, 3)
    assert LoadedImage.from_array(reshaped).content_hash != png.content_hash


def test_pixels_are_read_only_and_contiguous() -> None:
    loaded = load_image(encode(Image.fromarray(noise()), "PNG"))
    assert loaded.rgb.dtype == np.uint8
    assert loaded.rgb.flags.c_contiguous
    assert not loaded.rgb.flags.writeable
    with pytest.raises(ValueError):
        loaded.rgb[0, 0, 0] = 1


def test_from_array_copies_and_validates() -> None:
    rgb = noise()
    loaded = LoadedImage.from_array(rgb[:, ::2], "view")  # non-contiguous input
    assert loaded.rgb.flags.c_contiguous and not loaded.rgb.flags.writeable
    before = loaded.content_hash
    rgb[:] = 0
    assert loaded.content_hash == before and loaded.rgb.any()
    with pytest.raises(ValueError):
        LoadedImage.from_array(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        LoadedImage.from_array(np.zeros((4, 4, 3), dtype=np.float32))


@pytest.mark.parametrize("use_cv2", [True, False])
def test_display_copy_shrinks_longest_side(monkeypatch, use_cv2: bool) -> None:
    if not use_cv2:
        monkeypatch.setattr(imaging, "cv2", None)
    elif imaging.cv2 is None:
        pytest.skip("opencv is not installed")
    image = np.full((3000, 4000, 3), 77, dtype=np.uint8)
    small, scale = display_copy(image, 1000)
    assert small.shape == (750, 1000, 3)
    assert scale == pytest.approx(0.25)
    assert (small == 77).all()

    tall, scale = display_copy(np.zeros((999, 10, 3), dtype=np.uint8), 100)
    assert tall.shape == (100, 1, 3)
    assert scale == pytest.approx(100 / 999)


def test_display_copy_leaves_small_images_alone() -> None:
    image = np.zeros((100, 80, 3), dtype=np.uint8)
    same, scale = display_copy(image, 100)
    assert same is image and scale == 1.0
    with pytest.raises(ValueError):
        display_copy(image, 0)
