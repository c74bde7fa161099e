"""Tar shards of raw images: names, bytes and hashes round-trip; bad shards and names are refused
with one line; the cache reads members by offset, checking their sha256."""
import hashlib
import subprocess
import sys
import tarfile
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


def members(index: pd.DataFrame, folder: Path) -> list:
    return [cache.Member(str(folder / r.shard), r.offset, r.size, r.sha256, r.member)
            for r in index.itertuples()]


def test_the_cache_from_shards_equals_the_cache_from_files(tmp_path):
    index = pack(tmp_path / "raw", max_bytes=12_000)
    loose = tmp_path / "loose"
    for name, data in FILES.items():
        (loose / name).parent.mkdir(parents=True, exist_ok=True)
        (loose / name).write_bytes(data)
    cache.build(members(index, tmp_path / "raw"), 64, tmp_path / "a.npy", workers=2, chunk=3)
    cache.build([str(loose / m) for m in index["member"]], 64, tmp_path / "b.npy", workers=2)
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_bytes_that_do_not_match_their_sha256_stop_the_cache(tmp_path):
    index = pack(tmp_path)
    wrong = members(index, tmp_path)
    wrong[3] = cache.Member(wrong[3].shard, wrong[3].offset, wrong[3].size, "0" * 64, wrong[3].name)
    with pytest.raises(DataError, match=f"the bytes of {wrong[3].name} do not match its sha256"):
        cache.build(wrong, 64, tmp_path / "c.npy", workers=1)
    assert not (tmp_path / "c.npy").exists()


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
