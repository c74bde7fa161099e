"""Reading wiki.mat and the standard cleaning: exact rows and counts, and one-line errors."""
import hashlib
import json
import re
import runpy
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io

from conftest import pack_loose
from dareg import hashes, params, shards, wiki
from dareg.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")
RULES = params.CleanWiki(min_face_score=1.0, single_face=True, age_min=0, age_max=100,
                         missing_images="drop")
# name, dob (a date, or a raw datenum), photo_taken, gender, face_score, second_face_score
ENTRIES = [
    ("Zoë Müller", date(1981, 5, 5), 2009, 0.0, 4.2, NAN),       # kept, 28
    ("José García", date(1970, 7, 1), 2000, 1.0, 1.0, NAN),      # kept, 29 (born 1 July)
    ("No Face", date(1960, 1, 1), 2000, NAN, -INF, NAN),         # no_face (gender unknown too)
    ("Low Score", date(1960, 1, 1), 2000, 1.0, 0.99, NAN),       # low_face_score
    ("Two Faces", date(1960, 1, 1), 2000, 0.0, 3.0, 1.5),        # second_face
    ("Who Knows", date(1960, 1, 1), 2000, NAN, 2.0, NAN),        # unknown_gender
    ("Year One", 367.0 + 31, 2000, 1.0, 2.0, NAN),               # bad_dob: 0001-02-01
    ("Not Yet Born", date(2012, 3, 1), 2010, 0.0, 2.0, NAN),     # bad_dob: after photo_taken
    ("Very Old", date(1890, 1, 1), 2001, 1.0, 2.0, NAN),         # age_out_of_range: 111
    ("Ørjan Ås", date(1990, 6, 30), 1990, 1.0, 2.0, NAN),        # kept, 0
    ("Late Baby", date(1990, 7, 1), 1990, 0.0, 2.0, NAN),        # age_out_of_range: -1
    ("No Image", date(1950, 1, 1), 2000, 1.0, 2.0, NAN),         # missing_image
    ("", date(2000, 12, 31), 2015, 0.0, 2.0, NAN),               # kept, 14, empty name
    ("NaN Dob", NAN, 2000, 1.0, 2.0, NAN),                       # bad_dob
    ("Year Zero Photo", date(1960, 1, 1), 0, 0.0, 2.0, NAN),     # bad_photo_taken
]
KEPT = pd.DataFrame({
    "path": ["00/100_1981-05-05_2009.jpg", "01/101_1970-07-01_2000.jpg",
             "09/109_1990-06-30_1990.jpg", "12/112_2000-12-31_2015.jpg"],
    "name": ["Zoë Müller", "José García", "Ørjan Ås", ""],
    "gender": ["female", "male", "male", "female"],
    "age": [28, 29, 0, 14],
    "dob": ["1981-05-05", "1970-07-01", "1990-06-30", "2000-12-31"],
    "photo_taken": [2009, 2000, 1990, 2015],
    "face_score": [4.2, 1.0, 2.0, 2.0]})
DROPPED = {"no_face": 1, "low_face_score": 1, "second_face": 1, "unknown_gender": 1,
           "bad_photo_taken": 1, "bad_dob": 3, "age_out_of_range": 2, "missing_image": 1}
COUNTS = {"entries": 15, "kept": {"female": 2, "male": 2, "total": 4}, "dropped": DROPPED,
          "dropped_by_gender": {
              "female": {**dict.fromkeys(DROPPED, 0), "second_face": 1, "bad_photo_taken": 1,
                         "bad_dob": 1, "age_out_of_range": 1},
              "male": {**dict.fromkeys(DROPPED, 0), "low_face_score": 1, "bad_dob": 2,
                       "age_out_of_range": 1, "missing_image": 1},
              "unknown": {**dict.fromkeys(DROPPED, 0), "no_face": 1, "unknown_gender": 1}}}


def _datenum(dob):
    return float(dob.toordinal() + 366) if isinstance(dob, date) else dob


def _cell(strings):
    cell = np.empty((1, len(strings)), dtype=object)
    cell[0, :] = strings
    return cell


def _struct(entries):
    """The fields of IMDB-WIKI's struct, each 1xN, strings and boxes in cells, as in wiki.mat."""
    names, dobs, taken, gender, score, second = zip(*entries)
    paths = [f"{i % 100:02d}/{100 + i}_{d if isinstance(d, date) else '0001-02-01'}_{t}.jpg"
             for i, (d, t) in enumerate(zip(dobs, taken))]
    return {"dob": np.array([[_datenum(d) for d in dobs]]),
            "photo_taken": np.array([taken], np.uint16), "full_path": _cell(paths),
            "gender": np.array([gender]), "name": _cell(list(names)),
            "face_location": _cell([np.array([[1.0, 2.0, 3.0, 4.0]])] * len(entries)),
            "face_score": np.array([score]), "second_face_score": np.array([second])}


@pytest.fixture
def raw(tmp_path):
    """A wiki_crop folder: wiki.mat for ENTRIES and every image except the 'No Image' one."""
    struct = _struct(ENTRIES)
    scipy.io.savemat(tmp_path / "wiki.mat", {"wiki": struct})
    for path in struct["full_path"][0][[i for i, e in enumerate(ENTRIES) if e[0] != "No Image"]]:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_bytes(b"jpeg")
    return pack_loose(tmp_path)  # as fetch_wiki leaves it


def in_shards(raw):
    """The image names a raw folder holds: its shards' members."""
    return set(shards.read_index(raw)["member"])


def test_clean_keeps_exactly_the_good_entries(raw):
    kept, counts = wiki.clean(wiki.load_mat(raw / "wiki.mat"), RULES, in_shards(raw))
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), KEPT)
    assert counts == COUNTS
    by_gender = sum(n for reasons in counts["dropped_by_gender"].values() for n in reasons.values())
    assert by_gender == sum(DROPPED.values()) == 15 - 4


def test_dates_and_ages_match_python_dates():
    """Brute force over 5,000 random days 1800-2100 (fractions of a day too): datenum d is
    date.fromordinal(floor(d) - 366); age is the year difference, less one from 1 July on."""
    rng = np.random.default_rng(0)
    dob = rng.uniform(date(1800, 1, 1).toordinal(), date(2100, 12, 31).toordinal(), 5000) + 366
    taken = rng.integers(1900, 2100, 5000)
    dates, valid = wiki.birth_dates(dob)
    expected = [date.fromordinal(int(d) - 366) for d in dob]
    assert valid.all() and dates.astype(object).tolist() == expected
    assert wiki.ages(dates, taken).tolist() == [
        t - d.year - (d.month >= 7) for t, d in zip(taken, expected)]


def test_rules_follow_params(raw):
    """Second faces allowed, no image check: those entries are kept; missing images can be fatal."""
    lenient = params.CleanWiki(1.0, single_face=False, age_min=0, age_max=100,
                               missing_images="drop")
    kept, counts = wiki.clean(wiki.load_mat(raw / "wiki.mat"), lenient, None)
    assert {"Two Faces", "No Image"} <= set(kept["name"]) and counts["kept"]["total"] == 6
    strict = params.CleanWiki(1.0, True, 0, 100, missing_images="error")
    with pytest.raises(DataError, match="1 images missing, e.g. '11/111_1950-01-01_2000.jpg'"):
        wiki.clean(wiki.load_mat(raw / "wiki.mat"), strict, in_shards(raw))


def test_a_one_entry_file(tmp_path):
    scipy.io.savemat(tmp_path / "wiki.mat", {"wiki": _struct(ENTRIES[:1])})
    kept, counts = wiki.clean(wiki.load_mat(tmp_path / "wiki.mat"), RULES)
    pd.testing.assert_frame_equal(kept, KEPT.iloc[:1])
    assert counts["kept"]["total"] == 1 and counts["entries"] == 1


def _truncated(path):
    """A wiki.mat cut in half, as an interrupted copy leaves it."""
    scipy.io.savemat(path, {"wiki": _struct(ENTRIES)})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt(path):
    """A compressed wiki.mat with 40 bytes overwritten in the middle of its data."""
    scipy.io.savemat(path, {"wiki": _struct(ENTRIES)}, do_compression=True)
    data = bytearray(path.read_bytes())
    data[300:340] = b"x" * 40
    path.write_bytes(bytes(data))


def _saved(content):
    return lambda path: scipy.io.savemat(path, content)


N = len(ENTRIES)
BAD_FILES = {  # name: (how to write wiki.mat, the error after "<path>: ")
    "missing": (lambda path: None, "not found; run the fetch_wiki stage"),
    "no-struct": (_saved({"foo": np.zeros(3)}),
                  r"no 1x1 struct 'wiki' or 'imdb' \(found \['foo'\]\); expected IMDB-WIKI"),
    "missing-field": (_saved({"wiki": {k: v for k, v in _struct(ENTRIES).items()
                                       if k != "gender"}}),
                      r"field 'gender' missing; expected .* dob, photo_taken, full_path, gender"),
    "lengths": (_saved({"wiki": {**_struct(ENTRIES), "gender": np.zeros((1, 3))}}),
                r"fields have different lengths \(.*'gender': 3.*\); the file is damaged"),
    "text-dob": (_saved({"wiki": {**_struct(ENTRIES), "dob": _cell(["1981-05-05"] * N)}}),
                 "field 'dob' is not numeric .* expected numbers"),
    "numeric-names": (_saved({"wiki": {**_struct(ENTRIES), "name": _cell([1.5] * N)}}),
                      "field 'name' holds something other than strings"),
    "truncated": (_truncated, "not a readable MATLAB file .* truncated or corrupt"),
    "corrupt": (_corrupt, "not a readable MATLAB file .* truncated or corrupt"),
    "html-page": (lambda path: path.write_text("<html>Not Found</html>"),
                  "not a readable MATLAB file .* truncated or corrupt"),
}


def _run_stage_here(raw, out, monkeypatch, capsys):
    """Run stages/clean_wiki.py in this process, as `dvc repro` would; (exit code, stderr)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["clean_wiki.py", "--raw", str(raw),
                                      "--out", str(out / "clean"), "--metrics", str(out / "m.json")])
    try:
        runpy.run_path(str(ROOT / "stages" / "clean_wiki.py"), run_name="__main__")
    except SystemExit as exit_:
        return exit_.code, capsys.readouterr().err
    return 0, capsys.readouterr().err


@pytest.mark.parametrize("bad", BAD_FILES)
def test_each_bad_file_stops_the_stage_with_one_line(bad, tmp_path, monkeypatch, capsys):
    """Exit status 2, one line naming the file, the field and the fix; no output written."""
    write, message = BAD_FILES[bad]
    write(tmp_path / "wiki.mat")
    code, err = _run_stage_here(tmp_path, tmp_path / "out", monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1
    assert re.match(f"error: {re.escape(str(tmp_path / 'wiki.mat'))}: {message}", err), err
    assert not (tmp_path / "out").exists()


def _stage(raw, out):
    return subprocess.run(
        [sys.executable, "stages/clean_wiki.py", "--raw", str(raw), "--out", str(out / "clean"),
         "--metrics", str(out / "m.json")], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_stage_writes_exactly_the_expected_tables_and_counts(raw, tmp_path):
    """Through the stage script: female.csv and male.csv hold KEPT's rows, the metrics COUNTS."""
    result = _stage(raw, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for gender in ("female", "male"):
        table = pd.read_csv(tmp_path / "out" / "clean" / f"{gender}.csv", keep_default_na=False)
        expected = KEPT[KEPT["gender"] == gender].reset_index(drop=True)
        index = shards.read_index(raw).set_index("member").loc[expected["path"]]
        pd.testing.assert_frame_equal(table, expected.assign(
            shard=index["shard"].to_numpy(), offset=index["offset"].to_numpy(),
            size=index["size"].to_numpy(), sha256=hashlib.sha256(b"jpeg").hexdigest()))
    metrics = json.loads((tmp_path / "out" / "m.json").read_text(encoding="utf-8"))
    assert metrics == COUNTS


def test_stage_exits_2_with_one_line_for_a_missing_file(tmp_path):
    result = _stage(tmp_path, tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "wiki.mat: not found" in result.stderr
    assert not (tmp_path / "out").exists()


def test_stage_reads_imdb_mat_and_keeps_the_celebrity_id(tmp_path, monkeypatch, capsys):
    """An imdb_crop folder (imdb.mat, struct imdb): the tables gain celeb_id, to group by."""
    struct = {**_struct(ENTRIES[:2]), "celeb_names": _cell(["a", "b", "c"]),
              "celeb_id": np.array([[7.0, 9.0]])}
    scipy.io.savemat(tmp_path / "imdb.mat", {"imdb": struct})
    for path in struct["full_path"][0]:
        (tmp_path / path).parent.mkdir()
        (tmp_path / path).write_bytes(b"jpeg")
    pack_loose(tmp_path)
    code, err = _run_stage_here(tmp_path, tmp_path / "out", monkeypatch, capsys)
    assert code == 0, err
    female = pd.read_csv(tmp_path / "out" / "clean" / "female.csv", keep_default_na=False)
    male = pd.read_csv(tmp_path / "out" / "clean" / "male.csv", keep_default_na=False)
    assert list(female.columns) == wiki.KEPT_COLUMNS + ["celeb_id", "shard", "offset", "size", "sha256"]
    assert (female["celeb_id"].tolist(), male["celeb_id"].tolist()) == ([7], [9])


def test_a_file_whose_every_entry_is_dropped_gives_empty_tables(tmp_path):
    """One entry, no face: both tables have their header and no row; the count says why."""
    scipy.io.savemat(tmp_path / "wiki.mat", {"wiki": _struct(ENTRIES[2:3])})
    pack_loose(tmp_path)
    result = _stage(tmp_path, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for gender in ("female", "male"):
        assert (tmp_path / "out" / "clean" / f"{gender}.csv").read_text().split("\n")[0] == \
            ",".join(wiki.KEPT_COLUMNS + ["shard", "offset", "size", "sha256"])
    metrics = json.loads((tmp_path / "out" / "m.json").read_text(encoding="utf-8"))
    assert metrics["dropped"]["no_face"] == 1 and metrics["kept"]["total"] == 0


def test_stage_without_the_hash_list_names_it_and_the_fix(raw, tmp_path):
    (raw / hashes.SUMS).unlink()
    result = _stage(raw, tmp_path / "out")
    assert result.returncode == 2 and "SHA256SUMS: not found; rerun the stage" in result.stderr
    assert not (tmp_path / "out" / "clean").exists()


def test_stage_on_the_old_loose_layout_names_the_fix(tmp_path):
    """A data/raw/wiki made before tar shards (loose NN/*.jpg): one line naming the fix."""
    scipy.io.savemat(tmp_path / "wiki.mat", {"wiki": _struct(ENTRIES)})
    (tmp_path / "00").mkdir()
    (tmp_path / "00" / "100_1981-05-05_2009.jpg").write_bytes(b"jpeg")
    hashes.write_sums(tmp_path)
    result = _stage(tmp_path, tmp_path / "out")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "layout before tar shards" in result.stderr and "dvc repro -f fetch_wiki" in result.stderr
    assert not (tmp_path / "out" / "clean").exists()
