"""Contrastive decoding with two system prompts, both branches as rows of one batched forward.

A batch of k prompts is 2k rows of one ``DynamicCache`` (:class:`TwoBranchStepper`), driven by the shared
decoding loop of ``detoxkit.lm.generate``: a ``LogitsProcessor`` sees one row per sequence and would need a
second model call (and a second cache it cannot own) for the adversarial branch. With ``window=m`` the
adversarial rows are dropped from the cache after m tokens and decoding continues on the safe branch alone
(SafeDecoding's observation: the first tokens decide whether the model refuses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..core.contrastive import contrastive_logits
from ..core.logprobs import token_logprobs
from ..errors import DataError, DetoxkitError
from ..lm.batch import pad_id, positions_from_mask
from ..lm.cache import last_logits_kwargs
from ..lm.generate import GREEDY, Sampling, collect, decode_loop, stop_ids
from ..lm.soft_prompt import SoftPrompt, build_inputs, splice_rows, template_pieces

PromptLike = SoftPrompt | str | Path | None


def names_a_file(value: str | Path) -> bool:
    """A prompt option names a file when it is a Path, or one word with a path separator or a file extension;
    anything else (spaces, or a bare word) is the prompt text itself."""
    s = str(value)
    return isinstance(value, Path) or (
        bool(s)
        and not any(c.isspace() for c in s)
        and ("/" in s or "\\" in s or re.search(r"\.[A-Za-z0-9]{1,12}$", s) is not None)
    )


def read_prompt_option(prompt: PromptLike) -> SoftPrompt | str | None:
    """A prompt option as given by a user: a SoftPrompt, a ``.safetensors`` file, a text file, or the text itself.

    A value that names a file (see :func:`names_a_file`) must exist: a typo in a path is an error, never a prompt.
    Needs no model, so a bad file fails before one is loaded."""
    if prompt is None or isinstance(prompt, SoftPrompt) or not names_a_file(prompt):
        return prompt if prompt is None or isinstance(prompt, SoftPrompt) else str(prompt)
    path = Path(prompt)
    if not path.is_file():
        raise DetoxkitError(
            f"{path}: prompt file not found (give a tuned .safetensors file, a text file, or the prompt text itself)"
        )
    if path.suffix == ".safetensors":
        return SoftPrompt.load(path)
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError as e:
        raise DataError(path, f"a prompt text file must be UTF-8 (byte {e.start}: {e.reason})") from None


def as_soft_prompt(model, tokenizer, prompt: PromptLike) -> SoftPrompt | None:
    """The prompt option (see :func:`read_prompt_option`) as a SoftPrompt for this model; a text becomes a hard
    prompt (its token embeddings)."""
    sp = read_prompt_option(prompt)
    if isinstance(sp, str):
        sp = SoftPrompt.from_text(model, tokenizer, sp)
    if sp is not None:
        sp.check_compatible(model, tokenizer)
    return sp


@dataclass(frozen=True)
class Contrast:
    """How the two branches combine: logits_safe − α·logits_adv ("acd") or (1+α)·safe − α·adv ("cfg"), an
    optional plausibility mask β, and a window (contrast only the first `window` tokens; None: every token)."""

    alpha: float = 0.5
    form: str = "acd"
    plausibility: float | None = None
    window: int | None = None


class TwoBranchStepper:
    """The rows of both branches of a batch of prompts in one cache: rows [0, k) under the safe prompt, rows
    [k, 2k) under the adversarial one. The template prefix with each soft prompt (the same for every request) runs
    once per branch and its cache is repeated to all rows; each step feeds the chosen token to both rows of a pair."""

    def __init__(
        self, model, tokenizer, prompts: list[str], safe: SoftPrompt, adv: SoftPrompt | None, contrast: Contrast
    ):
        k = len(prompts)
        self.model, self.k, self.rows, self.contrast = model, k, k, contrast
        self.active = adv is not None and contrast.alpha != 0 and (contrast.window is None or contrast.window > 0)
        branches = [safe, adv] if self.active else [safe]
        self.nb = len(branches)
        pad = pad_id(tokenizer)
        pieces = [template_pieces(tokenizer, p) for p in prompts]
        before = pieces[0][0]
        if any(b != before for b, _ in pieces):
            raise DetoxkitError("the chat template's text before the system prompt depends on the request")
        # 1. The shared prefix (template start + each branch's prompt), once per branch.
        last_only = last_logits_kwargs(model, 1)  # the prefill needs only its last position's logits
        embeds, pmask, _ = splice_rows(model, [[before, sp.embeddings] for sp in branches], pad)
        out = model(
            inputs_embeds=embeds,
            attention_mask=pmask,
            position_ids=positions_from_mask(pmask),
            use_cache=True,
            **last_only,
        )
        self.cache = out.past_key_values
        self.cache.batch_repeat_interleave(k)  # rows: branch 0 × k, then branch 1 × k
        pmask = pmask.repeat_interleave(k, 0)
        plen = pmask.sum(-1)
        # 2. Each request's suffix (rest of the template + user prompt), left-padded after the prefix.
        semb, smask, _ = splice_rows(model, [[pieces[i % k][1]] for i in range(self.nb * k)], pad)
        self.mask = torch.cat([pmask, smask], 1)
        out = model(
            inputs_embeds=semb,
            attention_mask=self.mask,
            position_ids=positions_from_mask(smask, plen),
            past_key_values=self.cache,
            use_cache=True,
            **last_only,
        )
        self.first = out.logits[:, -1]
        self.pos = plen + smask.sum(-1)  # the next token's position in every row

    def transform(self, step: int, logits: torch.Tensor) -> torch.Tensor:
        c = self.contrast
        if self.nb == 2 and c.window is not None and step == c.window:
            # Past the window the adversarial rows are no longer needed: drop them from the cache.
            keep = torch.arange(self.k, device=logits.device)
            self.cache.batch_select_indices(keep)
            self.mask, self.pos, self.nb = self.mask[keep], self.pos[keep], 1
            return logits[keep]
        if self.nb == 2:
            return contrastive_logits(logits[: self.k], logits[self.k :], c.alpha, c.form, c.plausibility)
        return logits[: self.k]

    def advance(self, tokens: torch.Tensor) -> torch.Tensor:
        feed = tokens.repeat(self.nb).unsqueeze(-1)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], 1)
        out = self.model(
            input_ids=feed,
            attention_mask=self.mask,
            position_ids=self.pos.unsqueeze(-1),
            past_key_values=self.cache,
            use_cache=True,
        )
        self.pos = self.pos + 1
        return out.logits[:, -1]


@torch.no_grad()
def decode_steps(
    model,
    tokenizer,
    prompts: list[str],
    safe: SoftPrompt,
    adv: SoftPrompt | None,
    contrast: Contrast = Contrast(),
    max_new_tokens: int = 64,
    sampling: Sampling = GREEDY,
    min_new_tokens: int = 0,
    should_stop=None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of each prompt, one (k,) tensor per step (−1 where a prompt has finished).

    min_new_tokens: stop tokens are masked out before this many tokens (as in ``transformers``' generate);
    should_stop(): asked after every step, True ends decoding (the guard's callers have gone)."""
    stepper = TwoBranchStepper(model, tokenizer, prompts, safe, adv, contrast)
    yield from decode_loop(
        stepper,
        max_new_tokens,
        stop_ids(model, tokenizer),
        sampling,
        pad_id(tokenizer),
        min_new_tokens,
        should_stop=should_stop,
    )


@dataclass(frozen=True)
class DecodeOptions(Contrast):
    """The keyword options of :func:`stream` and :func:`generate`: the contrast (see :class:`Contrast`), the
    answer length, and the sampling (greedy unless do_sample; a seed makes sampling repeatable)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def sampling(self) -> Sampling:
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        return Sampling(self.do_sample, self.temperature, self.top_p, generator=gen)


def stream(
    model, tokenizer, prompts: list[str], safe_prompt: PromptLike, adv_prompt: PromptLike = None, **options
) -> Iterator[list[str]]:
    """Stream one batch: yields, per step, the new text of each prompt ("" where nothing new or finished).

    options: those of :class:`DecodeOptions` (alpha, form, plausibility, window, max_new_tokens, sampling, seed)."""
    opts = DecodeOptions(**options)
    safe = as_soft_prompt(model, tokenizer, safe_prompt)
    adv = as_soft_prompt(model, tokenizer, adv_prompt)
    stops = stop_ids(model, tokenizer)
    ids: list[list[int]] = [[] for _ in prompts]
    shown = [""] * len(prompts)
    for nxt in decode_steps(model, tokenizer, prompts, safe, adv, opts, opts.max_new_tokens, opts.sampling()):
        deltas = []
        for i, t in enumerate(nxt.tolist()):
            if t >= 0 and t not in stops:
                ids[i].append(t)
            text = tokenizer.decode(ids[i], skip_special_tokens=True)
            deltas.append(text[len(shown[i]) :] if text.startswith(shown[i]) else text)
            shown[i] = text
        yield deltas


def generate(
    model,
    tokenizer,
    prompts: list[str],
    safe_prompt: PromptLike,
    adv_prompt: PromptLike = None,
    *,
    batch_size: int = 8,
    show_progress: bool = False,
    min_new_tokens: int = 0,
    **options,
) -> list[str]:
    """ACD responses, one string per prompt: tokens from softmax(logits_safe − α·logits_adv) (or the "cfg" form).

    safe_prompt / adv_prompt: a :class:`SoftPrompt`, a saved ``.safetensors`` path, or a text used as a hard
    system prompt ("" is the null prompt). adv_prompt=None or alpha=0 decodes from the safe prompt alone.
    options: those of :class:`DecodeOptions`; window: contrast only the first `window` tokens, then continue on
    the safe branch alone. min_new_tokens: no stop token before this many tokens.
    """
    from ..runs import progress

    opts = DecodeOptions(**options)
    safe = as_soft_prompt(model, tokenizer, safe_prompt)
    adv = as_soft_prompt(model, tokenizer, adv_prompt)
    if safe is None:
        raise DetoxkitError("acd.generate needs a safe_prompt (a SoftPrompt, a .safetensors file or a text)")
    sampling = opts.sampling()
    out: list[str] = []
    for s in progress(range(0, len(prompts), batch_size), desc="acd generate", unit="batch", disable=not show_progress):
        batch = prompts[s : s + batch_size]
        ids = collect(
            decode_steps(model, tokenizer, batch, safe, adv, opts, opts.max_new_tokens, sampling, min_new_tokens),
            len(batch),
        )
        out.extend(tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids)
    return out


@torch.no_grad()
def score_completions(
    model,
    tokenizer,
    prompts: list[str],
    completions: list[str],
    safe_prompt: PromptLike,
    adv_prompt: PromptLike = None,
    alpha: float = 0.5,
    form: str = "acd",
    batch_size: int = 8,
) -> tuple[list[float], list[int]]:
    """Σ log p(completion | prompt) under the decoding distribution softmax(contrast) (or the safe branch alone).

    The completion is the assistant turn of the chat; returns (sum log-prob per pair, completion token count).
    Used for multiple-choice accuracy and perplexity "with ACD": the same distribution the decoder samples.
    """
    safe = as_soft_prompt(model, tokenizer, safe_prompt)
    adv = as_soft_prompt(model, tokenizer, adv_prompt)
    contrast = adv is not None and alpha != 0
    lps, ns = [], []
    for s in range(0, len(prompts), batch_size):
        p, c = prompts[s : s + batch_size], completions[s : s + batch_size]
        k = len(p)
        rows_sp = [safe] * k + ([adv] * k if contrast else [])
        b = build_inputs(model, tokenizer, p * (2 if contrast else 1), rows_sp, c * (2 if contrast else 1))
        logits = model(**b.model_inputs()).logits
        if contrast:
            logits = contrastive_logits(logits[:k], logits[k:], alpha, form)
        ids, cmask = b.input_ids[:k], b.completion_mask[:k]
        per_tok = token_logprobs(logits, ids) * cmask[:, 1:]
        lps.extend(per_tok.sum(-1).tolist())
        ns.extend(cmask.sum(-1).tolist())
    return lps, ns
