"""Unit tests of `cnnedge.preprocess`: decoding guards, every image mode, and the numpy steps."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnedge.errors import UsageError
from cnnedge.preprocess import (
    ImageError,
    ImageFormatError,
    ImageTooLargeError,
    PreprocessConfig,
    bounding_box,
    centre_of_mass,
    decode_image,
    fit_into_box,
    place_by_centre_of_mass,
    preprocess_array,
    preprocess_image,
    should_invert,
    sniff_format,
    to_ink,
)

CONFIG = PreprocessConfig()


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _glyph() -> np.ndarray:
    """A dark asymmetric "digit" on white, (60, 40) float in [0, 1]: an L with a foot to the right."""
    gray = np.ones((60, 40), dtype=np.float32)
    gray[8:50, 10:16] = 0.0  # the stem
    gray[44:50, 10:32] = 0.0  # the foot
    return gray


def _l_image() -> Image.Image:
    return Image.fromarray(np.round(_glyph() * 255).astype(np.uint8))


def _reference() -> np.ndarray:
    return preprocess_array(_glyph(), CONFIG)


def _png_header(width: int, height: int, bit_depth: int = 8) -> bytes:
    """A PNG with a hand-made IHDR declaring `width` x `height` and a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _assert_close(out: np.ndarray, ref: np.ndarray, tol: float, what: str) -> None:
    diff = float(np.abs(out - ref).mean())
    assert diff < tol, f"{what}: mean |difference| to the reference {diff:.4f} >= {tol}"


# ------------------------------------------------------------------------------ config


def test_config_round_trips_through_dict() -> None:
    config = PreprocessConfig.for_input_shape((32, 24, 3), invert="never", max_pixels=1234)
    assert config.box == (23, 17)  # 20 of 28, scaled
    again = PreprocessConfig.from_dict(config.to_dict())
    assert again == config


def test_config_from_placeholder_metadata_uses_input_shape() -> None:
    placeholder = {"scale": 1 / 255, "layout": "NHWC", "dtype": "float32"}
    config = PreprocessConfig.from_dict(placeholder, [28, 28, 1])
    assert config == PreprocessConfig()
    wide = PreprocessConfig.from_metadata({"input_shape": [40, 56, 3], "preprocessing": {}})
    assert (wide.height, wide.width, wide.channels, wide.box) == (40, 56, 3, (29, 40))


@pytest.mark.parametrize(
    "data",
    [{"invert": "sometimes"}, {"method": "imagenet"}, {"box": [30, 30]}, {"formats": ["GIF"]}],
)
def test_config_rejects_bad_values(data: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        PreprocessConfig.from_dict(data, [28, 28, 1])


# --------------------------------------------------------------------------- numpy steps


def test_bounding_box_known_answer() -> None:
    ink = np.zeros((20, 30), dtype=np.float32)
    ink[3:8, 10:16] = 1.0
    ink[12, 25] = 0.05  # faint noise below 10% of the peak
    assert bounding_box(ink, 0.1) == (3, 10, 8, 16)
    assert bounding_box(ink, 0.0) == (3, 10, 13, 26)
    assert bounding_box(np.zeros((5, 5)), 0.1) is None


def test_centre_of_mass_known_answer() -> None:
    ink = np.zeros((10, 10), dtype=np.float32)
    ink[2, 2] = 1.0
    ink[2, 6] = 3.0
    assert centre_of_mass(ink) == pytest.approx((2.0, 5.0))
    ink[6, 2] = 4.0  # rows: (2*4 + 6*4) / 8 = 4; cols: (2*1 + 6*3 + 2*4) / 8 = 3.5
    assert centre_of_mass(ink) == pytest.approx((4.0, 3.5))
    with pytest.raises(ImageError, match="no ink"):
        centre_of_mass(np.zeros((4, 4)))


def test_place_by_centre_of_mass_centres_and_clamps() -> None:
    digit = np.zeros((20, 10), dtype=np.float32)
    digit[15:20, :] = 1.0  # all the mass at the bottom
    frame = place_by_centre_of_mass(digit, (28, 28))
    com = centre_of_mass(frame)
    # Whole-pixel shift: the centre of mass lands within half a pixel of (14, 14) unless clamped.
    assert abs(com[1] - 14.0) <= 0.5, f"column centre {com[1]:.2f}, expected 14 +- 0.5"
    # Rows would need a shift of -3 (mass at 17 -> 14) and the digit is clamped inside the frame.
    assert frame.sum() == pytest.approx(digit.sum()), "clamping must not cut ink off"
    assert com[0] == pytest.approx(14.0 + 3.0), f"row centre {com[0]:.2f}: clamped at the top edge"


def test_fit_into_box_keeps_aspect_ratio() -> None:
    assert fit_into_box(np.ones((40, 10)), (20, 20)).shape == (20, 5)
    assert fit_into_box(np.ones((10, 40)), (20, 20)).shape == (5, 20)
    assert fit_into_box(np.ones((1, 5000)), (20, 20)).shape == (1, 20)
    small = fit_into_box(np.ones((4, 2)), (20, 20))
    assert small.shape == (20, 10)
    assert float(small.min()) == pytest.approx(1.0), "enlarging a solid block stays solid"


def test_inversion_both_ways() -> None:
    dark_on_light = _glyph()
    light_on_dark = 1.0 - dark_on_light
    assert should_invert(dark_on_light, "auto") is True
    assert should_invert(light_on_dark, "auto") is False
    assert should_invert(light_on_dark, "always") is True
    assert should_invert(dark_on_light, "never") is False
    np.testing.assert_allclose(to_ink(dark_on_light, "auto"), to_ink(light_on_dark, "auto"))
    a = preprocess_array(dark_on_light, CONFIG)
    b = preprocess_array(light_on_dark, CONFIG)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # Forced the wrong way, the white paper is the "ink" and, being uniform, is lifted to black.
    with pytest.raises(ImageError, match="blank"):
        preprocess_array(dark_on_light, PreprocessConfig(invert="never"))
    np.testing.assert_allclose(
        preprocess_array(light_on_dark, PreprocessConfig(invert="never")), a, atol=1e-6
    )


def test_grey_paper_is_lifted_to_black() -> None:
    photo = 0.75 + 0.0 * _glyph()
    photo[_glyph() < 0.5] = 0.3  # grey pencil on grey paper
    out = preprocess_array(photo, CONFIG)[..., 0]
    assert float(out.max()) == pytest.approx(1.0), "the faint stroke is stretched to full ink"
    border = np.concatenate([out[0], out[-1], out[:, 0], out[:, -1]])
    assert float(border.max()) == 0.0, f"background should be 0, border max {border.max():.3f}"


def test_output_is_mnist_like() -> None:
    out = _reference()
    assert out.shape == (28, 28, 1) and out.dtype == np.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    top, left, bottom, right = bounding_box(out[..., 0], 0.1) or (0, 0, 0, 0)
    assert max(bottom - top, right - left) == 20, "the longer side fills the 20-pixel box"
    com = centre_of_mass(out[..., 0])
    assert np.allclose(com, (14.0, 14.0), atol=0.5), f"centre of mass {com}, expected (14, 14)"
    rgb = preprocess_array(_glyph(), PreprocessConfig.for_input_shape((28, 28, 3)))
    assert rgb.shape == (28, 28, 3)
    np.testing.assert_allclose(rgb[..., 2], out[..., 0])


def test_preprocess_array_accepts_uint8_and_channel_axis() -> None:
    as_uint8 = np.round(_glyph() * 255).astype(np.uint8)[..., None]  # (H, W, 1)
    _assert_close(preprocess_array(as_uint8, CONFIG), _reference(), 1e-6, "uint8 input")
    with pytest.raises(ImageError, match="grayscale"):
        preprocess_array(np.zeros((4, 4, 3)), CONFIG)


# --------------------------------------------------------------------------- image modes


def _modes() -> dict[str, bytes]:
    base = _l_image()
    ink = np.asarray(base) < 128
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[ink] = (20, 40, 200, 255)  # blue strokes on a fully transparent (black) canvas
    white_rgba = np.zeros_like(rgba)
    white_rgba[ink] = (255, 255, 255, 255)  # white chalk on a transparent canvas
    wide = (np.asarray(base).astype(np.uint16) * 257).astype(np.uint16)  # 16-bit, 0..65535
    palette = base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    return {
        "L": _encode(base),
        "1": _encode(base.convert("1")),
        "P": _encode(palette),
        "RGB": _encode(Image.merge("RGB", [base, base, base])),
        "RGBA transparent": _encode(Image.fromarray(rgba, "RGBA")),
        "RGBA white strokes": _encode(Image.fromarray(white_rgba, "RGBA")),
        "LA": _encode(Image.merge("LA", [base, Image.new("L", base.size, 255)])),
        "I;16": _encode(Image.fromarray(wide)),
        "JPEG L": _encode(base, "JPEG", quality=95),
        "JPEG RGB": _encode(base.convert("RGB"), "JPEG", quality=95),
        "JPEG CMYK": _encode(base.convert("CMYK"), "JPEG", quality=95),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_mode_gives_the_same_digit(mode: str) -> None:
    data = _modes()[mode]
    out = preprocess_image(data, CONFIG)
    tol = 0.02 if "JPEG" in mode else 0.005
    _assert_close(out, _reference(), tol, mode)


def test_16_bit_png_keeps_its_depth() -> None:
    image = Image.open(io.BytesIO(_modes()["I;16"]))
    assert image.mode.startswith("I"), f"Pillow opened the 16-bit PNG as {image.mode}"
    gray = decode_image(_modes()["I;16"], CONFIG)
    assert float(gray.max()) == pytest.approx(1.0) and float(gray.min()) == 0.0


@pytest.mark.parametrize(("fmt", "orientation"), [("JPEG", 6), ("JPEG", 3), ("PNG", 8)])
def test_exif_orientation_is_applied(fmt: str, orientation: int) -> None:
    # A file stored sideways with an EXIF tag saying how to turn it must look like the upright one.
    turn = {
        6: Image.Transpose.ROTATE_90,
        3: Image.Transpose.ROTATE_180,
        8: Image.Transpose.ROTATE_270,
    }
    stored = _l_image().transpose(turn[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored, fmt, exif=exif.tobytes())
    out = preprocess_image(data, CONFIG)
    _assert_close(out, _reference(), 0.02, f"{fmt} orientation {orientation}")
    ignored = preprocess_image(_encode(stored, fmt), CONFIG)  # same pixels, no tag
    assert float(np.abs(ignored - _reference()).mean()) > 0.05, "the rotation must matter"


# ------------------------------------------------------------------------------- guards


def test_sniff_format() -> None:
    assert sniff_format(_encode(_l_image())) == "PNG"
    assert sniff_format(_encode(_l_image(), "JPEG")) == "JPEG"
    assert sniff_format(_encode(_l_image(), "GIF")) == "GIF"
    assert sniff_format(b"hello") is None


def test_png_declaring_10_gigapixels_is_refused_before_decoding() -> None:
    bomb = _png_header(100_000, 100_000)
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="100000x100000") as info:
        preprocess_image(bomb, CONFIG)
    elapsed = time.perf_counter() - start
    assert info.value.http_status == 413
    assert elapsed < 0.5, f"refusing took {elapsed:.3f}s: it must not decode or allocate"


def test_jpeg_declaring_3_6_gigapixels_is_refused() -> None:
    data = bytearray(_encode(_l_image(), "JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = struct.pack(">HH", 60_000, 60_000)
    with pytest.raises(ImageTooLargeError, match="60000x60000"):
        preprocess_image(bytes(data), CONFIG)


def test_large_photo_is_reduced_and_still_read() -> None:
    # A 6-megapixel JPEG "photo": dark grey ink on grey paper, the glyph 25 times larger.
    glyph = _l_image().resize((1000, 1500), Image.Resampling.NEAREST)
    clean = Image.new("L", (3000, 2000), 255)
    clean.paste(glyph, (300, 250))
    photo = Image.new("L", (3000, 2000), 200)
    photo.paste(glyph.point(lambda v: 40 if v < 128 else 200), (300, 250))
    start = time.perf_counter()
    out = preprocess_image(_encode(photo, "JPEG", quality=90), CONFIG)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"a 6-megapixel JPEG took {elapsed:.2f}s"
    # Grey paper, JPEG and the reduced decode change nothing against the clean PNG...
    _assert_close(out, preprocess_image(_encode(clean, "PNG"), CONFIG), 0.01, "photo vs clean")
    # ...which is a proper MNIST frame: longer side 20, centre of mass in the middle.
    top, left, bottom, right = bounding_box(out[..., 0], 0.1) or (0, 0, 0, 0)
    # The 42x22 ink scales to 20x10.5: 10 or 11 columns depending on where the edges fall.
    assert bottom - top == 20 and right - left in (10, 11), f"box {bottom - top}x{right - left}"
    com = centre_of_mass(out[..., 0])
    assert np.allclose(com, (14.0, 14.0), atol=0.5), f"centre of mass {com}"


def test_pixel_limit_is_settable() -> None:
    data = _encode(_l_image())  # 40 x 60 = 2400 pixels
    with pytest.raises(ImageTooLargeError, match="2,400 pixels"):
        preprocess_image(data, PreprocessConfig(max_pixels=2399))
    preprocess_image(data, PreprocessConfig(max_pixels=2400))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_refused(fmt: str, keep: float) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    data = _encode(Image.fromarray(noise), fmt)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ImageError, match="truncated or corrupt") as info:
        preprocess_image(cut, CONFIG)
    assert info.value.http_status == 400


@pytest.mark.parametrize("cut", [10, 30])
def test_cut_inside_the_header_is_refused(cut: int) -> None:
    with pytest.raises(ImageError, match="truncated or corrupt"):
        preprocess_image(_encode(_l_image())[:cut], CONFIG)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP", "WEBP"])
def test_formats_outside_the_allow_list_are_refused(fmt: str) -> None:
    data = _encode(_l_image().convert("RGB"), fmt)
    with pytest.raises(ImageFormatError, match=f"format {fmt} is not accepted") as info:
        preprocess_image(data, CONFIG)
    assert info.value.http_status == 415


def test_allow_list_can_be_narrowed() -> None:
    with pytest.raises(ImageFormatError, match="JPEG is not accepted"):
        preprocess_image(_encode(_l_image(), "JPEG"), PreprocessConfig(formats=("PNG",)))


def test_empty_zero_size_and_garbage_are_refused() -> None:
    with pytest.raises(ImageError, match="empty"):
        preprocess_image(b"", CONFIG)
    with pytest.raises(ImageError) as info:
        preprocess_image(_png_header(0, 10), CONFIG)
    assert "no pixels" in str(info.value) or "header" in str(info.value)
    with pytest.raises(ImageError, match="not an image") as garbage:
        preprocess_image(b"this is not an image at all", CONFIG)
    assert garbage.value.http_status == 400  # undecodable, not a refused format


def test_blank_image_is_refused() -> None:
    with pytest.raises(ImageError, match="blank"):
        preprocess_image(_encode(Image.new("L", (50, 50), 255)), CONFIG)


@pytest.mark.parametrize("invert", ["auto", "always", "never"])
@pytest.mark.parametrize("level", [0, 255])
def test_one_by_one_image_is_blank(level: int, invert: str) -> None:
    # One pixel is its own border: nothing differs from the background, so no digit, clearly said.
    data = _encode(Image.new("L", (1, 1), level))
    with pytest.raises(ImageError, match="1x1 image is blank"):
        preprocess_image(data, PreprocessConfig(invert=invert))


def test_tiny_digit_is_enlarged_to_the_box() -> None:
    tiny = np.full((5, 5), 255, dtype=np.uint8)
    tiny[2, 2] = 0
    out = preprocess_image(_encode(Image.fromarray(tiny)), CONFIG)[..., 0]
    assert bounding_box(out, 0.5) == (4, 4, 24, 24), "one ink pixel fills the 20x20 box"


def test_one_by_5000_image() -> None:
    strip = np.full((1, 5000), 255, dtype=np.uint8)
    strip[0, 2000:3000] = 0  # a dark dash on a white strip
    out = preprocess_image(_encode(Image.fromarray(strip)), CONFIG)[..., 0]
    rows = np.flatnonzero(out.max(axis=1) > 0.1)
    cols = np.flatnonzero(out.max(axis=0) > 0.1)
    assert rows.tolist() == [14], f"a 1-pixel line in the middle row, got rows {rows.tolist()}"
    assert (cols[0], cols[-1]) == (4, 23), f"20 columns centred, got {cols[0]}..{cols[-1]}"
