"""The synthetic IMDB-WIKI: wiki_crop's layout, reproducible, age and gender visible in pixels."""
import re
import tarfile

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dareg import fetch, params, shards, wiki
from dareg.demo.faces import metadata_mat, wiki_files, write_wiki_crop, write_wiki_tar

FIELDS = ("dob", "photo_taken", "full_path", "gender", "name", "face_location", "face_score",
          "second_face_score")
CLEANING = params.CleanWiki(min_face_score=1.0, single_face=True, age_min=0, age_max=100,
                            missing_images="error")


@pytest.fixture(scope="module")
def crop(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wiki_crop")
    write_wiki_crop(folder, 300, seed=7)
    return folder


@pytest.fixture(scope="module")
def raw(crop, tmp_path_factory):
    """The crop folder as fetch_wiki leaves it: wiki.mat and the images in tar shards."""
    return fetch.pack_folder(crop, tmp_path_factory.mktemp("raw") / "wiki")


@pytest.fixture(scope="module")
def kept(raw):
    frame, _ = wiki.clean(wiki.load_mat(raw / "wiki.mat"), CLEANING, set(shards.read_index(raw)["member"]))
    return frame


def _pixels(crop, paths):
    """RGB crops resized to 64x64, as the training cache will see them."""
    return np.stack([np.asarray(Image.open(crop / p).convert("RGB").resize((64, 64)), np.float32)
                     for p in paths])


def test_wiki_mat_has_the_real_layout(crop):
    """loadmat gives mat['wiki'][0, 0][field][0], strings as 1-element arrays, as for wiki.mat."""
    struct = scipy.io.loadmat(crop / "wiki.mat")["wiki"]
    assert struct.shape == (1, 1) and struct.dtype.names == FIELDS
    fields = {f: struct[0, 0][f] for f in FIELDS}
    assert all(v.shape == (1, 300) for v in fields.values())
    assert fields["dob"].dtype == np.float64 and fields["photo_taken"].dtype.kind == "u"
    assert fields["face_location"][0][0].shape == (1, 4)
    for cell in fields["full_path"][0]:
        assert cell.shape == (1,) and cell.dtype.kind == "U"
        folder, ident = re.fullmatch(r"(\d\d)/(\d+)_\d{4}-\d\d-\d\d_\d{4}\.jpg", cell[0]).groups()
        assert int(folder) == int(ident) % 100 and (crop / cell[0]).is_file()
    assert any(not name.isascii() for name in np.concatenate(fields["name"][0]))


def test_imdb_mat_has_celebrity_ids(tmp_path):
    """imdb.mat's layout: struct `imdb`, celeb_id indexing celeb_names (1-based), same person."""
    (tmp_path / "imdb.mat").write_bytes(metadata_mat(200, seed=2, struct="imdb"))
    struct = scipy.io.loadmat(tmp_path / "imdb.mat")["imdb"][0, 0]
    assert struct.dtype.names == FIELDS + ("celeb_names", "celeb_id")
    entries = wiki.load_mat(tmp_path / "imdb.mat")
    celeb_names = np.array([c[0] if c.size else "" for c in struct["celeb_names"][0]])
    assert (celeb_names[entries["celeb_id"].to_numpy(int) - 1] == entries["name"]).all()


def test_metadata_carries_each_kind_of_dirt(raw):
    """-inf face scores, second faces, unknown genders, impossible dobs and old ages all occur."""
    _, counts = wiki.clean(wiki.load_mat(raw / "wiki.mat"), CLEANING, set(shards.read_index(raw)["member"]))
    for reason in ("no_face", "low_face_score", "second_face", "unknown_gender", "bad_dob"):
        assert counts["dropped"][reason] > 0, reason
    assert 0.7 < counts["kept"]["total"] / counts["entries"] < 0.95
    assert counts["kept"]["female"] < counts["kept"]["male"]


def test_same_arguments_give_the_same_bytes(tmp_path):
    """Generation is reproducible, down to the tarball's bytes; another seed gives other data."""
    write_wiki_tar(tmp_path / "a.tar", 20, seed=3)
    write_wiki_tar(tmp_path / "b.tar", 20, seed=3)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    assert dict(wiki_files(20, 3)) != dict(wiki_files(20, 4))
    with tarfile.open(tmp_path / "a.tar") as tar:
        names = tar.getnames()
    assert names[0] == "wiki_crop" and "wiki_crop/99" in names and "wiki_crop/wiki.mat" in names


def test_age_shows_in_texture_not_in_brightness(crop, kept):
    """Fine texture in the face grows with age; mean brightness barely follows it."""
    grey = _pixels(crop, kept["path"]).mean(axis=-1)
    laplacian = np.abs(4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
                       - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    texture = laplacian[:, 16:48, 16:48].mean(axis=(1, 2))
    assert np.corrcoef(texture, kept["age"])[0, 1] > 0.5
    assert abs(np.corrcoef(grey.mean(axis=(1, 2)), kept["age"])[0, 1]) < 0.2


def test_genders_look_different_and_women_are_younger(crop, kept):
    """Backgrounds are warm behind women and cool behind men; women are younger on average."""
    pixels = _pixels(crop, kept["path"])
    warmth = (pixels[:, :8, :, 0] - pixels[:, :8, :, 2]).mean(axis=(1, 2))
    female = (kept["gender"] == "female").to_numpy()
    assert warmth[female].mean() - warmth[~female].mean() > 30
    assert kept["age"][female].mean() < kept["age"][~female].mean()
