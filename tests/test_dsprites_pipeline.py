"""The dsprites task end to end: profiles/dsprites.yaml at toy sizes, `dvc repro summary@dsprites`
offline from `generate`, every regime through the same stages as the photo tasks."""
import json

import pandas as pd
import pytest
import yaml

from conftest import can_isolate_network, copy_project, run, set_params

pytestmark = pytest.mark.pipeline
FACTORS = ["scale", "x", "y"]


@pytest.fixture(scope="module")
def dsprites(tmp_path_factory):
    """The benchmark's profile with its painting generated and every size shrunk to a few steps."""
    repo = copy_project(tmp_path_factory.mktemp("dsprites"), "dsprites")
    set_params(repo / "params.yaml", {
        "dsprites.painting": "generate", "dsprites.source_images": 60, "dsprites.target_images": 70,
        "split.dsprites.source": 40, "split.dsprites.target_train": 24, "split.dsprites.target_val": 8,
        "split.dsprites.target_unlabeled": 24, "split.dsprites.target_test": 30,
        "model.width": 0.25, "train.epochs": 2, "train.steps_per_epoch": 3, "train.repeats": 2,
        "evaluate.bootstrap_samples": 200})
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qam", "toy"], repo)
    result = run("dvc repro summary@dsprites", repo, offline=can_isolate_network())
    (repo / "repro.log").write_text(result.stdout + result.stderr)
    return repo


def regimes(repo) -> list[str]:
    return yaml.safe_load((repo / "params.yaml").read_text())["run"]["regimes"]


def test_every_regime_trains_and_evaluates_on_dsprites_alone(dsprites):
    """The dsprites stages run, the photo tasks' do not (the profile lists dsprites alone)."""
    log = (dsprites / "repro.log").read_text()
    assert set(regimes(dsprites)) == {"source_only", "da", "da_coral", "da_rsd", "da_daregram",
                                      "da_dann", "da_adabn", "da_dd", "oracle"}
    for regime in regimes(dsprites):
        assert f"Running stage 'train@dsprites-{regime}'" in log
    for stage in ("fetch_dsprites", "labels@dsprites", "split@dsprites", "cache@dsprites"):
        assert f"Running stage '{stage}'" in log
    assert "fetch_wiki" not in log and "train@age" not in log


def test_metrics_hold_each_factor_their_mean_their_sum_and_the_last_epoch(dsprites):
    for regime in regimes(dsprites):
        m = json.loads((dsprites / "metrics" / "dsprites" / f"{regime}.json").read_text())
        assert m["factors"] == FACTORS and m["n"] == 30
        assert m["mae"] == pytest.approx(sum(m[f]["mae"] for f in FACTORS) / 3)
        assert m["mae_sum"] == pytest.approx(sum(m[f]["mae"] for f in FACTORS))
        assert [s["seed"] for s in m["per_seed"]] == [0, 1]
        assert all(s["val_mae"] >= 0 and s["last_epoch"]["epoch"] == 2 for s in m["per_seed"])
        assert m["last_epoch"]["epochs"] == [2, 2] and m["last_epoch"]["mae"] >= 0
        assert m["baseline_train_mean"]["mae_sum"] == pytest.approx(3 * m["baseline_train_mean"]["mae"])


def test_predictions_share_one_image_order_for_every_regime_seed_and_factor(dsprites):
    frames = {r: pd.read_csv(dsprites / "metrics" / "dsprites" / "predictions" / f"{r}.csv")
              for r in regimes(dsprites)}
    first = frames["source_only"]
    assert list(first.columns) == ["seed", "factor", "actual", "predicted"]
    assert len(first) == 2 * 3 * 30 and first["factor"].unique().tolist() == FACTORS
    for frame in frames.values():
        assert frame[["seed", "factor", "actual"]].equals(first[["seed", "factor", "actual"]])


def test_the_report_compares_with_source_only_and_plots_each_factor(dsprites):
    report = (dsprites / "metrics" / "reports" / "dsprites.md").read_text()
    assert "| MAE scale | MAE x | MAE y | MAE sum | last epoch: MAE |" in report
    assert "| da_dd - source_only (control) |" in report and "| oracle - source_only (reference) |" in report
    for factor in FACTORS:
        assert (dsprites / "metrics" / "plots" / "dsprites" / f"predicted_vs_true_{factor}.png").exists()
    assert (dsprites / "metrics" / "plots" / "dsprites" / "error_per_factor.png").exists()


def test_unsupervised_regimes_never_draw_a_target_label(dsprites):
    """The papers' protocol: the adaptation regimes and their control draw source labels and
    unlabeled target images; the oracle alone draws target labels."""
    params = yaml.safe_load((dsprites / "params.yaml").read_text())
    for name in regimes(dsprites):
        batch = params["regimes"][name]["batch"]
        assert ("target_labeled" in batch) == (name == "oracle"), name


def test_predict_gives_each_factor_as_evaluate_does(dsprites, tmp_path):
    """The test split's images saved as PNGs (the cache's pixels, lossless): the prediction
    command writes predicted_scale, predicted_x, predicted_y equal to evaluate's."""
    import numpy as np
    from PIL import Image

    images = np.load(dsprites / "data" / "cache" / "dsprites" / "target_test.npy")[:5]
    files = []
    for i, image in enumerate(images):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(files[-1])
    out = tmp_path / "predictions.csv"
    run(["python", "-m", "dareg.predict", str(dsprites / "models/dsprites/oracle/seed-0.pt"), *files,
         "--out", str(out)], dsprites)
    table = pd.read_csv(out)
    expected = pd.read_csv(dsprites / "metrics/dsprites/predictions/oracle.csv").query("seed == 0")
    for factor in FACTORS:
        want = expected[expected["factor"] == factor]["predicted"].to_numpy()[:5]
        np.testing.assert_allclose(table[f"predicted_{factor}"], want, atol=2e-3)
