"""Fixtures of the training tests: small image folders drawn with Pillow."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

# Dark ink boxes (left, top, right, bottom) on white 40x40 paper: one shape per class.
SHAPES = {"bar": (18, 5, 22, 35), "block": (8, 8, 32, 32), "wide": (5, 15, 35, 25)}


def png_bytes(box: tuple[int, int, int, int] | None, size: tuple[int, int] = (40, 40)) -> bytes:
    """A grayscale PNG: white paper with a black rectangle at `box` (None: blank paper)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", size, 255)
    if box:
        ImageDraw.Draw(image).rectangle(box, fill=0)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def image_folder() -> Callable[..., Path]:
    """Make `root/<class>/<i>.png` for the three SHAPES classes, `per_class` images each."""

    def make(root: Path, per_class: int = 5) -> Path:
        for label, box in SHAPES.items():
            (root / label).mkdir(parents=True)
            for i in range(per_class):
                (root / label / f"{i}.png").write_bytes(png_bytes(box))
        return root

    return make


@pytest.fixture()
def png() -> Callable[..., bytes]:
    """`png_bytes` as a fixture, for tests that write single images."""
    return png_bytes
