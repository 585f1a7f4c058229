"""Benchmark of the adversarial attacker–judge loop on the builtin SmolLM2-135M-Instruct (attacker and judge, LoRA).

Runs `detoxkit adversarial run` for a few rounds with small sizes (2 shared CPU cores), then `adversarial eval`,
and measures the offline oracle against the toxicity scorer on held-out builtin prompts. Writes
benchmarks/results/adversarial.json and adversarial_curve.png. Every number is measured in this run.

    .venv/bin/python benchmarks/adversarial.py [--rounds 3 --prompts_per_round 8 ...]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def oracle_quality(n: int, seed: int) -> dict:
    """Accuracy of candidate prompt oracles on held-out builtin prompts (harmful = 1, benign-edgy = 0)."""
    from detoxkit.adversarial.evaluate import builtin_splits
    from detoxkit.adversarial.oracles import PromptClassifierOracle
    from detoxkit.eval.classification import classification_metrics
    from detoxkit.lm.embedder import load_embedder
    from detoxkit.scorers import get_scorer

    embedder = load_embedder()
    splits = builtin_splits(embedder, 0.9)  # the hold-out less its near-duplicates of the training side
    rng = random.Random(seed)
    pos = rng.sample(splits["harmful_holdout"], min(n, len(splits["harmful_holdout"])))
    neg = rng.sample(splits["benign_holdout"], min(n, len(splits["benign_holdout"])))
    labels = [1] * len(pos) + [0] * len(neg)
    clf = PromptClassifierOracle(embedder, splits["harmful_train"], splits["benign_train"], seed=seed)
    out = {}
    for name, fn in (
        ("classifier (MiniLM logistic regression, used)", clf.predict_proba),
        ("toxicity scorer on the prompt", get_scorer("toxicity")),
    ):
        m = classification_metrics(labels, fn(pos + neg))
        out[name] = {"accuracy": m["accuracy"], "roc_auc": m.get("roc_auc"), "n": m["n"]}
    return out


def _evaluation_record(out: Path, metrics: dict) -> dict:
    import json

    from detoxkit.eval.provenance import evaluation_record, split_record

    splits_file = out / "splits.json"
    recorded = json.loads(splits_file.read_text()) if splits_file.exists() else {"sizes": {}, "overlaps": []}
    n = metrics["holdout_n"]
    return evaluation_record(
        training_signal=["prompt-oracle"],
        independent=["dataset labels"],
        splits={
            "seed/oracle training side": split_record(
                "builtin advbench+harmbench (harmful) and benign-edgy+pairs (benign), 70% by text hash",
                recorded["sizes"].get("harmful_train", 0) + recorded["sizes"].get("benign_train", 0),
                None,
                "seed data and the prompt oracle's training",
            ),
            "hold-out": split_record(
                "the other 30%, less near-duplicates of the training side",
                n.get("problematic", 0) + n.get("benign", 0),
                None,
                "per-round judge accuracy (problematic = hold-out harmful prompts the round-0 reference misses)",
            ),
            "transfer": split_record("builtin:toxigen-200", n.get("transfer", 0), None, "transfer ROC-AUC"),
        },
        overlaps=recorded["overlaps"],
        notes=[
            "The hold-out's labels are which builtin set a prompt comes from, not a model; but its problematic half "
            "is chosen by the reference judge (the judge's own base model), which the fine-tuned judge starts from.",
            "Whole-source (leave-one-source-out) evaluation of the judge is issue 16's work; not in this file yet.",
        ],
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prompts_per_round", type=int, default=8)
    p.add_argument("--max_new_tokens", type=int, default=24)
    p.add_argument("--holdout", type=int, default=16, help="hold-out problematic and benign prompts (each)")
    p.add_argument("--transfer_size", type=int, default=30)
    p.add_argument("--judge_epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", default=str(ROOT / "runs" / "bench_adversarial"))
    p.add_argument(
        "--reuse",
        action="store_true",
        help="report the rounds an earlier (possibly stopped) run in output_dir "
        "finished, without running the loop again",
    )
    p.add_argument("--skip_oracle_comparison", action="store_true")
    args = p.parse_args()

    from detoxkit.adversarial.evaluate import evaluate_run
    from detoxkit.adversarial.loop import main as run_main
    from detoxkit.runs import read_jsonl, write_json

    out = Path(args.output_dir)
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    argv = [
        "--config",
        str(ROOT / "configs" / "adversarial_run.yaml"),
        "--output_dir",
        str(out),
        "--rounds",
        str(args.rounds),
        "--prompts_per_round",
        str(args.prompts_per_round),
        "--max_new_tokens",
        str(args.max_new_tokens),
        "--max_tries",
        "2",
        "--holdout_problematic",
        str(args.holdout),
        "--holdout_benign",
        str(args.holdout),
        "--transfer_size",
        str(args.transfer_size),
        "--judge_epochs",
        str(args.judge_epochs),
        "--attacker_epochs",
        "1",
        "--seed",
        str(args.seed),
    ]
    t0 = time.perf_counter()
    if not args.reuse:
        run_main(argv)
    run_s = time.perf_counter() - t0
    metrics = evaluate_run(out)
    rows = read_jsonl(out / "prompts.jsonl")
    evals = {e["round"]: e for e in read_jsonl(out / "eval.jsonl")}
    done = {r["round"]: r for r in rows if r.get("type") == "round_done"}
    t1 = time.perf_counter()
    oracles = None if args.skip_oracle_comparison else oracle_quality(args.holdout * 2, args.seed)
    oracle_s = time.perf_counter() - t1

    acc = [r["holdout"]["accuracy"]["value"] for r in metrics["rounds"]]
    ref = metrics["reference_accuracy"]
    auc = [(r.get("transfer") or {}).get("roc_auc") for r in metrics["rounds"]]
    per_round = []
    for r in metrics["rounds"]:
        k = r["round"]
        h = r["holdout"]
        per_round.append(
            {
                "round": k,
                "judge": "reference (base model zero-shot)" if k == 0 else f"fine-tuned after round {k}",
                "threshold": evals[k].get("threshold"),
                **{m: h[m] for m in ("accuracy", "precision", "recall", "specificity", "f1")},
                "transfer_roc_auc": (r.get("transfer") or {}).get("roc_auc"),
                "attacker_success": r.get("attacker_success"),
                "time_s": {**(done[k]["time_s"] if k in done else {}), "eval": evals[k].get("time_s")},
                **(
                    {
                        "judge_train_size": done[k]["judge_train_size"],
                        "attacker_train_size": done[k]["attacker_train_size"],
                        "duplicates": done[k]["duplicates"],
                        "judge_loss_first_last": [done[k]["judge_loss_first"], done[k]["judge_loss_last"]],
                    }
                    if k in done
                    else {}
                ),
            }
        )
    result = {
        "what": "O'Neill et al. (2023) attacker-judge loop; SmolLM2-135M-Instruct attacker and judge (LoRA); oracle = "
        "MiniLM prompt classifier trained on builtin harmful vs benign prompts (an offline proxy for the human labeller)",
        "command": " ".join([sys.executable, *sys.argv]),
        "settings": vars(args),
        "holdout_n": metrics["holdout_n"],
        "reference_accuracy": ref,
        "rounds": per_round,
        "targets": {
            "accuracy_rising_each_round": all(b > a for a, b in zip(acc, acc[1:])),
            "final_minus_reference": acc[-1] - ref,
            "final_at_least_reference_plus_0.15": acc[-1] >= ref + 0.15,
            "transfer_auc_final_above_round0": (auc[-1]["value"] > auc[0]["value"]) if auc[0] and auc[-1] else None,
        },
        "oracle_quality_on_heldout_builtin": oracles,
        "rounds_finished": len(acc) - 1,
        "wall_s": {"loop_incl_eval": None if args.reuse else round(run_s, 1), "oracle_comparison": round(oracle_s, 1)},
        "examples": [
            {k: r[k] for k in ("round", "kind", "prompt", "label", "judge_score", "fooled")}
            for r in rows
            if r.get("type") == "prompt" and not r["duplicate"]
        ][:12],
    }
    result["evaluation"] = _evaluation_record(out, metrics)
    res = ROOT / "benchmarks" / "results"
    write_json(res / "adversarial.json", result)
    shutil.copyfile(out / "curve.png", res / "adversarial_curve.png")
    print((out / "table.md").read_text(), end="")
    print(
        f"adversarial benchmark: accuracy {ref:.3f} (reference) -> {acc[-1]:.3f} after {len(acc) - 1} rounds "
        f"(n={metrics['holdout_n']['problematic'] + metrics['holdout_n']['benign']}); {res}/adversarial.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
