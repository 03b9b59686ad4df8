"""Detections drawn on a copy of the image: a box and a "label score" tag per detection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from cv_client.images import ImageInput, load

if TYPE_CHECKING:
    from cv_client.models import Detection

# Distinct, saturated colours; a class keeps its colour from one image to the next.
PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (255, 225, 25),
    (0, 128, 128),
)


def draw_detections(image: ImageInput, detections: Sequence[Detection], *, width: int = 3) -> Image.Image:
    """A copy of ``image`` in RGB with each detection's box and ``label score`` drawn.

    The server reports boxes in the pixels of the image as displayed (EXIF orientation applied), so the
    copy is transposed the same way first.
    """
    canvas = ImageOps.exif_transpose(load(image)).convert("RGB")
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for detection in detections:
        colour = PALETTE[detection.class_id % len(PALETTE)]
        box = detection.box
        pen.rectangle((box.x1, box.y1, box.x2, box.y2), outline=colour, width=width)
        text = f"{detection.label} {detection.score:.2f}"
        left, top, right, bottom = pen.textbbox((box.x1, box.y1), text, font=font)
        lift = min(bottom - top + 4, box.y1)  # above the box, or inside it at the top edge of the image
        pen.rectangle((left, top - lift, right + 4, bottom - lift + 2), fill=colour)
        pen.text((box.x1 + 2, box.y1 - lift), text, fill=(255, 255, 255), font=font)
    return canvas
