"""The shared LM layer: everything the methods, the guard and the scorers do with a causal LM, written once.

- ``load``: builtin names, folders or hub ids -> model and tokenizer, on a ``device`` in a ``dtype``.
- ``batch``: padding, prompt + completion pairs with a completion mask, the pad id.
- ``cache``: logits for the last positions only; a prompt start shared by every row, run once.
- ``generate``: one decoding loop (stop ids, per-row limits, greedy or sampled with a seeded generator) that
  plain, soft-prompted, two-branch (ACD) and NADO-guided callers drive through a small stepper.
- ``score``: the one completion log-likelihood, and the yes/no answer-token probability of judges.
- ``embedder``: the sentence embedder behind similarity and the scorer heads.

Only ``load`` is imported here, so ``import detoxkit.lm`` stays cheap (the CLI's --help does not load torch).
"""

from .load import DEFAULT_EMBEDDER, DEFAULT_LM, load_model, load_model_and_tokenizer, load_tokenizer, resolve_model

__all__ = [
    "DEFAULT_EMBEDDER",
    "DEFAULT_LM",
    "load_model",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "resolve_model",
]
