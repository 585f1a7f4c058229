"""NADO guidance and the attribute-control regulariser (Meng et al. 2022; Meng et al., EMNLP 2024 Findings).

A NADO model reads (x, y_<t) and gives one logit r[v] per vocabulary item v, with
R(x, y_<t ⊕ v) = σ(r[v]) = P(the finished sequence satisfies the constraint | prefix y_<t ⊕ v) under the base
model. The closest distribution to p that satisfies the constraint then factorises token by token as
q*(v | x, y_<t) = p(v | x, y_<t) · R(x, y_<t ⊕ v) / R(x, y_<t); here the denominator is taken as the normaliser
Σ_v p(v) R(·⊕v), which equals R(x, y_<t) when R is consistent and keeps q* a distribution when it is not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def guided_logprobs(base_logits: torch.Tensor, r_logits: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """log q*(v) = log p(v) + strength · log σ(r[v]) − log Σ_u p(u) σ(r[u])^strength.

    base_logits, r_logits: (..., V). Returns (..., V) log-probabilities. strength = 1 is the I-projection;
    other values sharpen or soften the guidance (the reference code's constraint_factor).
    log σ is taken of the raw logit r, never fed back into a sigmoid (see :func:`nado_loss`).
    """
    joint = torch.log_softmax(base_logits.float(), -1) + strength * F.logsigmoid(r_logits.float())
    return torch.log_softmax(joint, -1)


def token_kl(target_logprobs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """KL(q ‖ p_θ) per position, in closed form over the vocabulary: Σ_v q(v) (log q(v) − log p_θ(v)).

    target_logprobs: (..., V) log q (a fixed target: pass it detached); logits: (..., V) of the model p_θ.
    Returns (...). Its gradient with respect to the logits is p_θ − q, a token-level distillation towards q.
    """
    logp = torch.log_softmax(logits.float(), -1)
    q = target_logprobs.exp()
    # Where q is exactly 0 (R = 0) the term is 0 (the limit of q log q), not 0 · (−inf) = nan.
    return torch.where(q > 0, q * (target_logprobs - logp), torch.zeros_like(q)).sum(-1)


def nado_loss(selected_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the NADO logits of the tokens actually sampled against the sequence's label.

    selected_logits: (B, T) raw logits r_t[y_t] (R of each prefix y_≤t); labels: (B,) in [0, 1] (1 = the
    finished sequence satisfies the constraint; soft labels allowed); mask: (B, T) 1 on the scored positions.
    Returns the mean over scored positions. Samples come from the model being guided, so no importance weights.

    The loss is taken on the raw logit. The reference code applied BCE-with-logits to log σ(r), whose implied
    probability σ(log σ(r)) can never exceed 0.5, so R could not express "likely to stay non-toxic".
    """
    target = labels.to(selected_logits.dtype)[:, None].expand_as(selected_logits)
    per_token = F.binary_cross_entropy_with_logits(selected_logits.float(), target.float(), reduction="none")
    m = mask.to(per_token.dtype)
    return (per_token * m).sum() / m.sum().clamp(min=1)
