"""What each fine-tune of the loop learns from: the training sets read off the rows of prompts.jsonl (loop.py writes
them; the control judge matches their sizes)."""

from __future__ import annotations


def _seed_upto(r: dict, upto_round: int) -> bool:
    """A seed row in use after round `upto_round` (seed rows without a round are round 0's)."""
    return r.get("type") == "seed" and r.get("round", 0) <= upto_round


def agrees(row: dict) -> bool:
    """A labelled generated prompt whose oracle label is the kind the attacker was asked to write."""
    return row["label"] == int(row["kind"] == "problematic")


def trained_on(row: dict, upto_round: int, agreement: bool = False) -> bool:
    """A generated prompt in the judge's data after round `upto_round`: every non-duplicate one so far or, with
    `agreement` (--oracle_agreement), only those the oracle labelled as the kind that was asked for."""
    return (
        row.get("type") == "prompt"
        and not row["duplicate"]
        and row["round"] <= upto_round
        and (not agreement or agrees(row))
    )


def judge_dataset(rows: list[dict], upto_round: int, agreement: bool = False) -> tuple[list[str], list[int]]:
    """All labelled data after round `upto_round`: seed rows so far and the generated prompts trained_on so far."""
    keep = [r for r in rows if _seed_upto(r, upto_round) or trained_on(r, upto_round, agreement)]
    return [r["prompt"] for r in keep], [int(r["label"]) for r in keep]


def attacker_dataset(rows: list[dict], upto_round: int, agreement: bool = False) -> list[str]:
    """Successful attacks so far (oracle 1, judge 0; among the prompts trained_on) plus the problematic seed prompts
    (the paper's 5 examples)."""
    return [
        r["prompt"]
        for r in rows
        if (_seed_upto(r, upto_round) and r["label"] == 1) or (trained_on(r, upto_round, agreement) and r["fooled"])
    ]
