"""Labelled conversations to evaluate a guard on: the builtin held-out sets, or a user's JSONL/CSV file.

Every row is a conversation and a kind: "harmful" (a request the guard should not help with: its answer is
graded for harm), "toxic" (a prompt that tends to draw toxic text: the answer is graded for toxicity) or "benign"
(a request the guard should answer: a refusal or a block is an over-refusal). The builtin harmful and benign prompts
are AdvBench + HarmBench and benign-but-edgy, on the evaluation side of ACD's anchor hash (never anchors), split
again into validation (for calibration) and test (for reported numbers) by a second hash; toxic prompts are
RealToxicityPrompts' challenging ones, split by the same second hash.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, DetoxkitError

KINDS = ("harmful", "toxic", "benign")
BUILTIN = {"harmful": ("advbench", "harmbench"), "toxic": ("rtp-challenging",), "benign": ("benign-edgy",)}


@dataclass
class EvalRow:
    messages: list[dict]
    kind: str  # harmful, toxic or benign
    source: str

    @property
    def prompt(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


def builtin_set(kind: str, split: str, n: int, seed: int = 0) -> list[EvalRow]:
    """Up to n prompts of a builtin kind on one half (validation or test) of the evaluation side, in a stable mix of
    its sources."""
    from ..acd.anchors import eval_half, split_of
    from ..data import load_builtin

    if kind not in BUILTIN:
        raise DetoxkitError(f"unknown builtin set {kind!r} (one of {', '.join(KINDS)})")
    per_source = []
    for name in BUILTIN[kind]:
        prompts = [r["prompt"] for r in load_builtin(name)]
        if kind != "toxic":  # the toxic prompts were never anchors: all of them are on the evaluation side
            prompts = [p for p in prompts if split_of(p, 0.5) == "eval"]
        prompts = [p for p in prompts if eval_half(p) == split]
        random.Random(seed).shuffle(prompts)
        per_source.append([(name, p) for p in prompts])
    mixed = [row for group in zip(*per_source) for row in group] if len(per_source) > 1 else per_source[0]
    return [EvalRow([{"role": "user", "content": p}], kind, f"builtin:{name}") for name, p in mixed[:n]]


def file_set(path: str | Path) -> list[EvalRow]:
    """A user's JSONL/CSV: `prompt` (or `messages`, a list of {role, content} or its JSON text) and `label` (1 = a
    harmful request, 0 = a benign one); an optional `kind` column may say toxic. Errors name file, line and field."""
    from ..data.files import read_file

    rows = read_file(path)
    out = []
    for i, row in enumerate(rows):
        line = rows.line_of(i)
        if "label" not in row and "kind" not in row:
            raise DataError(
                rows.source, "needs a 'label' column (1 harmful, 0 benign) or a 'kind' column", line, "label"
            )
        out.append(EvalRow(_messages(row, rows.source, line), _kind(row, rows.source, line), str(rows.source)))
    if not out:
        raise DataError(rows.source, "no rows to evaluate")
    return out


def _messages(row: dict, source, line) -> list[dict]:
    if row.get("messages") not in (None, ""):
        msgs = row["messages"]
        if isinstance(msgs, str):
            try:
                msgs = json.loads(msgs)
            except json.JSONDecodeError as e:
                raise DataError(source, f"not JSON: {e.msg}", line, "messages") from None
        ok = (
            isinstance(msgs, list) and msgs and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in msgs)
        )
        if not ok or not any(m["role"] == "user" for m in msgs):
            raise DataError(source, "must be a list of {role, content} with a user turn", line, "messages")
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(source, "missing or empty (give 'prompt' or 'messages')", line, "prompt")
    return [{"role": "user", "content": prompt}]


def _kind(row: dict, source, line) -> str:
    kind = row.get("kind")
    if kind not in (None, ""):
        if kind not in KINDS:
            raise DataError(source, f"must be one of {', '.join(KINDS)}, got {kind!r}", line, "kind")
        return kind
    label = str(row.get("label")).strip().lower()
    if label not in ("0", "1", "true", "false", "0.0", "1.0"):
        raise DataError(source, f"must be 0 or 1, got {row.get('label')!r}", line, "label")
    return "harmful" if label in ("1", "true", "1.0") else "benign"


def load_sets(specs: list[str], split: str, n: int, seed: int) -> dict[str, list[EvalRow]]:
    """builtin:harmful / builtin:toxic / builtin:benign, or file paths; -> {set name: rows}."""
    out = {}
    for spec in specs:
        if spec.startswith("builtin:"):
            kind = spec.split(":", 1)[1]
            out[kind] = builtin_set(kind, split, n, seed)
        else:
            out[Path(spec).stem] = file_set(spec)
    return out
