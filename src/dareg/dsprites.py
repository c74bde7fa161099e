"""dSprites, the field's regression-adaptation benchmark, rebuilt: DeepMind's latent grid, its
binary 64x64 sprites rendered here from their latents, and disentanglement_lib's three domains
(color, noisy, scream) painted over them. Reading DeepMind's own npz is dareg.dsprites_npz; a
stand-in for the scream domain's painting is dareg.painting.

The grid (DeepMind's README and metadata, checked): 737,280 images, every combination once of
shape (square, ellipse, heart), scale (6 values linspace(0.5, 1)), orientation (40 values
linspace(0, 2 pi): the first and last are the same angle), x and y (32 values each linspace(0, 1)),
in a fixed order, y fastest:

    index = ((((shape * 6 + scale) * 40 + orientation) * 32 + x) * 32 + y)

`generate_sprites` renders the sprite of an index. What is known of DeepMind's rendering: it drew
vector shapes with Love2D on a canvas of size 1 (rectangle for the square, ellipse for the ellipse,
a custom mesh for the heart; google-deepmind/dsprites-dataset issue 2) and rasterised them to
binary 64x64 images; x = 0 is the left edge (their notebook: "Fix posX latent to left"), image
rows run down as Love2D's y does; "no pixel ever exits the boundary" and "the main support of the
pixels is in the center half" (their notebook); the steps were chosen as the smallest that change
the pixels, so 32 positions span about 32 pixels. What is approximated here, since DeepMind's code
and sizes are not public: the centre runs over the centre half, 16 to 48 pixels
(CENTRE_RANGE); a pixel is on when its centre lies inside the shape (OpenGL's rule without
anti-aliasing); at scale 1 the square's side is 0.3 of the canvas, the ellipse's semi-axes 0.2
and 0.1 (long axis along x at orientation 0), the heart the implicit curve
(x^2 + y^2 - 1)^3 = x^2 y^3 (lobes up), 0.3 of the canvas wide, centred on its bounding box;
orientation turns clockwise as displayed (Love2D's rotate with y down).

The domains (google-research/disentanglement_lib, data/ground_truth/dsprites.py), in [0, 1] and
then round(255 x): color = sprite x one RGB colour per image, each channel U(0.5, 1); noisy =
min(sprite + U(0, 1) per pixel and channel, 1); scream = a random 64x64 crop of the painting
(top row U{0..H-65}, then left column U{0..W-65}, then an RGB triple U(0, 1)), background =
(crop + triple) / 2, and 1 - background where the sprite is. Each image draws, in that order,
from np.random.default_rng(its seed) alone, so it is the same in any batch.

The draws: the source's indices come from stream 0 of np.random.SeedSequence(seed), the target's
from stream 1, so neither changes the other; an image's rendering seed from the key (stream,
index), so it keeps its look whatever else is drawn.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from dareg.errors import DataError

LATENTS = ("shape", "scale", "orientation", "x", "y")  # DeepMind's order, less colour (always 0)
SIZES = (3, 6, 40, 32, 32)
GRID = int(np.prod(SIZES))  # 737,280
SHAPES = ("square", "ellipse", "heart")
STYLES = ("color", "noisy", "scream")
SIDE = 64  # pixels

CENTRE_RANGE = (16.0, 48.0)  # pixels: the sprite's centre at position 0 and at position 1
SQUARE_SIDE = 0.3 * SIDE  # pixels at scale 1; every shape is sized in these units
ELLIPSE_AXES = (2 / 3, 1 / 3)  # semi-axes (along x, along y) in square sides
HEART_WIDTH = 2.278  # the implicit heart's width in its own units
HEART_MIDDLE = 0.118  # the middle of its height (y from -1 to 1.236)
CHUNK = 1024  # sprites rendered at once (~17 MB of float32 per coordinate)
PAINTING_FIT = (350, 274)  # (width, height): disentanglement_lib's thumbnail box for The Scream


def latents_to_index(classes: np.ndarray) -> np.ndarray:
    """(n, 5) latent classes (shape, scale, orientation, x, y) -> (n,) dSprites indices,
    ((((shape * 6 + scale) * 40 + orientation) * 32 + x) * 32 + y)."""
    index = np.zeros(len(classes), dtype=np.int64)
    for column, size in enumerate(SIZES):
        index = index * size + np.asarray(classes, dtype=np.int64)[:, column]
    return index


def index_to_latents(index: np.ndarray) -> np.ndarray:
    """(n,) dSprites indices -> (n, 5) latent classes (shape, scale, orientation, x, y)."""
    rest = np.asarray(index, dtype=np.int64).reshape(-1).copy()
    classes = np.empty((len(rest), len(SIZES)), dtype=np.int64)
    for column in reversed(range(len(SIZES))):
        classes[:, column] = rest % SIZES[column]
        rest //= SIZES[column]
    return classes


def latent_values(classes: np.ndarray) -> np.ndarray:
    """(n, 5) classes -> (n, 6) DeepMind's latents_values: colour 1, shape + 1,
    linspace(0.5, 1, 6)[scale], linspace(0, 2 pi, 40)[orientation], linspace(0, 1, 32)[x], [y]."""
    classes = np.asarray(classes, dtype=np.int64)
    return np.column_stack([np.ones(len(classes)), classes[:, 0] + 1.0,
                            np.linspace(0.5, 1, 6)[classes[:, 1]],
                            np.linspace(0, 2 * np.pi, 40)[classes[:, 2]],
                            np.linspace(0, 1, 32)[classes[:, 3]],
                            np.linspace(0, 1, 32)[classes[:, 4]]])


def factor_values(classes: np.ndarray, factors: Sequence[str]) -> np.ndarray:
    """(n, 5) latent classes -> (n, K) regression targets in [0, 1] for the K named `factors`:
    class / (size - 1), that is scale / 5, orientation / 39, x / 31, y / 31."""
    columns = [LATENTS.index(name) for name in factors]
    return np.asarray(classes, dtype=np.float64)[:, columns] / (np.array(SIZES)[columns] - 1)


def generate_sprites(indices: Sequence[int]) -> np.ndarray:
    """(n, 64, 64) uint8 binary sprites of dSprites `indices`, rendered from their latents."""
    classes = index_to_latents(np.asarray(indices, dtype=np.int64))
    sprites = np.empty((len(classes), SIDE, SIDE), dtype=np.uint8)
    for start in range(0, len(classes), CHUNK):
        sprites[start:start + CHUNK] = _draw(classes[start:start + CHUNK])
    return sprites


def _draw(classes: np.ndarray) -> np.ndarray:
    """(n, 64, 64) uint8 sprites of (n, 5) classes: each pixel centre tested against its shape."""
    sprites = np.empty((len(classes), SIDE, SIDE), dtype=np.uint8)
    for shape, test in enumerate((_in_square, _in_ellipse, _in_heart)):
        mine = classes[:, 0] == shape
        if mine.any():
            sprites[mine] = test(*_sprite_coordinates(classes[mine]))
    return sprites


def _sprite_coordinates(classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel centre in its sprite's own frame, in square sides: (u, v), each (n, 64, 64),
    u = (dx cos a + dy sin a) / side, v = (dy cos a - dx sin a) / side, with (dx, dy) the offset
    from the sprite's centre (x right, y down) and a its orientation (clockwise as displayed)."""
    low, high = CENTRE_RANGE
    centre_x = (low + (high - low) * classes[:, 3] / 31).astype(np.float32)[:, None, None]
    centre_y = (low + (high - low) * classes[:, 4] / 31).astype(np.float32)[:, None, None]
    angle = classes[:, 2] * (2 * np.pi / 39)
    cos = np.cos(angle).astype(np.float32)[:, None, None]
    sin = np.sin(angle).astype(np.float32)[:, None, None]
    side = (SQUARE_SIDE * (0.5 + 0.1 * classes[:, 1])).astype(np.float32)[:, None, None]
    pixel_centres = np.arange(SIDE, dtype=np.float32) + 0.5
    dx = pixel_centres[None, None, :] - centre_x  # (n, 1, 64): columns
    dy = pixel_centres[None, :, None] - centre_y  # (n, 64, 1): rows
    return (dx * cos + dy * sin) / side, (dy * cos - dx * sin) / side


def _in_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """max(|u|, |v|) <= 1/2."""
    return np.maximum(np.abs(u), np.abs(v)) <= 0.5


def _in_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(u / a)^2 + (v / b)^2 <= 1, with (a, b) = ELLIPSE_AXES."""
    return (u / ELLIPSE_AXES[0]) ** 2 + (v / ELLIPSE_AXES[1]) ** 2 <= 1


def _in_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(x^2 + y^2 - 1)^3 <= x^2 y^3, with x = w u and y = w_mid - w v (y up), w = HEART_WIDTH."""
    x2 = (HEART_WIDTH * u) ** 2
    y = HEART_MIDDLE - HEART_WIDTH * v
    ring = x2 + y * y - 1
    return ring * ring * ring <= x2 * y * y * y  # products: float32 ** 3 is ten times slower


def pack(sprites: np.ndarray) -> np.ndarray:
    """(n, 64, 64) binary sprites -> (n, 64, 8) uint8 rows, np.packbits along the last axis."""
    return np.packbits(np.asarray(sprites, dtype=np.uint8), axis=-1)


def unpack(rows: np.ndarray) -> np.ndarray:
    """(n, 64, 8) packed rows -> (n, 64, 64) uint8 sprites of 0 and 1."""
    return np.unpackbits(np.asarray(rows, dtype=np.uint8), axis=-1)


def render(rows: np.ndarray, styles: Sequence[str], seeds: Sequence[int],
           painting: np.ndarray) -> np.ndarray:
    """(n, 64, 64, 3) uint8 images, round(255 x), of packed sprite `rows` in each image's style
    (color, noisy or scream) from np.random.default_rng(its seed); `painting` (H, W, 3) uint8
    is the scream domain's, H and W above 64."""
    sprites = unpack(rows).astype(bool)
    images = np.empty((len(sprites), SIDE, SIDE, 3), dtype=np.uint8)
    for i, (style, seed) in enumerate(zip(styles, seeds, strict=True)):
        image = _PAINTERS[style](sprites[i], np.random.default_rng(int(seed)), painting)
        images[i] = np.rint(image * 255)
    return images


def read_painting(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of the image at `path` thumbnailed as disentanglement_lib does, to fit
    PAINTING_FIT (never enlarged): The Scream's 250 x 319 or larger copies become 215 x 274."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail(PAINTING_FIT)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; point dsprites.painting_path at an image of The "
                        "Scream, or set dsprites.painting: generate") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: not an image Pillow can read ({err}); give a JPEG or PNG of "
                        "The Scream, or set dsprites.painting: generate") from None
    painting = np.asarray(image, dtype=np.uint8)
    if min(painting.shape[:2]) <= SIDE:
        raise DataError(f"{path}: {painting.shape[1]}x{painting.shape[0]} pixels after the "
                        f"thumbnail, too small for {SIDE}x{SIDE} crops; give a larger image")
    return painting


def _color(sprite: np.ndarray, rng: np.random.Generator, painting: np.ndarray) -> np.ndarray:
    """sprite x one RGB colour, each channel U(0.5, 1)."""
    return sprite[..., None] * rng.uniform(0.5, 1, 3)


def _noisy(sprite: np.ndarray, rng: np.random.Generator, painting: np.ndarray) -> np.ndarray:
    """min(sprite + U(0, 1) per pixel and channel, 1)."""
    return np.minimum(sprite[..., None] + rng.uniform(0, 1, (SIDE, SIDE, 3)), 1.0)


def _scream(sprite: np.ndarray, rng: np.random.Generator, painting: np.ndarray) -> np.ndarray:
    """background = (a random 64x64 crop of the painting + one RGB U(0, 1)) / 2; 1 - background
    on the sprite."""
    top = rng.integers(0, painting.shape[0] - SIDE)
    left = rng.integers(0, painting.shape[1] - SIDE)
    crop = painting[top:top + SIDE, left:left + SIDE] / 255.0
    background = (crop + rng.uniform(0, 1, 3)) / 2
    return np.where(sprite[..., None], 1 - background, background)


_PAINTERS = {"color": _color, "noisy": _noisy, "scream": _scream}


def official_test(domain: str) -> np.ndarray:
    """The sorted dSprites indices of `domain`'s official test split (RSD's and DARE-GRAM's
    lists, shipped in dareg/resources/dsprites_test)."""
    text = resources.files("dareg").joinpath(f"resources/dsprites_test/{domain}.txt").read_text()
    return np.array(text.split(), dtype=np.int64)


def source_indices(domain: str, count: int, seed: int) -> np.ndarray:
    """`count` sorted indices drawn without replacement from the grid less `domain`'s official
    test split; the draw is stream 0 of `seed`."""
    pool = np.setdiff1d(np.arange(GRID), official_test(domain))
    return _draw_from(pool, count, seed, 0, "source_images")


def target_indices(domain: str, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted indices, official flags): every index of `domain`'s official test split plus
    `count` drawn without replacement from the rest of the grid (stream 1 of `seed`, so the
    source's domain and draw never change it)."""
    test = official_test(domain)
    drawn = _draw_from(np.setdiff1d(np.arange(GRID), test), count, seed, 1, "target_images")
    indices = np.concatenate([test, drawn])
    order = np.argsort(indices, kind="stable")
    return indices[order], np.isin(indices[order], test)


def _draw_from(pool: np.ndarray, count: int, seed: int, stream: int, key: str) -> np.ndarray:
    """`count` sorted values drawn without replacement from `pool` by stream `stream` of `seed`;
    `key` names the param that asked for `count`."""
    if count > len(pool):
        raise DataError(f"params.yaml: dsprites.{key} is {count}, more than the {len(pool)} "
                        f"images of the grid it draws from; lower it")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return np.sort(rng.choice(pool, size=count, replace=False))


def rendering_seeds(indices: Sequence[int], seed: int, stream: int) -> np.ndarray:
    """(n,) non-negative int64 seeds, one per image: the first 63 bits of SeedSequence(seed,
    spawn_key=(stream, index)), so an image keeps its look whatever else is drawn."""
    return np.array([np.random.SeedSequence(seed, spawn_key=(stream, int(index)))
                     .generate_state(1, np.uint64)[0] >> np.uint64(1) for index in indices],
                    dtype=np.int64)
