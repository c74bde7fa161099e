"""Tar shards of raw images: names, bytes and hashes round-trip; bad shards and names are refused
with one line; the cache reads members by offset, checking their sha256."""
import hashlib
import pickle
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dareg import cache, shards
from dareg.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def jpeg(seed: int, size=(90, 70)) -> bytes:
    import io
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


FILES = {f"{i % 3:02d}/{10000 + i}_1981-05-05_2009.jpg": jpeg(i) for i in range(12)}


def pack(folder: Path, files=FILES, max_bytes=shards.SHARD_BYTES) -> pd.DataFrame:
    with shards.ShardWriter(folder, "wiki", max_bytes) as writer:
        for name, data in files.items():
            writer.add(name, data)
    return shards.read_index(folder)


def test_names_bytes_and_hashes_round_trip_through_tar_itself(tmp_path):
    """`tar -xf` of the shards gives back every file under its own name, byte for byte; the index
    says where each member's bytes are and their sha256."""
    index = pack(tmp_path, max_bytes=12_000)
    assert index["shard"].nunique() > 1 and index["member"].tolist() == list(FILES)
    out = tmp_path / "extracted"
    out.mkdir()
    for shard in sorted(set(index["shard"])):
        subprocess.run(["tar", "-xf", str(tmp_path / shard), "-C", str(out)], check=True)
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == FILES
    for row in index.itertuples():
        data = shards.read_member(tmp_path / row.shard, row.offset, row.size)
        assert data == FILES[row.member] and hashlib.sha256(data).hexdigest() == row.sha256


def test_the_same_images_give_byte_identical_shards(tmp_path):
    """No time or owner in the headers: DVC sees no change when nothing changed."""
    pack(tmp_path / "a")
    pack(tmp_path / "b")
    assert ((tmp_path / "a" / "shards" / "wiki-000000.tar").read_bytes()
            == (tmp_path / "b" / "shards" / "wiki-000000.tar").read_bytes())


@pytest.mark.parametrize("name", ["../x.jpg", "/etc/x.jpg", "a/../../x.jpg", "", "a\\b.jpg"])
def test_a_member_name_that_could_leave_the_folder_is_refused(tmp_path, name):
    with pytest.raises(DataError, match="is not a plain relative path"):
        pack(tmp_path, {"ok.jpg": b"x", name: b"y"})
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == []  # nothing looks complete


def test_a_duplicate_member_is_refused(tmp_path):
    with pytest.raises(DataError, match="member '00/a.jpg' twice"):
        with shards.ShardWriter(tmp_path, "wiki") as writer:
            writer.add("00/a.jpg", b"x")
            writer.add("00/a.jpg", b"y")
    assert list((tmp_path / "shards").iterdir()) == []


def test_a_writer_killed_midway_leaves_no_shard_that_looks_complete(tmp_path):
    """A stage killed while packing: the open shard is a dot-named .tmp and there is no index."""
    script = (f"import os, sys; sys.path.insert(0, {str(ROOT / 'src')!r})\n"
              "from dareg import shards\n"
              f"w = shards.ShardWriter(__import__('pathlib').Path({str(tmp_path)!r}), 'wiki', 4096)\n"
              "for i in range(10): w.add(f'{i}.jpg', os.urandom(3000))\n"
              "os._exit(9)  # as SIGKILL: no cleanup runs\n")
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    names = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert shards.INDEX not in names and names[0] == ".wiki-000009.tar.tmp"
    with pytest.raises(DataError, match="index.csv: not found"):
        shards.read_index(tmp_path)


def test_a_missing_or_truncated_shard_names_the_shard_and_the_rows_needing_it(tmp_path):
    index = pack(tmp_path, max_bytes=12_000)
    rows = index.assign(shard=[str(tmp_path / s) for s in index["shard"]])
    shards.check_shards(rows)  # complete: no error
    last = tmp_path / index["shard"].iloc[-1]
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(DataError, match=rf"{last.name} is truncated .*image\(s\) need it \("):
        shards.check_shards(rows)
    last.unlink()
    with pytest.raises(DataError, match=rf"{last.name} is missing; \d+ image\(s\) need it"):
        shards.check_shards(rows)


def test_old_loose_layout_names_the_fix(tmp_path):
    (tmp_path / "wiki.mat").write_bytes(b"mat")
    (tmp_path / "17").mkdir()
    (tmp_path / "17" / "x.jpg").write_bytes(b"jpg")
    with pytest.raises(DataError, match=r"layout before tar shards; rebuild it with `dvc repro -f "
                                        r"fetch_wiki`"):
        shards.read_index(tmp_path)


def compact(index: pd.DataFrame, folder: Path) -> cache.Members:
    """The index's rows as cache.Members, straight from the table's columns (as stages/cache.py)."""
    return cache.Members.from_columns([str(folder / s) for s in index["shard"]], index["offset"],
                                      index["size"], index["sha256"], index["member"])


def test_the_cache_from_shards_equals_the_cache_from_files(tmp_path):
    index = pack(tmp_path / "raw", max_bytes=12_000)
    loose = tmp_path / "loose"
    for name, data in FILES.items():
        (loose / name).parent.mkdir(parents=True, exist_ok=True)
        (loose / name).write_bytes(data)
    cache.build(compact(index, tmp_path / "raw"), 64, tmp_path / "a.npy", workers=2, chunk=3)
    cache.build(compact(index, tmp_path / "raw"), 64, tmp_path / "m.npy", workers=2, chunk=5)
    cache.build([str(loose / m) for m in index["member"]], 64, tmp_path / "b.npy", workers=2)
    expected = np.stack([cache.load_square(str(loose / m), 64) for m in index["member"]])
    for name in ["a", "m", "b"]:  # rows in order, each the image load_square gives (predict's)
        assert np.array_equal(np.load(tmp_path / f"{name}.npy"), expected)


def test_members_round_trip_through_compact_arrays_and_pickled_chunks(tmp_path):
    """Each row's shard, offset, size, sha256 and name come back, also from a chunk sent to a
    worker, at a few dozen bytes an image."""
    index = pack(tmp_path, max_bytes=12_000)
    listed = compact(index, tmp_path)
    assert len(listed) == len(index) and len(listed.shards) == index["shard"].nunique() > 1
    chunk = pickle.loads(pickle.dumps(listed[5:9]))
    for got, rows in [(listed, index), (chunk, index.iloc[5:9])]:
        for i, row in enumerate(rows.itertuples()):
            assert got.shards[got.shard[i]] == str(tmp_path / row.shard)
            assert (got.offset[i], got.size[i]) == (row.offset, row.size)
            assert got.digest[i].tobytes().hex() == row.sha256 and got.name[i].decode() == row.member
    per_image = sum(getattr(listed, k).nbytes for k in ["shard", "offset", "size", "digest", "name"])
    assert per_image / len(listed) <= 52 + max(map(len, FILES))


@pytest.mark.parametrize("bad", ["0" * 63, "z" * 64, float("nan")])
def test_a_table_sha256_that_is_not_a_digest_is_named(tmp_path, bad):
    index = pack(tmp_path)
    index.loc[4, "sha256"] = bad
    with pytest.raises(DataError, match=rf"{index['member'][4]}: sha256 .* is not 64 hex digits"):
        compact(index, tmp_path)


def test_bytes_that_do_not_match_their_sha256_stop_the_cache(tmp_path):
    index = pack(tmp_path)
    index.loc[3, "sha256"] = "0" * 64
    with pytest.raises(DataError, match=f"the bytes of {index['member'][3]} do not match its sha256"):
        cache.build(compact(index, tmp_path), 64, tmp_path / "c.npy", workers=1)
    assert not (tmp_path / "c.npy").exists()


def test_the_parents_memory_in_a_cache_build_does_not_grow_with_the_image_count(tmp_path):
    """From Members, the parent allocates the same at 200 and at 1,600 images: chunks are
    submitted a few at a time, and the listing is arrays made before the build."""
    index = pack(tmp_path, {f"{i}.jpg": jpeg(i, (40, 32)) for i in range(1600)})
    peaks = []
    for count in [200, 200, 1600]:  # the first run warms up imports and caches
        listed = compact(index.iloc[:count], tmp_path)
        tracemalloc.start()
        cache.build(listed, 32, tmp_path / "c.npy", workers=2, chunk=8)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[2] - peaks[1] < 10 * 1400, f"peak allocations {peaks[1:]} bytes at 200 and 1,600 images"


def test_the_cache_workers_start_without_pandas():
    """dareg.cache (the workers, predict) imports no pandas: it takes ~0.3 s and ~30 MB a process."""
    code = "import sys, dareg.cache; print('pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_one_image_out_of_a_shard_for_a_look(tmp_path):
    """The documented one-liner (and plain `tar -xOf` does the same)."""
    pack(tmp_path)
    name = next(iter(FILES))
    shard = tmp_path / "shards" / "wiki-000000.tar"
    out = tmp_path / "look.jpg"
    result = subprocess.run([sys.executable, "-m", "dareg.shards", str(shard), name, str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and out.read_bytes() == FILES[name]
    bad = subprocess.run([sys.executable, "-m", "dareg.shards", str(shard), "nope.jpg", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no member 'nope.jpg'" in bad.stderr
    with tarfile.open(shard) as tar:
        assert tar.getnames() == list(FILES)
