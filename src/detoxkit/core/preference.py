"""Preference losses on sequence log-probabilities: DPO (label-smoothed), SRO, and unpaired NPO/KTO.

Every function takes per-sequence log-probabilities (B,) — sums over the completion's tokens, as from
:func:`detoxkit.core.logprobs.sequence_logprobs` (correctly shifted) — and returns per-example losses (B,);
the caller takes the mean. Δ(y) = log π_θ(y|x) − log π_ref(y|x) is the policy/reference log-ratio.

- DPO (Rafailov et al., 2023), conservative form (Mitchell, 2023 "cDPO"):
  h = β·[Δ(y_w) − Δ(y_l)],  loss = −(1−ε)·log σ(h) − ε·log σ(−h).
  With ε = 0 this is exactly TRL's ``DPOTrainer`` ``loss_type="sigmoid"``.
- SRO (Xie, Li, Zhu, arXiv 2410.20298): for a toxic input x and the rewriter's paraphrase ŷ,
  pass (screener says ŷ is clean) -> DPO with chosen ŷ and rejected x itself: h = β·[Δ(ŷ) − Δ(x)];
  fail -> push ŷ down alone: h = −β·Δ(ŷ); the same label-smoothed loss of h (β = 0.1, ε = 0.1 in the paper).
- NPO (Zhang et al., 2024): −(2/β)·log σ(−β·Δ(y)) for an undesirable y (the SRO fail branch with ε = 0,
  rescaled by 2/β so its gradient does not vanish as β -> 0).
- KTO (Ethayarajh et al., 2024): unpaired desirable/undesirable completions measured against a reference
  point z0 (a detached batch estimate of KL(π_θ‖π_ref), clamped at 0):
  desirable 1 − σ(β·(Δ − z0)), undesirable 1 − σ(β·(z0 − Δ)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_sigmoid_loss(h: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """−(1−ε)·log σ(h) − ε·log σ(−h), elementwise. h: (B,) -> (B,).

    ε is the assumed probability that the preference label is wrong; ε in [0, 0.5).
    """
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    return -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Label-smoothed DPO loss per pair.

    policy_*/ref_*: (B,) sequence log-probs of the chosen/rejected completions. Returns (B,).
    """
    h = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return label_smoothed_sigmoid_loss(h, label_smoothing)


def sro_loss(
    policy_paraphrase: torch.Tensor,
    ref_paraphrase: torch.Tensor,
    policy_input: torch.Tensor,
    ref_input: torch.Tensor,
    passed: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    fail_weight: float = 1.0,
) -> torch.Tensor:
    """SRO loss per input: DPO (ŷ ≻ x) where the screener passed ŷ, −β·Δ(ŷ) push-down where it failed.

    policy_paraphrase, ref_paraphrase: (B,) log-probs of the paraphrase ŷ given the rewrite prompt;
    policy_input, ref_input: (B,) log-probs of the toxic input x scored as a response to the same prompt;
    passed: (B,) bool, the (possibly noisy) screener verdict. fail_weight scales the fail branch
    (0 gives "DPO on passing pairs only"). Returns (B,).
    """
    delta_paraphrase = policy_paraphrase - ref_paraphrase
    h_pass = beta * (delta_paraphrase - (policy_input - ref_input))
    h_fail = -beta * delta_paraphrase
    passed = passed.to(torch.bool)
    h = torch.where(passed, h_pass, h_fail)
    loss = label_smoothed_sigmoid_loss(h, label_smoothing)
    return torch.where(passed, loss, fail_weight * loss)


def npo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """NPO loss for undesirable completions: −(2/β)·log σ(−β·Δ(y)). (B,) -> (B,)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (policy_logps - ref_logps))


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    kl_estimate: torch.Tensor | None = None,
) -> torch.Tensor:
    """KTO loss for unpaired completions. (B,) log-probs and a (B,) bool mask of desirable ones -> (B,).

    kl_estimate: the reference point z0 (a scalar); by default the batch mean of Δ, detached and clamped
    at 0 (KTO's estimate, which uses mismatched pairs; the batch's own Δ is the cheap variant TRL also offers).
    """
    delta = policy_logps - ref_logps
    z0 = (delta.mean() if kl_estimate is None else kl_estimate).detach().clamp(min=0)
    desirable = desirable.to(torch.bool)
    good = desirable_weight * (1 - torch.sigmoid(beta * (delta - z0)))
    bad = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - delta)))
    return torch.where(desirable, good, bad)
