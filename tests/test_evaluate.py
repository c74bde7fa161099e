"""Evaluation metrics: age scores, bootstrap intervals, paired comparisons, the alignment
diagnostic, and what the evaluate stage writes."""
import json

import numpy as np
import pytest
import torch
from scipy import stats

from dareg import checkpoint, evaluate
from dareg.errors import DataError


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
    info = evaluate.provenance(tmp_path, seeds=[7, 8])
    assert info["git_commit"] is None and info["seed"] == 7 and info["seeds"] == [7, 8]
    assert info["torch"] == torch.__version__ and info["dvc"][0].isdigit()
    assert info["device"] == "cpu" and info["train_devices"] == []
    gpu = evaluate.provenance(tmp_path, [0], "cuda (NVIDIA H200)", ["cuda (NVIDIA H200)", "cpu"])
    assert gpu["device"] == "cuda (NVIDIA H200)" and gpu["train_devices"] == ["cpu", "cuda (NVIDIA H200)"]


def test_provenance_without_dvc_installed_says_null(tmp_path, monkeypatch):
    """The GPU check runs the evaluate stage where DVC is not installed."""
    def missing(name):
        raise evaluate.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(evaluate.metadata, "version", missing)
    assert evaluate.provenance(tmp_path, [0])["dvc"] is None


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
            assert len(m["git_commit"]) == 40 and m["seed"] == 0 and m["seeds"] == [0, 1]
            assert m["device"] == "cpu" and m["train_devices"] == ["cpu"]  # where it was made
            assert [s["seed"] for s in m["per_seed"]] == [0, 1] and len(m["best_epochs"]) == 2
            maes = [s["mae"] for s in m["per_seed"]]
            assert m["mae"] == pytest.approx(np.mean(maes))
            assert m["seed_spread"]["mae"]["std"] == pytest.approx(np.std(maes, ddof=1))
            assert ("cs5" in m) == (task == "age") and ("mae_by_decade" in m) == (task == "age")
    age = json.loads((pipeline / "metrics" / "age" / "da.json").read_text())
    assert sum(d["n"] for d in age["mae_by_decade"].values()) == age["n"]


def test_one_seed_as_a_row_gives_the_same_intervals_as_a_vector():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 80, 200)
    pred, other = truth + rng.normal(0, 5, 200), truth + rng.normal(0, 3, 200)
    assert evaluate.bootstrap_ci(truth, pred[None], 500, 0) == evaluate.bootstrap_ci(truth, pred, 500, 0)
    row = evaluate.paired_mae_difference(truth, pred[None], other[None], 500, 0)
    flat = evaluate.paired_mae_difference(truth, pred, other, 500, 0)
    assert row["ci"] == pytest.approx(flat["ci"]) and row["difference"] == pytest.approx(flat["difference"])


def test_paired_difference_counts_the_spread_between_seeds_as_noise():
    """Seeds of `a` that score 1 and 6 years against `b` at 3.5: no verdict, and a wide interval,
    although images alone would make the seed-mean gap look small and tight."""
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 80, 400)
    a = np.stack([truth + rng.choice([-1.0, 1.0], 400), truth + rng.choice([-6.0, 6.0], 400)])
    b = np.stack([truth + rng.choice([-3.5, 3.5], 400)] * 2)
    gap = evaluate.paired_mae_difference(truth, a, b, 2000, seed=0)
    assert gap["difference"] == pytest.approx(0.0) and not gap["beyond_noise"]
    assert gap["ci"]["low"] < -2 and gap["ci"]["high"] > 2  # about the seeds' -2.5 and +2.5


def test_seed_spread_and_mean_over_seeds():
    assert evaluate.seed_spread([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert evaluate.seed_spread([4.0])["std"] == 0.0 and evaluate.seed_spread([0.5, None]) is None
    seeds = [{"mae": 2.0, "n": 10, "spearman": None, "by": {"20-29": {"n": 4, "mae": 1.0}}},
             {"mae": 4.0, "n": 10, "spearman": 0.5, "by": {"20-29": {"n": 4, "mae": 3.0},
                                                          "30-39": {"n": 6, "mae": 5.0}}}]
    assert evaluate.mean_over_seeds(seeds) == {
        "mae": 3.0, "n": 10, "spearman": None,
        "by": {"20-29": {"n": 4, "mae": 2.0}, "30-39": {"n": 6, "mae": 5.0}}}


def test_seed_files_come_in_seed_order_and_a_folder_without_any_is_refused(tmp_path):
    for name in ("seed-10.pt", "seed-2.pt", "seed-x.pt", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in checkpoint.seed_files(tmp_path)] == ["seed-2.pt", "seed-10.pt"]
    with pytest.raises(DataError, match="no seed-<n>.pt checkpoints; run `dvc repro`"):
        checkpoint.seed_files(tmp_path / "missing")


def test_seeds_trained_on_other_labels_or_for_another_regime_are_not_pooled(tmp_path):
    scaling = {"unit": "years", "per_label": 101}
    runs = [{"task": "age", "regime": "da", "scaling": scaling} for _ in range(2)]
    paths = [tmp_path / "seed-0.pt", tmp_path / "seed-1.pt"]
    checkpoint.same_origin(runs, paths, scaling, tmp_path / "scaling.json")
    with pytest.raises(DataError, match="seed-1.pt: trained on labels scaled otherwise"):
        checkpoint.same_origin([runs[0], {**runs[1], "scaling": {}}], paths, scaling, tmp_path)
    with pytest.raises(DataError, match="seed-1.pt: trained for age/no_da, unlike"):
        checkpoint.same_origin([runs[0], {**runs[1], "regime": "no_da"}], paths, scaling, tmp_path)
