"""Grouped splits (no person, post or owner in two splits) and per-domain label scaling.

Splits: source; target_train and target_val (carved from the target labeled part); target_unlabeled
(no label column); target_test (drawn like the others, or dSprites' official test images). Scaling
into the sigmoid's range is fitted after the split, on each domain's training labels only.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from dareg.errors import DataError
from dareg.columns import label_columns
from dareg.params import DspritesSplitSizes, SplitSizes

SPLITS = ("source", "target_train", "target_val", "target_unlabeled", "target_test")
# minmax maps the training range onto [LOW, HIGH], leaving room for test labels beyond it.
LOW, HIGH = 0.1, 0.9


def take_groups(frame: pd.DataFrame, count: int, order: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Take whole groups in `order` until `count` rows; the last group is cut, never shared.

    Returns the rows taken and the groups not yet used.
    """
    if count == 0:
        return frame.iloc[:0], order
    sizes = frame.groupby("group", sort=False).size().reindex(order)
    reached = int(np.searchsorted(sizes.cumsum().to_numpy(), count)) + 1
    chosen, rest = order[:reached], order[reached:]
    rows = frame[frame["group"].isin(chosen)]
    rows = rows.set_index("group").loc[chosen].reset_index()  # group order, then file order
    if len(rows) < count:
        raise DataError(f"split: {count} rows wanted but only {len(rows)} remain in whole groups "
                        f"(rows cut from a group are never reused); lower the counts in params.yaml")
    return rows.iloc[:count][frame.columns], rest


def shuffled_groups(frame: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    groups = frame["group"].drop_duplicates().sort_values().tolist()
    return [groups[i] for i in rng.permutation(len(groups))]


def check_counts(available: int, wanted: dict[str, int], domain: str, task: str) -> None:
    if sum(wanted.values()) > available:
        asked = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise DataError(f"split.{task}: asked for {asked} (total {sum(wanted.values())}) but only "
                        f"{available} {domain} images exist; lower these counts in params.yaml")


def official_test(target: pd.DataFrame, task: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows flagged official_test, the rest): the test split the papers use."""
    if "official_test" not in target:
        raise DataError(f"split.{task}.target_test: official needs the official_test column that "
                        f"dsprites' labels carry; give a count instead")
    flagged = target["official_test"].astype(bool)
    return target[flagged], target[~flagged]


def split(labels: pd.DataFrame, sizes: SplitSizes | DspritesSplitSizes, val_fraction: float,
          seed: int, task: str) -> dict[str, pd.DataFrame]:
    """Draw every split from `labels` (domain, image, group, raw, label or label_<factor>) by
    whole groups."""
    rng = np.random.default_rng(seed)
    source = labels[labels["domain"] == "source"]
    target = labels[labels["domain"] == "target"]
    counts = sizes.counts(val_fraction)
    check_counts(len(source), {"source": sizes.source}, "source", task)
    out = {"source": take_groups(source, sizes.source, shuffled_groups(source, rng))[0]}
    wanted = {"target_test": counts["target_test"],
              "target_labeled": counts["target_train"] + counts["target_val"],
              "target_unlabeled": counts["target_unlabeled"]}
    if wanted["target_test"] == "official":
        out["target_test"], target = official_test(target, task)
        del wanted["target_test"]
    check_counts(len(target), wanted, "target", task)
    order = shuffled_groups(target, rng)
    for name, count in wanted.items():
        out[name], order = take_groups(target, count, order)
    labeled = out.pop("target_labeled")
    n_val = counts["target_val"]
    labeled_groups = labeled["group"].drop_duplicates().tolist()  # already in shuffled order
    out["target_val"], rest = take_groups(labeled, n_val, labeled_groups)
    out["target_train"] = labeled[labeled["group"].isin(rest)]
    if not len(out["target_val"]) or not len(out["target_train"]):
        raise DataError(f"split.{task}: {len(out['target_train'])} target training and "
                        f"{len(out['target_val'])} validation images from {len(labeled)} labeled "
                        f"ones in {len(labeled_groups)} groups (a group never straddles the two); "
                        f"raise split.{task}.target_labeled or change split.val_fraction")
    hidden = [c for c in ["raw", *label_columns(labels)] if c in labels]
    out["target_unlabeled"] = out["target_unlabeled"].drop(columns=hidden)
    return {name: out[name].reset_index(drop=True) for name in SPLITS}


def fit_scaling(labels: pd.Series, kind: str) -> dict:
    """Affine map scaled = (label - offset) / scale; minmax sends the training range to [0.1, 0.9]."""
    if kind == "none":
        return {"offset": 0.0, "scale": 1.0}
    low, high = float(labels.min()), float(labels.max())
    spread = (high - low) or 1.0
    scale = spread / (HIGH - LOW)
    return {"offset": low - LOW * scale, "scale": scale}


def fit_scalings(frame: pd.DataFrame, kind: str) -> dict:
    """fit_scaling of each label column: numbers for one label, lists (a value per factor, in
    order) for several; `none` is the same for any number of factors, so it stays numbers."""
    fitted = [fit_scaling(frame[c], kind) for c in label_columns(frame)]
    if len(fitted) == 1 or kind == "none":
        return fitted[0]
    return {key: [f[key] for f in fitted] for key in ("offset", "scale")}


def scaling(splits: dict[str, pd.DataFrame], kind: str, units: dict) -> dict:
    """Per-domain scaling fitted on training labels only (source; target_train), plus units."""
    return {
        "source": fit_scalings(splits["source"], kind),
        "target": fit_scalings(splits["target_train"], kind),
        **units,
    }
