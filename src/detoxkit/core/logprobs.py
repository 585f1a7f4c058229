"""Token and sequence log-probabilities of causal LMs, correctly shifted and masked."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probability of each next token.

    logits: (B, T, V) from a causal LM over input_ids (B, T).
    Returns (B, T-1): entry t is log p(input_ids[:, t+1] | input_ids[:, :t+1]); the shift is the point.
    """
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor, average: bool = False
) -> torch.Tensor:
    """Sum (or mean) of the completion tokens' log-probabilities.

    completion_mask: (B, T), 1 on tokens that belong to the scored completion (prompt and padding 0).
    The mask is aligned with input_ids; position 0 can never be scored (nothing predicts it).
    Returns (B,).
    """
    per_token = token_logprobs(logits, input_ids)
    mask = completion_mask[:, 1:].to(per_token.dtype)
    total = (per_token * mask).sum(-1)
    if average:
        return total / mask.sum(-1).clamp(min=1)
    return total


def answer_share(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int]) -> torch.Tensor:
    """(B,) float64 P(yes) / (P(yes) + P(no)) from next-token logits (B, V), yes/no summed over their token ids.

    The log-odds are taken in float32 (their own resolution is fine) and the sigmoid in float64: in float32 it
    rounds every log-odds above ~17 to exactly 1.0, so a confident judge's scores tie at the top and no
    threshold can part them (float64 keeps them apart up to ~37)."""
    logp = torch.log_softmax(logits.float(), -1)
    log_odds = torch.logsumexp(logp[:, yes_ids], -1) - torch.logsumexp(logp[:, no_ids], -1)
    return torch.sigmoid(log_odds.double())
