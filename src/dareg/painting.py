"""A stand-in for The Scream, the painting behind the scream domain, for when the painting is not
to hand: swirling coloured bands, warm above a wavering horizon and cool below, crossed by a dark
diagonal band, the size of the real painting's thumbnail (dareg.dsprites.read_painting reads the
real one); and writing a painting as PNG.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dareg.io import atomic_path

STAND_IN_SHAPE = (274, 215)  # (height, width), as the thumbnail of the real painting
SKY = np.array([[0.93, 0.55, 0.16], [0.78, 0.22, 0.12], [0.98, 0.80, 0.35]])  # oranges, reds
WATER = np.array([[0.13, 0.22, 0.45], [0.30, 0.42, 0.55], [0.12, 0.35, 0.30]])  # blues, greens
BRIDGE = np.array([0.36, 0.24, 0.16])


def stand_in() -> np.ndarray:
    """(274, 215, 3) uint8 swirls. With x, y in units of the height, r the distance from a point
    in the sky, bands b = sin(40 r + 6 sin(5 x) + 8 y (1 + cos 3 x)) and streaks
    t = sin(140 (y + 0.04 sin(23 x + 9 r))), weights (1 + b, 1 - b, 1 + t) / 3 mix three sky
    colours above the horizon y = 0.5 + 0.06 sin(7 x) and three water colours below it; a dark
    band runs along y = 1.1 x + 0.25."""
    height, width = STAND_IN_SHAPE
    y, x = np.mgrid[0:height, 0:width] / height
    radius = np.hypot(x - 0.45, y - 0.2)
    bands = np.sin(40 * radius + 6 * np.sin(5 * x) + 8 * y * (1 + np.cos(3 * x)))
    streaks = np.sin(140 * (y + 0.04 * np.sin(23 * x + 9 * radius)))
    weights = np.stack([1 + bands, 1 - bands, 1 + streaks], -1) / 3
    sky = y < 0.5 + 0.06 * np.sin(7 * x)
    colour = np.where(sky[..., None], weights @ SKY, weights @ WATER)
    colour[np.abs(1.1 * x - y + 0.25) < 0.04] = BRIDGE
    return np.rint(np.clip(colour, 0, 1) * 255).astype(np.uint8)


def write_png(path: str | os.PathLike, painting: np.ndarray) -> Path:
    """Write `painting` (H, W, 3) uint8 to `path` as an RGB PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(painting, mode="RGB").save(tmp, format="PNG")
    return Path(path)
