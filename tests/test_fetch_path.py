"""fetch_wiki with `wiki.source: path`: a wiki_crop folder is hard-linked, a tarball extracted."""
import errno
import os
import re
import runpy
import sys
from pathlib import Path

import pytest
import yaml

from dareg import hashes
from dareg.demo.faces import write_wiki_crop, write_wiki_tar
from dareg.fetch import link_or_copy_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    """A small wiki_crop folder: wiki.mat and NN/*.jpg."""
    folder = tmp_path_factory.mktemp("user") / "wiki_crop"
    write_wiki_crop(folder, 12, seed=1)
    return folder


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def fetch_stage(tmp_path, monkeypatch, capsys, path: str) -> tuple[int, str]:
    """Run stages/fetch_wiki.py in `tmp_path` with wiki.source: path; (exit code, stderr)."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["wiki"].update(source="path", path=path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fetch_wiki.py", "--out", "data/raw/wiki"])
    try:
        runpy.run_path(str(ROOT / "stages" / "fetch_wiki.py"), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


def test_a_folder_on_the_same_filesystem_is_hard_linked_not_copied(crop, tmp_path, monkeypatch,
                                                                    capsys):
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(crop))
    assert code == 0, err
    out, given = _files(tmp_path / "data" / "raw" / "wiki"), _files(crop)
    assert hashes.read_sums(tmp_path / "data" / "raw" / "wiki") == {
        name: hashes.sha256_file(path) for name, path in given.items()}  # what downstream reads
    del out[hashes.SUMS]
    assert out.keys() == given.keys() and "wiki.mat" in out and len(out) == 13
    assert all(os.stat(out[name]).st_ino == os.stat(given[name]).st_ino for name in out)


def test_a_folder_on_another_filesystem_is_copied(crop, tmp_path, monkeypatch):
    """Where hard links fail (EXDEV across filesystems), the files are copied, same bytes."""
    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out, given = _files(link_or_copy_folder(crop, tmp_path / "raw")), _files(crop)
    assert out.keys() == given.keys()
    for name in out:
        assert os.stat(out[name]).st_ino != os.stat(given[name]).st_ino
        assert out[name].read_bytes() == given[name].read_bytes()


def test_a_tarball_is_extracted_without_its_top_folder(crop, tmp_path, monkeypatch, capsys):
    write_wiki_tar(tmp_path / "wiki_crop.tar", 12, seed=1)
    code, err = fetch_stage(tmp_path, monkeypatch, capsys, str(tmp_path / "wiki_crop.tar"))
    assert code == 0, err
    out, given = _files(tmp_path / "data" / "raw" / "wiki"), _files(crop)
    del out[hashes.SUMS]
    assert out.keys() == given.keys()
    assert all(out[name].read_bytes() == given[name].read_bytes() for name in out)


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
