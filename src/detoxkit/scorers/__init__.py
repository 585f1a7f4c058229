"""Scorers: ``scorer(texts) -> list[float]``, the probability of the bad class, batched.

``get_scorer(name)`` builds one by name; ``as_reward_function(scorer)`` wraps it for TRL trainers
(reward = 1 - score, since a reward is higher when better).
"""

from __future__ import annotations

from .base import Scorer, as_reward_function

SCORERS = {
    "toxicity": "detoxkit.scorers.toxicity:ToxicityScorer",
    "profanity": "detoxkit.scorers.profanity:ProfanityScorer",
    "refusal": "detoxkit.scorers.refusal:RefusalScorer",
    "harm": "detoxkit.scorers.harm:HarmScorer",
    "lm-judge": "detoxkit.scorers.lm_judge:LMJudgeScorer",
}


def get_scorer(name: str, **kwargs) -> Scorer:
    import importlib

    from ..errors import DetoxkitError

    if name not in SCORERS:
        raise DetoxkitError(f"unknown scorer {name!r} (one of {', '.join(SCORERS)})")
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["Scorer", "as_reward_function", "get_scorer", "SCORERS"]
