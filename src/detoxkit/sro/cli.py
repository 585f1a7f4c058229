"""`detoxkit sro train|eval` and `detoxkit rewrite "text" ...`."""

from __future__ import annotations

import argparse

SUBCOMMANDS = {
    "train": ("detoxkit.sro.train:main", "train a rewriter online against a screener (or a baseline: --loss_type)"),
    "eval": ("detoxkit.sro.evaluate:main", "STA/SIM/FL/J and BLEU/chrF of rewriters on the held-out ParaDetox split"),
}


def main(argv: list[str]) -> int:
    from ..cli import dispatch

    return dispatch("detoxkit sro", SUBCOMMANDS, argv)


def rewrite_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="detoxkit rewrite",
        description="Rewrite toxic text with a trained SRO rewriter (a `detoxkit sro train` output_dir/final folder) "
                    "or, given any causal LM, by zero-shot prompting. Prints one rewrite per line.")
    parser.add_argument("texts", nargs="*", help="texts to rewrite")
    parser.add_argument("--model", default="runs/sro/final", help="rewriter folder or causal LM (default: runs/sro/final)")
    parser.add_argument("--input", help="a file of texts (JSONL/CSV/TSV/Parquet/TXT) instead of arguments")
    parser.add_argument("--column", default="text", help="the text column of --input")
    parser.add_argument("--max_new_tokens", type=int, default=None)
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)

    from ..errors import DetoxkitError
    from .rewrite import Rewriter

    texts = list(args.texts)
    if args.input:
        from ..data import read_file, require_columns

        texts += [str(r[args.column]) for r in require_columns(read_file(args.input), [args.column])]
    if not texts:
        raise DetoxkitError("nothing to rewrite: give texts as arguments or --input FILE")
    rewriter = Rewriter.from_pretrained(args.model, max_new_tokens=args.max_new_tokens)
    for out in rewriter.rewrite(texts, batch_size=args.batch_size, show_progress=len(texts) > args.batch_size):
        print(out.replace("\n", " "))
    return 0
