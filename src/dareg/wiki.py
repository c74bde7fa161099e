"""IMDB-WIKI metadata: read `wiki.mat` / `imdb.mat` into a table and apply the standard cleaning.

Everything is vectorized over entries (numpy and pandas column operations, no Python loop per
entry): string cells are unpacked by np.concatenate, and the image check is one set lookup in
the shards' index (benchmarks/wiki_clean.py times it at IMDb's 460,723 entries).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from dareg.errors import DataError
from dareg.params import CleanWiki

DATENUM_1970 = 719529  # MATLAB datenum of 1970-01-01
EARLIEST_BIRTH_YEAR = 1800  # earlier birth dates in wiki.mat are typos (many read year 0 or 1)
MAT_FILES = ("wiki.mat", "imdb.mat")
FIELDS = ("dob", "photo_taken", "full_path", "gender", "name", "face_score", "second_face_score")
NUMERIC = ("dob", "photo_taken", "gender", "face_score", "second_face_score")
# Drop reasons, in the order the rules are tried; a dropped entry gets the first one it fails.
REASONS = ("no_face", "low_face_score", "second_face", "unknown_gender", "bad_photo_taken",
           "bad_dob", "age_out_of_range", "missing_image")
KEPT_COLUMNS = ["path", "name", "gender", "age", "dob", "photo_taken", "face_score"]


def mat_file(folder: Path) -> Path:
    """The metadata file of a wiki_crop (`wiki.mat`) or imdb_crop (`imdb.mat`) folder."""
    candidates = [Path(folder) / name for name in MAT_FILES]
    return next((p for p in candidates if p.is_file()), candidates[0])


def load_mat(path: Path) -> pd.DataFrame:
    """Read the struct `wiki` (or `imdb`) of an IMDB-WIKI .mat file into one row per entry."""
    return table(read_struct(Path(path)), path)


def table(struct: np.void, path: Path) -> pd.DataFrame:
    """One row per entry of a loaded IMDB-WIKI struct (`path` only names it in errors).

    Columns: full_path, dob (MATLAB datenum), photo_taken, gender (1 male, 0 female, NaN),
    name, face_score, second_face_score, and celeb_id when the struct has it (imdb.mat).
    """
    names = struct.dtype.names or ()
    wanted = FIELDS + (("celeb_id",) if "celeb_id" in names else ())
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}: field {missing[0]!r} missing; expected the IMDB-WIKI struct with "
                        f"fields {', '.join(FIELDS)}; re-download the file")
    columns = {f: np.asarray(struct[f]).ravel() for f in wanted}
    lengths = {f: len(v) for f, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{path}: fields have different lengths ({lengths}); the file is damaged, "
                        "re-download it")
    for field in NUMERIC + wanted[len(FIELDS):]:
        if columns[field].dtype.kind not in "biuf":
            raise DataError(f"{path}: field {field!r} is not numeric ({columns[field].dtype}); "
                            "expected numbers (dob as MATLAB serial dates); re-download the file")
    for field in ("full_path", "name"):
        columns[field] = _cell_strings(columns[field], path, field)
    return pd.DataFrame(columns)


def read_struct(path: Path) -> np.void:
    """The 1x1 struct `wiki` or `imdb` of a .mat file, with one-line errors for unusable files."""
    if not path.is_file():
        raise DataError(f"{path}: not found; run the fetch_wiki stage (or point wiki.path at a "
                        "wiki_crop folder holding wiki.mat)")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # noqa: BLE001 - damaged files raise MatReadError, IndexError, zlib...
        reason = " ".join(str(err).split())
        raise DataError(f"{path}: not a readable MATLAB file ({reason}); it is truncated or "
                        "corrupt, delete it and fetch it again") from None
    found = [k for k in mat if not k.startswith("__")]
    key = next((k for k in ("wiki", "imdb") if k in mat), None)
    if key is None or mat[key].dtype.names is None or mat[key].size != 1:
        raise DataError(f"{path}: no 1x1 struct 'wiki' or 'imdb' (found {found or 'nothing'}); "
                        "expected IMDB-WIKI's wiki.mat or imdb.mat")
    return mat[key].ravel()[0]


def _cell_strings(cell: np.ndarray, path: Path, field: str) -> np.ndarray:
    """Unpack a MATLAB cell of strings (each a 0- or 1-element array) into an array of str."""
    if cell.dtype.kind == "U":
        return cell.astype(object)
    if cell.dtype != object:
        raise DataError(f"{path}: field {field!r} is {cell.dtype}, not a cell of strings; "
                        "re-download the file")
    try:  # each element is a 1-element string array, or empty for ''
        sizes = np.fromiter(map(len, cell), np.int64, len(cell))
        joined = np.concatenate(cell[sizes == 1]) if (sizes == 1).any() else np.array([], "U1")
    except (TypeError, ValueError):  # numbers, nested cells or matrices in the cell
        joined = None
    if joined is None or (sizes > 1).any() or joined.dtype.kind != "U":
        raise DataError(f"{path}: field {field!r} holds something other than strings; "
                        "re-download the file")
    strings = np.full(len(cell), "", dtype=object)
    strings[sizes == 1] = joined.astype(object)
    return strings


def birth_dates(dob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB datenums -> (datetime64[D] dates, valid mask); NaN, inf and absurd values are invalid.

    datenum d is the proleptic Gregorian day d - 719529 counted from 1970-01-01 (fractions of a
    day are dropped); years outside EARLIEST_BIRTH_YEAR..9999 are invalid.
    """
    dob = np.asarray(dob, dtype=np.float64)
    finite = np.isfinite(dob) & (np.abs(dob) < 4e6)  # 4e6 days: beyond year 9999, no overflow
    days = np.where(finite, np.floor(dob) - DATENUM_1970, 0).astype(np.int64)
    dates = days.astype("datetime64[D]")
    years = _years(dates)
    return dates, finite & (years >= EARLIEST_BIRTH_YEAR) & (years <= 9999)


def _years(dates: np.ndarray) -> np.ndarray:
    return dates.astype("datetime64[Y]").astype(np.int64) + 1970


def ages(dates: np.ndarray, photo_taken: np.ndarray) -> np.ndarray:
    """Age when photographed: photo_taken - birth year, less one if born on or after 1 July.

    The photo is assumed taken mid-year (IMDB-WIKI's convention).
    """
    months = dates.astype("datetime64[M]").astype(np.int64) % 12  # 0 is January
    return np.asarray(photo_taken, np.int64) - _years(dates) - (months >= 6)


def drop_reasons(frame: pd.DataFrame, params: CleanWiki, images: set[str] | None) -> np.ndarray:
    """The first rule of REASONS each entry fails ("" where it passes all), vectorized."""
    face, second = frame["face_score"].to_numpy(float), frame["second_face_score"].to_numpy(float)
    taken = frame["photo_taken"].to_numpy(float)
    taken_ok = np.isfinite(taken) & (taken >= EARLIEST_BIRTH_YEAR) & (taken <= 9999)
    taken = np.where(taken_ok, taken, EARLIEST_BIRTH_YEAR)
    dates, valid = birth_dates(frame["dob"].to_numpy())
    age = ages(dates, taken)
    gender = frame["gender"].to_numpy(float)
    failing = [
        ~np.isfinite(face),
        ~(face >= params.min_face_score),
        np.isfinite(second) if params.single_face else np.zeros(len(frame), bool),
        ~np.isin(gender, (0.0, 1.0)),
        ~taken_ok,
        ~valid | (_years(dates) > taken),
        (age < params.age_min) | (age > params.age_max),
    ]
    reasons = np.select(failing, REASONS[:-1], default="").astype(f"<U{max(map(len, REASONS))}")
    if images is not None:  # the last rule: only entries that passed the others are looked up
        passed = np.flatnonzero(reasons == "")
        absent = ~frame["full_path"].iloc[passed].isin(images).to_numpy()
        reasons[passed[absent]] = "missing_image"
    return reasons


def clean(frame: pd.DataFrame, params: CleanWiki, images: set[str] | None = None,
          where: str = "the shards' index") -> tuple[pd.DataFrame, dict]:
    """Apply the standard cleaning; return the kept entries and the counts of kept and dropped.

    Rules, tried in the order of REASONS: a face was found; face_score >= min_face_score; no second
    face (when single_face); gender known; photo_taken a year from EARLIEST_BIRTH_YEAR on; a
    possible birth date (year >= EARLIEST_BIRTH_YEAR, not after photo_taken); age_min <= age <=
    age_max; the image is among `images`, the names the raw folder holds (the members of its tar
    shards, dareg.shards.read_index; skipped when None; missing_images "error" raises instead of
    dropping, naming `where`). Each dropped entry counts once, under the first rule it fails,
    so kept + dropped = entries.
    """
    reasons = drop_reasons(frame, params, images)
    missing = reasons == "missing_image"
    if params.missing_images == "error" and missing.any():
        first = frame["full_path"].to_numpy()[missing][0]
        raise DataError(f"{where}: {missing.sum()} images missing, e.g. {first!r}; fetch the "
                        "data again, or set clean_wiki.missing_images: drop")
    gender = frame["gender"].map({0.0: "female", 1.0: "male"}).fillna("unknown").to_numpy()
    kept = _kept_table(frame[reasons == ""])
    return kept, _counts(reasons, gender)


def _kept_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The output columns (KEPT_COLUMNS, and celeb_id for imdb.mat) of entries that passed."""
    dates, _ = birth_dates(frame["dob"].to_numpy())
    person = {"celeb_id": frame["celeb_id"].to_numpy(np.int64)} if "celeb_id" in frame else {}
    return pd.DataFrame({
        "path": frame["full_path"].to_numpy(),
        "name": frame["name"].to_numpy(),
        "gender": np.where(frame["gender"].to_numpy() == 0.0, "female", "male"),
        "age": ages(dates, frame["photo_taken"].to_numpy()),
        "dob": np.datetime_as_string(dates, unit="D"),
        "photo_taken": frame["photo_taken"].to_numpy(np.int64),
        "face_score": frame["face_score"].to_numpy(float),
        **person,
    }, columns=KEPT_COLUMNS + list(person))


def _counts(reasons: np.ndarray, gender: np.ndarray) -> dict:
    """Entries, kept by gender, dropped by reason and dropped by gender and reason."""
    table = pd.crosstab(pd.Series(reasons, name="reason"), pd.Series(gender, name="gender"))
    table = table.reindex(index=("",) + REASONS, columns=("female", "male", "unknown"),
                          fill_value=0)
    kept = {g: int(table.at["", g]) for g in ("female", "male")}
    dropped = table.drop(index="")
    return {
        "entries": int(len(reasons)),
        "kept": {**kept, "total": sum(kept.values())},
        "dropped": {r: int(n) for r, n in dropped.sum(axis=1).items()},
        "dropped_by_gender": {g: {r: int(n) for r, n in dropped[g].items()} for g in dropped},
    }
