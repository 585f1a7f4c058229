"""`detoxkit score --scorer NAME [TEXT ...] [--input FILE --column text --prompt_column prompt] [--output FILE]`"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str]) -> int:
    from ..scorers import SCORERS

    parser = argparse.ArgumentParser(
        prog="detoxkit score",
        description="Score texts with a scorer: the probability of the bad class (toxic, refusing, harmful). "
                    "Texts come from the command line, or from --input (JSONL/CSV/TSV/Parquet/TXT); "
                    "scores print as a table or go to --output as JSONL.")
    parser.add_argument("texts", nargs="*", help="texts to score")
    parser.add_argument("--scorer", default="toxicity", choices=list(SCORERS))
    parser.add_argument("--input", help="a file of texts")
    parser.add_argument("--column", default="text", help="the text column in --input (default: text)")
    parser.add_argument("--prompt_column", default=None, help="refusal/harm: the column holding each text's prompt")
    parser.add_argument("--prompt", default=None, help="refusal/harm: one prompt for all command-line texts")
    parser.add_argument("--output", help="write JSONL rows with a `<scorer>_score` field here (atomically)")
    parser.add_argument("--model", default=None, help="lm-judge: the judge model (builtin name, folder or hub id)")
    parser.add_argument("--batch_size", type=int, default=None)
    args = parser.parse_args(argv)

    from ..data import read_file, require_columns
    from ..errors import DetoxkitError
    from ..scorers import get_scorer

    rows: list[dict]
    if args.input:
        records = read_file(args.input)
        require_columns(records, [args.column] + ([args.prompt_column] if args.prompt_column else []), allow_empty=True)
        rows = list(records)
        texts = [str(r[args.column] or "") for r in rows]
        prompts = [str(r[args.prompt_column] or "") for r in rows] if args.prompt_column else None
    else:
        texts = args.texts or ([l.rstrip("\n") for l in sys.stdin] if not sys.stdin.isatty() else [])
        if not texts:
            raise DetoxkitError("nothing to score: give texts, --input FILE, or pipe lines on stdin")
        rows = [{"text": t} for t in texts]
        prompts = [args.prompt] * len(texts) if args.prompt else None
    scorer = get_scorer(args.scorer, **({"model": args.model} if args.model and args.scorer == "lm-judge" else {}))
    scores = scorer(texts, prompts, batch_size=args.batch_size)
    key = f"{args.scorer.replace('-', '_')}_score"
    if args.output:
        from ..runs import atomic_write_text

        atomic_write_text(args.output, "".join(json.dumps({**r, key: s}, ensure_ascii=False) + "\n" for r, s in zip(rows, scores)))
        print(f"score: {len(scores)} texts scored by {scorer.name} ({scorer.version}); "
              f"{sum(s >= scorer.threshold for s in scores)} at or above {scorer.threshold} -> {args.output}")
    else:
        for t, s in zip(texts, scores):
            print(f"{s:.3f}  {t[:100]}")
    return 0
