"""Every registered loss term: brute-force or library references and the properties the papers and
the docstrings promise (zero or minimal for identical samples, symmetry, invariances, finite
gradients where the samples coincide)."""
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles

from dareg import losses, params
from dareg.losses import TermContext


@pytest.fixture(autouse=True)
def float64():
    """Exact comparisons against the references need double precision, in this module only."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


CFG = params.Losses(bandwidth="median", scales=[1.0], mmd_estimator="unbiased",
                    smoothing_form="graph", rsd_tradeoff=0.1, daregram_threshold=0.99, dann_hidden=8)


def context(**changes) -> TermContext:
    cfg = params.Losses(**{**CFG.__dict__, **changes})
    torch.manual_seed(0)
    modules = losses.build_modules(["dann"], 5, cfg)
    return TermContext(cfg, progress=0.5, modules={k: m.double() for k, m in modules.items()})


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
    """1/2 y^T L y on the bipartite source-target graph with edge weights k(s_i, t_j)."""
    k = brute_kernel(s, t, bw)
    n = len(s)
    adjacency = torch.zeros(n + len(t), n + len(t))
    adjacency[:n, n:], adjacency[n:, :n] = k, k.T
    y = torch.cat([y_s, y_t])
    return float(0.5 * y @ (torch.diag(adjacency.sum(1)) - adjacency) @ y)


def test_smoothing_forms_are_the_laplacian_quadratic_form(samples):
    """seed: 1/2 sum_ij k_ij (y_i - y_j)^2 = 1/2 y^T L y; graph: the same over n m pairs."""
    s, t = samples
    g = torch.Generator().manual_seed(3)
    y_s, y_t = torch.rand(8, generator=g), torch.rand(6, generator=g)
    quadratic = laplacian_form(s, t, y_s, y_t, 2.0)
    assert float(losses.smoothing(s, t, y_s, y_t, [2.0], "seed")) == pytest.approx(quadratic)
    assert float(losses.smoothing(s, t, y_s, y_t, [2.0], "graph")) == pytest.approx(quadratic / 48)


def test_graph_smoothing_does_not_move_features_and_does_not_grow_with_the_batch(samples):
    """Detached kernel: no gradient reaches the features; a mean: repeating the batch keeps it."""
    s, t = (x.clone().requires_grad_() for x in samples)
    y_s, y_t = torch.linspace(0, 1, 8, requires_grad=True), torch.linspace(1, 0, 6)
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
    y_s, y_t = torch.zeros(8), torch.ones(6)
    near = float(losses.smoothing(s, t, y_s, y_t, [2.0], "seed"))
    far = float(losses.smoothing(s, t + 10.0, y_s, y_t, [2.0], "seed"))
    assert far < near / 100
    assert float(losses.smoothing(s, t + 10.0, y_s, y_t, [2.0], "graph")) < near  # same value...
    moved = s.clone().requires_grad_()  # ...but the graph form gives the features no push there
    assert not losses.smoothing(moved, t, y_s, y_t, [2.0], "graph").requires_grad


def test_smoothing_is_zero_for_equal_predictions(samples):
    s, t = samples
    for form in ("graph", "seed"):
        assert float(losses.smoothing(s, t, torch.full((8,), 0.3), torch.full((6,), 0.3), [1.0], form)) == 0.0


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
    k = max(int(np.argmax(np.cumsum(lam) / lam.sum() >= threshold - 1e-9)) + 1 for lam in (lam_s, lam_t))
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
    loss = losses.dann(s, t, None, None, ctx)
    loss.backward()
    discriminator = ctx.modules["domain_discriminator"]
    s2, t2 = (x.clone().requires_grad_() for x in samples)
    logits = discriminator(torch.cat([s2, t2])).squeeze(1)
    plain = 0.5 * (torch.nn.functional.softplus(-logits[:8]).mean() + torch.nn.functional.softplus(logits[8:]).mean())
    assert float(loss.detach()) == pytest.approx(float(plain.detach()))
    plain_grad = torch.autograd.grad(plain, s2)[0]
    assert torch.allclose(s.grad, -losses.dann_coefficient(0.5) * plain_grad)


def test_dann_cannot_beat_chance_on_identical_samples(samples):
    s, _ = samples
    for seed in range(3):
        torch.manual_seed(seed)
        ctx = TermContext(CFG, 0.5, {"domain_discriminator": losses.domain_discriminator(5, CFG).double()})
        assert float(losses.dann(s, s.clone(), None, None, ctx).detach()) >= math.log(2) - 1e-12


def test_dann_coefficient_ramps_from_zero_to_one():
    assert losses.dann_coefficient(0.0) == 0.0
    assert 0.98 < losses.dann_coefficient(0.5) < losses.dann_coefficient(1.0) < 1.0


@pytest.mark.parametrize("name", sorted(losses.TERMS))
def test_every_term_has_finite_gradients_where_source_and_target_coincide(name, samples):
    """Identical (and duplicated) features: every term's gradient stays finite (RSD's SVD of an
    orthogonal matrix is the hard case, dareg.linalg.square_svd)."""
    s, _ = samples
    f = s.clone().requires_grad_()
    y = torch.rand(8, generator=torch.Generator().manual_seed(6), requires_grad=True)
    value = losses.TERMS[name].fn(f, torch.cat([f[:4], f[:4]]), y, y.flip(0), context())
    value.backward()  # (graph smoothing sends no gradient to the features at all)
    assert torch.isfinite(value) and (f.grad is None or torch.isfinite(f.grad).all()), name
    g = s.clone().requires_grad_()
    losses.TERMS[name].fn(g, g, y, y, context()).backward()
    assert g.grad is None or torch.isfinite(g.grad).all(), name


@pytest.mark.parametrize("name", sorted(set(losses.TERMS) - {"dann"}))
def test_every_term_is_minimal_for_identical_samples(name, samples):
    """An alignment term is lowest when the domains look the same: identical samples score no
    higher than different ones. (DANN's value depends on its discriminator's state; its bound
    for identical samples, log 2, is tested above.)"""
    s, t = samples
    y = torch.full((8,), 0.5)
    same = float(losses.TERMS[name].fn(s, s.clone(), y, y.clone(), context()))
    apart = float(losses.TERMS[name].fn(s, 3 * t + 2, y, torch.linspace(0, 1, 6), context()))
    assert same <= apart + 1e-12, (name, same, apart)


def test_build_modules_makes_only_what_the_terms_need():
    assert set(losses.build_modules(["mmd", "coral"], 16, CFG)) == set()
    assert set(losses.build_modules(["dann", "mmd"], 16, CFG)) == {"domain_discriminator"}
