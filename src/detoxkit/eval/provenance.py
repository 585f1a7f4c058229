"""What a result file must say about how it was graded: which scorers gave the training signal, which graded
independently (sharing no weights with them), which split was used for what, and which overlaps were checked.

Every scorer name maps to the weights it depends on; `evaluation_record` refuses an "independent" scorer that
shares any of them with a training-signal scorer, so independence is checked, not asserted.
"""

from __future__ import annotations

from ..errors import DetoxkitError

MINILM = "all-MiniLM-L6-v2"
SMOLLM2 = "SmolLM2-135M-Instruct"

# scorer name -> the weights (or fixed rule sets) its verdict depends on
SCORER_WEIGHTS = {
    "toxicity": {MINILM, "detoxkit toxicity head"},
    "harm": {MINILM, "detoxkit harm head", "refusal rules"},
    "refusal": {MINILM, "detoxkit refusal head", "refusal rules"},
    "refusal-rules": {"refusal rules"},
    "similarity": {MINILM},
    "profanity": {"alt-profanity-check word model"},
    "lm-judge": {SMOLLM2},
    "fluency": {SMOLLM2},
    "categories": {MINILM, "detoxkit category head"},
    "prompt-oracle": {MINILM, "prompt classifier (logistic regression)"},
    "dataset labels": set(),  # membership of a harmful or a benign builtin set: no model
    "chrF": set(),  # a character n-gram score against a text: no model
    "off-topic": set(),  # content-word overlap between question and answer: no model
}


def weights_of(name: str) -> set[str]:
    if name not in SCORER_WEIGHTS:
        raise DetoxkitError(f"unknown scorer {name!r} for provenance (one of {', '.join(SCORER_WEIGHTS)})")
    return SCORER_WEIGHTS[name]


def split_record(source: str, size: int, seed: int | None, used_for: str) -> dict:
    return {"source": source, "size": size, "seed": seed, "used_for": used_for}


def evaluation_record(
    training_signal: list[str],
    independent: list[str],
    splits: dict[str, dict],
    overlaps: list[dict],
    notes: list[str] | None = None,
) -> dict:
    """The top-level "evaluation" object of a result file. Raises when an independent scorer shares weights with
    a training-signal one."""
    signal = set().union(*(weights_of(s) for s in training_signal)) if training_signal else set()
    for name in independent:
        shared = weights_of(name) & signal
        if shared:
            raise DetoxkitError(
                f"scorer {name!r} is not independent: it shares {sorted(shared)} with the training signal"
            )
    return {
        "training_signal": list(training_signal),
        "independent": list(independent),
        "weights": {n: sorted(weights_of(n)) for n in dict.fromkeys([*training_signal, *independent])},
        "splits": splits,
        "overlaps": overlaps,
        "notes": list(notes or []),
    }
