"""Synthetic IMDB-WIKI: a `wiki.mat` and face crops laid out as `wiki_crop` ships them.

Not a model of real faces: a cartoon whose wrinkles, eye bags and grey strands grow with age while
its mean brightness does not (those marks are zero-mean textures; lighting and skin tone vary at
random), and whose face shape, hair and background differ by gender, so that female -> male is a
real domain shift. The metadata carries IMDB-WIKI's dirt (no face, second faces, unknown gender,
impossible birth dates, ages over 100) at rates that leave most entries after the standard cleaning.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np
import scipy.io
from PIL import Image

from dareg.io import atomic_path, write_bytes

DATENUM_1970 = 719529  # MATLAB datenum of 1970-01-01
SIDE = 96
TAR_MTIME = 1451606400  # 2016-01-01, the year wiki_crop was published
DIRT = {  # share of entries given each defect (disjoint); the rest are clean
    "no_face": 0.05, "low_face_score": 0.035, "second_face": 0.035, "unknown_gender": 0.02,
    "dob_year_1": 0.008, "dob_after_photo": 0.008, "age_over_100": 0.006}
FIRST = {True: ["Anna", "Zoë", "María José", "Chloé", "Ingrid", "Małgorzata", "Søs", "Yuki",
                "Amélie", "Nadia", "Łucja", "Björg", "Olga", "Grace", "Fatoş", "Lena"],
         False: ["José", "Björn", "Łukasz", "François", "Søren", "Jürgen", "Ahmed", "Kenji",
                 "Ivan", "Peter", "Ömer", "John", "Marek", "Raúl", "Ólafur", "Tom"]}
LAST = ["Müller", "García", "Nørgaard", "Smith", "Kowalczyk", "Dvořák", "Öztürk", "Ivanov",
        "Jauhojärvi", "Tanaka", "Brown", "Lefèvre", "Ngata", "Silva", "Þórsson", "Rossi", "Kim"]
SKIN = np.array([[235, 200, 175], [222, 182, 150], [200, 155, 120], [170, 122, 90],
                 [130, 90, 65], [96, 66, 46]], np.float32)
HAIR = {True: np.array([[215, 185, 120], [160, 85, 50], [115, 75, 45], [45, 35, 30]], np.float32),
        False: np.array([[95, 65, 40], [35, 30, 28], [70, 50, 35], [185, 155, 105]], np.float32)}
BACKGROUND = {True: np.array([[225, 175, 190], [230, 195, 160], [200, 170, 215]], np.float32),
              False: np.array([[150, 180, 215], [145, 170, 155], [170, 175, 190]], np.float32)}
_Y, _X = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)


def _datenum(year: np.ndarray, day_of_year: np.ndarray) -> np.ndarray:
    """MATLAB serial date of day `day_of_year` (0-based) of `year`, vectorized."""
    jan1 = (np.asarray(year) - 1970).astype("datetime64[Y]").astype("datetime64[D]")
    return (jan1.astype(np.int64) + DATENUM_1970 + day_of_year).astype(np.float64)


def _people(n: int, rng: np.random.Generator) -> np.ndarray:
    """Person index of each entry: most people have one photo, some two to four."""
    photos = rng.choice([1, 2, 3, 4], size=n, p=[0.6, 0.25, 0.1, 0.05])
    return np.repeat(np.arange(n), photos)[:n]


def _metadata(n: int, rng: np.random.Generator) -> tuple[dict, dict]:
    """The wiki struct's fields as 1-D arrays, and the true look of each entry for drawing."""
    person = _people(n, rng)
    is_woman = rng.random(n) < 0.38  # per person, as are the draws indexed by `person` below
    female = is_woman[person]
    age0 = np.where(is_woman, rng.gamma(2.2, 9.2, n), rng.gamma(2.6, 9.6, n))[person] + 15
    year0 = rng.integers(1998, 2015, n)[person]
    first = np.r_[True, person[1:] != person[:-1]]
    taken = np.minimum(year0 + np.where(first, 0, rng.integers(-7, 8, n)), 2015)
    birth_year, day = year0 - np.round(age0).astype(int), rng.integers(0, 365, n)[person]
    age = taken - birth_year - (day >= 181)  # day 181 of a common year is 1 July
    dirt = rng.choice(len(DIRT) + 1, size=n, p=[1 - sum(DIRT.values()), *DIRT.values()])
    is_dirt = {name: dirt == i + 1 for i, name in enumerate(DIRT)}
    dob = _datenum(birth_year, day)
    dob[is_dirt["dob_year_1"]] = rng.integers(367, 800, n)[is_dirt["dob_year_1"]]
    after = taken + rng.integers(1, 15, n)
    dob = np.where(is_dirt["dob_after_photo"], _datenum(after, day), dob)
    dob = np.where(is_dirt["age_over_100"], _datenum(taken - rng.integers(102, 140, n), day), dob)
    face_score, second = _scores(is_dirt, rng)
    gender = np.where(is_dirt["unknown_gender"], np.nan, (~female).astype(np.float64))
    ids = 10000 + np.cumsum(rng.integers(1, 30000, n))
    fields = {"dob": dob, "photo_taken": taken.astype(np.uint16),
              "full_path": _full_paths(ids, dob, taken), "gender": gender,
              "name": _names(person, female, rng), "face_location": _locations(face_score, rng),
              "face_score": face_score, "second_face_score": second}
    looks = {"age": np.clip(age, 8, 90), "female": female, "face": np.isfinite(face_score),
             "skin": rng.integers(0, len(SKIN), n)[person], "hair": rng.integers(0, 4, n)[person],
             "beard": (rng.random(n) < 0.35)[person] & ~female}
    return fields, looks


def _scores(is_dirt: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """face_score (-inf: no face found) and second_face_score (NaN: none) of each entry."""
    n = len(is_dirt["no_face"])
    face_score = np.where(is_dirt["no_face"], -np.inf, 1.0 + rng.gamma(2.0, 0.9, n))
    face_score[is_dirt["low_face_score"]] = rng.uniform(0.0, 0.99, n)[is_dirt["low_face_score"]]
    return face_score, np.where(is_dirt["second_face"], rng.uniform(0.5, 3.5, n), np.nan)


def _full_paths(ids: np.ndarray, dob: np.ndarray, taken: np.ndarray) -> list[str]:
    """'NN/<id>_<dob>_<year>.jpg', NN being the id's last two digits, as in wiki_crop."""
    dates = (dob.astype(np.int64) - DATENUM_1970).astype("datetime64[D]")
    return [f"{i % 100:02d}/{i}_{d}_{t}.jpg"
            for i, d, t in zip(ids, np.datetime_as_string(dates), taken)]


def _names(person: np.ndarray, female: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One name per person (non-ASCII included); a few people have an empty name, as in wiki.mat."""
    n = len(person)
    first = rng.integers(0, 16, n)[person]
    last = rng.integers(0, len(LAST), n)[person]
    middle = np.array([""] + [f"{c}. " for c in "ABCDEFGHIJKLMNOPRSTVW"])[
        rng.integers(0, 22, n)[person]]
    empty = (rng.random(n) < 0.003)[person]
    return ["" if no_name else f"{FIRST[f][a]} {m}{LAST[b]}"
            for f, a, m, b, no_name in zip(female, first, middle, last, empty)]


def _locations(face_score: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """A 1x4 [x1 y1 x2 y2] box per entry; [1 1 1 1] where no face was found."""
    corner = rng.uniform(20, 200, (len(face_score), 2))
    boxes = np.hstack([corner, corner + rng.uniform(60, 300, (len(face_score), 1))])
    boxes[~np.isfinite(face_score)] = 1.0
    return [box[None, :] for box in boxes]


def metadata_mat(n_entries: int, seed: int, struct: str = "wiki") -> bytes:
    """The metadata file alone, as `wiki.mat` or (struct "imdb") as `imdb.mat`, which adds
    celeb_id (1-based index into celeb_names) per entry; for benchmarks at the real sizes."""
    fields, _ = _metadata(n_entries, np.random.default_rng(seed))
    if struct == "imdb":
        celeb_names, celeb_index = np.unique(fields["name"], return_inverse=True)
        fields.update(celeb_names=list(celeb_names), celeb_id=celeb_index.astype(np.float64) + 1)
    return _mat_bytes(fields, struct)


def _mat_bytes(fields: dict, struct: str = "wiki") -> bytes:
    """The struct as MATLAB 5 bytes, each field 1xN; the header is fixed (reproducible)."""
    matlab = {}
    for key, values in fields.items():
        if isinstance(values, list):
            cell = np.empty((1, len(values)), dtype=object)
            cell[0, :] = values
            matlab[key] = cell
        else:
            matlab[key] = values[None, :]
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {struct: matlab})
    header = b"MATLAB 5.0 MAT-file, written by dareg.demo.faces".ljust(116)
    return header + buffer.getvalue()[116:]


def _ellipse(cx: float, cy: float, rx: float, ry: float, power: float = 2.0) -> np.ndarray:
    """Anti-aliased mask of a superellipse |x/rx|^power + (y/ry)^2 <= 1."""
    d = np.abs((_X - cx) / rx) ** power + ((_Y - cy) / ry) ** 2
    return np.clip((1.0 - np.sqrt(d)) * (rx + ry) / 2 + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, mask: np.ndarray, rgb) -> None:
    img += mask[..., None] * (np.asarray(rgb, np.float32) - img)


def _lines(offset: np.ndarray, spacing: float, count: int) -> np.ndarray:
    """`count` thin dark lines (value -1) at `offset` = 0, spacing, ...; zero elsewhere."""
    centres = np.arange(count, dtype=np.float32)[:, None, None] * spacing
    return -np.exp(-((offset[None] - centres) ** 2) / 0.9).sum(axis=0)


def _age_marks(face: np.ndarray, cx: float, cy: float, s: float, age: float, phase: float):
    """Zero-mean texture over `face`: forehead lines, crow's feet, folds, eye bags, deepening."""
    depth = np.clip((age - 18) / 50, 0, 1)
    wave = 0.7 * np.sin(_X / 3.5 + phase)
    forehead = _lines(cy - 10 * s - _Y + wave, 3.6 * s, 4) * (np.abs(_X - cx) < 12 * s)
    eye_y = cy - 3 * s
    corner = (np.abs(np.abs(_X - cx) - 16 * s) < 3.5 * s) & (np.abs(_Y - eye_y) < 5 * s)
    slant = (_Y - eye_y) + 0.7 * (np.abs(_X - cx) - 16 * s)
    crows = _lines(slant + 4.5 * s, 3.0 * s, 3) * corner
    fold = _lines(np.abs(_X - cx) - 7 * s - 0.12 * (_Y - cy - 4 * s) ** 2 / s, 1.0, 1)
    fold *= (_Y > cy + 1 * s) & (_Y < cy + 13 * s)
    bags = _lines(_Y - eye_y - 3.2 * s - 0.04 * (np.abs(_X - cx) - 9 * s) ** 2, 1.0, 1)
    bags *= np.abs(np.abs(_X - cx) - 9 * s) < 4 * s
    marks = forehead + (crows + fold + bags) * np.clip((age - 30) / 40, 0, 1)
    marks = face * (marks - (marks * face).sum() / face.sum())
    return 80.0 * depth * marks


def _hair(img, cx, cy, s, female, rgb, age, rng) -> None:
    """Long hair falling past the shoulders (women) or a short cap (men); grey strands with age."""
    if female:
        mask = np.maximum(_ellipse(cx, cy - 4 * s, 29 * s, 32 * s),
                          _ellipse(cx, cy + 30 * s, 30 * s, 34 * s))
    else:
        mask = _ellipse(cx, cy - 6 * s, 25 * s, 26 * s) * (_Y < cy - 13 * s)
    grey = np.clip((age - 30) / 45, 0, 1)
    strands = np.sign(np.sin(_X * 1.9 + np.sin(_Y / 4) * 2 + rng.uniform(0, 6)))
    hair = rgb * (1 - 0.6 * grey) + 0.6 * grey * rgb.mean() + (55 * grey * strands)[..., None]
    img += mask[..., None] * (hair - img)


def _face(age: float, female: bool, skin, hair_rgb, beard: bool, rng) -> np.ndarray:
    """One 96x96x3 uint8 crop of a cartoon face of the given age and gender."""
    s, cx, cy = rng.uniform(0.9, 1.1), 48 + rng.normal(0, 3), 50 + rng.normal(0, 3)
    back = BACKGROUND[female][rng.integers(0, 3)] + rng.normal(0, 12, 3)
    img = np.broadcast_to(back, (SIDE, SIDE, 3)) + ((_Y - 48) * rng.uniform(-0.6, 0.6))[..., None]
    _hair(img, cx, cy, s, female, hair_rgb, age, rng)
    length = 27 * s * (0.92 + 0.08 * np.clip((age - 10) / 20, 0, 1))  # faces lengthen to ~30
    face = _ellipse(cx, cy, (19 if female else 23) * s, length, 2.0 if female else 3.0)
    _paint(img, face, skin + rng.normal(0, 8, 3))
    if beard:
        _paint(img, face * (_Y > cy + 6 * s) * 0.3, skin * 0.45)
    img += _age_marks(face, cx, cy, s, age, rng.uniform(0, 6))[..., None]
    eye_h = (2.6 if female else 2.0) * s * (1.2 - age / 200)
    for side in (-1, 1):
        _paint(img, _ellipse(cx + side * 9 * s, cy - 3 * s, 3.2 * s, eye_h), (30, 25, 25))
        _paint(img, _ellipse(cx + side * 9 * s, cy - 8 * s, 5 * s, (1.0 if female else 1.6) * s),
               hair_rgb * 0.6)
    lips = (185, 70, 80) if female else skin * 0.7
    lip_height = (2.4 if female else 1.6) * s * (1.2 - age / 250)
    _paint(img, _ellipse(cx, cy + 14 * s, 7 * s, lip_height), lips)
    img = img * rng.uniform(0.75, 1.2) * (1 + (_X - 48) / 96 * rng.uniform(-0.4, 0.4))[..., None]
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _no_face(rng: np.random.Generator) -> np.ndarray:
    """A crop where the detector found no face: a few blobs on a plain ground."""
    img = np.broadcast_to(rng.uniform(40, 220, 3), (SIDE, SIDE, 3)).astype(np.float32)
    for _ in range(4):
        blob = _ellipse(*rng.uniform(0, SIDE, 2), *rng.uniform(8, 30, 2))
        _paint(img, blob, rng.uniform(0, 255, 3))
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def wiki_files(n_entries: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """Yield (path inside wiki_crop, bytes): `wiki.mat` first, then one JPEG per entry."""
    rng = np.random.default_rng(seed)
    fields, looks = _metadata(n_entries, rng)
    yield "wiki.mat", _mat_bytes(fields)
    for i, path in enumerate(fields["full_path"]):
        female = bool(looks["female"][i])
        if looks["face"][i]:
            pixels = _face(float(looks["age"][i]), female, SKIN[looks["skin"][i]],
                           HAIR[female][looks["hair"][i]], bool(looks["beard"][i]), rng)
        else:
            pixels = _no_face(rng)
        yield path, _jpeg(pixels)


def write_wiki_crop(folder: Path, n_entries: int, seed: int) -> None:
    """Write `folder/wiki.mat` and `folder/NN/<file>.jpg`, the layout of IMDB-WIKI's wiki_crop."""
    for path, data in wiki_files(n_entries, seed):
        write_bytes(Path(folder) / path, data)


def write_wiki_tar(tar_path: Path, n_entries: int, seed: int) -> None:
    """Write a tarball laid out like wiki_crop.tar (top folder `wiki_crop/`), reproducibly."""
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for folder in ["wiki_crop"] + [f"wiki_crop/{i:02d}" for i in range(100)]:
            tar.addfile(_member(folder, tarfile.DIRTYPE, 0))
        for path, data in wiki_files(n_entries, seed):
            tar.addfile(_member(f"wiki_crop/{path}", tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _member(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    """A tar header with fixed owner, mode and time, so the archive's bytes are reproducible."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime = kind, size, TAR_MTIME
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info
