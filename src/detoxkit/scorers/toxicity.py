"""Toxicity: an MLP head on frozen MiniLM sentence embeddings, trained by `detoxkit scorer train`.

The committed head (weights/toxicity_head.safetensors, ~400 KB) and its model card (weights/TOXICITY.md)
say what it was trained on and how well it does on held-out data. It is an offline proxy for
Perspective / Detoxify, and reports label it so.
"""

from __future__ import annotations

from .base import Scorer
from .head import WEIGHTS, EmbeddingHeadScorer


class ToxicityScorer(EmbeddingHeadScorer, Scorer):
    name = "toxicity"
    default_head = WEIGHTS / "toxicity_head.safetensors"
