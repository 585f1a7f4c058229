"""Token-level losses on per-token log-probabilities (from :func:`detoxkit.core.logprobs.token_logprobs`).

Every function takes ``logp`` (B, T) — log p(y_t | ...) of the gold tokens — and ``mask`` (B, T) with 1 on the
tokens that count, and returns a scalar: the mean over sequences of the per-sequence *sum* over tokens
(ACD writes its losses as −E_{(x,y)} Σ_t ..., so longer responses weigh more, as in the paper).
"""

from __future__ import annotations

import math

import torch

P_MAX = 1.0 - 1e-6  # clamp p <= 1 - 1e-6 so log(1 - p) stays finite


def nll_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """−E Σ_t log p(y_t): likelihood. logp, mask: (B, T) -> scalar."""
    m = mask.to(logp.dtype)
    return -(logp * m).sum(-1).mean()


def unlikelihood_loss(logp: torch.Tensor, mask: torch.Tensor, p_max: float = P_MAX) -> torch.Tensor:
    """−E Σ_t log(1 − p(y_t)) (Welleck et al. 2020): pushes the gold tokens' probability down.

    logp, mask: (B, T) -> scalar. p is clamped to ≤ p_max; log(1 − p) = log1p(−exp(logp)) is exact for small p.
    """
    m = mask.to(logp.dtype)
    log_one_minus = torch.log1p(-logp.clamp(max=math.log(p_max)).exp())
    return -(log_one_minus * m).sum(-1).mean()


def opo_loss(
    pos: tuple[torch.Tensor, torch.Tensor],
    neg: tuple[torch.Tensor, torch.Tensor],
    ret: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, dict[str, float]]:
    """Opposite Prompt Optimization loss for one prompt (ACD eqs. 3–4): L = L_p + L_n + L_r.

    pos, neg, ret: (logp, mask) pairs of (B_*, T_*) under that prompt, for the responses to make likely (L_p),
    unlikely (L_n, unlikelihood) and to keep (L_r, helpfulness on safe instructions).
    Safeguarding prompt: pos = D_HR (refusals), neg = D_HA (harmful answers), ret = D_S.
    Adversarial prompt:  pos = D_HA, neg = D_HR, ret = D_S.
    Returns (total, {"L_p", "L_n", "L_r"} as floats for logging).
    """
    l_p = nll_loss(*pos)
    l_n = unlikelihood_loss(*neg)
    l_r = nll_loss(*ret)
    return l_p + l_n + l_r, {"L_p": l_p.item(), "L_n": l_n.item(), "L_r": l_r.item()}
