"""Hostile and odd uploads through the HTTP layer: every one a problem+json, none a crash."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import encode
from tests.labels import CATS

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose data is tiny (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _post(client: TestClient, data: bytes, content_type: str = "image/jpeg", name: str = "x") -> tuple[int, dict]:
    response = client.post("/classify", files={"image": (name, data, content_type)})
    assert response.headers["content-type"].startswith(PROBLEM if response.status_code >= 400 else "application/json")
    return response.status_code, response.json()


@pytest.mark.parametrize(
    ("make", "content_type", "status", "slug"),
    [
        (lambda p: p["chelsea.jpg"][: len(p["chelsea.jpg"]) // 2], "image/jpeg", 400, "invalid-image"),
        (lambda p: b"hello, this is not an image at all", "image/jpeg", 415, "unsupported-media-type"),
        (lambda p: p["chelsea.jpg"], "image/png", 415, "unsupported-media-type"),
        (lambda p: _png_header_only(30000, 30000), "image/png", 413, "image-too-large"),
        (lambda p: b"", "image/jpeg", 400, "invalid-image"),
    ],
    ids=["truncated-jpeg", "not-an-image", "declared-png-is-jpeg", "decompression-bomb", "empty"],
)
def test_bad_images_get_problem_details(
    client: TestClient, photos: dict[str, bytes], make, content_type: str, status: int, slug: str
) -> None:
    code, body = _post(client, make(photos), content_type)
    assert code == status
    assert body["type"].endswith(slug)
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["instance"] == "/api/v1/classify" and body["request_id"]


def test_unsupported_format_is_415(client: TestClient) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PPM")
    code, _ = _post(client, buffer.getvalue(), "image/x-portable-pixmap")
    assert code == 415


def test_oversized_body_is_413_before_parsing(client: TestClient) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    too_big = b"\xff" * (settings.max_image_bytes * settings.max_batch_items + (2 << 20))
    response = client.post("/classify", files={"image": ("big.jpg", too_big, "image/jpeg")})
    assert response.status_code == 413
    assert response.json()["type"].endswith("payload-too-large")


def test_image_over_the_byte_limit_is_413(client: TestClient) -> None:
    settings = client.app.state.settings  # type: ignore[attr-defined]
    response = client.post(
        "/classify", files={"image": ("big.jpg", b"\xff" * (settings.max_image_bytes + 10), "image/jpeg")}
    )
    assert response.status_code == 413


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_every_mode_is_classified(client: TestClient, mode: str) -> None:
    from skimage import data

    rgb = Image.fromarray(data.chelsea())
    image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    response = client.post("/classify", files={"image": ("m", buffer.getvalue(), f"image/{fmt.lower()}")})
    assert response.status_code == 200, response.text
    if mode != "I;16":  # a 16-bit grey cat is still a cat for colour modes; grey may drift
        assert response.json()["predictions"][0]["label"] in CATS or mode in ("L", "LA")


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "GIF", "TIFF"])
def test_formats_are_accepted(client: TestClient, fmt: str) -> None:
    data = encode(np.full((32, 48, 3), 120, np.uint8), fmt)
    response = client.post("/classify", files={"image": ("x", data, "application/octet-stream")})
    assert response.status_code == 200, response.text
    assert response.json()["image"]["format"] == fmt


def test_unknown_route_is_problem_404(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


def test_wrong_method_is_problem_405(client: TestClient) -> None:
    response = client.get("/classify")
    assert response.status_code == 405
    assert response.json()["status"] == 405
