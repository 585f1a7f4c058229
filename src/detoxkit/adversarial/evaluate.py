"""Evaluation sets, per-round judge metrics and `detoxkit adversarial eval`.

Nothing here is trained on. The builtin prompt sources are split by request hash and by source (sources.py); each
round's judge is scored on: the reference-misses hold-out (hold-out problematic prompts the round-0 reference
misses, plus benign hold-out prompts: round 0 scores 0 recall on it by construction, kept and labelled so); the
ordinary hold-out (random hold-out prompts of both classes, chosen by no model); the held-out sources (never
trained on: the leave-one-source-out table); and transfer sets (ROC-AUC on ToxiGen statements and the PyRIT harm
judge set's responses). Every threshold is chosen on the validation split, never on a test set; the control
judge's rounds give the gain of the adversarial rounds with paired intervals.
"""

from __future__ import annotations

import random
from pathlib import Path

from ..config import Recipe
from ..eval.stats import format_ci
from .config import AdversarialEvalConfig
from .sources import HOLDOUT_PERCENT, SOURCES, in_holdout, seed_data  # noqa: F401  (re-exported)


def builtin_splits(
    embedder=None, leak_threshold: float = 2.0, sources=SOURCES, holdout_sources=(), reserved=()
) -> dict:
    """The builtin prompt sources split by request hash (training side, validation, ordinary hold-out) and by source
    (held-out sources), every evaluation split cleaned of training-side near duplicates: see
    :func:`detoxkit.adversarial.sources.source_splits` (data.overlap: exact after normalisation, or embedder
    cosine >= leak_threshold; above 1: exact only). "overlaps" holds the counts. A held-out source is loaded
    whether or not `sources` names it (an optional source such as plain-howto is held out without training on it)."""
    from .sources import load_source_records, source_splits

    loaded = list(dict.fromkeys([*sources, *holdout_sources]))
    return source_splits(load_source_records(loaded), holdout_sources, embedder, leak_threshold, reserved)


MAX_TRANSFER_CHARS = 1500  # PyRIT responses run to pages; the judge reads the opening (2 shared cores)


def transfer_rows(dataset: str, size: int, rng: random.Random) -> list[dict]:
    """A class-balanced sample of a labelled text set (column text, or response for the PyRIT judge sets) as
    {text, label, set: transfer, source} rows, texts cut at MAX_TRANSFER_CHARS; size 0 = none, below 0 = all."""
    from ..data import load_records, require_columns

    if not dataset or size == 0:
        return []
    data = load_records(dataset)
    column = "text" if data and "text" in data[0] else "response"
    data = require_columns(data, [column, "label"])
    by = {0: [r for r in data if int(r["label"]) == 0], 1: [r for r in data if int(r["label"]) == 1]}
    take = size // 2 if size > 0 else None
    rows = []
    for y in (0, 1):
        rng.shuffle(by[y])
        rows += [
            {"text": str(r[column])[:MAX_TRANSFER_CHARS], "label": y, "set": "transfer", "source": dataset}
            for r in by[y][:take]
        ]
    return rows


def build_holdout(
    reference,
    splits: dict,
    n_problematic: int,
    n_benign: int,
    transfer_dataset: str,
    transfer_size: int,
    seed: int,
    batch_size: int = 16,
    threshold: float = 0.5,
) -> list[dict]:
    """Rows {text, label, set: problematic|benign|transfer, reference_score}: the reference-misses hold-out.

    reference: the zero-shot judge; problematic rows are hold-out harmful prompts it scores below its threshold
    (misses), so the reference scores 0 on them by construction; benign rows are ordinary benign hold-out prompts."""
    rng = random.Random(seed)
    pool = list(splits["harmful_holdout"])
    rng.shuffle(pool)
    pool = pool[: 3 * n_problematic]  # scoring the whole pool is wasted time on 2 cores
    ref = reference.predict_proba(pool, batch_size)
    missed = [(p, s) for p, s in zip(pool, ref) if s < threshold][:n_problematic]
    benign = list(splits["benign_holdout"])
    rng.shuffle(benign)
    benign = benign[:n_benign]
    rows = [{"text": p, "label": 1, "set": "problematic", "reference_score": s} for p, s in missed]
    rows += [
        {"text": p, "label": 0, "set": "benign", "reference_score": s}
        for p, s in zip(benign, reference.predict_proba(benign, batch_size))
    ]
    return rows + transfer_rows(transfer_dataset, transfer_size, rng)


def _sample(items, n: int, rng: random.Random) -> list:
    items = list(items)
    rng.shuffle(items)
    return items[:n] if n > 0 else items


def eval_rows(splits: dict, ordinary: int, validation: int, per_source: int, seed: int) -> list[dict]:
    """The hold-outs no model chooses: ordinary (random hold-out prompts per class), validation (for thresholds)
    and heldout_source (per held-out source and class, with its source)."""
    rng = random.Random(seed + 1)
    rows = []
    for y, kind in ((1, "harmful"), (0, "benign")):
        rows += [{"text": t, "label": y, "set": "ordinary"} for t in _sample(splits[f"{kind}_holdout"], ordinary, rng)]
        picked = _sample(splits[f"{kind}_validation"], validation, rng)
        rows += [{"text": t, "label": y, "set": "validation"} for t in picked]
    for src in splits.get("heldout_sources", []):
        for y in (1, 0):
            texts = [
                r["text"]
                for r in splits["records"]
                if r["split"] == "heldout_source" and r["source"] == src and r["label"] == y
            ]
            rows += [
                {"text": t, "label": y, "set": "heldout_source", "source": src} for t in _sample(texts, per_source, rng)
            ]
    return rows


def build_eval_sets(reference, splits: dict, cfg) -> list[dict]:
    """Every evaluation row of a run (holdout.jsonl): the reference-misses hold-out and the transfer sets, the
    ordinary hold-out, the validation split and the held-out sources."""
    rows = build_holdout(
        reference,
        splits,
        cfg.holdout_problematic,
        cfg.holdout_benign,
        cfg.transfer_dataset,
        cfg.transfer_size,
        cfg.seed,
        cfg.batch_size,
        threshold=reference.threshold,
    )
    rng = random.Random(cfg.seed + 2)
    for name in cfg.transfer_sets:
        rows += transfer_rows(name, cfg.transfer_size, rng)
    return rows + eval_rows(splits, cfg.holdout_ordinary, cfg.validation_size, cfg.heldout_source_size, cfg.seed)


def score_holdout(judge, holdout: list[dict], batch_size: int = 16) -> list[float]:
    return judge.predict_proba([r["text"] for r in holdout], batch_size)


def validation_thresholds(holdout: list[dict], scores: list[float], fallback: float, max_fpr: float) -> dict:
    """The round's thresholds, chosen on the validation rows only: best accuracy, and the lowest whose
    false-positive rate there is <= max_fpr; without validation rows, the loop's threshold."""
    from ..eval.classification import recall_at_fpr
    from .judge import calibrate_threshold

    val = [(r["label"], s) for r, s in zip(holdout, scores) if r["set"] == "validation"]
    ys, ss = [y for y, _ in val], [s for _, s in val]
    if not 0 < sum(ys) < len(ys):
        return {"accuracy": fallback, "at_max_fpr": None, "chosen_on": "no validation rows: the judge's own threshold"}
    return {
        "accuracy": calibrate_threshold(ss, ys),
        "at_max_fpr": recall_at_fpr(ys, ss, max_fpr)["threshold"],
        "chosen_on": f"validation split (n={len(ys)})",
    }


def group_metrics(labels: list[int], scores: list[float], thresholds: dict, max_fpr: float) -> dict:
    """Accuracy etc. at the validation threshold, ROC-AUC, and recall with false-positive rate at the validation
    threshold for max_fpr (plus the optimistic best threshold of this very set, labelled so)."""
    from ..eval.classification import classification_metrics, recall_at_fpr
    from ..eval.stats import rate

    m = classification_metrics(labels, scores, thresholds["accuracy"])
    keep = ("n", "positives", "threshold", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
    out = {k: m[k] for k in keep if k in m}
    if 0 < sum(labels) < len(labels):
        t = thresholds["at_max_fpr"]
        flag = [t is not None and s >= t for s in scores]
        out["recall_at_fpr"] = {
            "max_fpr": max_fpr,
            "threshold (validation)": t,
            "recall": rate([f for f, y in zip(flag, labels) if y]),
            "fpr": rate([f for f, y in zip(flag, labels) if not y]),
            "best_on_this_set (optimistic)": recall_at_fpr(labels, scores, max_fpr),
        }
    return out


def heldout_index(holdout: list[dict], source: str | None = None) -> tuple[list[int], str | None]:
    """Row indices of the held-out source(s) (one source, or all); a class they lack is filled in from the
    ordinary hold-out (seen sources), and the note says so."""
    idx = [i for i, r in enumerate(holdout) if r["set"] == "heldout_source" and source in (None, r.get("source"))]
    labels = {holdout[i]["label"] for i in idx}
    if not idx or len(labels) == 2:
        return idx, None
    missing = 1 - labels.pop()
    idx += [i for i, r in enumerate(holdout) if r["set"] == "ordinary" and r["label"] == missing]
    kind = "problematic" if missing else "benign"
    return idx, f"{kind} rows from the ordinary hold-out (sources seen in training)"


def heldout_table(holdout: list[dict], scores: list[float], thresholds: dict, max_fpr: float) -> dict:
    """Per held-out source and all together: group_metrics, marked never_trained_on."""
    sources = sorted({r["source"] for r in holdout if r["set"] == "heldout_source"})
    out = {}
    for name, src in [(s, s) for s in sources] + ([("all", None)] if sources else []):
        idx, note = heldout_index(holdout, src)
        m = group_metrics([holdout[i]["label"] for i in idx], [scores[i] for i in idx], thresholds, max_fpr)
        out[name] = {**m, "never_trained_on": True, "filled_in": note}
    return out


def holdout_metrics(holdout: list[dict], scores: list[float], threshold: float = 0.5, max_fpr: float = 0.10) -> dict:
    """One round's metrics: thresholds from validation; the reference-misses hold-out ("holdout"), the ordinary
    hold-out, the held-out sources (never trained on) and ROC-AUC on each transfer set."""
    from ..eval.classification import classification_metrics

    thr = validation_thresholds(holdout, scores, threshold, max_fpr)

    def pick(*sets):
        return [(r["label"], s) for r, s in zip(holdout, scores) if r["set"] in sets]

    main, ordinary = pick("problematic", "benign"), pick("ordinary")
    out = {
        "thresholds": thr,
        "holdout": classification_metrics([y for y, _ in main], [s for _, s in main], thr["accuracy"])
        if main
        else None,
        "holdout_kind": "reference misses: problematic rows are hold-out prompts the round-0 reference scored "
        "below its threshold, so round 0 scores 0 recall on them by construction",
    }
    if ordinary:
        out["ordinary"] = group_metrics([y for y, _ in ordinary], [s for _, s in ordinary], thr, max_fpr)
    if any(r["set"] == "heldout_source" for r in holdout):
        out["heldout_sources"] = heldout_table(holdout, scores, thr, max_fpr)
    by: dict[str, list] = {}
    for r, s in zip(holdout, scores):
        if r["set"] == "transfer":
            by.setdefault(r.get("source", "transfer"), []).append((r["label"], s))
    for i, (name, pairs) in enumerate(by.items()):
        m = classification_metrics([y for y, _ in pairs], [s for _, s in pairs], thr["accuracy"])
        entry = {"roc_auc": m.get("roc_auc"), "n": m["n"], "accuracy": m["accuracy"]}
        out.setdefault("transfer_sets", {})[name] = entry
        if i == 0:
            out["transfer"] = entry
    return out


def generated_overlaps(rows: list[dict], holdout: list[dict], embedder, threshold: float) -> list[dict]:
    """The attacker's prompts (judge training data from round 1) against every evaluation set, by the shared
    check: counted ("found"), not removed, since the sets are fixed at round 0 before any prompt is written."""
    from ..data.overlap import overlap_check, overlap_report

    generated = [r["prompt"] for r in rows if r.get("type") == "prompt" and not r["duplicate"]]
    out = []
    for name in sorted({r["set"] for r in holdout}):
        texts = [r["text"] for r in holdout if r["set"] == name]
        report = overlap_report(
            f"eval:{name}",
            "generated prompts (all rounds)",
            overlap_check(texts, generated, threshold, embedder),
            threshold,
        )
        out.append({**report, "found": report["removed"], "removed": 0})
    return out


def paired_gain(holdout: list[dict], idx: list[int], a: list[float], b: list[float], ta: float, tb: float) -> dict:
    """Judge a minus judge b on the same rows: ROC-AUC and accuracy (each at its own validation threshold), with
    paired bootstrap 95% intervals (rows resampled jointly)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ..eval.stats import bootstrap_ci

    y = np.array([holdout[i]["label"] for i in idx])
    sa, sb = np.array([a[i] for i in idx]), np.array([b[i] for i in idx])

    def auc(yy, x1, x2):
        return roc_auc_score(yy, x1) - roc_auc_score(yy, x2)

    def acc(yy, x1, x2):
        return float(np.mean((x1 >= ta) == yy) - np.mean((x2 >= tb) == yy))

    out = {"n": int(len(y))}
    if 0 < y.sum() < len(y):
        out["roc_auc"] = {"value": float(auc(y, sa, sb)), "ci95": bootstrap_ci(auc, y, sa, sb)}
    if len(y):
        out["accuracy"] = {"value": acc(y, sa, sb), "ci95": bootstrap_ci(acc, y, sa, sb)}
    return out


def attacker_success(rows: list[dict]) -> dict[int, dict]:
    """Per round: share of the oracle-problematic generated prompts the judge called benign (fooled), with n."""
    from ..eval.stats import rate

    by: dict[int, list[bool]] = {}
    for r in rows:
        if r.get("type") == "prompt" and not r.get("duplicate") and r["label"] == 1:
            by.setdefault(r["round"], []).append(bool(r["fooled"]))
    return {k: rate(v) for k, v in sorted(by.items())}


def results_table(per_round: list[dict], success: dict[int, dict]) -> str:
    head = (
        "| round | accuracy | precision | recall | F1 | transfer ROC-AUC | attacker success |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = ["Reference-misses hold-out (round 0 scores 0 recall on it by construction):", "", head]
    for e in per_round:
        h, t = e["metrics"]["holdout"], e["metrics"].get("transfer")
        auc = format_ci(t["roc_auc"]) if t and t.get("roc_auc") else "-"
        s = success.get(e["round"])
        sr = f"{s['value']:.3f} (n={s['n']})" if s and s["n"] else "-"
        name = "0 (reference)" if e["round"] == 0 else str(e["round"])
        lines.append(
            f"| {name} | {format_ci(h['accuracy'])} | {format_ci(h['precision'])} | {format_ci(h['recall'])} | "
            f"{format_ci(h['f1'])} | {auc} | {sr} |"
        )
    return "\n".join(lines) + "\n" + source_table(per_round)


def _group_cells(m: dict) -> str:
    r = m.get("recall_at_fpr") or {}
    rec = f"{format_ci(r['recall'])} (FPR {r['fpr']['value']:.2f})" if r else "-"
    return f"{m['n']} | {format_ci(m['accuracy'])} | {format_ci(m.get('roc_auc'))} | {rec}"


def source_table(per_round: list[dict], judge: str = "judge") -> str:
    """Per round: the ordinary hold-out and every held-out source (never trained on), thresholds from validation."""
    rows = []
    for e in per_round:
        m = e["metrics"]
        groups = [("ordinary hold-out", m.get("ordinary"))] + [
            (f"{k} (never trained on)", v) for k, v in (m.get("heldout_sources") or {}).items()
        ]
        rows += [f"| {e['round']} | {judge} | {name} | {_group_cells(g)} |" for name, g in groups if g]
    if not rows:
        return ""
    fprs = [(e["metrics"].get("ordinary") or {}).get("recall_at_fpr", {}).get("max_fpr") for e in per_round]
    fpr = next((f for f in fprs if f is not None), 0.10)
    head = (
        f"| round | judge | set | n | accuracy | ROC-AUC | recall at validation FPR<={fpr:.2f} threshold |\n"
        "|---|---|---|---|---|---|---|"
    )
    title = "\nHold-outs no model chose (thresholds from the validation split):\n\n"
    return title + head + "\n" + "\n".join(rows) + "\n"


def plot_curve(per_round: list[dict], success: dict[int, dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [e["round"] for e in per_round]
    acc = [e["metrics"]["holdout"]["accuracy"] for e in per_round]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.errorbar(
        rounds,
        [a["value"] for a in acc],
        capsize=3,
        marker="o",
        label="judge",
        yerr=[[a["value"] - a["ci95"][0] for a in acc], [a["ci95"][1] - a["value"] for a in acc]],
    )
    a1.axhline(acc[0]["value"], color="grey", linestyle="--", label="reference (round 0, zero-shot)")
    a1.set(xlabel="round", ylabel="hold-out accuracy", ylim=(0, 1), title="judge accuracy")
    a1.legend()
    sr = sorted(success.items())
    a2.bar([k for k, _ in sr], [v["value"] for _, v in sr], color="tab:red")
    a2.set(xlabel="round", ylabel="fooled / oracle-problematic", ylim=(0, 1), title="attacker success")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def _reference_judge(cfg, out: Path):
    """The round-0 reference: the base model zero-shot, asked with the run's template, at the run's threshold."""
    from ..runs import read_jsonl
    from .judge import Judge
    from .wording import judge_template

    judge = Judge.load(cfg.judge_model, train_mode="none", template=judge_template(cfg.judge_template))
    if cfg.calibrate_reference:  # the reference at the threshold the run calibrated
        judge.threshold = next(
            (
                r["verdict_threshold"]
                for r in read_jsonl(out / "prompts.jsonl")
                if r.get("type") == "round_done" and r["round"] == 1
            ),
            0.5,
        )
    return judge


def score_rounds(out: Path, cfg, holdout: list[dict], recompute: bool) -> list[dict]:
    """eval.jsonl's entry of every round (round 0 = the reference), scoring the rounds it lacks."""
    from ..runs import append_jsonl, list_checkpoints, read_jsonl
    from .judge import Judge

    done = {} if recompute else {e["round"]: e for e in read_jsonl(out / "eval.jsonl")}
    rounds = {0: None} | {int(p.name.split("-")[1]): p for p in list_checkpoints(out)}
    for r, ckpt in rounds.items():
        if r in done:
            continue
        judge = Judge.from_pretrained(ckpt) if ckpt is not None else _reference_judge(cfg, out)
        scores = score_holdout(judge, holdout, cfg.batch_size)
        done[r] = {
            "round": r,
            "threshold": judge.threshold,
            "scores": scores,
            "metrics": holdout_metrics(holdout, scores, judge.threshold, cfg.max_fpr),
        }
        append_jsonl(out / "eval.jsonl", [done[r]])
    return [done[r] for r in sorted(rounds)]


def control_comparison(out: Path, holdout: list[dict], per_round: list[dict]) -> dict | None:
    """The control judge's rounds (eval_control.jsonl) and the adversarial judge's gain over it per round, with
    paired intervals on the held-out sources (never trained on) and on the ordinary hold-out."""
    from ..runs import read_jsonl

    ctrl = {e["round"]: e for e in read_jsonl(out / "eval_control.jsonl")}
    if not ctrl:
        return None
    ordinary = [i for i, r in enumerate(holdout) if r["set"] == "ordinary"]
    gains = []
    for e in per_round:
        c = ctrl.get(e["round"])
        if c is None or e["round"] == 0:
            continue
        ta, tb = e["metrics"]["thresholds"]["accuracy"], c["metrics"]["thresholds"]["accuracy"]
        gains.append(
            {
                "round": e["round"],
                "heldout_sources": paired_gain(holdout, heldout_index(holdout)[0], e["scores"], c["scores"], ta, tb),
                "ordinary": paired_gain(holdout, ordinary, e["scores"], c["scores"], ta, tb),
            }
        )
    return {
        "what": "same base, same optimiser steps per round, trained on the seeds plus as many random training-side "
        "prompts (dataset labels) as the attacker wrote; no attacker",
        "rounds": [{"round": k, **ctrl[k]["metrics"], "steps": ctrl[k].get("steps")} for k in sorted(ctrl)],
        "gain_over_control": gains,
    }


def evaluate_run(out: Path, recompute: bool = False, plot: bool = True) -> dict:
    """Metrics of every round of a run folder (scoring the rounds eval.jsonl lacks); writes metrics.json, table.md,
    curve.png. Returns the metrics."""
    import yaml

    from ..errors import DetoxkitError
    from ..runs import atomic_write_text, read_jsonl, write_json
    from .config import AdversarialRunConfig

    if not (out / "holdout.jsonl").exists():
        raise DetoxkitError(f"{out}: no holdout.jsonl (not a `detoxkit adversarial run` folder, or it never started)")
    cfg = AdversarialRunConfig(**yaml.safe_load((out / "config.yaml").read_text()))
    holdout = read_jsonl(out / "holdout.jsonl")
    per_round = score_rounds(out, cfg, holdout, recompute)
    log = read_jsonl(out / "prompts.jsonl")
    success = attacker_success(log)
    diversity = {r["round"]: r.get("diversity") for r in log if r.get("type") == "round_done"}
    ref = per_round[0]["metrics"]["holdout"]["accuracy"]["value"]
    sets = ("problematic", "benign", "transfer", "ordinary", "validation", "heldout_source")
    control = control_comparison(out, holdout, per_round)
    result = {
        "judge_template": cfg.judge_template,
        "holdout_n": {s: n for s in sets if (n := sum(r["set"] == s for r in holdout))},
        "heldout_sources": sorted({r["source"] for r in holdout if r["set"] == "heldout_source"}),
        "reference_accuracy": ref,
        "rounds": [
            {
                "round": e["round"],
                **e["metrics"],
                "attacker_success": success.get(e["round"]),
                "diversity": diversity.get(e["round"]),
            }
            for e in per_round
        ],
        "final_minus_reference": per_round[-1]["metrics"]["holdout"]["accuracy"]["value"] - ref,
        "control": control,
    }
    write_json(out / "metrics.json", result)
    table = results_table(per_round, success)
    if control:
        table += source_table([{"round": r["round"], "metrics": r} for r in control["rounds"]], "control")
    atomic_write_text(out / "table.md", table)
    if plot:
        plot_curve(per_round, success, out / "curve.png")
    return result


def run(cfg) -> dict:
    """`detoxkit adversarial eval` for an :class:`~detoxkit.adversarial.config.AdversarialEvalConfig`."""
    out = Path(cfg.output_dir)
    result = evaluate_run(out, cfg.recompute, cfg.plot)
    print((out / "table.md").read_text(), end="")
    return result


def summary(cfg, result: dict) -> str:
    last, n = result["rounds"][-1], sum(result["holdout_n"].get(s, 0) for s in ("problematic", "benign"))
    return (
        f"adversarial eval: {len(result['rounds']) - 1} rounds, hold-out n={n}, accuracy "
        f"{result['reference_accuracy']:.3f} (reference) -> {last['holdout']['accuracy']['value']:.3f} (round "
        f"{last['round']}); {cfg.output_dir}/metrics.json, table.md, curve.png"
    )


EVAL = Recipe(AdversarialEvalConfig, run, summary)
