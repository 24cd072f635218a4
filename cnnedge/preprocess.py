"""Images in, model input out: the one MNIST-style preprocessing shared by training and serving.

The steps are those MNIST itself was made with: decode (PNG or JPEG only), apply the EXIF
orientation, convert to grayscale, make the digit light on a dark background, crop to the ink's
bounding box, fit it into a 20x20 box (for 28x28; scaled for other sizes) keeping the aspect ratio,
and place it in the frame so that its centre of mass is the frame's centre.

The parameters travel in `metadata["preprocessing"]` (`PreprocessConfig.to_dict`), so a package is
always fed the way it was trained. numpy and Pillow only; no TensorFlow.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnedge.errors import UsageError

METHOD = "mnist"
INVERT_CHOICES = ("auto", "always", "never")
ALLOWED_FORMATS = ("PNG", "JPEG")
DEFAULT_MAX_PIXELS = 50_000_000  # a 50-megapixel phone photo still decodes
_MNIST_FRAME, _MNIST_BOX = 28, 20
# Large photos are reduced to about this many pixels on the long side before the numpy steps:
# the digit ends up 20 pixels tall, so more resolution only costs memory.
_WORK_SIDE = 1024

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
)


class ImageError(UsageError):
    """An image that cannot be turned into model input; `http_status` is what the server answers."""

    http_status = 400


class ImageFormatError(ImageError):
    """An image in a format outside the allow-list (PNG, JPEG)."""

    http_status = 415


class ImageTooLargeError(ImageError):
    """An image that declares more pixels than the limit (a decompression-bomb guard)."""

    http_status = 413


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw images become model input; stored as `metadata["preprocessing"]`.

    Attributes:
        height, width, channels: the model's input shape (H, W, C).
        box: (height, width) of the box the digit is fitted into; 20x20 for 28x28.
        invert: "auto" (invert when the border is light), "always" or "never".
        max_pixels: images declaring more pixels than this are refused before decoding.
        formats: the allow-list of image formats.
        ink_threshold: a pixel counts as ink for the bounding box above this fraction of the
            brightest ink.
    """

    height: int = _MNIST_FRAME
    width: int = _MNIST_FRAME
    channels: int = 1
    box: tuple[int, int] = (_MNIST_BOX, _MNIST_BOX)
    invert: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    formats: tuple[str, ...] = field(default=ALLOWED_FORMATS)
    ink_threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.invert not in INVERT_CHOICES:
            raise UsageError(
                f"invert {self.invert!r} is not one of {', '.join(INVERT_CHOICES)}; "
                'use "auto" to decide from the image border'
            )
        if min(self.height, self.width) < 1 or self.channels not in (1, 3):
            raise UsageError(
                f"input shape {self.height}x{self.width}x{self.channels} is not usable; "
                "height and width must be >= 1 and channels 1 or 3"
            )
        if not (1 <= self.box[0] <= self.height and 1 <= self.box[1] <= self.width):
            raise UsageError(
                f"box {self.box[0]}x{self.box[1]} does not fit the frame "
                f"{self.height}x{self.width}; use a box between 1x1 and the frame size"
            )
        if self.max_pixels < 1:
            raise UsageError(f"max_pixels {self.max_pixels} must be a positive pixel count")
        unknown = sorted(set(self.formats) - set(ALLOWED_FORMATS))
        if unknown or not self.formats:
            raise UsageError(
                f"formats {list(self.formats)} must be a non-empty subset of {list(ALLOWED_FORMATS)}"
            )
        if not 0.0 <= self.ink_threshold < 1.0:
            raise UsageError(f"ink_threshold {self.ink_threshold} must be in [0, 1)")

    @classmethod
    def for_input_shape(cls, input_shape: Sequence[int], **overrides: Any) -> PreprocessConfig:
        """The MNIST recipe for a model input (H, W, C): the 20-of-28 box scaled to H and W.

        Args:
            input_shape: the model's (H, W, C).
            overrides: any other field (invert, max_pixels, ...).

        Returns:
            The config.
        """
        h, w, c = (int(v) for v in input_shape)
        box = (_scaled_box(h), _scaled_box(w))
        return cls(**{"height": h, "width": w, "channels": c, "box": box, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for `metadata["preprocessing"]`."""
        return {
            "method": METHOD,
            "size": [self.height, self.width],
            "channels": self.channels,
            "box": list(self.box),
            "invert": self.invert,
            "max_pixels": self.max_pixels,
            "formats": list(self.formats),
            "ink_threshold": self.ink_threshold,
            # What the model receives, for consumers that only feed arrays.
            "layout": "NHWC",
            "dtype": "float32",
            "range": [0.0, 1.0],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any] | None, input_shape: Sequence[int] | None = None
    ) -> PreprocessConfig:
        """Read `metadata["preprocessing"]` back; missing keys default from `input_shape`.

        Args:
            data: the stored dict (unknown keys such as "scale" are ignored), or None.
            input_shape: `metadata["input_shape"]`, used where `data` has no "size"/"channels".

        Returns:
            The config.
        """
        data = dict(data or {})
        method = data.get("method", METHOD)
        if method != METHOD:
            raise UsageError(
                f'preprocessing method {method!r} is unknown; this cnnedge knows "{METHOD}"; '
                "upgrade cnnedge or re-run `cnnedge train`"
            )
        shape = list(input_shape) if input_shape is not None else [_MNIST_FRAME, _MNIST_FRAME, 1]
        if len(shape) != 3:
            raise UsageError(f"input_shape {shape} must be [H, W, C]")
        h, w = (int(v) for v in data.get("size", shape[:2]))
        c = int(data.get("channels", shape[2]))
        box = data.get("box", (_scaled_box(h), _scaled_box(w)))
        try:
            return cls(
                height=h,
                width=w,
                channels=c,
                box=(int(box[0]), int(box[1])),
                invert=str(data.get("invert", "auto")),
                max_pixels=int(data.get("max_pixels", DEFAULT_MAX_PIXELS)),
                formats=tuple(str(f).upper() for f in data.get("formats", ALLOWED_FORMATS)),
                ink_threshold=float(data.get("ink_threshold", 0.1)),
            )
        except (TypeError, ValueError, IndexError) as exc:
            raise UsageError(
                f"metadata preprocessing {data} is malformed ({exc}); re-run `cnnedge train`"
            ) from None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> PreprocessConfig:
        """The config of a package's metadata dict (`Package.metadata`)."""
        return cls.from_dict(metadata.get("preprocessing"), metadata.get("input_shape"))


def _scaled_box(side: int) -> int:
    return max(1, round(side * _MNIST_BOX / _MNIST_FRAME))


# ----------------------------------------------------------------------------------- decoding


def sniff_format(data: bytes) -> str | None:
    """The image format named by the magic bytes at the start of `data`, or None if unknown."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":  # ISO media: HEIC/HEIF from phones, AVIF
        return "HEIF/AVIF"
    return None


def decode_image(data: bytes, config: PreprocessConfig) -> np.ndarray:
    """Decode PNG/JPEG bytes into grayscale, EXIF orientation applied.

    Args:
        data: the file's bytes.
        config: the allow-list and pixel limit.

    Returns:
        (H, W) float32 in [0, 1], 0 black, 1 white, possibly reduced for very large images.
    """
    from PIL import ImageOps

    image = _open_checked(data, config)
    # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: far less memory for big photos.
    if image.format == "JPEG" and max(image.size) > 2 * _WORK_SIDE:
        image.draft(image.mode, (_WORK_SIDE, _WORK_SIDE))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a broken EXIF block is not worth a warning
            image.load()
            if image.getexif().get(0x0112, 1) != 1:  # the orientation tag; 1 is upright
                image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"the {image.format} image ({image.size[0]}x{image.size[1]}) could not be decoded "
            f"({exc}); the file is truncated or corrupt, send the complete file"
        ) from None
    return _to_gray(image)


def _open_checked(data: bytes, config: PreprocessConfig) -> Any:
    """Parse only the header (format from magic bytes, size) and enforce the guards."""
    from PIL import JpegImagePlugin, PngImagePlugin

    if len(data) == 0:
        raise ImageError("the image is empty (0 bytes); send a PNG or JPEG file")
    fmt = sniff_format(data)
    if fmt is None:
        # Bytes of no known image format are undecodable (400), not a refused format (415).
        raise ImageError(
            f"the {len(data)} bytes (starting {data[:8].hex()}) are not an image of any known "
            f"format; send a {' or '.join(config.formats)} file"
        )
    if fmt not in config.formats:
        raise ImageFormatError(
            f"image format {fmt} is not accepted; allowed: {', '.join(config.formats)}; "
            "convert the image to PNG or JPEG"
        )
    # The plugin classes read the header only and skip Pillow's global bomb check; ours is below.
    plugin = PngImagePlugin.PngImageFile if fmt == "PNG" else JpegImagePlugin.JpegImageFile
    try:
        image = plugin(io.BytesIO(data))
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise ImageError(
            f"the {fmt} header could not be read ({exc}); the file is truncated or corrupt"
        ) from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"the {fmt} image is {width}x{height}: it has no pixels")
    if width * height > config.max_pixels:
        raise ImageTooLargeError(
            f"the {fmt} image declares {width}x{height} = {width * height:,} pixels, over the "
            f"limit of {config.max_pixels:,}; resize it (the model sees "
            f"{config.height}x{config.width}) or raise max_pixels"
        )
    return image


def _to_gray(image: Any) -> np.ndarray:
    """Any Pillow mode -> (H, W) float32 in [0, 1]; transparency is composited to show the ink."""

    if image.mode in ("1", "P"):
        image = image.convert("RGBA" if "transparency" in image.info else "L")
    if image.mode.startswith("I;16"):
        image = image.convert("I")
        scale = 65535.0
    elif image.mode in ("I", "F"):
        scale = 65535.0 if image.mode == "I" else 1.0
    else:
        scale = 255.0
    factor = math.ceil(max(image.size) / _WORK_SIDE)
    if factor > 1:
        image = image.reduce(factor)  # box average: thin strokes fade but never vanish
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0  # (H, W, 4)
        gray = _luma(rgba[..., :3])
        alpha = rgba[..., 3]
        return _composite(gray, alpha)
    if image.mode not in ("L", "I", "F"):
        image = image.convert("RGB")  # CMYK, YCbCr, ...
        return _luma(np.asarray(image, dtype=np.float32) / 255.0)
    return np.clip(np.asarray(image, dtype=np.float32) / scale, 0.0, 1.0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) with the ITU-R 601 weights Pillow's "L" uses."""
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


def _composite(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Put an image with alpha on a background that contrasts with its opaque pixels.

    A drawing on a transparent canvas has no background colour of its own: dark strokes go on
    white, light strokes on black, so the ink is visible either way.
    """
    opaque = alpha > 0.5
    ink_level = float(np.median(gray[opaque])) if opaque.any() else 0.0
    background = 1.0 if ink_level < 0.5 else 0.0
    return (gray * alpha + background * (1.0 - alpha)).astype(np.float32)


# ------------------------------------------------------------------------ pure numpy steps


def border_level(gray: np.ndarray) -> float:
    """Median of the outermost rows and columns of a (H, W) image: the background's level."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border))


def should_invert(gray: np.ndarray, invert: str) -> bool:
    """Whether a (H, W) image in [0, 1] needs inverting to become light-on-dark."""
    return _inverts(border_level(gray), invert)


def _inverts(level: float, invert: str) -> bool:
    return invert == "always" or (invert == "auto" and level > 0.5)


def to_ink(gray: np.ndarray, invert: str) -> np.ndarray:
    """(H, W) grayscale -> (H, W) ink in [0, 1]: light digit, background lifted to 0.

    Args:
        gray: the image, 0 black, 1 white.
        invert: "auto", "always" or "never".

    Returns:
        The ink image; paper that is grey rather than white is subtracted.
    """
    level = border_level(gray)
    inverted = _inverts(level, invert)
    ink = 1.0 - gray if inverted else gray
    background = 1.0 - level if inverted else level  # the border's median, after inversion
    if background >= 1.0:
        return np.zeros_like(ink, dtype=np.float32)
    return np.clip((ink - background) / (1.0 - background), 0.0, 1.0).astype(np.float32)


def bounding_box(ink: np.ndarray, threshold: float = 0.0) -> tuple[int, int, int, int] | None:
    """The rows and columns holding ink above `threshold * ink.max()`.

    Args:
        ink: (H, W) ink image.
        threshold: fraction of the brightest pixel below which a pixel is background.

    Returns:
        (top, left, bottom, right) with exclusive bottom/right, or None when there is no ink.
    """
    peak = float(ink.max()) if ink.size else 0.0
    if peak <= 0.0:
        return None
    mask = ink > threshold * peak
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    """Ink-weighted mean (row, col) of a (H, W) image, in pixel-index coordinates."""
    total = float(ink.sum())
    if total <= 0.0:
        raise ImageError("the image has no ink: its centre of mass is undefined")
    rows = np.arange(ink.shape[0], dtype=np.float64)
    cols = np.arange(ink.shape[1], dtype=np.float64)
    return (
        float(ink.sum(axis=1) @ rows) / total,
        float(ink.sum(axis=0) @ cols) / total,
    )


def fit_into_box(ink: np.ndarray, box: tuple[int, int]) -> np.ndarray:
    """Resize a cropped (h, w) ink image so it fits `box` (bh, bw), keeping its aspect ratio.

    Shrinking averages the area each output pixel covers (MNIST's anti-aliasing, and exact for
    whole-number factors); enlarging a small crop interpolates bilinearly.
    """
    from PIL import Image

    h, w = ink.shape
    scale = min(box[0] / h, box[1] / w)
    new_h = min(box[0], max(1, round(h * scale)))
    new_w = min(box[1], max(1, round(w * scale)))
    if (new_h, new_w) == (h, w):
        return ink.astype(np.float32)
    resample = Image.Resampling.BOX if scale <= 1.0 else Image.Resampling.BILINEAR
    resized = Image.fromarray(ink.astype(np.float32)).resize((new_w, new_h), resample)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def place_by_centre_of_mass(digit: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    """Paste a (h, w) digit into a zero frame (H, W) so its centre of mass is the frame centre.

    The shift is whole pixels, as MNIST's was, and clamped so the digit stays inside the frame.
    """
    out = np.zeros(frame, dtype=np.float32)
    h, w = digit.shape
    if digit.sum() <= 0.0:
        top, left = (frame[0] - h) // 2, (frame[1] - w) // 2
    else:
        com_r, com_c = centre_of_mass(digit)
        # MNIST's centre of mass sits at index 14.0 of 28: the frame's middle, H / 2.
        top = min(max(round(frame[0] / 2 - com_r), 0), frame[0] - h)
        left = min(max(round(frame[1] / 2 - com_c), 0), frame[1] - w)
    out[top : top + h, left : left + w] = digit
    return out


# --------------------------------------------------------------------------------- pipeline


def preprocess_array(gray: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """An already decoded image -> model input.

    Args:
        gray: (H, W) or (H, W, 1) grayscale, float in [0, 1] or uint8 0-255; 0 is black.
        config: the preprocessing config.

    Returns:
        (H, W, C) float32 in [0, 1] of the config's shape, light digit on dark.
    """
    arr = np.asarray(gray)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.size == 0:
        raise ImageError(
            f"expected a (H, W) grayscale array, got shape {arr.shape}; convert it to one channel"
        )
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0), 0.0, 1.0)
    return _preprocess_gray(arr, config)


def _preprocess_gray(arr: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """`preprocess_array` for a checked (H, W) float32 image in [0, 1]."""
    ink = to_ink(arr, config.invert)
    box = bounding_box(ink, config.ink_threshold)
    if box is None:
        raise ImageError(
            f"the {arr.shape[0]}x{arr.shape[1]} image is blank after preprocessing "
            f"(invert={config.invert!r}): no ink differs from the background; draw or crop "
            "a visible digit, or set invert to 'always'/'never'"
        )
    top, left, bottom, right = box
    digit = fit_into_box(ink[top:bottom, left:right], config.box)
    peak = float(digit.max())
    if peak > 0.0:
        digit = digit / peak  # faint pencil becomes as bright as MNIST's strokes
    frame = place_by_centre_of_mass(digit, (config.height, config.width))  # (H, W)
    return np.repeat(frame[..., None], config.channels, axis=2).astype(np.float32)


def preprocess_image(data: bytes, config: PreprocessConfig) -> np.ndarray:
    """PNG/JPEG bytes -> model input, the way MNIST was made.

    Args:
        data: the image file's bytes.
        config: the package's preprocessing config (`PreprocessConfig.from_metadata`).

    Returns:
        (H, W, C) float32 in [0, 1], light digit on a dark background.
    """
    return _preprocess_gray(decode_image(data, config), config)


def to_png(image: np.ndarray) -> bytes:
    """A (H, W) or (H, W, C) array in [0, 1] as 8-bit grayscale PNG bytes (to show what the model saw)."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 3:
        arr = arr.mean(axis=2)
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
