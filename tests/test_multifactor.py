"""Labels with several factors (dSprites' scale, x, y): per-factor metrics, their mean (tllib's
`mae`) and sum (RSD's and DARE-GRAM's `mae_sum`), intervals and paired comparisons on each
image's mean error over the factors, and one factor giving exactly the single-label numbers."""
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dareg import evaluate, summary
from dareg.data import Split, scale_labels, unscale
from dareg.heads import SigmoidHead
from dareg.models import build_model
from dareg.params import ParamsError

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["scale", "x", "y"]


def evaluate_stage():
    """stages/evaluate.py as a module (its helpers are what the stage writes with)."""
    spec = importlib.util.spec_from_file_location("evaluate_stage", ROOT / "stages" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def three_factors(n=200, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 1, (n, 3))
    noise = np.array([0.02, 0.1, 0.3])  # scale easy, y hard
    return truth, truth + rng.normal(0, 1, (n, 3)) * noise


def test_factor_metrics_give_each_factor_their_mean_and_their_sum():
    truth, pred = three_factors()
    m = evaluate.factor_metrics(truth, pred, NAMES)
    each = [np.mean(np.abs(pred[:, k] - truth[:, k])) for k in range(3)]
    assert [m[name]["mae"] for name in NAMES] == pytest.approx(each)
    assert m["mae"] == pytest.approx(np.mean(each)) and m["mae_sum"] == pytest.approx(sum(each))
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - truth)))  # the mean of per-image means
    assert m["spearman"] == pytest.approx(np.mean([m[n]["spearman"] for n in NAMES]))
    assert m["x"]["mae"] < m["y"]["mae"] and m["n"] == 200


def test_one_factor_gives_exactly_the_single_label_metrics():
    truth, pred = three_factors()
    single = evaluate.regression_metrics(truth[:, 0], pred[:, 0])
    assert evaluate.factor_metrics(truth[:, :1], pred[:, :1], [""]) == single
    assert evaluate.bootstrap_ci(truth[:, :1], pred[:, :1], 300, 0) == \
        evaluate.bootstrap_ci(truth[:, 0], pred[:, 0], 300, 0)
    other = pred[:, 0] + 0.05
    assert evaluate.paired_mae_difference(truth[:, :1], pred[None, :, :1], other[None, :, None], 300, 0) == \
        evaluate.paired_mae_difference(truth[:, 0], pred[:, 0], other, 300, 0)


def test_intervals_and_paired_differences_use_each_images_mean_error_over_factors():
    truth, pred = three_factors(300)
    ci = evaluate.bootstrap_ci(truth, pred, 500, seed=0)
    mae = np.mean(np.abs(pred - truth))
    assert ci["mae"]["low"] < mae < ci["mae"]["high"]
    worse = pred.copy()
    worse[:, 1] += 0.2  # x alone gets worse by 0.2: the mean over factors by 0.2 / 3
    gap = evaluate.paired_mae_difference(truth, worse, pred, 500, seed=0)
    assert gap["difference"] == pytest.approx(np.mean(np.abs(worse - truth)) - mae)
    assert gap["beyond_noise"] and gap["difference"] > 0.02
    seeds = np.stack([pred, pred + 0.001])  # (seeds, n, K)
    assert evaluate.paired_mae_difference(truth, seeds, seeds, 300, 0)["difference"] == 0


def test_baseline_predicts_each_factors_training_mean():
    truth, _ = three_factors()
    train = np.array([[0.0, 0.5, 1.0], [1.0, 0.5, 0.0]])
    base = evaluate.baseline(truth, train)
    assert base["prediction"] == [0.5, 0.5, 0.5]
    assert base["mae"] == pytest.approx(np.mean(np.abs(truth - 0.5)))
    assert base["mae_sum"] == pytest.approx(3 * base["mae"])


def test_predictions_csv_lists_seed_then_factor_then_image_in_one_order():
    stage = evaluate_stage()
    truth, pred = three_factors(4)
    preds = np.stack([pred, pred + 1])
    table = stage.predictions_table([0, 1], NAMES, truth, preds)
    assert list(table.columns) == ["seed", "factor", "actual", "predicted"]
    assert table["factor"].tolist()[:8] == ["scale"] * 4 + ["x"] * 4
    first = table[(table.seed == 1) & (table.factor == "y")]
    np.testing.assert_allclose(first["actual"], truth[:, 2].round(4))
    np.testing.assert_allclose(first["predicted"], (pred[:, 2] + 1).round(4))
    back_truth, back_preds = summary.by_seed(table, "regime")  # what the summary reads back
    np.testing.assert_allclose(back_truth, truth.round(4))
    np.testing.assert_allclose(back_preds, preds.round(4))
    single = stage.predictions_table([0], [""], truth[:, 0], pred[None, :, 0])
    assert list(single.columns) == ["seed", "actual", "predicted"]


def test_labels_scale_per_factor_and_come_back():
    labels = np.array([[1.0, 10.0], [3.0, 30.0]])
    scaling = {"offset": [1.0, 10.0], "scale": [2.0, 20.0]}
    scaled = scale_labels(labels, scaling)
    np.testing.assert_allclose(scaled, [[0, 0], [1, 1]])
    np.testing.assert_allclose(unscale(scaled, scaling), labels)
    assert Split(np.zeros((2, 8, 8, 3), np.uint8), np.array([0.1, 0.2], np.float32)).labels.shape == (2, 1)


def test_the_sigmoid_head_predicts_each_factor_in_0_1(tmp_path):
    head = SigmoidHead(feature_dim=5, dropout=0.0, outputs=3)
    pred, logits = head(torch.randn(7, 5))
    assert pred.shape == (7, 3) and logits is None and bool(((pred > 0) & (pred < 1)).all())
    assert set(head.loss_terms(pred, None, torch.rand(7, 3))) == {"mse"}


def test_dex_refuses_several_factors_in_one_line():
    from dareg import params
    p = params.load(ROOT / "params.yaml")
    from dataclasses import replace
    with pytest.raises(ParamsError, match="model.head: dex predicts one label .* 3 factors; use model.head: sigmoid"):
        build_model(replace(p.model, head="dex"), 64, outputs=3)
