"""Toxicity: an MLP head on frozen MiniLM sentence embeddings, trained by `detoxkit scorer train`.

The committed head (weights/toxicity_head.safetensors, ~400 KB) and its model card (weights/TOXICITY.md)
say what it was trained on and how well it does on held-out data. It is an offline proxy for
Perspective / Detoxify, and reports label it so.
"""

from __future__ import annotations

from pathlib import Path

from .base import Scorer

WEIGHTS = Path(__file__).parent / "weights"


class EmbeddingHeadScorer(Scorer):
    """A scorer = sentence embedder + :class:`~detoxkit.scorers.head.EmbeddingHead`."""

    default_head: Path

    def __init__(self, head: str | None = None, embedder=None, device: str = "cpu"):
        import torch

        from ..models import load_embedder
        from .head import load_head

        self.head, self.meta = load_head(head or self.default_head)
        self.embedder = embedder or load_embedder(self.meta.get("embedder", "all-minilm-l6-v2"), device)
        self.version = self.meta.get("version", "0")
        self.threshold = float(self.meta.get("threshold", 0.5))
        self._torch = torch

    def features(self, texts: list[str], prompts: list[str] | None):
        return self.embedder.encode(texts)

    def score_batch(self, texts, prompts):
        x = self.features(texts, prompts)
        with self._torch.inference_mode():
            return self._torch.sigmoid(self.head(x)).tolist()


class ToxicityScorer(EmbeddingHeadScorer):
    name = "toxicity"
    default_head = WEIGHTS / "toxicity_head.safetensors"
