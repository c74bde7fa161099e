"""fetch_wiki with `wiki.source: path`: a wiki_crop folder or a tarball, packed into tar shards;
a killed run's scratch folder removed by the next."""
import hashlib
import os
import re
import runpy
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from dareg import hashes
from dareg.demo.faces import write_wiki_crop, write_wiki_tar
from dareg import fetch, shards

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A small wiki_crop folder: wiki.mat and NN/*.jpg."""
    folder = tmp_path_factory.mktemp("user") / "wiki_crop"
    write_wiki_crop(folder, 12, seed=1)
    return folder


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def write_params(folder: Path, path: str) -> None:
    """folder/params.yaml: the repository's, with wiki.source: path and wiki.path `path`."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["wiki"].update(source="path", path=path)
    (folder / "params.yaml").write_text(yaml.safe_dump(raw))


def fetch_stage(tmp_path, monkeypatch, capsys, path: str) -> tuple[int, str]:
    """Run stages/fetch_wiki.py in `tmp_path` with wiki.source: path; (exit code, stderr)."""
    write_params(tmp_path, path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fetch_wiki.py", "--out", "data/raw/wiki"])
    try:
        runpy.run_path(str(ROOT / "stages" / "fetch_wiki.py"), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def unpacked(raw: Path) -> dict[str, bytes]:
    """The raw folder as `tar -xf` of its shards would give it back: {path: bytes}, wiki.mat too."""
    out = {"wiki.mat": (raw / "wiki.mat").read_bytes()}
    for shard in sorted((raw / shards.FOLDER).glob("*.tar")):
        with tarfile.open(shard) as tar:
            out |= {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    return out


def test_a_folder_is_packed_into_shards_with_its_own_names(crop, tmp_path, monkeypatch, capsys):
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(crop))
    assert code == 0, err
    raw = tmp_path / "data" / "raw" / "wiki"
    given = {name: path.read_bytes() for name, path in _files(crop).items()}
    assert unpacked(raw) == given and len(given) == 13  # names and bytes round-trip
    index = shards.read_index(raw)
    assert dict(zip(index["member"], index["sha256"])) == {
        name: hashlib.sha256(data).hexdigest() for name, data in given.items() if name != "wiki.mat"}
    assert set(hashes.read_sums(raw)) == {"wiki.mat", "shards/index.csv", "shards/wiki-000000.tar"}
    assert sorted(os.listdir(raw)) == ["SHA256SUMS", "shards", "wiki.mat"]


def test_a_tarball_is_packed_without_its_top_folder(crop, tmp_path, monkeypatch, capsys):
    write_wiki_tar(tmp_path / "wiki_crop.tar", 12, seed=1)
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(tmp_path / "wiki_crop.tar"))
    assert code == 0, err
    given = {name: path.read_bytes() for name, path in _files(crop).items()}
    assert unpacked(tmp_path / "data" / "raw" / "wiki") == given


def test_shards_split_by_bytes_and_read_back_by_offset(crop, tmp_path):
    """A small shard size gives several shards; every member reads back by its offset."""
    raw = fetch.pack_folder(crop, tmp_path / "raw", max_bytes=8192)
    index = shards.read_index(raw)
    assert index["shard"].nunique() > 2
    for row in index.itertuples():
        data = shards.read_member(raw / row.shard, row.offset, row.size)
        assert data == (crop / row.member).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256


def _empty_folder(tmp: Path) -> Path:
    (tmp / "photos").mkdir()
    return tmp / "photos"


def _html_page(tmp: Path) -> Path:
    (tmp / "wiki_crop.tar").write_text("<html>Not Found</html>")
    return tmp / "wiki_crop.tar"


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nowhere", "wiki.path '.*nowhere' is neither a folder nor a file; point it "
                                  "at a wiki_crop folder"),
    (_empty_folder, r"photos: no wiki.mat at the top \(found \[\]\); expected the contents"),
    (_html_page, "wiki_crop.tar: not a readable tar archive .*; delete it and fetch it again"),
], ids=["missing", "folder-without-wiki-mat", "not-a-tarball"])
def test_a_bad_path_stops_the_stage_with_one_line(tmp_path, monkeypatch, capsys, make, message):
    """Exit status 2 and one line naming the path and the fix; no output folder appears."""
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(make(tmp_path)))
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "data").exists()


SLOW_STAGE = """
import runpy, sys, time
from dareg import shards
add = shards.ShardWriter.add
shards.ShardWriter.add = lambda self, *member: (time.sleep(0.05), add(self, *member))[1]
sys.argv = ["fetch_wiki.py", "--out", "data/raw/wiki"]
runpy.run_path({stage!r}, run_name="__main__")
"""


def _half_written_shard(raw: Path, process: subprocess.Popen, timeout: float = 60.0) -> Path:
    """The scratch folder of a running fetch_wiki, once its first shard holds some members."""
    deadline = time.monotonic() + timeout
    while True:
        shard = next(raw.glob(".wiki.*.tmp/shards/.wiki-000000.tar.tmp"), None)
        if shard is not None and shard.stat().st_size > 10 * 512:
            return shard.parents[1]
        assert process.poll() is None and time.monotonic() < deadline, "packing never got there"
        time.sleep(0.02)


def test_a_killed_fetch_leaves_scratch_that_the_next_run_removes(tmp_path, monkeypatch, capsys):
    """SIGKILL in the middle of packing leaves data/raw/.wiki.<random>.tmp with a half-written
    shard and no data/raw/wiki; the next run removes it (and nothing else beside the output)
    and fills data/raw/wiki completely."""
    tar_path = tmp_path / "wiki_crop.tar"
    write_wiki_tar(tar_path, 60, seed=2)
    write_params(tmp_path, str(tar_path))
    process = subprocess.Popen([sys.executable, "-c",
                                SLOW_STAGE.format(stage=str(ROOT / "stages" / "fetch_wiki.py"))],
                               cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        scratch = _half_written_shard(tmp_path / "data" / "raw", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    assert (scratch / "shards" / ".wiki-000000.tar.tmp").is_file()
    assert not (tmp_path / "data" / "raw" / "wiki").exists()
    others = [tmp_path / "data" / "raw" / name for name in (".reddit.abcdefgh.tmp", ".wikix.tmp")]
    for other in others:
        other.mkdir()
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(tar_path))
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == [
        ".reddit.abcdefgh.tmp", ".wikix.tmp", "wiki"]
    out = tmp_path / "data" / "raw" / "wiki"
    with tarfile.open(tar_path) as tar:
        given = {m.name.removeprefix("wiki_crop/"): tar.extractfile(m).read() for m in tar if m.isfile()}
    assert unpacked(out) == given
    assert hashes.read_sums(out) == {name: hashes.sha256_file(out / name) for name in hashes.read_sums(out)}
