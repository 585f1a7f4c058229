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


def sequence_logprobs(logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor,
                      average: bool = False) -> torch.Tensor:
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


@torch.no_grad()
def score_continuations(model, tokenizer, contexts: list[str], continuations: list[str], batch_size: int = 16,
                        device: str | None = None) -> tuple[list[float], list[int]]:
    """Sum log p(continuation | context) for each pair, and the continuation's token count.

    Context and continuation are tokenised separately and concatenated (lm-eval-harness style), so the
    continuation's tokens are exactly those scored.
    """
    device = device or str(next(model.parameters()).device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out_lp, out_n = [], []
    for s in range(0, len(contexts), batch_size):
        seqs, masks = [], []
        for ctx, cont in zip(contexts[s : s + batch_size], continuations[s : s + batch_size]):
            c_ids = tokenizer.encode(ctx, add_special_tokens=False) if ctx else []
            if not c_ids and tokenizer.bos_token_id is not None:
                c_ids = [tokenizer.bos_token_id]
            x_ids = tokenizer.encode(cont, add_special_tokens=False)
            seqs.append(c_ids + x_ids)
            masks.append([0] * len(c_ids) + [1] * len(x_ids))
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        attn = torch.zeros_like(ids)
        cmask = torch.zeros_like(ids)
        for i, (seq, m) in enumerate(zip(seqs, masks)):  # right padding keeps positions identical to unpadded
            ids[i, : len(seq)] = torch.tensor(seq)
            attn[i, : len(seq)] = 1
            cmask[i, : len(seq)] = torch.tensor(m)
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
        lp = sequence_logprobs(logits, ids.to(device), cmask.to(device))
        out_lp.extend(lp.tolist())
        out_n.extend(int(sum(m)) for m in masks)
    return out_lp, out_n
