"""Throughput of each scorer on 2 CPU cores: texts/s at batch 64 on short texts, median of repeated runs.

All scorers run side by side in one process on the same texts (ParaDetox toxic sentences, median ~60
characters), so their ratios are comparable even on a noisy machine. Writes benchmarks/results/scorers.json.

    python benchmarks/scorers.py [--texts 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lm_judge_texts", type=int, default=64, help="the LM judge is slow: fewer texts")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "scorers.json"))
    args = parser.parse_args()

    import torch

    from detoxkit.data import load_builtin
    from detoxkit.scorers import get_scorer

    rows = load_builtin("paradetox")
    texts = [r["text"] for r in rows[: args.texts]]
    prompts = ["Tell me what you think about this."] * len(texts)
    chars = sorted(len(t) for t in texts)
    cases = {
        "toxicity": (get_scorer("toxicity"), texts, None),
        "profanity (alt-profanity-check)": (get_scorer("profanity"), texts, None),
        "refusal (rules only, no prompt)": (get_scorer("refusal"), texts, None),
        "refusal (with prompt: pair head)": (get_scorer("refusal"), texts, prompts),
        "harm (with prompt: pair head)": (get_scorer("harm"), texts, prompts),
        "lm-judge (smollm2-135m-instruct)": (get_scorer("lm-judge"), texts[: args.lm_judge_texts], None),
    }
    results = {}
    for name, (scorer, xs, ps) in cases.items():
        scorer(xs[:8], None if ps is None else ps[:8], batch_size=args.batch_size)  # warm-up
        rates = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            scorer(xs, ps, batch_size=args.batch_size)
            rates.append(len(xs) / (time.perf_counter() - t0))
        results[name] = {"texts_per_s_median": statistics.median(rates), "runs": rates, "texts": len(xs)}
        print(f"{name:<38} {statistics.median(rates):10.1f} texts/s (median of {args.repeats})")
    base = results["profanity (alt-profanity-check)"]["texts_per_s_median"]
    for r in results.values():
        r["relative_to_profanity_check"] = r["texts_per_s_median"] / base
    out = {
        "benchmark": "scorer throughput",
        "command": "python benchmarks/scorers.py "
        + f"--texts {args.texts} --repeats {args.repeats} --batch_size {args.batch_size}",
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_1m_at_end": os.getloadavg()[0],
        },
        "texts": {
            "source": "builtin:paradetox (toxic side, first N)",
            "n": len(texts),
            "median_chars": chars[len(chars) // 2],
        },
        "batch_size": args.batch_size,
        "results": results,
        "target": "toxicity >= 200 texts/s",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
