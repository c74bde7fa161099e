"""Evaluation metrics: age scores, bootstrap intervals, paired comparisons, the alignment
diagnostic, and what the evaluate stage writes."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

from dareg import evaluate


def test_cumulative_score_counts_errors_within_five_years():
    truth = np.array([20.0, 30.0, 40.0, 50.0])
    assert evaluate.cumulative_score(truth, truth + [0.0, 5.0, -5.5, 12.0], 5.0) == 0.5


def test_mae_by_decade_groups_by_true_age_and_skips_empty_decades():
    truth = np.array([21.0, 29.0, 45.0, 47.0])
    pred = np.array([23.0, 25.0, 45.0, 41.0])
    assert evaluate.mae_by_decade(truth, pred) == {"20-29": {"n": 2, "mae": 3.0},
                                                   "40-49": {"n": 2, "mae": 3.0}}


def test_bootstrap_spearman_matches_scipy_on_each_resample():
    """The vectorized rank correlation equals scipy's spearmanr resample by resample, ties included."""
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 10, 40).astype(float)  # many ties
    pred = truth + rng.normal(0, 3, 40)
    idx = evaluate.bootstrap_indices(40, 5, seed=3)
    fast = evaluate._row_pearson(stats.rankdata(truth[idx], axis=1), stats.rankdata(pred[idx], axis=1))
    slow = [stats.spearmanr(truth[i], pred[i])[0] for i in idx]
    np.testing.assert_allclose(fast, slow, rtol=1e-10)


def test_bootstrap_ci_is_seeded_holds_the_estimate_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 80, 2000)
    pred = truth + rng.normal(0, 5, 2000)
    small = evaluate.bootstrap_ci(truth[:100], pred[:100], 1000, seed=0)
    assert small == evaluate.bootstrap_ci(truth[:100], pred[:100], 1000, seed=0)
    mae = np.mean(np.abs(pred[:100] - truth[:100]))
    assert small["mae"]["low"] < mae < small["mae"]["high"]
    large = evaluate.bootstrap_ci(truth, pred, 1000, seed=0)
    width = {k: c["mae"]["high"] - c["mae"]["low"] for k, c in (("s", small), ("l", large))}
    assert width["l"] < width["s"] / 2
    assert 0.9 < large["spearman"]["low"] < large["spearman"]["high"] < 1.0


def test_paired_difference_sees_a_real_gap_and_not_a_tie():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 80, 300)
    good, bad = truth + rng.normal(0, 2, 300), truth + rng.normal(0, 8, 300)
    gap = evaluate.paired_mae_difference(truth, good, bad, 2000, seed=0)
    assert gap["difference"] < 0 and gap["ci"]["high"] < 0 and gap["beyond_noise"]
    other = truth + rng.normal(0, 2, 300)  # same skill, other noise
    tie = evaluate.paired_mae_difference(truth, good, other, 2000, seed=0)
    assert tie["ci"]["low"] < 0 < tie["ci"]["high"] and not tie["beyond_noise"]


def test_alignment_mmd_grows_with_a_shift_and_respects_the_sample_cap():
    gen = torch.Generator().manual_seed(0)
    f_s, f_t = torch.randn(400, 8, generator=gen), torch.randn(300, 8, generator=gen)
    same = evaluate.alignment_mmd(f_s, f_t, max_samples=200, seed=0)
    shifted = evaluate.alignment_mmd(f_s, f_t + 1.0, max_samples=200, seed=0)
    assert abs(same["mmd"]) < 0.01 < shifted["mmd"]
    assert same["n_source"] == same["n_target"] == 200
    assert same == evaluate.alignment_mmd(f_s, f_t, max_samples=200, seed=0)


def test_provenance_names_versions_and_no_commit_outside_git(tmp_path):
    info = evaluate.provenance(tmp_path, seed=7)
    assert info["git_commit"] is None and info["seed"] == 7
    assert info["torch"] == torch.__version__ and info["dvc"][0].isdigit()


@pytest.mark.pipeline
def test_evaluate_stage_writes_intervals_baseline_alignment_and_provenance(pipeline):
    """Every metrics file carries the point estimates inside their intervals, the baseline,
    the alignment diagnostic and the commit it was made at; age adds CS(5) and decades."""
    for task in ("age", "popularity"):
        for regime in ("no_source", "no_da", "da"):
            m = json.loads((pipeline / "metrics" / task / f"{regime}.json").read_text())
            assert m["ci95"]["mae"]["low"] <= m["mae"] <= m["ci95"]["mae"]["high"]
            assert m["normalized"]["n"] == m["n"] and m["baseline_train_mean"]["mae"] > 0
            assert np.isfinite(m["alignment"]["mmd"]) and m["alignment"]["bandwidth"] > 0
            assert len(m["git_commit"]) == 40 and m["seed"] == 0
            assert ("cs5" in m) == (task == "age") and ("mae_by_decade" in m) == (task == "age")
    age = json.loads((pipeline / "metrics" / "age" / "da.json").read_text())
    assert sum(d["n"] for d in age["mae_by_decade"].values()) == age["n"]
