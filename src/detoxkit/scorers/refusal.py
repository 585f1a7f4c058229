"""Refusal: does a response refuse? Phrase rules, plus an embedding head where one is installed.

The rules are the Dic-Judge idea (SafeDecoding, GCG) tightened to phrases that open or frame a refusal;
PyRIT's human labels count a response that does not fulfil the request (deflection, an off-topic answer) as a
refusal too, which no phrase list sees: given prompts, the score comes from a head on (prompt, response)
pair features that include the rule (trained by `detoxkit scorer train --task refusal`); without prompts,
or with no head installed, from the rules alone.
"""

from __future__ import annotations

from .base import Scorer
from .head import WEIGHTS, EmbeddingHeadScorer
from .rules import refusal_rule


class RefusalScorer(Scorer):
    name = "refusal"
    batch_size = 32

    def __init__(self, head: str | None = None, use_head: bool = True, embedder=None):
        self.version = "rules-v1"
        self.head = None
        path = head or WEIGHTS / "refusal_head.safetensors"
        if use_head and (head or path.exists()):
            self.head = _RefusalHead(head=str(path), embedder=embedder)
            self.version = f"rules-v1+{self.head.version}"

    def score_batch(self, texts, prompts):
        if self.head is None or prompts is None:
            return [1.0 if refusal_rule(t) else 0.0 for t in texts]
        return self.head.score_batch(texts, prompts)


class RefusalRulesScorer(RefusalScorer):
    """The phrase rules alone: no learned weights, but the refusal and harm heads read the same rules as one
    feature, so eval/provenance counts them as shared with any training signal those heads gave."""

    name = "refusal-rules"

    def __init__(self):
        super().__init__(use_head=False)


class _RefusalHead(EmbeddingHeadScorer):
    """The learned half of the refusal scorer: a head on (prompt, response) pair features."""

    pairs = True
    default_head = WEIGHTS / "refusal_head.safetensors"
