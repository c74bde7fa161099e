"""The training loop: regimes are data, labels stay out of unlabeled streams, runs are repeatable."""
import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dareg import checkpoint, losses, params, train
from dareg.data import Split, Stream
from dareg.heads import DexHead
from dareg.models import build_model, reestimate_batchnorm, singh7_features
from dareg.params import ParamsError, Regime

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.fixture(scope="module")
def p():
    base = params.load(ROOT / "params.yaml")
    return replace(base, model=replace(base.model, width=0.125, dropout=0.0),
                   train=replace(base.train, epochs=2, steps_per_epoch=3, device="cpu"))


def fake_split(n, seed, labeled=True):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8)
    return Split(images, rng.random(n, dtype=np.float32) if labeled else None)


def splits(source_seed=1):
    return {"source": fake_split(20, source_seed), "target_train": fake_split(12, 2),
            "target_unlabeled": fake_split(10, 3, labeled=False), "target_val": fake_split(6, 4)}


def run(p, regime, data, log=None):
    torch.manual_seed(0)
    model = build_model(p.model, SIZE)
    best = train.fit(model, data, regime, p.train, p.losses, validate=lambda m: 1.0,
                     log=log or (lambda epoch, values: None))
    return model, best


def weights(model):
    return torch.cat([t.flatten() for t in model.state_dict().values()])


def test_no_source_never_sees_source_images(p):
    """Under no_source the weights are identical whatever the source split holds."""
    a, _ = run(p, p.regimes["no_source"], splits(source_seed=1))
    b, _ = run(p, p.regimes["no_source"], splits(source_seed=99))
    assert torch.equal(weights(a), weights(b))


def test_source_matters_when_the_regime_draws_it(p):
    a, _ = run(p, p.regimes["no_da"], splits(source_seed=1))
    b, _ = run(p, p.regimes["no_da"], splits(source_seed=99))
    assert not torch.equal(weights(a), weights(b))


def test_runs_are_deterministic_on_cpu(p):
    a, _ = run(p, p.regimes["da"], splits())
    b, _ = run(p, p.regimes["da"], splits())
    assert torch.equal(weights(a), weights(b))


def test_every_regime_takes_the_same_number_of_steps(p, monkeypatch):
    steps = []
    original = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (steps.append(1), original(self, *a, **k))[1])
    for name in p.run.regimes:
        steps.clear()
        run(p, p.regimes[name], splits())
        assert len(steps) == p.train.epochs * p.train.steps_per_epoch, name


def test_a_regime_defined_only_in_params_runs(p):
    """A fourth regime (MMD without smoothing, half the source) needs no code change."""
    raw = params.yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["regimes"]["mmd_only"] = {"batch": {"source": 4, "target_labeled": 4, "target_unlabeled": 4},
                                  "weights": {"supervised": 1.0, "mmd": 10.0}}
    regime = params.parse(raw).regimes["mmd_only"]
    logged = []
    run(p, regime, splits(), log=lambda epoch, values: logged.append(values))
    assert len(logged) == p.train.epochs
    assert {"train/mse", "train/mmd", "train/total", "val/mae", "lr"} <= set(logged[0])
    assert "train/smoothing" not in logged[0]


def test_unlabeled_stream_carries_no_labels_into_the_loss(p):
    """The squared error covers source and target_labeled only, even if unlabeled had labels."""
    regime = p.regimes["da"]
    model = build_model(p.model, SIZE, seed=0).eval()
    data = {**splits(), "target_unlabeled": fake_split(10, 3, labeled=True)}
    rng = np.random.default_rng(0)
    streams = {n: Stream(data[train.STREAM_SPLITS[n]], rng) for n in regime.batch}
    images, counts, labels = train.draw_batch(regime, streams)
    assert set(labels) == {"source", "target_labeled"}
    pred, feat, logits = train.forward(model, images, torch.device("cpu"))
    terms = train.loss_terms(pred, feat, logits, counts, labels, model.head, regime,
                             losses.TermContext(p.losses))
    n_labeled = regime.batch["source"] + regime.batch["target_labeled"]
    truth = torch.cat([labels["source"], labels["target_labeled"]])
    expected = float(((pred[:n_labeled] - truth) ** 2).mean().detach())
    assert float(terms["mse"].detach()) == pytest.approx(expected, rel=1e-6)
    assert set(terms) == {"mse", "mmd", "smoothing"}


def test_gradients_of_alignment_terms_reach_the_convolutions(p):
    model = build_model(p.model, SIZE, seed=0)
    regime = Regime(batch={"source": 4, "target_unlabeled": 4, "target_labeled": 0},
                    weights={"supervised": 0.0, "mmd": 1.0, "smoothing": 1.0, "coral": 1.0,
                             "rsd": 1.0, "daregram_angle": 1.0, "daregram_scale": 1.0})
    images = np.random.default_rng(0).integers(0, 255, (8, SIZE, SIZE, 3), dtype=np.uint8)
    pred, feat, logits = train.forward(model, images, torch.device("cpu"))
    terms = train.loss_terms(pred, feat, logits, {"source": 4, "target_unlabeled": 4},
                             {"source": torch.rand(4)}, model.head, regime,
                             losses.TermContext(p.losses))
    sum(terms[n] for n in regime.alignment_terms).backward()
    first_conv = model.backbone[0].weight.grad
    assert first_conv is not None and float(first_conv.abs().sum()) > 0


def test_image_size_must_suit_six_pools():
    with pytest.raises(ParamsError, match="cache.image_size: 48 must be a multiple of 64"):
        singh7_features(0.25, 48, "none")


def test_learning_rate_steps_down_by_ten_and_freezing_zeroes_the_backbone(p):
    cfg = replace(p.train, lr=1.0, lr_step_epochs=2, freeze_backbone_epochs=1, backbone_lr_scale=0.5)
    lrs = [lr for e in range(5) for lr in train.step_lrs(cfg, e, 100 * e)]
    assert lrs == pytest.approx([0.0, 1.0, 0.5, 1.0, 0.05, 0.1, 0.05, 0.1, 0.005, 0.01])


def test_the_papers_schedule_decays_by_step_with_the_backbone_at_a_tenth(p):
    """lr * (1 + 1e-4 i)^-0.75 (the DA papers'), per optimizer step, the backbone at 0.1 of it."""
    cfg = replace(p.train, lr=0.1, lr_schedule="inverse", lr_gamma=1.0e-4, lr_power=0.75,
                  backbone_lr_scale=0.1)
    for step in (0, 1, 999, 20000):
        backbone, head = train.step_lrs(cfg, step // 1000, step)
        assert head == pytest.approx(0.1 * (1 + 1e-4 * step) ** -0.75) and backbone == pytest.approx(head / 10)
    assert train.step_lrs(cfg, 0, 20000)[1] == pytest.approx(0.1 * 3.0 ** -0.75)


def test_sgd_with_nesterov_and_the_inverse_schedule_trains_with_the_logged_rates(p):
    """The learning rate moves every step: the epoch's logged rate is its last step's."""
    cfg = replace(p.train, epochs=2, steps_per_epoch=3, optimizer="sgd", nesterov=True, lr=0.1,
                  lr_schedule="inverse", lr_gamma=0.5, lr_power=1.0, backbone_lr_scale=0.1)
    logged = []
    model = build_model(p.model, SIZE, seed=0)
    train.fit(model, splits(), p.regimes["no_da"], cfg, p.losses, lambda m: 1.0,
              lambda e, v: logged.append((v["lr"], v["lr_backbone"])))
    assert logged == [pytest.approx((0.1 / (1 + 0.5 * i), 0.01 / (1 + 0.5 * i))) for i in (2, 5)]


def test_nesterov_without_sgd_momentum_is_refused():
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["nesterov"] = True
    with pytest.raises(ParamsError, match="nesterov: true needs optimizer: sgd"):
        params.parse(data)


def test_frozen_backbone_keeps_its_weights_while_the_head_learns(p):
    cfg = replace(p.train, epochs=1, freeze_backbone_epochs=1, optimizer="sgd")
    model = build_model(p.model, SIZE, seed=0)
    before = copy.deepcopy(model.state_dict())
    train.fit(model, splits(), p.regimes["no_da"], cfg, p.losses, lambda m: 1.0, lambda e, v: None)
    after = model.state_dict()
    assert torch.equal(before["backbone.0.weight"], after["backbone.0.weight"])
    assert not torch.equal(before["head.layers.1.weight"], after["head.layers.1.weight"])


def test_early_stopping_ends_after_patience_epochs_without_improvement(p):
    """Validation MAE only worsens after epoch 1: with patience 2 training stops after epoch 3."""
    maes = iter([1.0, 2.0, 3.0, 4.0, 5.0])
    logged = []
    cfg = replace(p.train, epochs=5, steps_per_epoch=1, patience=2)
    best = train.fit(build_model(p.model, SIZE, seed=0), splits(), p.regimes["no_source"], cfg,
                     p.losses, lambda m: next(maes), lambda e, v: logged.append(v))
    assert len(logged) == 3 and best["epoch"] == 1


def test_the_loop_takes_any_registered_term_by_name(p, monkeypatch):
    """A new term is a registered function and a weight: the loop asks the registry (no code)."""
    calls = []

    def spread(f_s, f_t, y_s, y_t, ctx):
        calls.append((len(f_s), len(f_t)))
        return (f_s.mean() - f_t.mean()).pow(2)

    monkeypatch.setitem(losses.TERMS, "spread", losses.Term(spread))
    monkeypatch.setattr(params, "ALIGNMENT_TERMS", (*params.ALIGNMENT_TERMS, "spread"))
    regime = Regime(batch={"source": 4, "target_labeled": 2, "target_unlabeled": 2},
                    weights={"supervised": 1.0, "spread": 5.0})
    logged = []
    run(p, regime, splits(), log=lambda epoch, values: logged.append(values))
    assert calls[0] == (4, 4) and len(calls) == p.train.epochs * p.train.steps_per_epoch
    assert logged[0]["train/total"] == pytest.approx(logged[0]["train/mse"] + 5 * logged[0]["train/spread"])


def test_supervised_weighs_every_head_term_dex_cross_entropy_included():
    terms = {"ce": torch.tensor(2.0), "mse": torch.tensor(0.5), "mmd": torch.tensor(1.0)}
    regime = Regime(batch={"source": 4, "target_unlabeled": 4}, weights={"supervised": 3.0, "mmd": 0.1})
    assert float(train.weighted_total(terms, regime)) == pytest.approx(3 * 2.5 + 0.1)
    head = DexHead(8, 4, "uniform", "both", 0.0)
    assert set(head.loss_terms(torch.rand(3, 1), torch.rand(3, 4), torch.rand(3, 1))) <= set(train.HEAD_TERMS)


def test_a_loss_that_stops_being_finite_stops_training_naming_the_term(p, monkeypatch):
    monkeypatch.setitem(losses.TERMS, "mmd", losses.Term(lambda *a: torch.tensor(float("nan"))))
    with pytest.raises(train.TrainingError, match="epoch 1/2, step 1: loss term mmd is nan"):
        run(p, p.regimes["da"], splits())


def test_a_run_that_diverges_keeps_its_last_good_resume_state(p, monkeypatch, tmp_path):
    """MMD turns NaN in epoch 2: training stops naming the epoch and the term, and the resume
    file still holds epoch 1, which a rerun (with the term fixed) picks up and finishes."""
    calls, real = [], losses.TERMS["mmd"]
    nan_after = p.train.steps_per_epoch  # epoch 1's steps are fine, epoch 2's first is not

    def flaky(*args):
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) > nan_after else real.fn(*args)

    monkeypatch.setitem(losses.TERMS, "mmd", losses.Term(flaky))
    state, data = tmp_path / "state.pt", splits()
    fit = lambda: train.fit(build_model(p.model, SIZE, seed=0), data, p.regimes["da"], p.train,
                            p.losses, validate=lambda m: 1.0, log=lambda e, v: None, resume=state)
    with pytest.raises(train.TrainingError, match="epoch 2/2, step 1: loss term mmd is nan"):
        fit()
    kept = torch.load(state, weights_only=True)
    assert kept["epoch"] == 1 and len(kept["history"]) == 1
    assert all(torch.isfinite(t).all() for t in kept["model_state"].values() if t.is_floating_point())
    monkeypatch.setitem(losses.TERMS, "mmd", real)
    best = fit()
    assert len(best["history"]) == 2 and best["history"][0] == kept["history"][0]


def test_adabn_normalizes_each_domain_with_its_own_statistics(p):
    """With per-domain groups, the target half's outputs do not depend on the source images in
    the batch; pooled in one BatchNorm batch, they do."""
    model = build_model(p.model, SIZE, seed=0).train()
    rng = np.random.default_rng(0)
    target = rng.integers(0, 255, (4, SIZE, SIZE, 3), dtype=np.uint8)
    sources = [rng.integers(0, 255, (4, SIZE, SIZE, 3), dtype=np.uint8) // k for k in (1, 3)]
    cpu = torch.device("cpu")
    per_domain = [train.forward(model, np.concatenate([s, target]), cpu, [4, 4])[1][4:] for s in sources]
    pooled = [train.forward(model, np.concatenate([s, target]), cpu)[1][4:] for s in sources]
    assert torch.allclose(*per_domain) and not torch.allclose(*pooled)


def test_adabn_without_target_labels_estimates_on_the_unlabeled_images_alone(p):
    """The unsupervised protocol (dsprites): a regime that draws no labeled target image keeps
    the statistics of the unlabeled target images, not of the oracle's labeled ones."""
    data = splits()
    regime = Regime(batch={"source": 4, "target_unlabeled": 4}, adabn=True,
                    weights={"supervised": 1.0})
    model, best = run(p, regime, data)
    model.load_state_dict(best["state"])
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    reestimate_batchnorm(model, train.target_batches(data, "cpu", streams=("target_unlabeled",)))
    for name, value in model.state_dict().items():
        if "running" in name:
            assert torch.allclose(value, saved[name], rtol=1e-4, atol=1e-6), name
    reestimate_batchnorm(model, train.target_batches(data, "cpu"))
    assert not torch.allclose(model.backbone[1].running_mean, saved["backbone.1.running_mean"])


def test_adabn_checkpoint_carries_the_targets_batchnorm_statistics(p):
    """The kept weights' running statistics are those of the target training images (labeled and
    unlabeled), not of the mixed training batches."""
    data = splits()
    model, best = run(p, p.regimes["da_adabn"], data)
    model.load_state_dict(best["state"])
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    target = list(train.target_batches(data, "cpu"))
    assert [len(x) for x in target] == [len(data["target_train"]) + len(data["target_unlabeled"])]
    reestimate_batchnorm(model, target)
    for name, value in model.state_dict().items():
        if "running" in name:
            assert torch.allclose(value, saved[name], rtol=1e-4, atol=1e-6), name
    first = model.backbone[1]  # the first BatchNorm: its mean is the first conv's output mean
    conv_out = model.backbone[0]((target[0] - model.input_mean) / model.input_std)
    assert torch.allclose(first.running_mean, conv_out.mean((0, 2, 3)), atol=1e-5)


def test_adabn_needs_batchnorm(p):
    no_bn = replace(p, model=replace(p.model, norm="none"))
    with pytest.raises(ParamsError, match="adabn: true needs BatchNorm.*model.norm: batch"):
        run(no_bn, p.regimes["da_adabn"], splits())


def test_dann_trains_a_discriminator_that_the_checkpoint_leaves_out(p):
    model = build_model(p.model, SIZE, seed=0)
    train.prepare(model, splits(), p.regimes["da_dann"], p.train, p.losses)
    before = copy.deepcopy(model.adapters.state_dict())
    best = train.fit(model, splits(), p.regimes["da_dann"], p.train, p.losses, lambda m: 1.0,
                     lambda e, v: None)
    assert set(before) and any(not torch.equal(before[k], v) for k, v in model.adapters.state_dict().items())
    saved = checkpoint.make(best["state"], p.model, SIZE, {"unit": "years"}, {})
    assert not [k for k in saved["model_state"] if k.startswith("adapters.")]
    restored = checkpoint.restore_model(saved)
    assert len(restored.adapters) == 0


def test_per_domain_slices_of_several_ranks_gather_back_in_batch_order():
    """Under DDP each rank runs its share of each domain group; gathered rank by rank, the
    pieces go back to the global batch's order (source first, then target)."""
    batch = torch.arange(10.0)  # groups: source 0-3, target 4-9; two ranks
    rank_parts = [torch.cat([batch[0:2], batch[4:7]]), torch.cat([batch[2:4], batch[7:10]])]
    assert torch.equal(train._batch_order(torch.cat(rank_parts), [4, 6], 2), batch)
    assert torch.equal(train._batch_order(batch, [4, 6], 1), batch)


def test_a_batch_is_drawn_in_stream_order_whatever_order_params_list():
    """AdaBN's domain groups and the loss terms rely on source coming first."""
    regime = Regime(batch={"target_unlabeled": 2, "source": 3}, weights={"supervised": 1.0})
    rng = np.random.default_rng(0)
    data = splits()
    streams = {n: Stream(data[train.STREAM_SPLITS[n]], rng) for n in regime.batch}
    images, counts, _ = train.draw_batch(regime, streams)
    assert list(counts) == ["source", "target_unlabeled"] and len(images) == 5
