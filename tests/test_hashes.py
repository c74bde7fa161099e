"""SHA256SUMS: the small file downstream stages depend on instead of an image folder."""
import subprocess

import pytest

from dareg import hashes
from dareg.errors import DataError


def test_sums_list_every_file_but_themselves_and_sha256sum_agrees(tmp_path):
    (tmp_path / "17").mkdir()
    (tmp_path / "17" / "a b.jpg").write_bytes(b"\xff\xd8 one")
    (tmp_path / "wiki.mat").write_bytes(b"MATLAB")
    hashes.write_sums(tmp_path)
    hashes.write_sums(tmp_path)  # a rerun does not list the old list
    sums = hashes.read_sums(tmp_path)
    assert list(sums) == ["17/a b.jpg", "wiki.mat"]
    assert sums["wiki.mat"] == hashes.sha256_file(tmp_path / "wiki.mat")
    check = subprocess.run(["sha256sum", "--check", "--quiet", hashes.SUMS], cwd=tmp_path)
    assert check.returncode == 0


def test_a_changed_file_changes_the_list(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"one")
    before = hashes.write_sums(tmp_path).read_bytes()
    (tmp_path / "a.jpg").write_bytes(b"two")
    assert hashes.write_sums(tmp_path).read_bytes() != before


def test_a_damaged_list_names_its_line(tmp_path):
    (tmp_path / hashes.SUMS).write_text("0" * 64 + "  ok.jpg\nnot a line\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 2: expected '<sha256>  <path>'"):
        hashes.read_sums(tmp_path)
