"""One generation loop for every caller: plain, soft-prompted, two-branch (ACD) and NADO-guided decoding.

Why a loop of our own rather than ``model.generate``: contrastive and guided decoding need a second set of rows
(or a second model) with its own cache at every step, which a ``LogitsProcessor`` cannot own; sampling takes an
explicit ``torch.Generator`` so samples are a pure function of a seed even in a background thread; and the
guard needs to stop a batch whose callers have gone. A caller supplies a *stepper*: ``first`` (the next-token
logits after its prefill), ``advance(tokens)`` (feed one token per row, return the next logits) and optionally
``transform(step, logits)`` (turn raw logits into the scores tokens are chosen from). :func:`decode_loop` does
the rest: sampling, stop tokens, ``min_new_tokens`` and per-row length limits (``transformers`` semantics).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ..memory import release_freed_memory
from .batch import left_pad, model_device, pad_id, positions_from_mask
from .cache import common_prefix_length, last_logits_kwargs, shared_prefix_cache
from .chat import render_chat


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy (do_sample False), or a sample after temperature, top-k and top-p.

    top_k 0 keeps every token; top_k and top_p are applied in that order, as ``transformers`` does. generator None
    draws from torch's global generator (seed it with torch.manual_seed); a tuple of generators, one per row, makes
    each row's draws a function of its own seed whatever rows share its batch."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | tuple[torch.Generator, ...] | None = None


GREEDY = Sampling()


def stop_ids(model, tokenizer) -> set[int]:
    """End-of-sequence ids: the tokenizer's and every one the model's generation config names."""
    ids = {tokenizer.eos_token_id}
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return {i for i in ids if i is not None}


def choose_next_token(scores: torch.Tensor, sampling: Sampling = GREEDY) -> torch.Tensor:
    """(k, V) scores -> (k,) next tokens: argmax, or a sample after temperature, top-k and nucleus filtering."""
    if not sampling.do_sample:
        return scores.argmax(-1)
    logits = scores.float() / max(sampling.temperature, 1e-5)
    if 0 < sampling.top_k < logits.shape[-1]:
        kth = logits.topk(sampling.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, idx = logits.sort(-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > sampling.top_p  # keep the smallest set whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    probs = logits.softmax(-1)
    if isinstance(sampling.generator, tuple):  # one generator per row
        return torch.cat([torch.multinomial(p[None], 1, generator=g)[0] for p, g in zip(probs, sampling.generator)])
    return torch.multinomial(probs, 1, generator=sampling.generator).squeeze(-1)


def decode_loop(
    stepper,
    max_new_tokens: int,
    stops: set[int],
    sampling: Sampling = GREEDY,
    pad: int = 0,
    min_new_tokens: int = 0,
    limits: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of each row, one (k,) tensor per step, −1 where a row has finished.

    A row finishes on a stop token (yielded, then −1) or at its own limit (``limits[i]``, at most max_new_tokens).
    Stop tokens are masked out before ``min_new_tokens``. ``should_stop()`` is asked after every step; True ends
    the loop. No forward runs after the last step (its logits would go unused)."""
    logits = stepper.first
    k, device = getattr(stepper, "rows", logits.shape[0]), logits.device  # a two-branch stepper has 2k logit rows
    stop_t = torch.tensor(sorted(stops), device=device)
    left = torch.tensor(list(limits) if limits is not None else [max_new_tokens] * k, device=device)
    done = left <= 0
    transform = getattr(stepper, "transform", None)
    for step in range(max_new_tokens):
        scores = transform(step, logits) if transform is not None else logits
        if step < min_new_tokens:
            scores = scores.index_fill(-1, stop_t, float("-inf"))
        nxt = choose_next_token(scores, sampling)
        yield torch.where(done, torch.full_like(nxt, -1), nxt)
        done = done | torch.isin(nxt, stop_t) | (left <= step + 1)
        if bool(done.all()) or step == max_new_tokens - 1 or (should_stop is not None and should_stop()):
            return
        logits = stepper.advance(torch.where(done, torch.full_like(nxt, pad), nxt))


def collect(steps: Iterator[torch.Tensor], k: int) -> list[list[int]]:
    """The token ids each row produced (stop token included, −1 padding dropped)."""
    rows: list[list[int]] = [[] for _ in range(k)]
    for nxt in steps:
        for row, t in zip(rows, nxt.tolist()):
            if t >= 0:
                row.append(t)
    return rows


def split_stop(ids: list[int], stops: set[int], limit: int | None = None) -> tuple[list[int], str]:
    """A row's ids before its first stop token (finish "stop") or up to its limit (finish "length")."""
    for k, t in enumerate(ids[:limit]):
        if t in stops:
            return ids[:k], "stop"
    cut = ids[:limit]
    return cut, "length" if limit is not None and len(ids) >= limit else "stop"


class CausalStepper:
    """Plain decoding of token-id prompts with a KV cache: the prompt start every row shares runs once (batch 1)
    and its cache is repeated; each row's own tokens are left-padded after it."""

    def __init__(self, model, prompts: list[list[int]], pad: int, share_prefix: bool = True):
        device = model_device(model)
        shared = common_prefix_length(prompts) if share_prefix else 0
        ids, mask = left_pad([p[shared:] for p in prompts], pad)
        self.model, self.cache = model, None
        if shared:
            self.cache = shared_prefix_cache(model, prompts[0][:shared], len(prompts))
        self.mask = torch.cat([mask.new_ones(len(prompts), shared), mask], 1).to(device)
        pos = positions_from_mask(mask.to(device), shared)
        out = model(
            input_ids=ids.to(device),
            attention_mask=self.mask,
            position_ids=pos,
            past_key_values=self.cache,
            use_cache=True,
            **last_logits_kwargs(model, 1),
        )
        self.cache, self.first, self.pos = out.past_key_values, out.logits[:, -1], pos[:, -1] + 1

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones(len(tokens), 1)], 1)
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=self.pos[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache, self.pos = out.past_key_values, self.pos + 1
        return out.logits[:, -1]


@torch.no_grad()
def generate_ids(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    sampling: Sampling = GREEDY,
    batch_size: int = 16,
    min_new_tokens: int = 0,
    limits: Sequence[int] | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool = False,
    desc: str = "generating",
) -> list[list[int]]:
    """Completions of token-id prompts as token ids, each cut after its first stop token (kept, so a trainer scores
    exactly what the model produced). limits: one length limit per prompt (default max_new_tokens)."""
    from ..runs import progress

    pad, stops = pad_id(tokenizer), stop_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    out: list[list[int]] = []
    try:
        for s in progress(range(0, len(prompts), batch_size), desc=desc, unit="batch", disable=not show_progress):
            chunk = prompts[s : s + batch_size]
            chunk_limits = None if limits is None else limits[s : s + batch_size]
            stepper = CausalStepper(model, chunk, pad)
            steps = decode_loop(
                stepper, max_new_tokens, stops, sampling, pad, min_new_tokens, chunk_limits, should_stop
            )
            out += collect(steps, len(chunk))
    finally:
        model.train(was_training)
        release_freed_memory()
    return out


def generate(
    model,
    tokenizer,
    prompts: list[str],
    system: str | None = None,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    chat: bool = True,
    show_progress: bool = False,
    min_new_tokens: int = 0,
) -> list[list[str]]:
    """Text completions: `num_return_sequences` strings per prompt (through the chat template unless chat=False)."""
    texts = [render_chat(tokenizer, p, system) if chat else p for p in prompts]
    ids = [tokenizer(t, add_special_tokens=not chat)["input_ids"] for t in texts for _ in range(num_return_sequences)]
    sampling = Sampling(do_sample, temperature, top_p, top_k)
    new = generate_ids(
        model,
        tokenizer,
        ids,
        max_new_tokens,
        sampling,
        batch_size * num_return_sequences,
        min_new_tokens,
        show_progress=show_progress,
    )
    decoded = [tokenizer.decode(x, skip_special_tokens=True).strip() for x in new]
    return [decoded[i : i + num_return_sequences] for i in range(0, len(decoded), num_return_sequences)]
