"""The adversarial loss terms, registered in dareg.losses' registry: DANN (a domain
discriminator) and DD (an adversarial regressor), both behind a gradient-reversal layer, with the
builders of the modules they train on the model. Same signature as every term:
term(f_s, f_t, y_s, y_t, ctx) -> scalar tensor."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dareg.losses import TermContext, check_predictions, register
from dareg.params import Losses

# ----- DANN --------------------------------------------------------------------------------------

class _ReverseGradient(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -coeff (Ganin et al.'s GRL)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float):
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return _ReverseGradient.apply(x, coeff)


def dann_coefficient(progress: float) -> float:
    """The gradient-reversal strength over training: 2 / (1 + exp(-10 p)) - 1, from 0 to ~1."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def domain_discriminator(feature_dim: int, cfg: Losses, outputs: int) -> nn.Module:
    """DANN's domain classifier: two hidden ReLU layers of `losses.dann_hidden` units, one logit
    (whatever the head's number of outputs)."""
    h = cfg.dann_hidden
    return nn.Sequential(nn.Linear(feature_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                         nn.Linear(h, 1))


@register("dann", modules={"domain_discriminator": domain_discriminator})
def dann(f_s, f_t, y_s, y_t, ctx: TermContext) -> torch.Tensor:
    """Domain-adversarial training (Ganin et al., JMLR 2016):

        L = 1/2 [ mean_i BCE(D(R(f_s_i)), 1) + mean_j BCE(D(R(f_t_j)), 0) ]

    D the domain discriminator, R the gradient-reversal layer with strength
    dann_coefficient(progress): D learns to tell the domains apart, the features to hide them.
    Never below log 2 when the two samples are identical (D cannot beat chance).
    """
    discriminator = ctx.modules["domain_discriminator"]
    logits = discriminator(reverse_gradient(torch.cat([f_s, f_t]), dann_coefficient(ctx.progress)))
    logit_s, logit_t = logits.squeeze(1).split([len(f_s), len(f_t)])
    return 0.5 * (F.binary_cross_entropy_with_logits(logit_s, torch.ones_like(logit_s))
                  + F.binary_cross_entropy_with_logits(logit_t, torch.zeros_like(logit_t)))


# ----- DD ----------------------------------------------------------------------------------------

def adversarial_regressor(feature_dim: int, cfg: Losses, outputs: int) -> nn.Module:
    """DD's adversarial head h': Linear(d, K) then a sigmoid, weights N(0, 0.01^2), biases 0.

    In DD's theory h' ranges over the main head's hypothesis class; tllib builds adv_head as a
    copy of the main head's architecture with the same initialisation. dareg's main head
    (heads.SigmoidHead) is dropout, Linear(d, K), sigmoid, so h' is the same linear-sigmoid map;
    dropout is left out: it regularises the main head's fit without changing the class, and in
    h' it would only add noise to the supremum over h' that D stands for. tllib's init: h'
    starts near 1/2 everywhere (exactly 1/2 at zero features). Its outputs are in (0, 1), so
    labels scaled to [0, 1] (or a head whose predictions stay there) are assumed.
    """
    linear = nn.Linear(feature_dim, outputs)
    nn.init.normal_(linear.weight, 0.0, 0.01)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(linear, nn.Sigmoid())


def warm_start_coefficient(step: int, top: float, steps: int) -> float:
    """tllib's WarmStartGradientReverseLayer (alpha 1, lo 0, hi `top`, max_iters `steps`):
    2 top / (1 + exp(-step / steps)) - top = top tanh(step / (2 steps)); 0 at step 0, 46% of
    `top` at `steps`, 96% at 4 `steps`."""
    return 2.0 * top / (1.0 + math.exp(-step / steps)) - top


def disparity_discrepancy(y_s, y_t, y_s_adv, y_t_adv, margin: float) -> torch.Tensor:
    """D = mean_jk |y'_t[j, k] - sg(y_t[j, k])| - margin * mean_ik |y'_s[i, k] - sg(y_s[i, k])|

    over samples and factors (y (n, K), (m, K); y' the adversarial head's; sg = stop-gradient):
    tllib's RegressionMarginDisparityDiscrepancy with the L1 disparity, one mean per domain."""
    source = (y_s_adv - y_s.detach()).abs().mean()
    target = (y_t_adv - y_t.detach()).abs().mean()
    return target - margin * source


@register("dd", modules={"adversarial_regressor": adversarial_regressor})
def dd(f_s, f_t, y_s, y_t, ctx: TermContext) -> torch.Tensor:
    """Disparity Discrepancy for regression (Zhang et al., ICML 2019, "Bridging Theory and
    Algorithm for Domain Adaptation"; tllib's DD on dSprites):

        y'_s, y'_t = h'(R(f_s)), h'(R(f_t))     (n, K), (m, K)
        term = -D(y_s, y_t, y'_s, y'_t)         (disparity_discrepancy, margin `dd_margin`)

    h' the adversarial regressor, R the gradient reversal with strength
    warm_start_coefficient(ctx.step, dd_grl_max, dd_grl_steps) (ctx.step 0-based, as tllib's
    iteration count when the step's forward runs). Minimising the term, h' maximises D
    (disagree with the main head on the target, agree on the source) and the features, through
    R, minimise it; the main head's predictions are detached (tllib's). dareg's weight on the
    term is tllib's trade_off (its script minimises mse - trade_off * D).
    """
    check_predictions(y_s, y_t)
    coeff = warm_start_coefficient(ctx.step, ctx.cfg.dd_grl_max, ctx.cfg.dd_grl_steps)
    adv = ctx.modules["adversarial_regressor"](reverse_gradient(torch.cat([f_s, f_t]), coeff))
    if adv.shape[1] != y_s.shape[1]:
        raise ValueError(f"dd: the adversarial regressor predicts {adv.shape[1]} factors, the "
                         f"head {y_s.shape[1]}; build it with build_modules(..., outputs=K)")
    y_s_adv, y_t_adv = adv.split([len(f_s), len(f_t)])
    return -disparity_discrepancy(y_s, y_t, y_s_adv, y_t_adv, ctx.cfg.dd_margin)
