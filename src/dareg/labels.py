"""Label normalization per task: age / divisor; log upvotes (Reddit); log views per day (Flickr);
dSprites' latents scaled to [0, 1].

Output rows: domain (source|target), image (its name under the raw folder, from the repository
root), shard, offset and size (where its bytes lie: dareg.shards), sha256 (the image's content:
what makes the image cache rebuild when an image changes), group (what must not straddle two
splits: a person, a Reddit post, a Flickr owner), raw (years, upvotes, views), label.
A task with several factors (dsprites) has a column label_<factor> for each instead of `label`,
and the columns its image cache renders from (DSPRITES_RENDER) instead of shard, offset, size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dareg import dsprites
from dareg.columns import DSPRITES_RENDER
from dareg.errors import DataError
from dareg.params import AgeLabels, DspritesLabels, Labels, PopularityLabels

SECONDS_PER_DAY = 86400.0


def require_columns(frame: pd.DataFrame, columns: list[str], origin: str) -> None:
    """Fail with the missing column's name and the file it should be in."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{origin}: column {missing[0]!r} missing; expected at least {columns} "
                        f"(rerun the stage that writes this file)")


def require_finite(labels: np.ndarray, ids: pd.Series, origin: str, key: str, raw: str) -> None:
    """A DataError naming the first row of `origin` (by its `key`, from `ids`) whose label is not
    finite, and the `raw` columns its label came from."""
    bad = np.flatnonzero(~np.isfinite(labels))
    if len(bad):
        raise DataError(f"{origin}: {key} {ids.iloc[bad[0]]} gives label {labels[bad[0]]} from "
                        f"{raw} (one of {len(bad)} rows); fix or drop those rows and rerun dvc "
                        f"repro")


def numbers(column: pd.Series) -> np.ndarray:
    """A column as floats; text that is not a number becomes NaN (require_finite names it)."""
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


SHARD_COLUMNS = ["shard", "offset", "size", "sha256"]  # where each image's bytes are (dareg.shards)


def image_columns(frame: pd.DataFrame, root: Path, name: str) -> dict:
    """image (its name under the raw folder, as if the shards were extracted), and its shard
    (from the repository root), offset, size and sha256: what the cache stage reads."""
    return {"image": [str(root / p) for p in frame[name]],
            "shard": [str(root / s) for s in frame["shard"]],
            "offset": frame["offset"].astype("int64"), "size": frame["size"].astype("int64"),
            "sha256": frame["sha256"]}


def age_labels(female: pd.DataFrame, male: pd.DataFrame, image_root: Path,
               params: AgeLabels) -> pd.DataFrame:
    """Source = female faces, target = male faces; label = age / divisor; group = the person:
    IMDb's celebrity id where the table has one (imdb.mat), else the name (wiki.mat has no id)."""
    parts = []
    for domain, frame in (("source", female), ("target", male)):
        require_columns(frame, ["path", *SHARD_COLUMNS, "age", "name"], f"clean wiki ({domain})")
        age = numbers(frame["age"])
        require_finite(age / params.divisor, frame["path"], f"clean wiki ({domain})", "path", "age")
        parts.append(pd.DataFrame({
            "domain": domain,
            **image_columns(frame, image_root, "path"),
            "group": (f"celeb:{i}" for i in frame["celeb_id"]) if "celeb_id" in frame
                     else "person:" + frame["name"].fillna("").astype(str),
            "raw": age,
            "label": age / params.divisor,
        }))
    return pd.concat(parts, ignore_index=True)


def reddit_label(score: pd.Series, transform: str) -> np.ndarray:
    """ln(1 + s) or log2(1 + s) of upvotes s, with negative scores clipped to 0."""
    clipped = np.clip(numbers(score), 0.0, None)
    return np.log1p(clipped) if transform == "log1p" else np.log2(1.0 + clipped)


def days_online(date_upload: pd.Series, scraped_at: pd.Series) -> np.ndarray:
    """Days between upload (unix seconds) and the scrape (ISO 8601), at least one day."""
    epoch = pd.Timestamp(0, tz="UTC")
    scraped = pd.to_datetime(scraped_at, utc=True, errors="coerce", format="ISO8601")
    seconds = (scraped - epoch).dt.total_seconds().to_numpy()  # any resolution; NaN if unreadable
    days = (seconds - numbers(date_upload)) / SECONDS_PER_DAY
    return np.where(np.isnan(days), np.nan, np.maximum(days, 1.0))


def flickr_label(photos: pd.DataFrame, transform: str) -> np.ndarray:
    """Khosla et al. 2014: log2(views / days_online + 1); or plain ln(1 + views)."""
    views = numbers(photos["views"])
    if transform == "log1p":
        return np.log1p(views)
    return np.log2(views / days_online(photos["date_upload"], photos["scraped_at"]) + 1.0)


def popularity_labels(posts: pd.DataFrame, photos: pd.DataFrame, reddit_root: Path,
                      flickr_root: Path, params: PopularityLabels) -> pd.DataFrame:
    """Source = Reddit (upvotes), target = Flickr (views per day); group = post id or owner."""
    require_columns(posts, ["id", "score", "file", *SHARD_COLUMNS], "posts.csv")
    require_columns(photos, ["id", "owner", "views", "date_upload", "scraped_at", "file",
                             *SHARD_COLUMNS], "photos.csv")
    source = pd.DataFrame({
        "domain": "source",
        **image_columns(posts, reddit_root, "file"),
        "group": "post:" + posts["id"].astype(str),
        "raw": numbers(posts["score"]),
        "label": reddit_label(posts["score"], params.reddit_transform),
    })
    target = pd.DataFrame({
        "domain": "target",
        **image_columns(photos, flickr_root, "file"),
        "group": "owner:" + photos["owner"].astype(str),
        "raw": numbers(photos["views"]),
        "label": flickr_label(photos, params.flickr_transform),
    })
    require_finite(source["label"].to_numpy(), posts["id"], "posts.csv", "id", "score")
    require_finite(target["label"].to_numpy(), photos["id"], "photos.csv", "id",
                   "views, date_upload and scraped_at")
    return pd.concat([source, target], ignore_index=True)


def dsprites_labels(source: pd.DataFrame, target: pd.DataFrame, root: Path,
                    params: DspritesLabels) -> pd.DataFrame:
    """Source and target draws of fetch_dsprites; label_<factor> = the latent scaled to [0, 1]
    as the official lists scale it (dareg.dsprites.factor_values); group = the domain and sprite
    index (each domain's draw lists an index once); image names the rendering for messages."""
    parts = []
    for domain, frame in (("source", source), ("target", target)):
        origin = f"{root / domain}.csv"
        require_columns(frame, ["sprite", *dsprites.LATENTS, "official_test", *DSPRITES_RENDER], origin)
        values = dsprites.factor_values(frame[list(dsprites.LATENTS)].to_numpy(), params.factors)
        parts.append(pd.DataFrame({
            "domain": domain,
            "image": [f"{root}/{style}/{sprite}" for style, sprite in zip(frame["style"], frame["sprite"])],
            "group": [f"{domain}:{sprite}" for sprite in frame["sprite"]],
            "sprite": frame["sprite"], "official_test": frame["official_test"].astype(bool),
            **{c: [str(root / v) for v in frame[c]] if c in ("sprites", "painting") else frame[c]
               for c in DSPRITES_RENDER},
            **{f"label_{f}": values[:, i] for i, f in enumerate(params.factors)},
        }))
    return pd.concat(parts, ignore_index=True)


def units(task: str, params: Labels) -> dict:
    """How a label converts to the unit metrics are reported in (years for age), and the names of
    the factors where a label has several."""
    if task == "age":
        return {"unit": "years", "per_label": params.age.divisor}
    if task == "dsprites":
        return {"unit": "[0, 1]", "per_label": 1.0, "factors": list(params.dsprites.factors)}
    return {"unit": "log popularity", "per_label": 1.0}
