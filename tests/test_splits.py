"""Grouped splits: exact sizes, no group in two splits, no label on unlabeled data, clear errors."""
import numpy as np
import pandas as pd
import pytest

from dareg import splits
from dareg.errors import DataError
from dareg.params import SplitSizes


def table(n_source=60, n_target=120, per_group=3):
    rows = []
    for domain, n in (("source", n_source), ("target", n_target)):
        for i in range(n):
            rows.append({"domain": domain, "image": f"{domain}/{i}.jpg",
                         "group": f"{domain}-g{i // per_group}", "raw": float(i), "label": i / n})
    return pd.DataFrame(rows)


SIZES = SplitSizes(source=40, target_labeled=30, target_unlabeled=25, target_test=50, scale="minmax")


def test_sizes_are_exact_and_groups_disjoint():
    parts = splits.split(table(), SIZES, val_fraction=0.2, seed=0, task="age")
    assert {k: len(v) for k, v in parts.items()} == {
        "source": 40, "target_train": 24, "target_val": 6, "target_unlabeled": 25, "target_test": 50}
    target = ["target_train", "target_val", "target_unlabeled", "target_test"]
    for a in target:
        for b in target:
            if a < b:
                assert not set(parts[a]["group"]) & set(parts[b]["group"]), (a, b)
    assert all(parts["source"]["domain"] == "source")


def test_unlabeled_split_has_no_label_column():
    parts = splits.split(table(), SIZES, 0.2, 0, "age")
    assert "label" not in parts["target_unlabeled"].columns
    assert "raw" not in parts["target_unlabeled"].columns


def test_same_seed_same_split_other_seed_other_split():
    a = splits.split(table(), SIZES, 0.2, 0, "age")
    b = splits.split(table(), SIZES, 0.2, 0, "age")
    c = splits.split(table(), SIZES, 0.2, 1, "age")
    assert a["target_test"].equals(b["target_test"])
    assert not a["target_test"]["image"].equals(c["target_test"]["image"])


def test_asking_for_more_than_exists_names_what_exists():
    big = SplitSizes(source=40, target_labeled=100, target_unlabeled=25, target_test=50, scale="none")
    with pytest.raises(DataError, match=r"split.popularity: .*total 175.*only 120 target images exist"):
        splits.split(table(), big, 0.2, 0, "popularity")


def test_minmax_scaling_is_fitted_on_training_labels_only():
    parts = splits.split(table(), SIZES, 0.2, 0, "popularity")
    scaling = splits.scaling(parts, "minmax", {"unit": "u", "per_label": 1.0})
    train = parts["target_train"]["label"]
    scaled = (train - scaling["target"]["offset"]) / scaling["target"]["scale"]
    assert scaled.min() == pytest.approx(0.1) and scaled.max() == pytest.approx(0.9)
    assert splits.fit_scaling(pd.Series([1.0, 2.0]), "none") == {"offset": 0.0, "scale": 1.0}
    assert scaling["unit"] == "u"


def test_a_group_is_never_split_even_when_cut():
    """A group cut at a split's boundary leaves its remaining rows out rather than sharing them."""
    data = table(n_source=10, n_target=40, per_group=7)
    sizes = SplitSizes(source=5, target_labeled=10, target_unlabeled=5, target_test=10, scale="none")
    parts = splits.split(data, sizes, 0.2, 3, "age")
    names = ("target_train", "target_val", "target_unlabeled", "target_test")
    groups = [set(parts[k]["group"]) for k in names]
    assert all(not (groups[i] & groups[j]) for i in range(4) for j in range(i + 1, 4))
    # target_labeled's 10 rows: 7 of one person and 3 of the next; validation takes 2 of the
    # first (cut: its other 5 are left out), training the other person's 3
    assert [len(parts[k]) for k in names] == [3, 2, 5, 10]
