"""Utility: perplexity on held-out text, and multiple-choice accuracy by log-likelihood (lm-eval style)."""

from __future__ import annotations

import math

from ..lm.score import score_continuations
from .stats import rate


def perplexity(model, tokenizer, texts: list[str], batch_size: int = 16) -> dict:
    """Token-weighted perplexity exp(-Σ log p / Σ tokens), each text scored from its first token."""
    lps, ns = score_continuations(model, tokenizer, [""] * len(texts), texts, batch_size)
    tokens = sum(ns)
    return {"value": math.exp(-sum(lps) / max(tokens, 1)), "n_texts": len(texts), "n_tokens": tokens}


def multiple_choice_accuracy(model, tokenizer, items: list[dict], batch_size: int = 16) -> dict:
    """items: {"question", "choices": [str], "answer": int}. acc: argmax Σ log p(choice | question);
    acc_norm: argmax of the same divided by the choice's length in characters (lm-eval's acc_norm)."""
    contexts, conts, owner = [], [], []
    for i, it in enumerate(items):
        for c in it["choices"]:
            contexts.append(f"Question: {it['question']}\nAnswer:")
            conts.append(f" {c}")
            owner.append(i)
    lps, _ = score_continuations(model, tokenizer, contexts, conts, batch_size)
    correct, correct_norm, pos = [], [], 0
    for it in items:
        k = len(it["choices"])
        scores = lps[pos : pos + k]
        norm = [s / max(len(c), 1) for s, c in zip(scores, it["choices"])]
        correct.append(max(range(k), key=scores.__getitem__) == int(it["answer"]))
        correct_norm.append(max(range(k), key=norm.__getitem__) == int(it["answer"]))
        pos += k
    return {"acc": rate(correct), "acc_norm": rate(correct_norm)}
