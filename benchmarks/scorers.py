"""Scorers: throughput, and whether each trained head learned its task or its sources' phrasing.

--section speed: texts/s of each scorer at batch 64 on short texts, median of repeated runs. All scorers run side
by side in one process on the same texts (ParaDetox toxic sentences, median ~60 characters), so their ratios are
comparable even on a noisy machine.

--section generalisation: each trained head (toxicity, harm, refusal) retrained with its shipped config and scored
on every whole source it never trained on (leave-one-source-out), beside its own held-out split; for toxicity,
the independent profanity word model on the same rows. Also the overlaps between each head's training data and
the evaluation sets the heads judge (exact after normalisation, MiniLM cosine >= 0.9, and held-out ParaDetox
sentences found verbatim inside a training comment).

Writes its sections into benchmarks/results/scorers.json, keeping the other's.

    python benchmarks/scorers.py --section speed [--texts 512] [--repeats 5]
    python benchmarks/scorers.py --section generalisation
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUDGED_PROMPT_SETS = ["advbench", "harmbench", "donotanswer"]  # what ACD and the guard are scored on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--section",
        choices=["speed", "generalisation", "overlaps"],
        default="speed",
        help="overlaps: recompute only the training-vs-judged-set overlaps of an existing generalisation section",
    )
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lm_judge_texts", type=int, default=64, help="the LM judge is slow: fewer texts")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "scorers.json"))
    args = parser.parse_args()
    import sys

    from detoxkit.runs import update_json

    if args.section == "overlaps":
        from detoxkit.lm.embedder import load_embedder

        evaluation = json.loads(Path(args.output).read_text())["evaluation"]
        sections = {"evaluation": {**evaluation, "overlaps": _head_overlaps(load_embedder())}}
    else:
        sections = speed(args) if args.section == "speed" else generalisation(args)
    update_json(args.output, sections, ["python", *sys.argv])
    print(f"-> {args.output}")


def speed(args) -> dict:
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
    return {
        "benchmark": "scorer throughput; per-source generalisation of the trained heads",
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


def _train_loso(config: str, out: Path) -> dict:
    from detoxkit.config import parse_config
    from detoxkit.scorers.train import ScorerTrainConfig, run

    argv = ["--config", str(ROOT / "configs" / config), "--no-install", "--leave_one_source_out"]
    return run(parse_config(ScorerTrainConfig, argv + ["--output_dir", str(out)], "scorer train"))


def _rows_of(metrics: dict) -> dict:
    keep = ("n", "positives", "labels", "never_trained_on", "accuracy", "roc_auc", "f1", "skipped")
    pick = lambda m: {k: m[k] for k in keep if k in m}  # noqa: E731
    return {
        "heldout_split_by_source (trained on the source's other rows)": {
            s: pick(m) for s, m in metrics.get("heldout_by_source", {}).items()
        },
        "whole_source_left_out (never trained on)": {s: pick(m) for s, m in metrics["leave_one_source_out"].items()},
        **({"benchmark (never trained on)": pick(metrics["benchmark"])} if "benchmark" in metrics else {}),
    }


def _profanity_by_source(cfg_datasets: list[str]) -> dict:
    """The independent toxicity judge on the same sources' rows (it never trained on any of them)."""
    from detoxkit.eval.classification import classification_metrics
    from detoxkit.scorers import get_scorer
    from detoxkit.scorers.train import ScorerTrainConfig, build_rows

    rows, _ = build_rows(ScorerTrainConfig(datasets=cfg_datasets, benchmark="builtin:toxigen-200"))
    scorer, out = get_scorer("profanity"), {}
    for source in sorted({r["source"] for r in rows}):
        sub = [r for r in rows if r["source"] == source]
        m = classification_metrics([r["label"] for r in sub], scorer([r["text"] for r in sub]), n_boot=200)
        out[source] = {k: m[k] for k in ("n", "positives", "accuracy", "roc_auc", "f1") if k in m}
    return out


def _head_overlaps(embedder) -> list[dict]:
    """Each head's training texts against the evaluation sets they judge."""
    from detoxkit.data import load_builtin
    from detoxkit.data.overlap import normalise, overlap_check, overlap_report
    from detoxkit.scorers.train import TASK_DEFAULTS, ScorerTrainConfig, pair_rows, toxicity_training_rows
    from detoxkit.sro.data import heldout_texts

    report = []
    judged = {
        name: [r["prompt"] if "prompt" in r else r["text"] for r in load_builtin(name)] for name in JUDGED_PROMPT_SETS
    }
    for task in ("harm", "refusal"):
        train_prompts = list(
            dict.fromkeys(r["prompt"] for r in pair_rows(ScorerTrainConfig(task=task, datasets=TASK_DEFAULTS[task][0])))
        )
        for name, prompts in judged.items():
            check = overlap_check(prompts, train_prompts, 0.9, embedder)
            report.append(overlap_report(f"{name} prompts", f"{task} head training prompts", check, 0.9))
    tox_rows = toxicity_training_rows()
    heldout = heldout_texts()
    train_norm = {normalise(r["text"]) for r in tox_rows}
    inside = [h for h in heldout if normalise(h) in train_norm]
    joined = "\n".join(normalise(r["text"]) for r in tox_rows if r["source"] != "paradetox")
    inside += [h for h in heldout if h not in inside and len(normalise(h)) > 20 and normalise(h) in joined]
    report.append(
        {
            "pair": ["paradetox validation+test inputs", "toxicity head training texts"],
            "threshold": "exact, or found verbatim inside a training comment",
            "checked": len(heldout),
            "exact": len(inside),
            "near": 0,
            "removed": 0,
            "note": "not removed: the toxicity head's held-out side is this pool by construction; a sentence "
            "found inside a Jigsaw comment was seen as part of that comment",
            "examples": inside[:3],
        }
    )
    return report


def generalisation(args) -> dict:
    from detoxkit.eval.provenance import evaluation_record, split_record
    from detoxkit.lm.embedder import load_embedder
    from detoxkit.scorers.train import TOXICITY_DATASETS

    runs = ROOT / "runs" / "bench-scorers"
    heads, sizes = {}, {}
    for task, config in [
        ("toxicity", "scorer_train.yaml"),
        ("harm", "scorer_train_harm.yaml"),
        ("refusal", "scorer_train_refusal.yaml"),
    ]:
        print(f"{task}: leave-one-source-out", flush=True)
        metrics = _train_loso(config, runs / task)
        heads[task] = _rows_of(metrics)
        sizes[task] = (metrics["train_rows"], metrics["heldout_rows"])
    heads["toxicity"]["independent: profanity word model on the same rows"] = _profanity_by_source(TOXICITY_DATASETS)
    overlaps = _head_overlaps(load_embedder())
    evaluation = evaluation_record(
        training_signal=["toxicity", "harm", "refusal"],
        independent=["profanity"],
        splits={
            "toxicity head held-out": split_record(
                f"10% of groups by a seeded hash (train {sizes['toxicity'][0]})",
                sizes["toxicity"][1],
                42,
                "head metrics",
            ),
            "harm head cross-validation": split_record(
                "5-fold CV grouped by prompt (out-of-fold scores)", sizes["harm"][1], 42, "head metrics"
            ),
            "refusal head cross-validation": split_record(
                "5-fold CV grouped by prompt (out-of-fold scores)", sizes["refusal"][1], 42, "head metrics"
            ),
            "leave-one-source-out": split_record("each whole training source in turn", None, 42, "generalisation"),
        },
        overlaps=overlaps,
        notes=[
            "The heads are the training signal of SRO (toxicity) and ACD's anchors (harm, refusal); here they are "
            "the things graded, against human labels. Only toxicity has an independent model judge (profanity).",
            "One-label sources (jigsaw-toxic: all 1, wikitext: all 0) report accuracy only.",
        ],
    )
    return {"generalisation": heads, "evaluation": evaluation}


if __name__ == "__main__":
    main()
