"""`detoxkit score --scorer NAME [TEXT ...] [--input FILE --column text --prompt_column prompt] [--output FILE]`"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Literal, Optional

from ..config import Recipe, arg


@dataclass
class ScoreConfig:
    """detoxkit score: the probability of the bad class (toxic, refusing, harmful) of each text.

    Texts come from the command line, from --input (JSONL/CSV/TSV/Parquet/TXT), or from standard input, one per
    line; scores print as a table, or go to --output as JSONL rows with a `<scorer>_score` field (atomically).
    """

    texts: list[str] = arg([], "texts to score", positional=True)
    scorer: Literal["toxicity", "profanity", "refusal", "harm", "lm-judge", "refusal-rules", "off-topic"] = arg(
        "toxicity", "which scorer (off-topic needs --prompt or --prompt_column)"
    )
    input: Optional[str] = arg(None, "a file of texts")
    column: str = arg("text", "the text column in --input")
    prompt_column: Optional[str] = arg(None, "refusal/harm/off-topic: the column holding each text's prompt")
    prompt: Optional[str] = arg(None, "refusal/harm/off-topic: one prompt for all command-line texts")
    output: Optional[str] = arg(None, "write JSONL rows with a `<scorer>_score` field here")
    model: Optional[str] = arg(None, "lm-judge: the judge model (builtin name, folder or hub id)")
    batch_size: Optional[int] = arg(None, "scoring batch size (None: the scorer's own)")


def _inputs(cfg: ScoreConfig) -> tuple[list[dict], list[str], list[str] | None]:
    from ..data import read_file, require_columns
    from ..errors import DetoxkitError

    if cfg.input:
        records = read_file(cfg.input)
        require_columns(records, [cfg.column] + ([cfg.prompt_column] if cfg.prompt_column else []), allow_empty=True)
        rows = list(records)
        prompts = [str(r[cfg.prompt_column] or "") for r in rows] if cfg.prompt_column else None
        return rows, [str(r[cfg.column] or "") for r in rows], prompts
    texts = cfg.texts or ([line.rstrip("\n") for line in sys.stdin] if not sys.stdin.isatty() else [])
    if not texts:
        raise DetoxkitError("nothing to score: give texts, --input FILE, or pipe lines on stdin")
    return [{"text": t} for t in texts], texts, [cfg.prompt] * len(texts) if cfg.prompt else None


def run(cfg: ScoreConfig) -> dict:
    from ..scorers import get_scorer

    rows, texts, prompts = _inputs(cfg)
    scorer = get_scorer(cfg.scorer, **({"model": cfg.model} if cfg.model and cfg.scorer == "lm-judge" else {}))
    scores = scorer(texts, prompts, batch_size=cfg.batch_size)
    key = f"{cfg.scorer.replace('-', '_')}_score"
    if cfg.output:
        from ..runs import atomic_write_text

        atomic_write_text(
            cfg.output, "".join(json.dumps({**r, key: s}, ensure_ascii=False) + "\n" for r, s in zip(rows, scores))
        )
    else:
        for t, s in zip(texts, scores):
            print(f"{s:.3f}  {t[:100]}")
    return {"scorer": scorer.name, "version": scorer.version, "threshold": scorer.threshold, "scores": scores}


def summary(cfg: ScoreConfig, r: dict) -> str:
    flagged = sum(s >= r["threshold"] for s in r["scores"])
    where = f" -> {cfg.output}" if cfg.output else ""
    return (
        f"score: {len(r['scores'])} texts scored by {r['scorer']} ({r['version']}); {flagged} at or above "
        f"{r['threshold']}{where}"
    )


SCORE = Recipe(ScoreConfig, run, summary)
