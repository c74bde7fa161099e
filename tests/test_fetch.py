"""Downloading (resume, checksum, proxies ignored on loopback), safe extraction of wiki_crop, and
the scratch folders a killed run leaves."""
import hashlib
import io
import os
import tarfile

import pytest
import requests

from dareg.demo.files import serve_folder
from dareg.errors import DataError
from dareg import shards
from dareg.fetch import (check_wiki_folder, download, pack_folder, pack_tar,
                         remove_stale_temporaries, scratch)
from dareg.loopback import QuietHandler, serve

DATA = bytes(range(256)) * 400  # 100 kB


@pytest.fixture
def served(tmp_path):
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "wiki_crop.tar").write_bytes(DATA)
    with serve_folder(tmp_path / "served") as base_url:
        yield f"{base_url}/wiki_crop.tar"


def test_file_server_speaks_ranges_head_and_404(served):
    """206 with Content-Range for a range, 416 past the end, no body for HEAD, 404 when absent."""
    whole = requests.get(served)
    assert whole.status_code == 200 and whole.content == DATA
    part = requests.get(served, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == DATA[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(DATA)}"
    assert requests.get(served, headers={"Range": "bytes=-5"}).content == DATA[-5:]
    bad = requests.get(served, headers={"Range": f"bytes={len(DATA)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(DATA)}"
    head = requests.head(served)
    assert head.headers["Content-Length"] == str(len(DATA)) and head.content == b""
    assert requests.get(served + ".missing").status_code == 404


def test_download_ignores_proxy_settings_on_loopback(served, tmp_path, monkeypatch):
    """A proxy in the environment (unreachable here) is not used for 127.0.0.1."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    dest = download(served, tmp_path / "out" / "wiki_crop.tar")
    assert dest.read_bytes() == DATA and not (tmp_path / "out" / "wiki_crop.tar.part").exists()


def test_a_finished_download_is_reused(served, tmp_path):
    """The stage keeps tarballs outside DVC's outputs; a rerun must not fetch them again."""
    download(served, tmp_path / "wiki_crop.tar")
    assert download(served + ".gone", tmp_path / "wiki_crop.tar").read_bytes() == DATA


def test_download_resumes_a_partial_file_with_a_range_request(served, tmp_path):
    """Existing .part bytes are kept (here deliberately wrong, to prove they were not refetched)."""
    (tmp_path / "wiki_crop.tar.part").write_bytes(b"x" * 1000)
    assert download(served, tmp_path / "wiki_crop.tar").read_bytes() == b"x" * 1000 + DATA[1000:]


def test_download_of_an_already_complete_part_just_renames(served, tmp_path):
    (tmp_path / "wiki_crop.tar.part").write_bytes(DATA)
    assert download(served, tmp_path / "wiki_crop.tar").read_bytes() == DATA


def test_download_starts_over_when_the_server_ignores_ranges(tmp_path):
    """A 200 answer to a Range request replaces the partial file instead of being appended."""
    class NoRanges(QuietHandler):
        def do_GET(self):  # noqa: N802
            self.send_body(200, DATA, "application/x-tar")

    (tmp_path / "f.tar.part").write_bytes(b"x" * 1000)
    with serve(NoRanges) as base_url:
        assert download(f"{base_url}/f.tar", tmp_path / "f.tar").read_bytes() == DATA


def test_checksum_mismatch_names_url_and_hashes_and_deletes_the_download(served, tmp_path):
    actual = hashlib.sha256(DATA).hexdigest()
    assert download(served, tmp_path / "ok.tar", sha256=actual).read_bytes() == DATA
    with pytest.raises(DataError, match=f"{served}: sha256 {actual} does not match the expected "
                                        f"{'0' * 64}.*wiki.sha256"):
        download(served, tmp_path / "bad.tar", sha256="0" * 64)
    assert not (tmp_path / "bad.tar").exists() and not (tmp_path / "bad.tar.part").exists()


def test_http_error_is_one_clear_error(served, tmp_path):
    with pytest.raises(DataError, match="HTTP 404"):
        download(served + ".missing", tmp_path / "x.tar")


def _tar(path, members):
    """Write a tarball of (TarInfo, bytes or None) pairs."""
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"data"):
    return tarfile.TarInfo(name), data


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def packed(dest) -> dict[str, bytes]:
    """{member: bytes} of a packed folder, read back through tar itself (as `tar -xf` would)."""
    out = {}
    for shard in sorted((dest / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            out |= {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    return out


def test_pack_strips_the_top_folder_and_keeps_the_names(tmp_path):
    """wiki_crop/wiki.mat lands as dest/wiki.mat, wiki_crop/17/x.jpg as member 17/x.jpg of a
    shard; a link inside the target is stored as its target's bytes."""
    tar_path = _tar(tmp_path / "t.tar", [_file("wiki_crop/wiki.mat"), _file("wiki_crop/17/x.jpg", b"x"),
                                         _link("wiki_crop/17/y.jpg", "x.jpg")])
    dest = pack_tar(tar_path, tmp_path / "raw")
    assert (dest / "wiki.mat").read_bytes() == b"data"
    assert packed(dest) == {"17/x.jpg": b"x", "17/y.jpg": b"x"}
    index = shards.read_index(dest)
    assert index["member"].tolist() == ["17/x.jpg", "17/y.jpg"]
    check_wiki_folder(dest)
    assert sorted(os.listdir(tmp_path)) == ["raw", "t.tar"]  # no temporary folder left
    assert sorted(os.listdir(dest)) == ["shards", "wiki.mat"]  # no extracted image


def _special(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


@pytest.mark.parametrize("member, why", [
    (_file("/etc/evil"), "is not under wiki_crop/"),
    (_file("/wiki_crop/17/a.jpg"), "is not under wiki_crop/"),
    (_file("wiki_crop/../evil"), "points outside the target folder"),
    (_file("wiki_crop/17/../18/a.jpg"), "is not a plain relative path"),
    (_link("wiki_crop/17/a.jpg", "../../../evil"), "links to '../../../evil', outside the target"),
    (_link("wiki_crop/17/a.jpg", "../../x.jpg"), "links to '../../x.jpg', outside the target"),
    (_link("wiki_crop/17/a.jpg", "/etc/passwd"), "links to '/etc/passwd', outside the target"),
    (_link("wiki_crop/17/a.jpg", "wiki_crop/../../evil", tarfile.LNKTYPE), "outside the target"),
    (_link("wiki_crop/17/a.jpg", "other/x.jpg", tarfile.LNKTYPE), "outside wiki_crop/"),
    (_special("wiki_crop/17/a.jpg", tarfile.CHRTYPE), "is a device or a fifo"),
    (_special("wiki_crop/17/a.jpg", tarfile.BLKTYPE), "is a device or a fifo"),
    (_special("wiki_crop/17/a.jpg", tarfile.FIFOTYPE), "is a device or a fifo"),
], ids=["absolute", "absolute-top", "dotdot", "dotdot-inside", "symlink-outside",
        "symlink-above-top", "symlink-absolute", "hardlink-outside", "hardlink-above-top",
        "char-device", "block-device", "fifo"])
def test_pack_refuses_members_leaving_the_target(tmp_path, member, why):
    """Unsafe members (tarfile's data filter, after the top folder is stripped) are refused in
    one line naming the tarball and the member, and no output folder appears."""
    tar_path = _tar(tmp_path / "t.tar", [_file("wiki_crop/wiki.mat"), member])
    with pytest.raises(DataError) as refused:
        pack_tar(tar_path, tmp_path / "raw")
    message = str(refused.value)
    assert message.startswith(f"{tar_path}: member") and "\n" not in message
    assert why in message and member[0].name.removeprefix("wiki_crop/") in message, message
    assert sorted(os.listdir(tmp_path)) == ["t.tar"]


def test_pack_takes_imdb_crop_too(tmp_path):
    tar_path = _tar(tmp_path / "t.tar", [_file("./imdb_crop/imdb.mat"),
                                         _file("imdb_crop/01/x.jpg")])
    dest = pack_tar(tar_path, tmp_path / "raw")
    assert (dest / "imdb.mat").is_file() and list(packed(dest)) == ["01/x.jpg"]


@pytest.mark.parametrize("names, message", [
    (["photos/wiki.mat"], r"'photos/wiki.mat' is not under wiki_crop/ \(or imdb_crop/\)"),
    (["wiki_crop/wiki.mat", "imdb_crop/imdb.mat"], "'imdb_crop/imdb.mat' is not under wiki_crop/"),
], ids=["other-top", "mixed-tops"])
def test_pack_refuses_an_archive_without_one_top_folder(tmp_path, names, message):
    tar_path = _tar(tmp_path / "t.tar", [_file(name) for name in names])
    with pytest.raises(DataError, match=message):
        pack_tar(tar_path, tmp_path / "raw")
    assert sorted(os.listdir(tmp_path)) == ["t.tar"]


def test_pack_refuses_a_duplicate_member(tmp_path):
    tar_path = _tar(tmp_path / "t.tar", [_file("wiki_crop/wiki.mat"), _file("wiki_crop/17/x.jpg"),
                                         _file("wiki_crop/17/x.jpg")])
    with pytest.raises(DataError, match="member '17/x.jpg' twice"):
        pack_tar(tar_path, tmp_path / "raw")
    assert sorted(os.listdir(tmp_path)) == ["t.tar"]


def test_pack_folder_packs_every_image_and_copies_the_mat(tmp_path):
    (tmp_path / "src" / "17").mkdir(parents=True)
    (tmp_path / "src" / "wiki.mat").write_bytes(b"mat")
    (tmp_path / "src" / "17" / "x.jpg").write_bytes(b"jpg")
    dest = pack_folder(tmp_path / "src", tmp_path / "raw")
    assert packed(dest) == {"17/x.jpg": b"jpg"} and (dest / "wiki.mat").read_bytes() == b"mat"
    assert (tmp_path / "src" / "17" / "x.jpg").read_bytes() == b"jpg"  # the user's folder untouched


def test_check_wiki_folder_names_what_it_found(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(DataError, match=r"no wiki.mat at the top \(found \['other.txt'\]\)"):
        check_wiki_folder(tmp_path)


def test_stale_scratch_is_removed_and_nothing_else(tmp_path):
    """Only what scratch(raw/wiki) names is removed: its folders (shards inside), a stray file of
    that name, a link of that name (not its target); other stages' scratch, look-alikes and the
    output stay."""
    with scratch(tmp_path / "wiki") as live:
        name = live.name
    stale = tmp_path / name
    (stale / "shards").mkdir(parents=True)
    (stale / "shards" / ".wiki-000000.tar.tmp").write_bytes(b"half")
    (tmp_path / ".wiki.0123abcd.tmp").write_bytes(b"x")
    (tmp_path / "target").mkdir()
    (tmp_path / ".wiki.link_abc.tmp").symlink_to(tmp_path / "target")
    kept = ["wiki", ".wiki.tmp", ".wiki.abc.tmp", ".wikipedia.abcdefgh.tmp", ".reddit.abcdefgh.tmp"]
    for other in kept:
        (tmp_path / other).mkdir()
    removed = remove_stale_temporaries(tmp_path / "wiki")
    assert sorted(p.name for p in removed) == sorted([name, ".wiki.0123abcd.tmp", ".wiki.link_abc.tmp"])
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["target"])
    assert remove_stale_temporaries(tmp_path / "missing" / "wiki") == []
