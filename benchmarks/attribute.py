"""Attribute-controlled fine-tuning benchmark -> benchmarks/results/attribute.json (+ attribute.png).

The paper's table on the builtin model (SmolLM2-135M-Instruct): every row fine-tunes on the same blend
(equal parts toxic Jigsaw comments and clean WikiText/XSum), same batches, same steps:
  base (no fine-tuning), sft (plain fine-tuning), filtration, rl, NADO decoding (the sft model guided by a
  NADO trained on its samples), regularized without adaptive, regularized with adaptive (parallel schedule),
  and regularized with adaptive on the sequential schedule (for the cost comparison and quality parity).
Toxicity: sampled continuations of RealToxicityPrompts challenging prompts scored by the toxicity scorer;
utility: held-out WikiText perplexity and MMLU / CommonsenseQA / PIQA log-likelihood accuracy; win rate
against sft judged by the builtin model (a weak judge, labelled as such).
Cost, on an otherwise idle machine: --section cost_from_runs reads the timings of the quality runs above
(sft, regularized adaptive parallel and sequential, run one after another by this script; medians over
iterations 2-4 of each). Then the classification study: SFT vs regularized on ToxiGen classification as text,
ROC-AUC and generation toxicity.

--seeds 0,1,2: the first seed gives the whole table; each further seed retrains the headline rows (sft, rl,
regularized with adaptive) with that training seed and scores them on the same evaluation prompts and items (no win
rate); "seeds" holds per-seed values, mean and sd of each headline figure and of the toxicity cut against sft.

Sizes are set for about an hour on an idle 2-core CPU (about 20 min more per extra seed); raise them on a GPU.
    python benchmarks/attribute.py [--section quality|classification|cost_from_runs|rl_sweep|all] [--seeds 0]
        [--rl_coefs 1,3] [--steps 40] [--steps_per_iteration 10]
        [--eval_prompts 60] [--k 4] [--mc_items 40] [--no_classification] [--work runs/bench-attribute] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER = {
    "Llama-7B toxicity": {
        "baseline": 23.0,
        "filtration": 21.9,
        "rl": 15.2,
        "nado_decoding": 15.2,
        "regularized": 15.2,
        "regularized_adaptive": 14.2,
    },
    "Llama-7B MMLU": {
        "baseline": 35.1,
        "filtration": 34.6,
        "rl": 33.6,
        "nado_decoding": 31.1,
        "regularized": 30.4,
        "regularized_adaptive": 33.9,
    },
}

# the rows of the table that fine-tune: the method fields each adds to the shared train_settings
PLAN = {
    "sft": dict(method="sft"),
    "filtration": dict(method="filtration"),
    "rl": dict(method="rl", schedule="parallel"),
    "regularized": dict(method="regularized", schedule="parallel"),
    "regularized_adaptive": dict(method="regularized", adaptive=True, schedule="parallel"),
    "regularized_adaptive_sequential": dict(method="regularized", adaptive=True, schedule="sequential"),
}


def train_run(name: str, work: Path, reuse: bool, **overrides) -> dict:
    from detoxkit.attribute.config import AttributeTrainConfig
    from detoxkit.attribute.train import train
    from detoxkit.runs import write_json

    out = work / name
    if reuse and (out / "metrics.json").is_file():
        return json.loads((out / "metrics.json").read_text())
    cfg = AttributeTrainConfig(output_dir=str(out), **overrides)
    t0 = time.perf_counter()
    m = train(cfg)
    m["wall_seconds"] = time.perf_counter() - t0
    write_json(out / "metrics.json", m)
    # A finished run is read from final/ and metrics.json only; its resume checkpoints (weights and optimiser state,
    # 1.5-2.5 GB each at 135M) would fill the disk over the 14 runs of --seeds 0,1,2.
    for ckpt in out.glob("checkpoint-*"):
        shutil.rmtree(ckpt)
    print(f"[{name}] {m['steps']} steps in {m['wall_seconds']:.0f} s", flush=True)
    return m


def evaluate_once(cfg, reuse: bool) -> dict:
    """`attribute eval` for cfg, or (reuse) the metrics an earlier evaluation of the same rows and settings left in
    cfg.output_dir."""
    from detoxkit.attribute.evaluate import evaluate, parse_method

    path = Path(cfg.output_dir) / "metrics.json"
    if reuse and path.is_file():
        m = json.loads(path.read_text())
        same = all(m["config"].get(k) == getattr(cfg, k) for k in m["config"])
        if same and list(m["results"]) == [parse_method(x)[0] for x in cfg.methods]:
            print(f"[{path.parent.name}] reused", flush=True)
            return m
    return evaluate(cfg)


def _overlaps(args, seeds: list[int]) -> list[dict]:
    """The evaluation prompts and perplexity texts against what trained: the blend of every seed (near-duplicate
    check), and the toxicity head's training texts (exact, or the prompt found inside a text: RealToxicityPrompts
    prompts are sentence starts, so a leaked one sits inside a longer comment)."""
    from detoxkit.attribute.config import AttributeEvalConfig, AttributeTrainConfig
    from detoxkit.attribute.data import rtp_prompts, training_texts, wikitext_split
    from detoxkit.data.overlap import normalise, overlap_check, overlap_report
    from detoxkit.lm.embedder import load_embedder
    from detoxkit.scorers.train import toxicity_training_rows

    prompts = rtp_prompts(args.eval_prompts, AttributeEvalConfig().seed)
    ppl = wikitext_split()[1][:100]
    task = AttributeTrainConfig().task
    blend = list(dict.fromkeys(r["text"] for q in seeds for r in training_texts("blend", task, args.train_texts, q)[0]))
    embedder = load_embedder()
    report = [
        overlap_report(name, "training blend (every seed)", overlap_check(texts, blend, 0.9, embedder), 0.9)
        for name, texts in (("RealToxicityPrompts evaluation prompts", prompts), ("held-out WikiText texts", ppl))
    ]
    head = "\n".join(normalise(r["text"]) for r in toxicity_training_rows())
    inside = [p for p in prompts if normalise(p) in head]
    report.append(
        {
            "pair": ["RealToxicityPrompts evaluation prompts", "toxicity head training texts"],
            "threshold": "exact, or found verbatim inside a training text",
            "checked": len(prompts),
            "exact": len(inside),
            "near": 0,
            "examples": inside[:3],
        }
    )
    # `attribute eval` draws its own evaluation sets, so what is found here is reported, not removed
    return [{**r, "removed": 0} for r in report]


def _evaluation_record(args, seeds: list[int]) -> dict:
    from detoxkit.attribute.config import AttributeEvalConfig
    from detoxkit.eval.provenance import evaluation_record, split_record

    eval_seed = AttributeEvalConfig().seed

    return evaluation_record(
        training_signal=["toxicity"],
        independent=["profanity"],
        splits={
            "train": split_record(
                "blend of builtin:jigsaw-toxic and clean WikiText/XSum", args.train_texts, args.seeds, "fine-tuning"
            ),
            "eval prompts": split_record(
                "RealToxicityPrompts challenging prompts",
                args.eval_prompts,
                eval_seed,
                "toxicity of sampled continuations",
            ),
            "utility": split_record(
                "held-out WikiText; MMLU, CommonsenseQA, PIQA", args.mc_items, eval_seed, "perplexity, MC"
            ),
        },
        overlaps=_overlaps(args, seeds),
        notes=[
            "The regulariser's NADO and the RL/filtration baselines are trained against the toxicity head; the "
            "independent figure is the profanity word model on the same continuations.",
            "No choice was made on these evaluation sets: every row runs the recipe's fixed settings.",
            "Win rate: the builtin model as judge, which shares weights with every row's starting point.",
        ],
    )


TOXICITY_KEYS = ("expected_max_toxicity", "toxicity_probability", "mean_toxicity")


def summarise(results: dict, base: str) -> dict:
    rows = {}
    for name, r in results.items():
        rows[name] = {
            "expected_max_toxicity": r["toxicity"]["expected_max_toxicity"],
            "toxicity_probability": r["toxicity"]["toxicity_probability"],
            "mean_toxicity": r["toxicity"]["mean_toxicity"],
            **{f"{k}_independent": r["independent"]["toxicity"][k] for k in TOXICITY_KEYS if "independent" in r},
            "perplexity": r["perplexity"]["value"],
            **{f"{t}_acc": r["mc"][t]["acc"] for t in r["mc"]},
            "mc_mean": r["mc_mean"],
            "win_rate_vs_" + base: r.get("win_rate"),
        }
        if "classification" in r:
            rows[name]["roc_auc"] = r["classification"].get("roc_auc")
    return rows


def plot(rows: dict, runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, r in rows.items():
        emt = r["expected_max_toxicity"]
        a.errorbar(
            r["mc_mean"],
            emt["value"],
            yerr=[[emt["value"] - emt["ci95"][0]], [emt["ci95"][1] - emt["value"]]],
            fmt="o",
            capsize=3,
        )
        a.annotate(name, (r["mc_mean"], emt["value"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    a.set_xlabel("multiple-choice accuracy (mean of MMLU, CSQA, PIQA)")
    a.set_ylabel("expected max toxicity (RTP challenging)")
    a.set_title("toxicity vs utility (lower-right is better)")
    for name, m in runs.items():
        hist = [h for h in m["history"] if h.get("sample_toxic_rate") is not None]
        if hist:
            b.plot([h["steps"] for h in hist], [h["sample_toxic_rate"] for h in hist], marker="o", label=name)
    b.set_xlabel("model steps")
    b.set_ylabel("toxic rate of the model's own samples")
    b.set_title("self-samples during training (training prompts)")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cost_from_runs(work: Path, spi: int) -> dict:
    """Cost of the quality runs themselves (one script run, one after another on the same machine): per-step
    seconds per iteration, the first iteration excluded (scorer load; the parallel bootstrap)."""
    runs = {
        k: json.loads((work / n / "metrics.json").read_text())
        for k, n in (
            ("sft", "sft"),
            ("parallel", "regularized_adaptive"),
            ("sequential", "regularized_adaptive_sequential"),
        )
    }
    per_step = {k: [h["seconds"] / spi for h in m["history"][1:]] for k, m in runs.items()}
    med = {k: statistics.median(v) for k, v in per_step.items()}
    stages = {
        k: {
            s: statistics.median(h[s] for h in m["history"][1:])
            for s in ("finetune_seconds", "sample_seconds", "nado_seconds")
            if s in m["history"][-1]
        }
        for k, m in runs.items()
    }
    return {
        "source": "the quality runs (4 iterations of 10 steps each)",
        "seconds_per_step": per_step,
        "median_seconds_per_step": med,
        "median_stage_seconds_per_iteration": stages,
        "wall_seconds": {k: sum(h["seconds"] for h in m["history"]) for k, m in runs.items()},
        "per_step_ratio_parallel_over_sft": med["parallel"] / med["sft"],
        "per_step_ratio_sequential_over_sft": med["sequential"] / med["sft"],
        "wall_ratio_parallel_over_sequential": sum(h["seconds"] for h in runs["parallel"]["history"])
        / sum(h["seconds"] for h in runs["sequential"]["history"]),
        "aims": {"per_step_ratio": "<= 1.25", "wall_ratio": "<= 0.6"},
    }


def classification_study(args, work: Path, common: dict) -> dict:
    """SFT vs regularized (adaptive, parallel) on ToxiGen classification as text: ROC-AUC of P(Yes) on held-out
    ToxiGen, and generation toxicity (no multiple-choice: the table's utility columns are the main study's)."""
    from detoxkit.attribute.config import AttributeEvalConfig
    from detoxkit.attribute.evaluate import evaluate

    cls_common = {**common, "task": "classification", "train_dataset": "builtin:toxigen", "max_length": 64}
    cls_runs = {
        "sft_classification": dict(method="sft"),
        "regularized_classification": dict(method="regularized", adaptive=True, schedule="parallel"),
    }
    for name, kw in cls_runs.items():
        train_run(name, work, args.reuse, **cls_common, **kw)
    cev = evaluate(
        AttributeEvalConfig(
            methods=["base=smollm2-135m-instruct"] + [f"{n}={work / n / 'final'}" for n in cls_runs],
            num_prompts=args.eval_prompts,
            k=args.k,
            max_new_tokens=16,
            num_mc_items=0,
            num_ppl_texts=100,
            win_rate_judge="off",
            classification=True,
            num_classification_items=300,
            output_dir=str(work / "eval_classification"),
        )
    )
    return {
        "classification_study": summarise(cev["results"], "base"),
        "classification_table_md": (work / "eval_classification" / "table.md").read_text(),
    }


def rl_sweep(args, work: Path, common: dict) -> dict:
    """The RL baseline at stronger push-down weights, so that "at least as much as RL" is not judged against an
    RL run too weak to move: each coefficient trains on the table's data and steps and is evaluated beside sft
    (same prompts, seeds and judge as the main table), with its toxicity reduction relative to sft."""
    from detoxkit.attribute.config import AttributeEvalConfig
    from detoxkit.attribute.evaluate import evaluate

    coefs = [float(c) for c in args.rl_coefs.split(",") if c.strip()]
    names = {c: f"rl_coef{c:g}" for c in coefs}
    for c, name in names.items():
        train_run(name, work, args.reuse, **common, method="rl", schedule="parallel", rl_coef=c)
    ev = evaluate(
        AttributeEvalConfig(
            methods=["sft=" + str(work / "sft" / "final")] + [f"{n}={work / n / 'final'}" for n in names.values()],
            num_prompts=args.eval_prompts,
            k=args.k,
            max_new_tokens=16,
            num_mc_items=args.mc_items,
            num_ppl_texts=100,
            num_win_prompts=args.win_prompts,
            output_dir=str(work / "eval_rl_sweep"),
        )
    )
    rows = summarise(ev["results"], "sft")
    reduction = {
        n: {k: 1 - rows[n][k]["value"] / rows["sft"][k]["value"] for k in TOXICITY_KEYS} for n in names.values()
    }
    return {
        "rl_coefs": coefs,
        "table": rows,
        "toxicity_reduction_vs_sft_relative": reduction,
        "mc_points_vs_sft": {n: 100 * (rows[n]["mc_mean"] - rows["sft"]["mc_mean"]) for n in names.values()},
        "table_md": (work / "eval_rl_sweep" / "table.md").read_text(),
    }


HEADLINE = ("sft", "rl", "regularized_adaptive")


def _headline(results: dict) -> dict:
    """Per headline row: the training-signal and independent toxicity figures and MC mean; the cuts against sft."""
    out = {}
    for name in HEADLINE:
        r = results[name]
        out[name] = {
            "expected_max_toxicity": r["toxicity"]["expected_max_toxicity"]["value"],
            "toxicity_probability": r["toxicity"]["toxicity_probability"]["value"],
            "expected_max_toxicity_independent": r["independent"]["toxicity"]["expected_max_toxicity"]["value"],
            "mc_mean": r["mc_mean"],
        }
    for key in ("expected_max_toxicity", "expected_max_toxicity_independent"):
        sft = out["sft"][key]
        out[f"cut_vs_sft_{key}"] = 1 - out["regularized_adaptive"][key] / sft if sft else None
    return out


def extra_seed(seed: int, args, work: Path, common: dict) -> dict:
    """The headline rows retrained with training seed `seed`, scored like the table (no win rate)."""
    from detoxkit.attribute.config import AttributeEvalConfig

    names = {n: f"{n}-seed{seed}" for n in HEADLINE}
    for name, folder in names.items():
        train_run(folder, work, args.reuse, **{**common, "seed": seed}, **PLAN[name])
    ev = evaluate_once(
        AttributeEvalConfig(
            methods=[f"{n}={work / folder / 'final'}" for n, folder in names.items()],
            num_prompts=args.eval_prompts,
            k=args.k,
            max_new_tokens=16,
            num_mc_items=args.mc_items,
            num_ppl_texts=100,
            win_rate_judge="off",
            output_dir=str(work / f"eval-seed{seed}"),
        ),
        args.reuse,
    )
    return _headline(ev["results"])


def seeds_summary(per_seed: dict[int, dict]) -> dict:
    """Mean, sd and per-seed values of every headline figure over the seeds (eval.stats.seed_spread)."""
    from detoxkit.eval.stats import seed_spread

    first = next(iter(per_seed.values()))
    out = {"seeds": list(per_seed)}
    for row, v in first.items():
        if isinstance(v, dict):
            out |= {f"{row}/{k}": seed_spread({q: h[row][k] for q, h in per_seed.items()}) for k in v}
        else:
            out[row] = seed_spread({q: h[row] for q, h in per_seed.items()})
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--steps_per_iteration", type=int, default=10)
    ap.add_argument("--train_texts", type=int, default=1000)
    ap.add_argument("--learning_rate", type=float, default=1e-4)
    ap.add_argument("--reg_lambda", type=float, default=10.0)
    ap.add_argument("--eval_prompts", type=int, default=60)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--mc_items", type=int, default=40)
    ap.add_argument("--win_prompts", type=int, default=40)
    ap.add_argument("--nado_prompts", type=int, default=64, help="prompts per round of the NADO-decoding baseline's R")
    ap.add_argument("--no_classification", action="store_true")
    ap.add_argument(
        "--seeds",
        default="0",
        help="training seeds, comma-separated: the first gives the table, the rest headline rows",
    )
    ap.add_argument("--work", default="runs/bench-attribute")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs and evaluations in --work")
    ap.add_argument(
        "--section",
        choices=["quality", "classification", "cost_from_runs", "rl_sweep", "all"],
        default="all",
        help="cost_from_runs: the timings of the quality runs in --work (they need an otherwise idle machine); "
        "rl_sweep: the RL baseline at each of --rl_coefs, evaluated beside sft",
    )
    ap.add_argument(
        "--rl_coefs", default="1,3", help="rl_sweep: comma-separated rl_coef values (the table's rl row uses 0.1)"
    )
    return ap


def train_settings(args, seed: int) -> dict:
    """The fine-tune settings every row of the table shares (the rows differ only in PLAN's method fields)."""
    return dict(
        max_train_samples=args.train_texts,
        max_length=48,
        per_device_train_batch_size=8,
        learning_rate=args.learning_rate,
        max_steps=args.steps,
        steps_per_iteration=args.steps_per_iteration,
        reg_batch_size=4,
        samples_per_prompt=4,
        prompt_tokens=12,
        max_new_tokens=16,
        nado_layers=2,
        nado_learning_rate=1e-3,
        reg_lambda=args.reg_lambda,
        seed=seed,
    )


def train_nado_decoding(args, work: Path) -> Path:
    """The NADO-decoding baseline's R, trained on samples of the sft model; its folder."""
    from detoxkit.attribute.config import NadoTrainConfig
    from detoxkit.attribute.nado_train import run as train_nado_only

    nado_dir = work / "nado_decoding"
    if not (args.reuse and (nado_dir / "nado" / "nado.json").is_file()):
        train_nado_only(
            NadoTrainConfig(
                model_name_or_path=str(work / "sft" / "final"),
                output_dir=str(nado_dir),
                iterations=4,
                prompts_per_iteration=args.nado_prompts,
                samples_per_prompt=4,
                prompt_tokens=12,
                max_new_tokens=16,
                nado_layers=2,
                nado_learning_rate=1e-3,
                seed=0,
            )
        )
    return nado_dir


def evaluate_table(args, work: Path, nado_dir: Path) -> dict:
    """Every row of the table scored once, on the same prompts, items and win-rate judge."""
    from detoxkit.attribute.config import AttributeEvalConfig

    methods = ["sft=" + str(work / "sft" / "final"), "base=smollm2-135m-instruct"]
    methods += [f"{n}={work / n / 'final'}" for n in ("filtration", "rl")]
    methods += [f"nado_decoding={work / 'sft' / 'final'}+nado={nado_dir / 'nado'}"]
    methods += [f"{n}={work / n / 'final'}" for n in PLAN if n.startswith("regularized")]
    return evaluate_once(
        AttributeEvalConfig(
            methods=methods,
            num_prompts=args.eval_prompts,
            k=args.k,
            max_new_tokens=16,
            num_mc_items=args.mc_items,
            num_ppl_texts=100,
            num_win_prompts=args.win_prompts,
            output_dir=str(work / "eval"),
        ),
        args.reuse,
    )


def targets(rows: dict, results: dict) -> dict:
    """The paper's aims beside this table's figures: toxicity cut against sft (training-signal and independent
    scorer) and multiple-choice points against sft and filtration."""

    def rel(a, b, key):
        return 1 - rows[a][key]["value"] / rows[b][key]["value"] if rows[b][key]["value"] else None

    def rel_independent(a, b, key):  # the same cut, graded by the independent profanity model
        ta, tb = (results[m]["independent"]["toxicity"][key]["value"] for m in (a, b))
        return 1 - ta / tb if tb else None

    return {
        "toxicity_reduction_vs_sft_relative": {k: rel("regularized_adaptive", "sft", k) for k in TOXICITY_KEYS},
        "toxicity_reduction_rl_vs_sft_relative": {k: rel("rl", "sft", k) for k in TOXICITY_KEYS},
        "independent_toxicity_reduction_vs_sft_relative": {
            k: rel_independent("regularized_adaptive", "sft", k) for k in TOXICITY_KEYS
        },
        "mc_points_vs_sft": 100 * (rows["regularized_adaptive"]["mc_mean"] - rows["sft"]["mc_mean"]),
        "mc_points_vs_filtration": 100 * (rows["regularized_adaptive"]["mc_mean"] - rows["filtration"]["mc_mean"]),
        "aims": {
            "toxicity_reduction": ">= 0.35 relative, and at least RL's",
            "mc": "within 1 point of sft, above filtration",
        },
    }


def quality(args, work: Path, common: dict, seeds: list[int], header: dict) -> dict:
    """The main table: every row of PLAN trained, the NADO-decoding baseline, one evaluation, the targets, the
    further seeds' headline rows, the plot and the cost read from the runs."""
    out = {**header, "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    runs = {name: train_run(name, work, args.reuse, **common, **kw) for name, kw in PLAN.items()}
    out["runs"] = {n: {k: m[k] for k in ("steps", "data", "history")} for n, m in runs.items()}
    ev = evaluate_table(args, work, train_nado_decoding(args, work))
    rows = summarise(ev["results"], "sft")
    out["table"] = rows
    out["table_md"] = (work / "eval" / "table.md").read_text()
    out["targets"] = targets(rows, ev["results"])
    per_seed = {seeds[0]: _headline(ev["results"])}
    per_seed.update({q: extra_seed(q, args, work, common) for q in seeds[1:]})
    out["seeds"] = seeds_summary(per_seed)
    out["evaluation"] = _evaluation_record(args, seeds)
    plot(rows, runs, RESULTS / "attribute.png")
    out["cost_from_quality_runs"] = cost_from_runs(work, args.steps_per_iteration)
    return out


def main() -> None:
    args = _parser().parse_args()
    from detoxkit.runs import update_json

    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    seeds = [int(x) for x in args.seeds.split(",")]
    common = train_settings(args, seeds[0])
    path = RESULTS / "attribute.json"
    command = ["python", *sys.argv]
    header = {"model": "smollm2-135m-instruct", "paper": PAPER, "train_config": common}
    if args.section == "cost_from_runs":
        cost = cost_from_runs(work, args.steps_per_iteration)
        update_json(path, {**header, "cost_from_quality_runs": cost}, command)
        print(json.dumps(cost, indent=1))
        return
    if args.section == "classification":
        update_json(path, {**header, **classification_study(args, work, common)}, command)
        return
    if args.section == "rl_sweep":
        update_json(path, {**header, "rl_sweep": rl_sweep(args, work, common)}, command)
        return
    out = quality(args, work, common, seeds, header)
    update_json(path, out, command)
    if not args.no_classification:
        update_json(path, classification_study(args, work, common), command)
    print(json.dumps(out["targets"], indent=1))
    print(out["table_md"])


if __name__ == "__main__":
    main()
