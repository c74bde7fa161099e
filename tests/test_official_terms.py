"""RSD, DARE-GRAM and DD against their official code, restated here in plain torch (read, not
copied; each step names the line it follows), on fixed random features of several shapes.

Sources read:
- RSD: thuml/Domain-Adaptation-Regression @ 3e73802, DAR-RSD/dSprites/train_rsd.py, `RSD`
  (DAR-RSD/MPI3D/train_rsd.py @ 41f4bfd has the same function).
- DARE-GRAM: ismailnejjar/DARE-GRAM @ 5bbb90d, code/dSprites/dare_gram.py, `DARE_GRAM_LOSS`.
- DD: thuml/Transfer-Learning-Library @ 9fcd99c, tllib/alignment/mdd.py
  (`MarginDisparityDiscrepancy`, `RegressionMarginDisparityDiscrepancy`, `ImageRegressor`),
  tllib/modules/grl.py @ 65c8ae9 (`WarmStartGradientReverseLayer`), and
  examples/domain_adaptation/image_regression/dd.py @ 454c7cb (the training step).

Where dareg deliberately differs, the test states the difference and checks the exact relation.
"""
import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dareg import adversarial, losses, params
from dareg.linalg import gram_pinv
from dareg.losses import TermContext


@pytest.fixture(autouse=True)
def float64():
    """Double precision, so the comparisons are exact to rounding (this module only)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


CFG = params.Losses(bandwidth="median", scales=[1.0], mmd_estimator="unbiased",
                    smoothing_form="graph", rsd_tradeoff=0.1, daregram_threshold=0.99, dann_hidden=8,
                    dd_margin=1.0, dd_grl_max=0.1, dd_grl_steps=1000)


def features(n: int, d: int, seed: int, relu: bool = True) -> torch.Tensor:
    """A fixed random batch (n, d); ReLU'd like a ResNet's pooled features by default."""
    f = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return torch.relu(f + 0.3) if relu else f


def cfg(**changes) -> params.Losses:
    return params.Losses(**{**CFG.__dict__, **changes})


# ----- RSD ---------------------------------------------------------------------------------------

def official_rsd_parts(f_s, f_t, keep: int | None = None):
    """(cosines, P_s, P_t) as `RSD` computes them; `keep` truncates the bases (dareg's k; not in
    the official code)."""
    # u_s, s_s, v_s = torch.svd(Feature_s.t()): torch.svd is the thin SVD (some=True)
    u_s = torch.linalg.svd(f_s.T, full_matrices=False)[0]
    u_t = torch.linalg.svd(f_t.T, full_matrices=False)[0]
    if keep is not None:
        u_s, u_t = u_s[:, :keep], u_t[:, :keep]
    # p_s, cospa, p_t = torch.svd(torch.mm(u_s.t(), u_t)): torch.svd returns V, not V^T
    p_s, cospa, vh = torch.linalg.svd(u_s.T @ u_t, full_matrices=False)
    return cospa, p_s, vh.T


def official_rsd(f_s, f_t, tradeoff2: float, keep: int | None = None, floor: float = 0.0):
    """`RSD`: torch.norm(sinpa, 1) + tradeoff2 * torch.norm(|p_s| - |p_t|, 2), the second a
    2-norm of the flattened matrix (Frobenius). `floor` = 0 is the official sine
    sqrt(1 - cos^2); dareg floors 1 - cos^2 at 1e-12."""
    cospa, p_s, p_t = official_rsd_parts(f_s, f_t, keep)
    gap = 1 - cospa.pow(2)
    sinpa = torch.sqrt(gap.clamp_min(floor) if floor else gap)
    penalty = torch.linalg.vector_norm((p_s.abs() - p_t.abs()).flatten(), 2)
    return torch.linalg.vector_norm(sinpa, 1) + tradeoff2 * penalty


RSD_SHAPES = [(6, 16), (36, 512), (20, 64)]  # (batch, d) with 2 batch <= d, as the papers' 36 x 512


@pytest.mark.parametrize("n, d", RSD_SHAPES)
@pytest.mark.parametrize("tradeoff", [0.1, 0.01])
def test_rsd_equals_official_on_equal_batches(n, d, tradeoff):
    """Equal batches: k = min(n, m, d) = n keeps the official thin SVD's every column, so the
    value and the gradient are the official ones (dareg's own SVD backward equals torch's where
    singular values are distinct; the 1e-12 floor on 1 - cos^2 is not reached here)."""
    f_s, f_t = features(n, d, 1).requires_grad_(), features(n, d, 2).requires_grad_()
    ours = losses.rsd(f_s, f_t, ctx=TermContext(cfg(rsd_tradeoff=tradeoff)))
    theirs = official_rsd(f_s, f_t, tradeoff)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-9)
    cospa = official_rsd_parts(f_s, f_t)[0].detach()
    assert float((1 - cospa.pow(2)).min()) > 1e-12
    grads = [torch.autograd.grad(v, [f_s, f_t]) for v in (ours, theirs)]
    for g_ours, g_theirs in zip(*grads):
        assert torch.allclose(g_ours, g_theirs, rtol=1e-6, atol=1e-9)


def same_span(n: int, d: int):
    """Two bases of one n-dimensional subspace: every principal angle is 0."""
    f_s = features(n, d, 3)
    rotation = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(4)))[0]
    return f_s, (f_s.T @ rotation).T


def shared_directions(n: int, d: int):
    """Two random n-dimensional subspaces of R^d with 2 n > d share 2 n - d directions."""
    return features(n, d, 3), features(n, d, 4)


@pytest.mark.parametrize("make, n, d", [(same_span, 8, 20), (shared_directions, 6, 10)])
def test_rsd_sine_floor_is_the_one_difference_where_subspaces_meet(make, n, d):
    """Difference: dareg's sine is sqrt(max(1 - cos^2, 1e-12)), the official sqrt(1 - cos^2),
    which is NaN once rounding puts a cosine above 1 (consistent with the NaN failures of
    thuml/Domain-Adaptation-Regression #1, #2, #5) and whose gradient is infinite at cos = 1. Where the subspaces share directions (one
    subspace; or n-dimensional ones in R^d with 2 n > d) dareg is exactly the official formula
    with that floor, finite, and the official is NaN or at most the floor's sum below it."""
    f_s, f_t = make(n, d)
    ours = losses.rsd(f_s, f_t, ctx=TermContext(CFG))
    assert ours.item() == pytest.approx(official_rsd(f_s, f_t, 0.1, floor=1e-12).item(), rel=1e-9)
    official = official_rsd(f_s, f_t, 0.1)
    assert torch.isnan(official) or 0 <= ours.item() - official.item() <= len(f_s) * 1e-6


@pytest.mark.parametrize("n, m, d", [(8, 6, 20), (36, 12, 64)])
def test_rsd_on_unequal_batches_compares_the_leading_k_dimensional_subspaces(n, m, d):
    """Difference: the official code needs n = m (|P_s| - |P_t| are (n, r) and (m, r)); dareg
    keeps the k = min(n, m, d) leading singular vectors of each batch, which is the official
    formula on bases cut to k columns."""
    f_s, f_t = features(n, d, 5), features(m, d, 6)
    with pytest.raises(RuntimeError):
        official_rsd(f_s, f_t, 0.1)
    ours = losses.rsd(f_s, f_t, ctx=TermContext(CFG)).item()
    assert ours == pytest.approx(official_rsd(f_s, f_t, 0.1, keep=min(n, m, d)).item(), rel=1e-9)


def test_rsd_of_a_repeated_batch_is_the_official_value_of_the_batch():
    """A source batch repeated twice spans the same subspace: dareg's value for (2n, n) batches
    is the official value for the (n, n) ones."""
    f_s, f_t = features(10, 40, 7), features(10, 40, 8)
    ours = losses.rsd(torch.cat([f_s, f_s]), f_t, ctx=TermContext(CFG)).item()
    assert ours == pytest.approx(official_rsd(f_s, f_t, 0.1).item(), rel=1e-9)


# ----- DARE-GRAM ---------------------------------------------------------------------------------

def official_gram(h):
    """A = torch.cat((torch.ones(b, 1), H1), 1); cov_A = A.t() @ A (not divided by b). The
    official builds both domains' ones from H1's b, so H2 must have b rows too."""
    b = len(h)
    return torch.cat([torch.ones(b, 1), h], 1).T @ torch.cat([torch.ones(b, 1), h], 1)


def official_index(eigenvalues, threshold: float) -> int:
    """eigen = cumsum(L) / L.sum(); T = eigen[1] if eigen[1] > treshold else treshold;
    index = torch.argwhere(eigen <= T)[-1]: the last 0-based index whose share is <= T."""
    share = torch.cumsum(eigenvalues, 0) / eigenvalues.sum()
    top = share[1] if share[1] > threshold else threshold
    return int(torch.argwhere(share <= top)[-1])


def truncated_pinv(g, kept: int):
    """The pseudo-inverse keeping g's `kept` largest singular values."""
    u, s, vh = torch.linalg.svd(g)
    return (vh[:kept].T / s[:kept]) @ u[:, :kept].T


def official_rtol(eigenvalues, k: int, exact: bool) -> float:
    """rtol = (L[k] / L[0]).detach(). Not `exact`: halfway between L[k - 1] and L[k], so that
    pinv inverts exactly the k values the count names (the official tolerance leaves the k-th
    to rounding, test_official_pinv_keeps_k_or_k_plus_one_by_rounding; at dareg's k, which can
    reach the rank, L[k] may be a numerical zero). 0 keeps every value."""
    if k >= len(eigenvalues):
        return 0.0
    cut = eigenvalues[k] if exact else (eigenvalues[k - 1] + eigenvalues[k]) / 2
    return float(cut / eigenvalues[0])


def official_daregram(h1, h2, threshold: float, kept: int | None = None, eps: float = 1e-6):
    """(angle, scale, the pseudo-inverses' smallest column norm) of `DARE_GRAM_LOSS` before its
    tradeoffs (dareg weighs the two as two terms). `kept` replaces the official count
    k = max(index_A, index_B) of inverted values; `eps` the cosine's 1e-6."""
    b, p = h1.shape
    cov_a = official_gram(h1)
    cov_b = torch.cat([torch.ones(b, 1), h2], 1).T @ torch.cat([torch.ones(b, 1), h2], 1)
    l_a, l_b = torch.linalg.svdvals(cov_a), torch.linalg.svdvals(cov_b)
    k = max(official_index(l_a, threshold), official_index(l_b, threshold)) if kept is None else kept
    # A = torch.linalg.pinv(cov_A, rtol=(L_A[k] / L_A[0]).detach()), the same for B
    inv_a = torch.linalg.pinv(cov_a, rtol=official_rtol(l_a.detach(), k, kept is None))
    inv_b = torch.linalg.pinv(cov_b, rtol=official_rtol(l_b.detach(), k, kept is None))
    # cos = torch.dist(ones(p + 1), CosineSimilarity(dim=0, eps=1e-6)(A, B), p=1) / (p + 1)
    cos = F.cosine_similarity(inv_a, inv_b, dim=0, eps=eps)
    angle = torch.dist(torch.ones(p + 1), cos, p=1) / (p + 1)
    smallest = float(torch.cat([inv_a, inv_b], 1).detach().norm(dim=0).min())
    # torch.dist(L_A[:k], L_B[:k]) / k
    return angle, torch.dist(l_a[:k], l_b[:k]) / k, smallest


def dareg_kept(f_s, f_t, threshold: float) -> int:
    """The count daregram_parts inverts (its k)."""
    lam_s, lam_t = (losses.gram_eigenvalues(f) for f in (f_s, f_t))
    return min(max(losses._leading(lam_s, threshold), losses._leading(lam_t, threshold)),
               len(f_s), len(f_t), f_s.shape[1] + 1)


DAREGRAM_SHAPES = [(36, 512), (36, 64), (8, 5), (12, 30)]  # (b, d); the papers' 36 x 512 first


@pytest.mark.parametrize("spectrum, threshold, index", [
    ([5.0, 3.0, 1.0, 0.6, 0.4], 0.9, 2),   # shares .5 .8 .9 .96 1: a share exactly at T
    ([5.0, 3.0, 1.5, 0.5], 0.9, 1),        # shares .5 .8 .95 1
    ([6.0, 3.0, 0.5, 0.5], 0.95, 2),       # shares .6 .9 .95 1: at T again
    ([9.5, 0.3, 0.2], 0.9, 1),             # shares .95 .98 1: T raised to .98, official keeps 1
    ([8.0, 1.5, 0.5], 0.9, 1),             # shares .8 .95 1: T raised to .95
])
def test_daregram_k_rule_is_the_official_index(spectrum, threshold, index):
    """dareg inverts as many values as the official index says: k = the last 0-based index whose
    cumulative share is <= T (T raised to the second share when that exceeds T), i.e. the
    values before that index (an earlier dareg inverted the fewest reaching T, two more)."""
    eigenvalues = torch.tensor(spectrum)
    assert official_index(eigenvalues, threshold) == index
    assert losses._leading(eigenvalues, threshold) == index


@pytest.mark.parametrize("b, d", DAREGRAM_SHAPES)
@pytest.mark.parametrize("threshold", [0.9, 0.99, 0.999])
@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_daregram_counts_on_features_are_the_official(b, d, threshold, offset):
    """On batch features, centred or far from 0 (offset 3: the mean direction holds over 96% of
    the spectrum, so T is raised): dareg inverts the official count; the cap min(n, m, d + 1)
    is never what decides it with equal batches."""
    f_s, f_t = features(b, d, 11) + offset, features(b, d, 12) + offset
    spectra = [torch.linalg.svdvals(official_gram(f)) for f in (f_s, f_t)]
    official = max(official_index(lam, threshold) for lam in spectra)
    assert official < min(b, d + 1)  # the cap is not reached
    assert dareg_kept(f_s, f_t, threshold) == official


@pytest.mark.parametrize("b, d", DAREGRAM_SHAPES)
@pytest.mark.parametrize("threshold", [0.9, 0.99, 0.999])
@pytest.mark.parametrize("offset", [0.0, 3.0])
def test_daregram_equals_official_at_dareg_k_with_the_gram_divided_by_b(b, d, threshold, offset):
    """Differences: dareg's G is A^T A / b, so its eigenvalues are the official's / b (shares,
    cosines and so the angle are unchanged, the scale term is the official's / b) and its
    pseudo-inverse is b times the official's; dareg inverts its own count k (above); dareg's
    cosine eps is 1e-8, the official's 1e-6. At dareg's k: the angle is the official formula
    with eps 1e-8 / b, which is the official eps's wherever the official pseudo-inverses'
    columns are all longer than 1e-6 (shorter ones, with few large values inverted, shrink the
    official cosine towards 0); the scale is the official's / b. Both differentiate
    torch.linalg.pinv, whose backward holds the rank fixed."""
    f_s = (features(b, d, 13) + offset).requires_grad_()
    f_t = (features(b, d, 14) + offset).requires_grad_()
    angle, scale = losses.daregram_parts(f_s, f_t, threshold)
    kept = dareg_kept(f_s, f_t, threshold)
    ref_angle, ref_scale, _ = official_daregram(f_s, f_t, threshold, kept, eps=1e-8 / b)
    assert angle.item() == pytest.approx(ref_angle.item(), rel=1e-7, abs=1e-12)
    official_angle, _, shortest = official_daregram(f_s, f_t, threshold, kept)
    if shortest > 1e-6:
        assert official_angle.item() == pytest.approx(ref_angle.item(), rel=1e-12, abs=1e-15)
    assert scale.item() == pytest.approx(ref_scale.item() / b, rel=1e-9)
    for ours, theirs in ((angle, ref_angle), (scale, ref_scale / b)):
        grads = [torch.autograd.grad(v, [f_s, f_t], retain_graph=True) for v in (ours, theirs)]
        for g_ours, g_theirs in zip(*grads):
            assert torch.allclose(g_ours, g_theirs, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("b, d", DAREGRAM_SHAPES)
@pytest.mark.parametrize("threshold", [0.9, 0.99])
def test_official_pinv_keeps_k_or_k_plus_one_by_rounding(b, d, threshold):
    """Difference: the official rtol L[k] / L[0] sits exactly on the k-th value, so whether pinv
    inverts k or k + 1 values turns on rounding (in float64 and float32 about 4 in 10 cases keep
    k + 1); dareg builds the pseudo-inverse from the thin SVD of A / sqrt(b), exactly k values,
    b times the truncated official one."""
    f = features(b, d, 17)
    g = official_gram(f)
    lam = torch.linalg.svdvals(g)
    k = official_index(lam, threshold)
    official = torch.linalg.pinv(g, rtol=float(lam[k] / lam[0]))
    distance = [float(torch.linalg.matrix_norm(official - truncated_pinv(g, r)) /
                      torch.linalg.matrix_norm(truncated_pinv(g, r))) for r in (k, k + 1)]
    assert min(distance) < 1e-8
    ours = gram_pinv(losses.gram_factor(f), k)
    assert torch.allclose(ours, b * truncated_pinv(g, k), rtol=1e-7, atol=1e-10)
    lam_ours = losses.gram_eigenvalues(f)
    assert torch.allclose(lam_ours, lam[:len(lam_ours)] / b, rtol=1e-9, atol=1e-12)


def test_daregram_on_unequal_batches():
    """Difference: the official code needs equal batches (its ones column has H1's b rows);
    dareg divides each Gram matrix by its own batch size, so a source batch repeated twice has
    the Gram matrix of the batch, and dareg's value for (2b, b) batches is the one for (b, b)."""
    f_s, f_t = features(12, 30, 18), features(12, 30, 19)
    with pytest.raises(RuntimeError):
        official_daregram(torch.cat([f_s, f_s]), f_t, 0.99)
    ours = losses.daregram_parts(torch.cat([f_s, f_s]), f_t, 0.99)
    ref_angle, ref_scale, _ = official_daregram(f_s, f_t, 0.99, kept=dareg_kept(f_s, f_t, 0.99))
    assert [v.item() for v in ours] == pytest.approx([ref_angle.item(), ref_scale.item() / 12],
                                                     rel=1e-7)


def test_daregram_cap_decides_only_with_unequal_batches():
    """dareg caps k at min(n, m, d + 1): with 8 source and 16 target images the target alone
    would invert more than G_s's rank allows; the capped value is the formula at k = 8."""
    f_s, f_t = features(8, 32, 20), features(16, 32, 21)
    lead = max(losses._leading(losses.gram_eigenvalues(f), 0.999) for f in (f_s, f_t))
    assert lead > 8 and dareg_kept(f_s, f_t, 0.999) == 8


# ----- DD ----------------------------------------------------------------------------------------

def official_coefficient(iter_num: int, alpha=1.0, lo=0.0, hi=0.1, max_iters=1000) -> float:
    """WarmStartGradientReverseLayer.forward: 2 (hi - lo) / (1 + exp(-alpha i / N)) - (hi - lo)
    + lo, with ImageRegressor's alpha 1, lo 0, hi 0.1, max_iters 1000; i counts the
    model.step() calls made before this forward (dd.py calls it once a step, after the
    forward)."""
    return float(2.0 * (hi - lo) / (1.0 + np.exp(-alpha * iter_num / max_iters)) - (hi - lo) + lo)


class OfficialReverse(torch.autograd.Function):
    """GradientReverseFunction: forward input * 1.0, backward grad_output.neg() * coeff."""

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.coeff = coeff
        return x * 1.0

    @staticmethod
    def backward(ctx, grad):
        return grad.neg() * ctx.coeff, None


def official_transfer_loss(y_s, y_s_adv, y_t, y_t_adv, margin: float):
    """MarginDisparityDiscrepancy.forward with RegressionMarginDisparityDiscrepancy's
    disparities F.l1_loss(y_adv, y.detach(), reduction='none'): source_loss = -margin * L_s,
    target_loss = L_t, weights 1, loss = source_loss + target_loss (elementwise, so n = m),
    reduction 'mean'."""
    source_loss = -margin * F.l1_loss(y_s_adv, y_s.detach(), reduction="none")
    target_loss = F.l1_loss(y_t_adv, y_t.detach(), reduction="none")
    w_s, w_t = torch.ones_like(source_loss), torch.ones_like(target_loss)
    return (source_loss * w_s + target_loss * w_t).mean()


def official_dd_loss(f_s, f_t, y_s, y_t, adv_head, iter_num: int, margin: float, hi: float,
                     steps: int):
    """dd.py's transfer part of `loss = mse_loss - transfer_loss * trade_off` (trade_off 1):
    the features go through the warm-start reversal into adv_head (GeneralModule.forward), the
    batch is x = cat([x_s, x_t]) split by outputs_adv.chunk(2)."""
    coeff = official_coefficient(iter_num, hi=hi, max_iters=steps)
    outputs_adv = adv_head(OfficialReverse.apply(torch.cat([f_s, f_t]), coeff))
    y_s_adv, y_t_adv = outputs_adv.chunk(2, dim=0)
    return -official_transfer_loss(y_s, y_s_adv, y_t, y_t_adv, margin)


def dd_setup(n, m, d, factors, seed):
    """Features, the main head's predictions (leaves with gradient) and an adversary with
    larger weights than tllib's init (whose outputs all sit near 1/2)."""
    g = torch.Generator().manual_seed(seed)
    f_s, f_t = features(n, d, seed), features(m, d, seed + 1)
    y_s, y_t = (torch.rand(k, factors, generator=g).requires_grad_() for k in (n, m))
    adversary = adversarial.adversarial_regressor(d, CFG, factors)
    with torch.no_grad():
        adversary[0].weight.normal_(0.0, 0.3, generator=g)
        adversary[0].bias.normal_(0.0, 0.3, generator=g)
    return f_s, f_t, y_s, y_t, adversary.double()


def grads(value, tensors):
    return torch.autograd.grad(value, tensors, allow_unused=True)


@pytest.mark.parametrize("step", [0, 1, 1000, 7000, 20000])
@pytest.mark.parametrize("hi, steps", [(0.1, 1000), (1.0, 250)])
def test_dd_reversal_coefficient_equals_tllibs_warm_start(step, hi, steps):
    """dareg's ctx.step is tllib's iter_num at the step's forward (both 0-based)."""
    assert adversarial.warm_start_coefficient(step, hi, steps) == pytest.approx(
        official_coefficient(step, hi=hi, max_iters=steps), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("b, d, factors", [(36, 512, 3), (8, 5, 1), (12, 30, 2)])
@pytest.mark.parametrize("margin, step", [(1.0, 3000), (4.0, 500)])
def test_dd_equals_official_on_equal_batches(b, d, factors, margin, step):
    """Value and every gradient (features, adversary; none to the main head's predictions)
    equal tllib's transfer part, for the papers' batch of 36 x 512 with 3 factors and others."""
    f_s, f_t, y_s, y_t, adversary = dd_setup(b, b, d, factors, seed=30)
    f_s.requires_grad_(), f_t.requires_grad_()
    ctx = TermContext(cfg(dd_margin=margin), modules={"adversarial_regressor": adversary},
                      step=step)
    ours = adversarial.dd(f_s, f_t, y_s, y_t, ctx)
    theirs = official_dd_loss(f_s, f_t, y_s, y_t, adversary, step, margin, 0.1, 1000)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    inputs = [y_s, y_t, f_s, f_t, *adversary.parameters()]
    g_ours, g_theirs = grads(ours, inputs), grads(theirs, inputs)
    assert g_ours[:2] == g_theirs[:2] == (None, None)
    for mine, official in zip(g_ours[2:], g_theirs[2:]):
        assert torch.allclose(mine, official, rtol=1e-10, atol=1e-15)


def test_dd_on_unequal_batches_takes_each_domains_mean():
    """Difference: tllib adds the source and target disparities elementwise before the mean, so
    it needs n = m; dareg takes one mean per domain (the same value when n = m). A source batch
    repeated twice then gives the official value of the (b, b) batches, and the two copies'
    feature gradients sum to the official one."""
    f_s, f_t, y_s, y_t, adversary = dd_setup(10, 10, 16, 3, seed=40)
    ctx = TermContext(CFG, modules={"adversarial_regressor": adversary}, step=2000)
    y_adv = adversary(torch.cat([f_s, f_s, f_t])).detach()
    with pytest.raises(RuntimeError):  # source_loss (20, 3) + target_loss (10, 3)
        official_transfer_loss(torch.cat([y_s, y_s]), y_adv[:20], y_t, y_adv[20:], 1.0)
    twice = torch.cat([f_s, f_s]).requires_grad_()
    ours = adversarial.dd(twice, f_t, torch.cat([y_s, y_s]), y_t, ctx)
    once = f_s.clone().requires_grad_()
    theirs = official_dd_loss(once, f_t, y_s, y_t, adversary, 2000, 1.0, 0.1, 1000)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)
    g_ours = grads(ours, [twice, *adversary.parameters()])
    g_theirs = grads(theirs, [once, *adversary.parameters()])
    assert torch.allclose(g_ours[0][:10] + g_ours[0][10:], g_theirs[0], rtol=1e-10, atol=1e-15)
    for p_ours, p_theirs in zip(g_ours[1:], g_theirs[1:]):
        assert torch.allclose(p_ours, p_theirs, rtol=1e-10, atol=1e-15)


def test_dd_adversary_is_the_official_heads_last_layers():
    """tllib's adv_head (ImageRegressor, BN form) is conv-BN-ReLU x 2, pooling, Linear(width, F),
    Sigmoid, every conv and linear N(0, 0.01^2) with zero bias, the same as its main head.
    dareg's main head is one Linear and a sigmoid on pooled features, so its h' is that
    Linear(d, K) + Sigmoid with the official init (1/2 at zero features, near it elsewhere)."""
    torch.manual_seed(1)
    adversary = adversarial.adversarial_regressor(512, CFG, 3).double()
    assert torch.equal(adversary(torch.zeros(2, 512)), torch.full((2, 3), 0.5))
    out = adversary(features(36, 512, 50)).detach()
    assert out.shape == (36, 3) and float((out - 0.5).abs().max()) < 0.2
    assert math.isclose(adversary[0].weight.std().item(), 0.01, rel_tol=0.05)
    assert adversary[0].bias.abs().max().item() == 0.0
