"""Inputs: a path, bytes, a PIL image or a NumPy array, turned into one multipart file part."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | Any  # Any: a NumPy array

# The server checks a declared type against the bytes (415 on a mismatch) and accepts a generic one.
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
GENERIC_TYPE = "application/octet-stream"
_SUFFIXES = {
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}


@dataclass(frozen=True)
class Upload:
    """One image as a multipart part."""

    filename: str
    data: bytes
    content_type: str

    def part(self) -> tuple[str, bytes, str]:
        return (self.filename, self.data, self.content_type)


def sniff_type(data: bytes) -> str:
    """The image content type from the first bytes, or ``application/octet-stream``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, content_type in _MAGIC:
        if data.startswith(magic):
            return content_type
    return GENERIC_TYPE


def _is_array(image: object) -> bool:
    return hasattr(image, "__array_interface__") and not isinstance(image, Image.Image)


def _png(image: Image.Image) -> bytes:
    # PNG, not JPEG: lossless, so the server sees exactly the pixels the caller has.
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def to_upload(image: ImageInput, *, name: str = "image") -> Upload:
    """Turn any accepted input into a multipart part.

    Args:
        image: A file path, the encoded bytes of an image file, a PIL image, or a NumPy array
            (uint8, HxW, HxWx3 RGB or HxWx4 RGBA).
        name: The file name sent for bytes, PIL images and arrays.

    Raises:
        TypeError: The input is none of these.
        FileNotFoundError: The path does not exist.
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        data = path.read_bytes()
        return Upload(path.name, data, sniff_type(data))
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        content_type = sniff_type(data)
        return Upload(name + _SUFFIXES.get(content_type, ""), data, content_type)
    if isinstance(image, Image.Image):
        return Upload(f"{name}.png", _png(image), "image/png")
    if _is_array(image):
        return Upload(f"{name}.png", _png(Image.fromarray(image)), "image/png")
    raise TypeError(f"expected a path, bytes, a PIL image or a NumPy array, got {type(image).__name__}")


def load(image: ImageInput) -> Image.Image:
    """Any accepted input as a PIL image (for drawing on)."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, str | os.PathLike):
        return Image.open(image)
    if isinstance(image, bytes | bytearray | memoryview):
        return Image.open(io.BytesIO(bytes(image)))
    if _is_array(image):
        return Image.fromarray(image)
    raise TypeError(f"expected a path, bytes, a PIL image or a NumPy array, got {type(image).__name__}")
