"""Scoring text with a causal LM: the one completion log-likelihood, and the answer-token probability of judges."""

from __future__ import annotations

from typing import Sequence

import torch

from ..core.logprobs import answer_share, sequence_logprobs
from ..memory import release_freed_memory
from .batch import left_pad, model_device, pad_id
from .cache import common_prefix_length, last_logits_kwargs, shared_prefix_cache


def completion_logprobs(
    model,
    prompts: list[list[int]],
    completions: list[list[int]],
    pad: int,
    average: bool = False,
    share_prefix: bool = True,
) -> torch.Tensor:
    """(B,) sum (or mean per token) of log p(completion | prompt), with gradients when grad is enabled.

    The prompt start the rows share (a chat template, few-shot turns) runs once, as a cache the rows continue
    from. After it, the rest of each prompt is left-padded and completions right-padded, so every completion
    starts at the same column and only the last (longest completion + 1) positions go through the vocabulary
    projection. A row with an empty completion scores 0. share_prefix False: no cache (for a wrapped model, such
    as a NADO-guided one, whose forward takes no past_key_values)."""
    shared = common_prefix_length(prompts) if share_prefix else 0
    prefix, prompts = prompts[0][:shared], [p[shared:] for p in prompts]
    width_p, width_c = max(map(len, prompts)), max(map(len, completions))
    ids = torch.full((len(prompts), width_p + width_c), pad, dtype=torch.long)
    attn, mask = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, width_p - len(p) : width_p + len(c)] = torch.tensor(p + c, dtype=torch.long)
        attn[i, width_p - len(p) : width_p + len(c)] = 1
        mask[i, width_p : width_p + len(c)] = 1
    device = model_device(model)
    ids, attn, mask = ids.to(device), attn.to(device), mask.to(device)
    positions = shared + (attn.cumsum(-1) - 1).clamp(min=0)  # padding inside the batch: positions count real tokens
    extra = {}
    if shared:
        extra["past_key_values"] = shared_prefix_cache(model, prefix, len(ids))
        attn = torch.cat([attn.new_ones(len(ids), shared), attn], dim=1)
    logits = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=positions,
        use_cache=bool(shared),
        **extra,
        **last_logits_kwargs(model, width_c + 1),
    ).logits
    kept = logits.shape[1]
    return sequence_logprobs(logits, ids[:, -kept:], mask[:, -kept:], average=average)


@torch.no_grad()
def score_continuations(
    model, tokenizer, contexts: list[str], continuations: list[str], batch_size: int = 16
) -> tuple[list[float], list[int]]:
    """Sum log p(continuation | context) for each text pair, and the continuation's token count.

    Context and continuation are tokenised separately (lm-eval-harness style), so the continuation's tokens are
    exactly those scored. An empty context becomes the BOS token where the tokenizer has one; without one the first
    token is the context, and the count is of the tokens actually scored. The model may be any
    module whose forward takes (input_ids, attention_mask) and returns .logits (a NADO-guided model, say)."""
    pad = pad_id(tokenizer)
    out_lp, out_n = [], []
    for s in range(0, len(contexts), batch_size):
        ctx_ids, cont_ids = [], []
        for ctx, cont in zip(contexts[s : s + batch_size], continuations[s : s + batch_size]):
            c = tokenizer.encode(ctx, add_special_tokens=False) if ctx else []
            x = tokenizer.encode(cont, add_special_tokens=False)
            if not c and tokenizer.bos_token_id is not None:
                c = [tokenizer.bos_token_id]
            elif not c:  # nothing predicts the first token: it becomes the context and is not counted
                c, x = x[:1], x[1:]
            ctx_ids.append(c)
            cont_ids.append(x)
        out_lp += completion_logprobs(model, ctx_ids, cont_ids, pad, share_prefix=False).tolist()
        out_n += [len(x) for x in cont_ids]
    return out_lp, out_n


def answer_token_ids(tokenizer, words: Sequence[str], fallback: bool = True) -> list[int]:
    """Token ids that spell one of the answer words on their own (each word bare and after a space).

    A variant that splits (SmolLM2 encodes " 1" as " " + "1") would contribute a token shared with every other
    answer, so only single-token variants count. fallback: with none, the first token of each bare word."""
    single = {
        toks[0] for w in words for v in (w, " " + w) if len(toks := tokenizer.encode(v, add_special_tokens=False)) == 1
    }
    if single or not fallback:
        return sorted(single)
    return sorted({tokenizer.encode(w, add_special_tokens=False)[0] for w in words})


# Rows x longest row per judge forward. A 16-row batch of ~100-token prompts fits; one long text (a PyRIT response,
# ~480 tokens) no longer pads 15 short rows to its length, which on CPU took ~1 GB of activations (issue 16).
MAX_BATCH_TOKENS = 2048


def token_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> list[list[int]]:
    """Row indices in batches, shortest rows first: at most batch_size rows and at most max_tokens padded tokens
    (rows x longest row; default MAX_BATCH_TOKENS) each, a row longer than that alone. Sorting keeps the padding
    small; the budget bounds the activations a batch of long texts needs."""
    budget = MAX_BATCH_TOKENS if max_tokens is None else max_tokens
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        last = batches[-1] if batches else None
        # rows come in length order, so row i is the longest of the batch it joins
        if last is None or len(last) >= batch_size or (len(last) + 1) * lengths[i] > budget:
            batches.append([i])
        else:
            last.append(i)
    return batches


@torch.no_grad()
def answer_probability(
    model, tokenizer, texts: list[str], yes_ids: list[int], no_ids: list[int], batch_size: int = 16
) -> list[float]:
    """P(yes) / (P(yes) + P(no)) of the first answer token after each (already templated) text: the LlamaGuard /
    ShieldGemma recipe, shared by the LM-judge scorer, the adversarial judge and the win-rate judge. Rows are
    scored in length-sorted batches under a token budget (token_batches); the scores come back in input order."""
    pad, device = pad_id(tokenizer), model_device(model)
    encoded = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    out = [0.0] * len(texts)
    for idx in token_batches([len(e) for e in encoded], batch_size):
        ids, mask = left_pad([encoded[i] for i in idx], pad)
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **last_logits_kwargs(model, 1))
        for i, p in zip(idx, answer_share(logits.logits[:, -1], yes_ids, no_ids).tolist()):
            out[i] = p
    release_freed_memory()
    return out
