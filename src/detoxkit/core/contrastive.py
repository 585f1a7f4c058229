"""Contrastive next-token logits: a safe branch contrasted with an adversarial (or null) branch."""

from __future__ import annotations

import math

import torch


def contrastive_logits(
    safe: torch.Tensor, adv: torch.Tensor, alpha: float, form: str = "acd", plausibility: float | None = None
) -> torch.Tensor:
    """Combine two branches' next-token logits.

    safe, adv: (..., V) logits of the same positions under the safe and the adversarial prompt.
    form "acd": safe − α·adv (ACD eq. 5; also ROSE and Instructive Decoding).
    form "cfg": (1+α)·safe − α·adv (classifier-free-guidance / contrastive-decoding form: α=0 is the safe branch,
    and the scale of the safe logits is kept, so temperature means the same as without contrast).
    Logits or log-probabilities give the same softmax: log_softmax only shifts each row by a constant.
    plausibility β (Li et al. 2023): tokens with p_safe < β·max p_safe are set to −inf, so the contrast can only
    re-rank tokens the safe branch finds plausible.
    Returns (..., V).
    """
    if form == "acd":
        out = safe - alpha * adv
    elif form == "cfg":
        out = (1 + alpha) * safe - alpha * adv
    else:
        raise ValueError(f"form must be 'acd' or 'cfg', got {form!r}")
    if plausibility is not None and plausibility > 0:
        logp = torch.log_softmax(safe.float(), dim=-1)
        keep = logp >= logp.max(dim=-1, keepdim=True).values + math.log(plausibility)
        out = out.masked_fill(~keep, float("-inf"))
    return out
