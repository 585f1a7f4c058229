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
    "refusal-rules": "detoxkit.scorers.refusal:RefusalRulesScorer",
    "harm": "detoxkit.scorers.harm:HarmScorer",
    "lm-judge": "detoxkit.scorers.lm_judge:LMJudgeScorer",
    "off-topic": "detoxkit.scorers.off_topic:OffTopicScorer",
}


def get_scorer(name: str, **kwargs) -> Scorer:
    import importlib

    from ..errors import DetoxkitError

    if name not in SCORERS:
        raise DetoxkitError(f"unknown scorer {name!r} (one of {', '.join(SCORERS)})")
    module, cls = SCORERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def load_scorer(spec: str, field: str = "scorer") -> Scorer:
    """A scorer name, or `module:callable` whose call returns a scorer (texts -> scores): a user's own judge."""
    import importlib

    from ..errors import DetoxkitError

    if spec in SCORERS:
        return get_scorer(spec)
    module, sep, attr = spec.partition(":")
    if not sep:
        raise DetoxkitError(f"--{field} {spec!r}: not a scorer ({', '.join(SCORERS)}) nor module:callable")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise DetoxkitError(f"--{field} {spec!r}: {e}") from None
    return factory()


__all__ = ["Scorer", "as_reward_function", "get_scorer", "load_scorer", "SCORERS"]
