"""services/models/_resample.c: Pillow's two 8-bit resize passes over RGB bytes (see resample.py)."""

from typing import Any

import numpy as np

Buffer = bytes | bytearray | memoryview | np.ndarray[Any, Any]  # anything with the buffer protocol

def resample(
    src: Buffer,
    height: int,
    width: int,
    out: Buffer,
    out_height: int,
    out_width: int,
    y0: int,
    y1: int,
    need_horizontal: bool,
    need_vertical: bool,
    vertical_first: bool,
    h_bounds: Buffer,
    h_weights: Buffer,
    h_ksize: int,
    v_bounds: Buffer,
    v_weights: Buffer,
    v_ksize: int,
    /,
) -> None: ...
