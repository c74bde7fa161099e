"""Image cache: square uint8 arrays at the training size, decoded once; bad files named."""
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from dareg import cache
from dareg.errors import DataError


def jpeg(path, size, color):
    Image.new("RGB", size, color).save(path, quality=95)
    return str(path)


def test_build_writes_one_square_array_per_image(tmp_path):
    paths = [jpeg(tmp_path / f"{i}.jpg", (160 + 40 * i, 120), (20 * i, 100, 200)) for i in range(5)]
    out = tmp_path / "cache" / "split.npy"
    cache.build(paths, 64, out, workers=2, chunk=2)
    array = np.load(out)
    assert array.shape == (5, 64, 64, 3) and array.dtype == np.uint8
    assert np.abs(array[3].mean(axis=(0, 1)) - [60, 100, 200]).max() < 4
    assert not list(out.parent.glob(".*.tmp"))  # nothing half-written left behind


def test_center_crop_keeps_the_middle(tmp_path):
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 100:200] = 255  # a white square in the middle of a wide black image
    Image.fromarray(img).save(tmp_path / "wide.png")
    square = cache.load_square(str(tmp_path / "wide.png"), 64)
    assert square.mean() > 240


def test_empty_split_gives_an_empty_array(tmp_path):
    cache.build([], 64, tmp_path / "empty.npy")
    assert np.load(tmp_path / "empty.npy").shape == (0, 64, 64, 3)


def test_corrupt_image_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode image"):
        cache.build([str(bad)], 64, tmp_path / "out.npy", workers=1)
    assert not (tmp_path / "out.npy").exists()


def test_memory_grows_with_the_chunk_not_the_dataset(tmp_path):
    """The parent holds a chunk at a time: its peak allocation is far below the array's size."""
    paths = [jpeg(tmp_path / f"{i}.jpg", (48, 40), (i % 256, 0, 0)) for i in range(1200)]
    out = tmp_path / "big.npy"
    tracemalloc.start()
    cache.build(paths, 64, out, workers=2, chunk=8)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    array = np.load(out, mmap_mode="r")
    assert array.shape == (1200, 64, 64, 3)
    assert peak < array.nbytes / 10, f"peak {peak} bytes for a {array.nbytes}-byte cache"
    reds = [int(array[i, 32, 32, 0]) for i in (0, 255, 1199)]
    assert np.abs(np.subtract(reds, [0, 255, 1199 % 256])).max() <= 3  # rows in order (JPEG-close)
