"""KV-cache helpers: logits for the last positions only, and a prompt start shared by every row run once."""

from __future__ import annotations


def last_logits_kwargs(model, n: int) -> dict:
    """``{"logits_to_keep": n}`` where the model's forward takes it (as ``generate`` uses it), else ``{}``: only the
    last n positions then go through the vocabulary projection, which on CPU costs as much as the rest of a long
    prompt's forward. A PEFT wrapper is looked through to its base model's forward."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {"logits_to_keep": n} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}


def common_prefix_length(seqs: list[list[int]]) -> int:
    """Length of the token prefix every sequence shares, leaving each at least one token of its own (the last prompt
    token's logits score a completion's first token, so it must come out of the batched pass). 0 for one sequence."""
    if len(seqs) < 2:
        return 0
    n = min(map(len, seqs)) - 1
    first = seqs[0]
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def shared_prefix_cache(model, prefix: list[int], batch: int):
    """The KV cache of `prefix` computed once (batch 1) and repeated `batch` times. Rows that share a long prompt
    start (a chat template and few-shot turns) then run only their own tokens; under autograd the gradient of every
    row flows back through the one prefix pass."""
    import torch

    device = next(model.parameters()).device
    cache = model(
        input_ids=torch.tensor([prefix], device=device), use_cache=True, **last_logits_kwargs(model, 1)
    ).past_key_values
    cache.batch_repeat_interleave(batch)
    return cache
