"""Harm: is a response to a prompt harmful? A head on (prompt, response) pair features.

Features (see :func:`~detoxkit.scorers.head.pair_features`): both embeddings, their product and the refusal
rule, so the head learns both "the response engages with the request" and "the response refuses". Trained
by `detoxkit scorer train --task harm` on PyRIT's human-labelled objective set; agreement by grouped
cross-validation, and on PyRIT's separate harm-rating set, is in weights/HARM.md.
"""

from __future__ import annotations

from .base import Scorer
from .head import WEIGHTS, EmbeddingHeadScorer


class HarmScorer(EmbeddingHeadScorer, Scorer):
    name = "harm"
    batch_size = 32
    pairs = True
    default_head = WEIGHTS / "harm_head.safetensors"
