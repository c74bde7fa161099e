"""Every registered loss term: brute-force or library references and the properties the papers and
the docstrings promise (zero or minimal for identical samples, symmetry, invariances, finite
gradients where the samples coincide). Predictions are (n, K): K factors per image.
tests/test_official_terms.py compares RSD, DARE-GRAM and DD with their official code."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from dareg import adversarial, losses, params
from dareg.losses import TermContext


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons against the references need double precision, in this module only."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


CFG = params.Losses(bandwidth="median", scales=[1.0], mmd_estimator="unbiased",
                    smoothing_form="graph", rsd_tradeoff=0.1, daregram_threshold=0.99, dann_hidden=8,
                    dd_margin=1.0, dd_grl_max=0.1, dd_grl_steps=1000)
FACTORS = 3  # predictions (n, 3), as dSprites' scale, x, y


def context(step: int = 1500, **changes) -> TermContext:
    cfg = params.Losses(**{**CFG.__dict__, **changes})
    torch.manual_seed(0)
    modules = losses.build_modules(["dann", "dd"], 5, cfg, FACTORS)
    return TermContext(cfg, progress=0.5, modules={k: m.double() for k, m in modules.items()},
                       step=step)


def brute_kernel(a, b, bw):
    return torch.tensor([[float(torch.exp(-((x - y) ** 2).sum() / bw)) for y in b] for x in a])


def brute_mmd(s, t, bw, unbiased):
    kss, ktt, kst = brute_kernel(s, s, bw), brute_kernel(t, t, bw), brute_kernel(s, t, bw)
    if not unbiased:
        return kss.mean() + ktt.mean() - 2 * kst.mean()
    n, m = len(s), len(t)
    off = lambda k, n: sum(k[i, j] for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    return off(kss, n) + off(ktt, m) - 2 * kst.mean()


@pytest.fixture
def samples():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 5, generator=g), torch.randn(6, 5, generator=g)


def test_registry_matches_the_names_params_accept():
    """params.py lists the term names (so loading params needs no torch); they must agree."""
    assert set(losses.TERMS) == set(params.ALIGNMENT_TERMS)


@pytest.mark.parametrize("unbiased", [True, False])
def test_mmd_matches_brute_force(samples, unbiased):
    """The vectorized MMD equals the definition summed pair by pair."""
    s, t = samples
    assert float(losses.mmd(s, t, [3.0], unbiased)) == pytest.approx(float(brute_mmd(s, t, 3.0, unbiased)))


def test_multi_kernel_is_mean_of_single_kernels(samples):
    s, t = samples
    multi = losses.mmd(s, t, [1.0, 4.0])
    singles = (losses.mmd(s, t, [1.0]) + losses.mmd(s, t, [4.0])) / 2
    assert float(multi) == pytest.approx(float(singles))


def test_biased_mmd_is_zero_for_identical_samples(samples):
    s, _ = samples
    assert float(losses.mmd(s, s.clone(), [2.0], unbiased=False)) == pytest.approx(0.0, abs=1e-12)


def test_unbiased_mmd_near_zero_for_same_distribution():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 3, generator=g), torch.randn(400, 3, generator=g)
    assert abs(float(losses.mmd(a, b, [3.0]))) < 0.01


def test_mmd_is_symmetric(samples):
    s, t = samples
    assert float(losses.mmd(s, t, [2.0])) == pytest.approx(float(losses.mmd(t, s, [2.0])))


def test_mmd_grows_with_mean_shift_and_with_variance_only():
    g = torch.Generator().manual_seed(2)
    base, other = torch.randn(200, 4, generator=g), torch.randn(200, 4, generator=g)
    values = [float(losses.mmd(base, other + shift, [8.0])) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[-1] > 0.1
    spread = [float(losses.mmd(base, other * scale, [8.0])) for scale in (1.0, 1.5, 2.5)]
    assert spread == sorted(spread) and spread[-1] > 0.05


def laplacian_form(s, t, y_s, y_t, bw):
    """1/2 sum_k y_k^T L y_k over the factors' columns, on the bipartite source-target graph
    with edge weights k(s_i, t_j)."""
    k = brute_kernel(s, t, bw)
    n = len(s)
    adjacency = torch.zeros(n + len(t), n + len(t))
    adjacency[:n, n:], adjacency[n:, :n] = k, k.T
    laplacian = torch.diag(adjacency.sum(1)) - adjacency
    y = torch.cat([y_s, y_t])  # (n + m, K)
    return float(sum(0.5 * y[:, j] @ laplacian @ y[:, j] for j in range(y.shape[1])))


@pytest.mark.parametrize("factors", [1, 3])
def test_smoothing_forms_are_the_laplacian_quadratic_form(samples, factors):
    """seed: 1/2 sum_ij k_ij ||y_i - y_j||^2 = 1/2 sum_k y_k^T L y_k; graph: the same over n m pairs."""
    s, t = samples
    g = torch.Generator().manual_seed(3)
    y_s, y_t = torch.rand(8, factors, generator=g), torch.rand(6, factors, generator=g)
    quadratic = laplacian_form(s, t, y_s, y_t, 2.0)
    assert float(losses.smoothing(s, t, y_s, y_t, [2.0], "seed")) == pytest.approx(quadratic)
    assert float(losses.smoothing(s, t, y_s, y_t, [2.0], "graph")) == pytest.approx(quadratic / 48)


def test_smoothing_of_one_factor_is_exactly_the_scalar_form(samples):
    """K = 1 gives bit for bit what the scalar predictions (n,) gave: sum_ij w_ij (y_s_i - y_t_j)^2."""
    s, t = samples
    g = torch.Generator().manual_seed(8)
    y_s, y_t = torch.rand(8, generator=g), torch.rand(6, generator=g)
    weights = losses.gaussian_kernel(s, t, [2.0])
    scalar_gaps = (y_s[:, None] - y_t[None, :]).pow(2)
    assert torch.equal(losses.smoothing(s, t, y_s[:, None], y_t[:, None], [2.0], "seed"),
                       0.5 * (weights * scalar_gaps).sum())
    assert torch.equal(losses.smoothing(s, t, y_s[:, None], y_t[:, None], [2.0], "graph"),
                       0.5 * (weights * scalar_gaps).mean())


def test_smoothing_sums_the_factors_and_refuses_scalar_predictions(samples):
    s, t = samples
    g = torch.Generator().manual_seed(9)
    y_s, y_t = torch.rand(8, 3, generator=g), torch.rand(6, 3, generator=g)
    per_factor = sum(losses.smoothing(s, t, y_s[:, [j]], y_t[:, [j]], [2.0]) for j in range(3))
    assert float(losses.smoothing(s, t, y_s, y_t, [2.0])) == pytest.approx(float(per_factor))
    with pytest.raises(ValueError, match=r"\(n, K\) and \(m, K\)"):
        losses.smoothing(s, t, y_s[:, 0], y_t[:, 0], [2.0])


def test_graph_smoothing_does_not_move_features_and_does_not_grow_with_the_batch(samples):
    """Detached kernel: no gradient reaches the features; a mean: repeating the batch keeps it."""
    s, t = (x.clone().requires_grad_() for x in samples)
    y_s = torch.linspace(0, 1, 8)[:, None].requires_grad_()
    y_t = torch.linspace(1, 0, 6)[:, None]
    losses.smoothing(s, t, y_s, y_t, [2.0], "graph").backward()
    assert s.grad is None and t.grad is None and float(y_s.grad.abs().sum()) > 0
    s, t, y_s = s.detach(), t.detach(), y_s.detach()
    once = losses.smoothing(s, t, y_s, y_t, [2.0], "graph")
    twice = losses.smoothing(torch.cat([s, s]), t, torch.cat([y_s, y_s]), y_t, [2.0], "graph")
    assert float(once) == pytest.approx(float(twice))
    seed_once = losses.smoothing(s, t, y_s, y_t, [2.0], "seed")
    seed_twice = losses.smoothing(torch.cat([s, s]), t, torch.cat([y_s, y_s]), y_t, [2.0], "seed")
    assert float(seed_twice) == pytest.approx(2 * float(seed_once))


def test_seed_smoothing_can_be_lowered_by_pushing_the_domains_apart(samples):
    """The original codebase's form has a gradient through the kernel: it rewards separating the domains."""
    s, t = samples
    y_s, y_t = torch.zeros(8, 1), torch.ones(6, 1)
    near = float(losses.smoothing(s, t, y_s, y_t, [2.0], "seed"))
    far = float(losses.smoothing(s, t + 10.0, y_s, y_t, [2.0], "seed"))
    assert far < near / 100
    assert float(losses.smoothing(s, t + 10.0, y_s, y_t, [2.0], "graph")) < near  # same value...
    moved = s.clone().requires_grad_()  # ...but the graph form gives the features no push there
    assert not losses.smoothing(moved, t, y_s, y_t, [2.0], "graph").requires_grad


def test_smoothing_is_zero_for_equal_predictions(samples):
    s, t = samples
    for form in ("graph", "seed"):
        assert float(losses.smoothing(s, t, torch.full((8, 3), 0.3), torch.full((6, 3), 0.3), [1.0], form)) == 0.0


def test_median_bandwidth_is_median_pairwise_squared_distance():
    s, t = torch.tensor([[0.0], [1.0]]), torch.tensor([[3.0]])
    # squared distances off the diagonal: 1, 9, 4 (each twice) -> median 4
    assert float(losses.median_bandwidth(s, t)) == pytest.approx(4.0)


def test_coral_matches_numpy_covariances_and_ignores_mean_shift(samples):
    s, t = samples
    expected = ((np.cov(s.numpy(), rowvar=False) - np.cov(t.numpy(), rowvar=False)) ** 2).sum() / (4 * 25)
    assert float(losses.coral(s, t)) == pytest.approx(expected)
    assert float(losses.coral(s, t + 3.0)) == pytest.approx(expected)  # CORAL sees covariances only
    assert float(losses.coral(s, t)) == pytest.approx(float(losses.coral(t, s)))
    assert float(losses.coral(s, s.clone())) == pytest.approx(0.0, abs=1e-15)
    assert float(losses.coral(s, 2 * s)) > float(losses.coral(s, 1.2 * s)) > 0


def test_rsd_sines_are_the_principal_angles_scipy_finds():
    """With equal batches (n = m < d) the subspaces are the full spans: scipy's subspace_angles."""
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    angles = subspace_angles(s.numpy().T, t.numpy().T)
    no_penalty = TermContext(params.Losses(**{**CFG.__dict__, "rsd_tradeoff": 0.0}))
    assert float(losses.rsd(s, t, ctx=no_penalty)) == pytest.approx(np.sin(angles).sum(), rel=1e-6)


def test_rsd_is_zero_for_one_subspace_symmetric_and_blind_to_scale():
    """(d > n, m, as with real features: otherwise both batches span all of R^d.)"""
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(8, 12, generator=g), torch.randn(6, 12, generator=g)
    basis_change = torch.randn(8, 8, generator=g)
    same_span = (s.T @ torch.linalg.qr(basis_change)[0]).T  # other vectors, the same subspace
    assert float(losses.rsd(s, same_span)) == pytest.approx(0.0, abs=1e-5)
    assert float(losses.rsd(s, t)) == pytest.approx(float(losses.rsd(t, s)))
    assert float(losses.rsd(3.0 * s, t)) == pytest.approx(float(losses.rsd(s, t)))
    assert float(losses.rsd(s, t)) > 0.1


def daregram_reference(f_s, f_t, threshold):
    """The formulas of design.md section 8, in numpy, term by term."""
    def gram(f):
        a = np.hstack([np.ones((len(f), 1)), f])
        return a.T @ a / len(f)

    g_s, g_t = gram(f_s), gram(f_t)
    lam_s, lam_t = (np.linalg.svd(g, compute_uv=False) for g in (g_s, g_t))
    def official_index(lam):  # the last 0-based index whose share is <= T, T at least share[1]
        share = np.cumsum(lam) / lam.sum()
        return int(np.nonzero(share <= max(threshold, share[1]))[0].max())

    k = max(official_index(lam) for lam in (lam_s, lam_t))
    k = min(k, len(f_s), len(f_t), f_s.shape[1] + 1)

    def pinv_top(g):
        u, lam, vt = np.linalg.svd(g)
        return (vt[:k].T / lam[:k]) @ u[:, :k].T

    p_s, p_t = pinv_top(g_s), pinv_top(g_t)
    cos = (p_s * p_t).sum(0) / (np.linalg.norm(p_s, axis=0) * np.linalg.norm(p_t, axis=0))
    return (1 - cos).mean(), np.linalg.norm(lam_s[:k] - lam_t[:k]) / k


@pytest.mark.parametrize("threshold", [0.9, 0.99])
def test_daregram_matches_the_reference_formulas(samples, threshold):
    s, t = samples
    angle, scale = losses.daregram_parts(s, t, threshold)
    ref_angle, ref_scale = daregram_reference(s.numpy(), t.numpy(), threshold)
    assert (float(angle), float(scale)) == pytest.approx((ref_angle, ref_scale), rel=1e-6)


def test_daregram_never_inverts_beyond_the_smaller_batchs_rank():
    """8 source images in 32 dimensions: G_s has rank 8 at most; with 16 target images the
    target alone would keep more eigenvalues. The gradient stays of the order of the features'."""
    g = torch.Generator().manual_seed(7)
    f_s = torch.relu(torch.randn(8, 32, generator=g)).requires_grad_()
    f_t = torch.relu(torch.randn(16, 32, generator=g) + 0.2)
    angle, _ = losses.daregram_parts(f_s, f_t, 0.999)
    (grad,) = torch.autograd.grad(angle, f_s)
    assert torch.isfinite(grad).all() and float(grad.norm()) < 100


def test_daregram_is_zero_for_identical_batches_symmetric_and_batch_size_free(samples):
    s, t = samples
    assert [float(v) for v in losses.daregram_parts(s, s.clone(), 0.99)] == pytest.approx([0, 0], abs=1e-9)
    assert [float(v) for v in losses.daregram_parts(s, t, 0.99)] == pytest.approx(
        [float(v) for v in losses.daregram_parts(t, s, 0.99)])
    repeated = torch.cat([s, s])  # the same sample twice: the same Gram matrix after / n
    assert [float(v) for v in losses.daregram_parts(repeated, t, 0.99)] == pytest.approx(
        [float(v) for v in losses.daregram_parts(s, t, 0.99)])


def test_dann_reverses_the_gradient_into_the_features_only(samples):
    """Forward: the discriminator's balanced cross-entropy. Backward: the discriminator descends
    it, the features get -coefficient times its gradient."""
    s, t = (x.clone().requires_grad_() for x in samples)
    ctx = context()
    loss = adversarial.dann(s, t, None, None, ctx)
    loss.backward()
    discriminator = ctx.modules["domain_discriminator"]
    s2, t2 = (x.clone().requires_grad_() for x in samples)
    logits = discriminator(torch.cat([s2, t2])).squeeze(1)
    plain = 0.5 * (torch.nn.functional.softplus(-logits[:8]).mean() + torch.nn.functional.softplus(logits[8:]).mean())
    assert float(loss.detach()) == pytest.approx(float(plain.detach()))
    plain_grad = torch.autograd.grad(plain, s2)[0]
    assert torch.allclose(s.grad, -adversarial.dann_coefficient(0.5) * plain_grad)


def test_dann_cannot_beat_chance_on_identical_samples(samples):
    s, _ = samples
    for seed in range(3):
        torch.manual_seed(seed)
        ctx = TermContext(CFG, 0.5, {"domain_discriminator": adversarial.domain_discriminator(5, CFG, 1).double()})
        assert float(adversarial.dann(s, s.clone(), None, None, ctx).detach()) >= math.log(2) - 1e-12


def test_dann_coefficient_ramps_from_zero_to_one():
    assert adversarial.dann_coefficient(0.0) == 0.0
    assert 0.98 < adversarial.dann_coefficient(0.5) < adversarial.dann_coefficient(1.0) < 1.0


@pytest.mark.parametrize("name", sorted(losses.TERMS))
def test_every_term_has_finite_gradients_where_source_and_target_coincide(name, samples):
    """Identical (and duplicated) features: every term's gradient stays finite (RSD's SVD of an
    orthogonal matrix is the hard case, dareg.linalg.square_svd)."""
    s, _ = samples
    f = s.clone().requires_grad_()
    y = torch.rand(8, FACTORS, generator=torch.Generator().manual_seed(6), requires_grad=True)
    value = losses.TERMS[name].fn(f, torch.cat([f[:4], f[:4]]), y, y.flip(0), context())
    value.backward()  # (graph smoothing sends no gradient to the features at all)
    assert torch.isfinite(value) and (f.grad is None or torch.isfinite(f.grad).all()), name
    g = s.clone().requires_grad_()
    losses.TERMS[name].fn(g, g, y, y, context()).backward()
    assert g.grad is None or torch.isfinite(g.grad).all(), name


@pytest.mark.parametrize("name", sorted(set(losses.TERMS) - {"dann", "dd"}))
def test_every_term_is_minimal_for_identical_samples(name, samples):
    """An alignment term is lowest when the domains look the same: identical samples score no
    higher than different ones. (DANN's and DD's values depend on their adversary's state;
    their bounds for identical samples are tested on their own.)"""
    s, t = samples
    y = torch.full((8, FACTORS), 0.5)
    y_apart = torch.linspace(0, 1, 6 * FACTORS).reshape(6, FACTORS)
    same = float(losses.TERMS[name].fn(s, s.clone(), y, y.clone(), context()))
    apart = float(losses.TERMS[name].fn(s, 3 * t + 2, y, y_apart, context()))
    assert same <= apart + 1e-12, (name, same, apart)


def test_build_modules_makes_only_what_the_terms_need():
    assert set(losses.build_modules(["mmd", "coral"], 16, CFG, 1)) == set()
    assert set(losses.build_modules(["dann", "mmd"], 16, CFG, 1)) == {"domain_discriminator"}
    built = losses.build_modules(["dd", "dann"], 16, CFG, 3)
    assert set(built) == {"domain_discriminator", "adversarial_regressor"}
    assert built["adversarial_regressor"](torch.zeros(2, 16)).shape == (2, 3)
    assert built["domain_discriminator"](torch.zeros(2, 16)).shape == (2, 1)


def dd_context(margin: float = 1.0, step: int = 1500, weight: float = 0.0, bias: float = 0.0):
    """A DD context whose adversary predicts sigmoid(weight * sum(f) + bias) for every factor."""
    ctx = context(step=step, dd_margin=margin)
    linear = ctx.modules["adversarial_regressor"][0]
    with torch.no_grad():
        linear.weight.fill_(weight)
        linear.bias.fill_(bias)
    return ctx


@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_dd_on_identical_domains_is_the_source_gap_times_one_minus_margin(samples, margin):
    """Same features and predictions on both sides: D = (1 - margin) mean_ik |h'(f_i)_k - y_ik|.
    With h' = 1/2 everywhere and y's factors at 0.1, 0.5, 0.9: D = (1 - margin) 0.8 / 3."""
    s, _ = samples
    y = torch.tensor([0.1, 0.5, 0.9]).repeat(8, 1)
    value = adversarial.dd(s, s.clone(), y, y.clone(), dd_context(margin))
    assert value.item() == pytest.approx(-(1 - margin) * 0.8 / 3)


def test_dd_takes_one_mean_per_domain_over_samples_and_factors(samples):
    """h' = 1/2; target predictions 1/2 (no disagreement) but for one entry at 0.9; source
    predictions at 0.3: D = 0.4 / (6 * 3) - margin * 0.2, whatever the batch sizes."""
    s, t = samples
    y_s, y_t = torch.full((8, 3), 0.3), torch.full((6, 3), 0.5)
    y_t[2, 1] = 0.9
    value = adversarial.dd(s, t, y_s, y_t, dd_context(margin=2.0))
    assert value.item() == pytest.approx(-(0.4 / 18 - 2.0 * 0.2))


def test_dd_reverses_the_gradient_into_the_features_and_leaves_the_head_alone(samples):
    """The adversary descends -D (so it climbs D); the features get -coefficient times the
    plain gradient (so they descend D); the main head's predictions get none (detached)."""
    s, t = (x.clone().requires_grad_() for x in samples)
    g = torch.Generator().manual_seed(10)
    y_s, y_t = (torch.rand(n, 3, generator=g).requires_grad_() for n in (8, 6))
    ctx = dd_context(step=700, weight=0.3, bias=0.1)
    adversarial.dd(s, t, y_s, y_t, ctx).backward()
    adversary = ctx.modules["adversarial_regressor"]
    s2, t2 = (x.detach().clone().requires_grad_() for x in samples)
    out = adversary(torch.cat([s2, t2]))
    plain = -adversarial.disparity_discrepancy(y_s, y_t, out[:8], out[8:], 1.0)
    grad_s, grad_t, *grad_adv = torch.autograd.grad(plain, [s2, t2, *adversary.parameters()])
    coeff = adversarial.warm_start_coefficient(700, 0.1, 1000)
    assert torch.allclose(t.grad, -coeff * grad_t) and torch.allclose(s.grad, -coeff * grad_s)
    assert float((t.grad * grad_t).sum()) < 0  # opposite directions on the target part
    assert all(torch.allclose(p.grad, q) for p, q in zip(adversary.parameters(), grad_adv))
    assert y_s.grad is None and y_t.grad is None


def test_dd_steps_make_the_adversary_climb_and_the_features_descend(samples):
    """One small step along each side's gradient of the term: D grows for the adversary's,
    shrinks for the features'."""
    s, t = samples
    g = torch.Generator().manual_seed(11)
    y_s, y_t = torch.rand(8, 3, generator=g), torch.rand(6, 3, generator=g)
    ctx = dd_context(step=5000, weight=0.2, bias=-0.1)
    adversary = ctx.modules["adversarial_regressor"]

    def discrepancy(f_s, f_t):
        return -adversarial.dd(f_s, f_t, y_s, y_t, ctx).item()

    f_t = t.clone().requires_grad_()
    adversarial.dd(s, f_t, y_s, y_t, ctx).backward()
    before = discrepancy(s, t)
    assert discrepancy(s, t - 1e-3 * f_t.grad) < before
    with torch.no_grad():
        for p in adversary.parameters():
            p -= 1e-3 * p.grad
    assert discrepancy(s, t) > before


def test_dd_adversary_finds_a_discrepancy_only_between_different_domains(samples):
    """Trained on the term, the adversary reaches D > 0 between shifted domains; on identical
    ones (margin 1) D is 0 whatever it does."""
    s, t = samples
    y_s = torch.full((8, 3), 0.5)
    for f_t, found in ((s.clone(), lambda d: d == pytest.approx(0.0, abs=1e-12)),
                       (t + 2.0, lambda d: d > 0.2)):
        y_t, ctx = torch.full((len(f_t), 3), 0.5), context()
        optimizer = torch.optim.Adam(ctx.modules["adversarial_regressor"].parameters(), lr=0.05)
        for _ in range(200):
            optimizer.zero_grad()
            adversarial.dd(s, f_t, y_s, y_t, ctx).backward()
            optimizer.step()
        assert found(-adversarial.dd(s, f_t, y_s, y_t, ctx).item()), f_t.mean()


def test_dd_warm_start_coefficient_follows_tllibs_curve():
    """hi (2 / (1 + exp(-i / N)) - 1): 0 at the start, hi tanh(1/2) at N, near hi after 10 N."""
    assert adversarial.warm_start_coefficient(0, 0.1, 1000) == 0.0
    assert adversarial.warm_start_coefficient(1000, 0.1, 1000) == pytest.approx(0.1 * math.tanh(0.5))
    assert adversarial.warm_start_coefficient(4000, 0.1, 1000) == pytest.approx(0.1 * math.tanh(2.0))
    curve = [adversarial.warm_start_coefficient(i, 0.1, 1000) for i in range(0, 20001, 500)]
    assert curve == sorted(curve) and 0.0999 < curve[-1] < 0.1


def test_dd_uses_the_step_of_the_context(samples):
    """At step 0 the reversal is off: the features get no gradient, the adversary does."""
    s, t = samples
    f_t = t.clone().requires_grad_()
    y_s, y_t = torch.rand(8, 3), torch.rand(6, 3)
    ctx = dd_context(step=0, weight=0.2)
    adversarial.dd(s, f_t, y_s, y_t, ctx).backward()
    assert float(f_t.grad.abs().max()) == 0.0
    assert ctx.modules["adversarial_regressor"][0].weight.grad.abs().max().item() > 0


def test_dd_refuses_an_adversary_of_another_factor_count(samples):
    s, t = samples
    with pytest.raises(ValueError, match="predicts 3 factors, the head 1"):
        adversarial.dd(s, t, torch.rand(8, 1), torch.rand(6, 1), context())


def test_dd_adversary_is_the_heads_class_at_tllibs_init():
    """Linear(d, K) and a sigmoid, weights N(0, 0.01^2), zero biases: outputs near 1/2."""
    torch.manual_seed(0)
    adversary = adversarial.adversarial_regressor(512, CFG, 3)
    linear = adversary[0]
    assert isinstance(adversary[1], torch.nn.Sigmoid) and linear.weight.shape == (3, 512)
    assert linear.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert linear.bias.abs().max().item() == 0.0
