"""Image cache: square uint8 arrays at the training size, decoded once; bad files named."""
import io
import tracemalloc

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from dareg import cache
from dareg.errors import DataError


def jpeg(path, size, color):
    Image.new("RGB", size, color).save(path, quality=95)
    return str(path)


def photo(width, height, seed=0):
    """Photo-like content: smooth random colours plus fine noise (as in benchmarks/cache_build.py)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    noisy = np.asarray(coarse, np.int16) + rng.integers(-12, 13, (height, width, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def reference(path, size):
    """The plain Pillow path: full-size decode, exact center square, antialiased bilinear resize."""
    with Image.open(path) as img:
        img = img.convert("RGB")
    side = min(img.size)
    left, top = (img.width - side) / 2, (img.height - side) / 2
    return np.asarray(img.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side)), float)


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


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
@pytest.mark.parametrize("shape", [(250, 250), (333, 251), (640, 480), (100, 90)])
def test_jpeg_decode_matches_the_full_size_pillow_path(tmp_path, monkeypatch, mode, shape):
    """simplejpeg decodes at a reduced n/8 scale (5/8 for 250 px to 128) yet stays within ~1 grey level."""
    path = tmp_path / "photo.jpg"
    photo(*shape).convert(mode).save(path, quality=92)
    calls, turbo = [], cache._decode_turbo
    monkeypatch.setattr(cache, "_decode_turbo", lambda *args: calls.append(args) or turbo(*args))
    square = cache.load_square(str(path), 128)
    assert calls, "the JPEG went to Pillow, not simplejpeg"
    assert square.shape == (128, 128, 3) and square.dtype == np.uint8
    assert np.abs(square - reference(path, 128)).mean() < 1.5


def test_without_simplejpeg_pillow_decodes_every_jpeg(tmp_path, monkeypatch):
    """A bare GPU machine has no simplejpeg: the cache and predict still work, through Pillow."""
    path = tmp_path / "photo.jpg"
    photo(333, 251).save(path, quality=92)
    monkeypatch.setattr(cache, "simplejpeg", None)
    square = cache.load_square(str(path), 128)
    assert square.shape == (128, 128, 3) and np.abs(square - reference(path, 128)).mean() < 1.5


def test_jpeg_simplejpeg_rejects_goes_to_pillow(tmp_path):
    """libjpeg-turbo (strict) refuses stray bytes before a marker; Pillow decodes such files, as before."""
    path = tmp_path / "stray.jpg"
    photo(200, 160).save(path, quality=92)
    data = path.read_bytes()
    at = data.index(b"\xff\xda")
    path.write_bytes(data[:at] + b"\x00\x00\x00" + data[at:])
    with pytest.raises(ValueError, match="extraneous bytes"):
        simplejpeg.decode_jpeg(path.read_bytes(), "RGB")
    assert np.abs(cache.load_square(str(path), 64) - reference(path, 64)).mean() < 1.5


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_png_goes_to_pillow(tmp_path, mode):
    path = tmp_path / "photo.png"
    photo(90, 120).convert(mode).save(path)
    square = cache.load_square(str(path), 64)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    assert np.abs(square - reference(path, 64)).mean() < 0.5


def test_empty_split_gives_an_empty_array(tmp_path):
    cache.build([], 64, tmp_path / "empty.npy")
    assert np.load(tmp_path / "empty.npy").shape == (0, 64, 64, 3)


def test_corrupt_image_is_named(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="bad.jpg: cannot decode image"):
        cache.build([str(bad)], 64, tmp_path / "out.npy", workers=1)
    assert not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("content", [
    lambda jpeg_bytes: jpeg_bytes[:len(jpeg_bytes) // 2],  # truncated download
    lambda jpeg_bytes: b"<html>403 Forbidden</html>",  # an error page saved as .jpg
    lambda jpeg_bytes: b"",
])
def test_undecodable_file_is_named(tmp_path, content):
    good = tmp_path / "good.jpg"
    photo(120, 100).save(good, quality=92)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content(good.read_bytes()))
    with pytest.raises(DataError, match="bad.jpg: cannot decode image"):
        cache.load_square(str(bad), 64)
    with pytest.raises(DataError, match="bad.jpg: cannot decode image"):
        cache.build([str(good), str(bad)], 64, tmp_path / "out.npy", workers=1)
    assert not (tmp_path / "out.npy").exists()


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="gone.jpg: cannot read image"):
        cache.load_square(str(tmp_path / "gone.jpg"), 64)


def test_memory_grows_with_the_chunk_not_the_dataset(tmp_path):
    """Workers write their rows into the file: the parent's peak allocation is far below the array's size."""
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


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header says width x height greyscale pixels and whose data is a few bytes of
    zlib (a real decompression bomb's shape: the pixels exist only once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim width x height."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("name, data, decoder", [
    ("bomb.png", png_bomb(40_000, 40_000), "Pillow"),      # 1.6 gigapixels: Pillow's own error
    ("big.png", png_bomb(10_000, 10_000), "Pillow"),       # 100 MP: Pillow alone would only warn
    ("bomb.jpg", jpeg_claiming(60_000, 60_000), "simplejpeg"),  # simplejpeg never checks
])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, name, data, decoder):
    """Images from wiki.source path/url reach the cache without the downloader's guard: the
    cache refuses more pixels than Pillow's MAX_IMAGE_PIXELS from the header, in one line."""
    path = tmp_path / name
    path.write_bytes(data)
    tracemalloc.start()
    with pytest.raises(DataError, match=rf"{name}: .*pixels.* decompression bomb") as err:
        cache.build([str(path)], 64, tmp_path / "c.npy", workers=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "\n" not in str(err.value) and peak < 50_000_000, (decoder, peak)
    assert not (tmp_path / "c.npy").exists()
