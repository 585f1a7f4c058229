"""`detoxkit adversarial run|eval` and `detoxkit judge "prompt" ...`."""

from __future__ import annotations

import argparse

SUBCOMMANDS = {
    "run": ("detoxkit.adversarial.loop:main", "the attacker-judge loop for --rounds N rounds (resumable)"),
    "eval": ("detoxkit.adversarial.evaluate:main", "per-round judge accuracy vs the reference, attacker success, plot"),
}


def main(argv: list[str]) -> int:
    from ..cli import dispatch

    return dispatch("detoxkit adversarial", SUBCOMMANDS, argv)


def judge_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="detoxkit judge",
        description="Classify prompts as problematic (1) or not (0) with a judge trained by `detoxkit adversarial run` "
                    "(its run folder, a checkpoint-<round> folder or its judge/ folder) or any causal LM zero-shot. "
                    "Prints verdict, P(problematic) and the prompt, tab-separated, one line per prompt.")
    parser.add_argument("prompts", nargs="*", help="prompts to classify")
    parser.add_argument("--judge", default="runs/adversarial", help="judge: run folder, checkpoint, judge folder or LM")
    parser.add_argument("--input", help="a file of prompts (JSONL/CSV/TSV/Parquet/TXT) instead of arguments")
    parser.add_argument("--column", default="prompt", help="the prompt column of --input")
    parser.add_argument("--threshold", type=float, default=0.5, help="P(problematic) >= this is verdict 1")
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    from ..errors import DetoxkitError
    from .judge import Judge

    prompts = list(args.prompts)
    if args.input:
        from ..data import load_records, require_columns

        prompts += [str(r[args.column]) for r in require_columns(load_records(args.input), [args.column])]
    if not prompts:
        raise DetoxkitError("nothing to classify: give prompts as arguments or --input FILE")
    judge = Judge.from_pretrained(args.judge)
    for p, s in zip(prompts, judge.predict_proba(prompts, args.batch_size)):
        print(f"{int(s >= args.threshold)}\t{s:.3f}\t{p.replace(chr(10), ' ')}")
    return 0
