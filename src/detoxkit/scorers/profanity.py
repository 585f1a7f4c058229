"""The `alt-profanity-check` word model (TF-IDF + linear SVM): fast, a second opinion, blind to implicit hate."""

from __future__ import annotations

from .base import Scorer


class ProfanityScorer(Scorer):
    name = "profanity"
    batch_size = 1024

    def __init__(self):
        # The package unpickles its own bundled model at import: trusted as much as any installed package.
        import importlib.metadata as md

        from profanity_check import predict_prob

        self.version = md.version("alt-profanity-check")
        self._predict = predict_prob

    def score_batch(self, texts, prompts):
        return self._predict(texts).tolist()
