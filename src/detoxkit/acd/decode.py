"""Contrastive decoding with two system prompts, both branches as rows of one batched forward.

Why a loop of our own rather than a ``LogitsProcessor``: a processor sees one row per sequence and would need
a second model call (and a second KV cache it cannot own) for the adversarial branch. Here a batch of k
prompts is 2k rows — rows [0, k) under the safe prompt, rows [k, 2k) under the adversarial one — sharing one
``DynamicCache``. The template prefix with each soft prompt (identical for every request) is run once for the
two prompts and its cache repeated to all rows; each step then feeds the chosen token to both rows of a pair.
With ``window=m`` the adversarial rows are dropped from the cache after m tokens and decoding continues on the
safe branch alone (SafeDecoding's observation: the first tokens decide whether the model refuses).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import torch

from ..core.contrastive import contrastive_logits
from ..core.logprobs import token_logprobs
from ..core.soft_prompt import SoftPrompt, build_inputs, positions_from_mask, splice_rows, template_pieces
from ..errors import DataError, DetoxkitError
from ..generation import choose_next_token
from ..models import last_logits_kwargs

PromptLike = SoftPrompt | str | Path | None


def names_a_file(value: str | Path) -> bool:
    """A prompt option names a file when it is a Path, or one word with a path separator or a file extension;
    anything else (spaces, or a bare word) is the prompt text itself."""
    s = str(value)
    return isinstance(value, Path) or (bool(s) and not any(c.isspace() for c in s)
                                       and ("/" in s or "\\" in s or re.search(r"\.[A-Za-z0-9]{1,12}$", s) is not None))


def read_prompt_option(prompt: PromptLike) -> SoftPrompt | str | None:
    """A prompt option as given by a user: a SoftPrompt, a ``.safetensors`` file, a text file, or the text itself.

    A value that names a file (see :func:`names_a_file`) must exist: a typo in a path is an error, never a prompt.
    Needs no model, so a bad file fails before one is loaded."""
    if prompt is None or isinstance(prompt, SoftPrompt) or not names_a_file(prompt):
        return prompt if prompt is None or isinstance(prompt, SoftPrompt) else str(prompt)
    path = Path(prompt)
    if not path.is_file():
        raise DetoxkitError(f"{path}: prompt file not found (give a tuned .safetensors file, a text file, "
                            "or the prompt text itself)")
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


def _stop_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    return {i for i in ids if i is not None}


@torch.no_grad()
def decode_steps(model, tokenizer, prompts: list[str], safe: SoftPrompt, adv: SoftPrompt | None, alpha: float,
                 form: str, plausibility: float | None, window: int | None, max_new_tokens: int, do_sample: bool,
                 temperature: float, top_p: float, generator: torch.Generator | None,
                 min_new_tokens: int = 0) -> Iterator[torch.Tensor]:
    """Yield the next token of each prompt, one (k,) tensor per step (−1 where a prompt has finished).

    min_new_tokens: stop tokens are masked out before this many tokens (as in ``transformers``' generate).
    """
    k = len(prompts)
    contrast = adv is not None and alpha != 0 and (window is None or window > 0)
    branches = [safe, adv] if contrast else [safe]
    nb = len(branches)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    pieces = [template_pieces(tokenizer, p) for p in prompts]
    before = pieces[0][0]
    if any(b != before for b, _ in pieces):
        raise DetoxkitError("the chat template's text before the system prompt depends on the request")

    # 1. The shared prefix (template start + each branch's prompt), once per branch.
    last_only = last_logits_kwargs(model, 1)  # the prefill needs only its last position's logits
    embeds, pmask, _ = splice_rows(model, [[before, sp.embeddings] for sp in branches], pad)
    out = model(inputs_embeds=embeds, attention_mask=pmask, position_ids=positions_from_mask(pmask), use_cache=True,
                **last_only)
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)  # rows: branch 0 × k, then branch 1 × k
    pmask = pmask.repeat_interleave(k, 0)
    plen = pmask.sum(-1)

    # 2. Each request's suffix (rest of the template + user prompt), left-padded after the prefix.
    semb, smask, _ = splice_rows(model, [[pieces[i % k][1]] for i in range(nb * k)], pad)
    mask = torch.cat([pmask, smask], 1)
    out = model(inputs_embeds=semb, attention_mask=mask, position_ids=positions_from_mask(smask, plen),
                past_key_values=cache, use_cache=True, **last_only)
    logits = out.logits[:, -1]
    pos = plen + smask.sum(-1)  # the next token's position in every row

    stops = torch.tensor(sorted(_stop_ids(model, tokenizer)), device=logits.device)
    done = torch.zeros(k, dtype=torch.bool, device=logits.device)
    for step in range(max_new_tokens):
        if contrast and window is not None and step == window:
            # Past the window: the adversarial rows are no longer needed; drop them from the cache.
            keep = torch.arange(k, device=logits.device)
            cache.batch_select_indices(keep)
            mask, pos, logits, nb = mask[keep], pos[keep], logits[keep], 1
        if nb == 2:
            step_logits = contrastive_logits(logits[:k], logits[k:], alpha, form, plausibility)
        else:
            step_logits = logits
        if step < min_new_tokens:
            step_logits = step_logits.index_fill(-1, stops, float("-inf"))
        nxt = choose_next_token(step_logits, do_sample, temperature, top_p, generator)
        yield torch.where(done, torch.full_like(nxt, -1), nxt)
        done |= torch.isin(nxt, stops)
        if bool(done.all()) or step == max_new_tokens - 1:  # no forward whose logits would go unused
            return
        feed = torch.where(done, torch.full_like(nxt, pad), nxt).repeat(nb).unsqueeze(-1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
        out = model(input_ids=feed, attention_mask=mask, position_ids=pos.unsqueeze(-1), past_key_values=cache,
                    use_cache=True)
        logits, pos = out.logits[:, -1], pos + 1


def stream(model, tokenizer, prompts: list[str], safe_prompt: PromptLike, adv_prompt: PromptLike = None,
           alpha: float = 0.5, form: str = "acd", plausibility: float | None = None, window: int | None = None,
           max_new_tokens: int = 64, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
           seed: int | None = None) -> Iterator[list[str]]:
    """Stream one batch: yields, per step, the new text of each prompt ("" where nothing new or finished)."""
    safe = as_soft_prompt(model, tokenizer, safe_prompt)
    adv = as_soft_prompt(model, tokenizer, adv_prompt)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    stops = _stop_ids(model, tokenizer)
    ids: list[list[int]] = [[] for _ in prompts]
    shown = [""] * len(prompts)
    for nxt in decode_steps(model, tokenizer, prompts, safe, adv, alpha, form, plausibility, window, max_new_tokens,
                            do_sample, temperature, top_p, gen):
        deltas = []
        for i, t in enumerate(nxt.tolist()):
            if t >= 0 and t not in stops:
                ids[i].append(t)
            text = tokenizer.decode(ids[i], skip_special_tokens=True)
            deltas.append(text[len(shown[i]):] if text.startswith(shown[i]) else text)
            shown[i] = text
        yield deltas


def generate(model, tokenizer, prompts: list[str], safe_prompt: PromptLike, adv_prompt: PromptLike = None,
             alpha: float = 0.5, form: str = "acd", plausibility: float | None = None, window: int | None = None,
             max_new_tokens: int = 64, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             batch_size: int = 8, seed: int | None = None, show_progress: bool = False,
             min_new_tokens: int = 0) -> list[str]:
    """ACD responses, one string per prompt: tokens from softmax(logits_safe − α·logits_adv) (or the "cfg" form).

    safe_prompt / adv_prompt: a :class:`SoftPrompt`, a saved ``.safetensors`` path, or a text used as a hard
    system prompt ("" is the null prompt). adv_prompt=None or alpha=0 decodes from the safe prompt alone.
    window: contrast only the first `window` tokens, then continue on the safe branch alone.
    min_new_tokens: no stop token before this many tokens.
    """
    from ..runs import progress

    safe = as_soft_prompt(model, tokenizer, safe_prompt)
    adv = as_soft_prompt(model, tokenizer, adv_prompt)
    if safe is None:
        raise DetoxkitError("acd.generate needs a safe_prompt (a SoftPrompt, a .safetensors file or a text)")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    stops = _stop_ids(model, tokenizer)
    out: list[str] = []
    for s in progress(range(0, len(prompts), batch_size), desc="acd generate", unit="batch", disable=not show_progress):
        batch = prompts[s : s + batch_size]
        ids: list[list[int]] = [[] for _ in batch]
        for nxt in decode_steps(model, tokenizer, batch, safe, adv, alpha, form, plausibility, window,
                                max_new_tokens, do_sample, temperature, top_p, gen, min_new_tokens):
            for i, t in enumerate(nxt.tolist()):
                if t >= 0 and t not in stops:
                    ids[i].append(t)
        out.extend(tokenizer.decode(x, skip_special_tokens=True).strip() for x in ids)
    return out


@torch.no_grad()
def score_completions(model, tokenizer, prompts: list[str], completions: list[str], safe_prompt: PromptLike,
                      adv_prompt: PromptLike = None, alpha: float = 0.5, form: str = "acd",
                      batch_size: int = 8) -> tuple[list[float], list[int]]:
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
