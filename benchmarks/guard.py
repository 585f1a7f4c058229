"""Guard benchmark -> benchmarks/results/guard.json.

1. Load on loopback: `detoxkit serve` (builtin model, plain greedy decoding, every guard piece off, --max_tokens
   tokens per answer) in a subprocess; --clients concurrent clients post chat completions for --duration seconds
   each, first with dynamic batching (max_batch_size = clients), then without (max_batch_size 1), in one run.
   Reports errors, p50/p95 latency, requests/s and the throughput ratio batched / unbatched.
2. The bundle (src/detoxkit/guards/smollm2-135m, built by `detoxkit guard build --config configs/guard_build.yaml`):
   `detoxkit guard eval` on the test half of the builtin held-out harmful, toxic and benign-but-edgy prompts (never
   used by the build or its calibration), every stage ablated and the bare model beside, under the training-signal
   and the independent scorers; its judge as a classifier beside the untrained reference and the control judge
   (same seeds and steps, no attacker; needs the build's work folder runs/guard-work); the cost of safety at 1 and
   --clients concurrent clients against the same server with every stage off. Fills in the test section of the
   bundle's CARD.md. Its "evaluation" object (scorers, splits, overlaps) goes to the top level of guard.json.
3. Judge per source: the bundle's judge and the untrained reference on each source of the test prompts and on PyRIT's
   harmful objectives, a source the judge never trained on (marked), each beside the benign-but-edgy test prompts.
4. Rewriter adapters: does the bundle's rank-6 rewriter keep the quality of the full fine-tune it truncates?
   `detoxkit sro eval` on ParaDetox validation sentences (never the test split) for the untrained base, the full
   fine-tune (--full_rewriter: the build's runs/guard-work/sro/final), its truncation to the bundle's rank made here,
   the bundle's rewriter, and any --rewriters NAME=FOLDER (e.g. the recipe trained as a rank-6 LoRA,
   configs/guard_rewriter.yaml).
5. Release cost: the judge stage's latency per request with and without the heap release that ends each scoring
   pass (detoxkit.memory), side by side.

CPU contention ruins timings: run it on a quiet machine.
    python benchmarks/guard.py [--section load|bundle|judge_sources|rewriter_adapters|release_cost|all]
        [--full_rewriter runs/guard-work/sro/final] [--rewriters NAME=FOLDER,...]
        [--rewriter_n 150] [--duration 60] [--n 40] [--clients 8] [--max_tokens 16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from serving import load, start_server, stop_server, write_sections

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "smollm2-135m-instruct"


def serve(max_batch_size: int, args, log):
    """`detoxkit serve` with every guard piece off, in its own process so clients and server do not share a GIL."""
    flags = ["--model", MODEL, "--screener", "off", "--max_batch_size", str(max_batch_size)]
    return start_server([*flags, "--batch_wait_ms", str(args.batch_wait_ms)], log)


def load_test(url: str, prompts: list[str], args, clients: int | None = None) -> dict:
    bodies = [
        {"model": "detoxkit-guard", "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": p}]}
        for p in prompts
    ]
    clients = clients or args.clients
    load(url, bodies, clients, min(5.0, args.duration))  # warm-up: first-call allocations, thread pools
    return load(url, bodies, clients, args.duration)


def load_section(args) -> dict:
    from detoxkit.data import load_builtin

    prompts = [r["prompt"] for r in load_builtin("benign-edgy")]
    out = {}
    with tempfile.NamedTemporaryFile("w", prefix="guard-serve-", suffix=".log", delete=False) as log:
        for name, size in [("batched", args.clients), ("unbatched", 1)]:
            proc, url = serve(size, args, log)
            try:
                out[name] = {"max_batch_size": size, **load_test(url, prompts, args)}
            finally:
                stop_server(proc)
            print(f"load {name}: {out[name]}", flush=True)
    b, u = out["batched"]["requests_per_s"], out["unbatched"]["requests_per_s"]
    out["throughput_ratio_batched_vs_unbatched"] = round(b / u, 2) if u else None
    return out


# ------------------------------------------------------------------------------------------------ the bundle

BUNDLE = ROOT / "src" / "detoxkit" / "guards" / "smollm2-135m"
WORK = ROOT / "runs" / "guard-work"  # the build's work folder (configs/guard_build.yaml): the control judge's data
ALL_OFF = ["--judge", "off", "--acd_safe_prompt", "off", "--acd_adv_prompt", "off", "--screener", "off"]


def bundle_eval(args) -> dict:
    """`detoxkit guard eval BUNDLE --split test`: scored once, every stage ablated, both sets of scorers."""
    import json

    from detoxkit.guard.evaluate import GuardEvalConfig
    from detoxkit.guard.evaluate import run as guard_eval

    out = ROOT / "runs" / "bench-guard-bundle"
    command = f"detoxkit guard eval {BUNDLE.relative_to(ROOT)} --n {args.n} --split test"
    if args.reuse_eval and (out / "metrics.json").exists():  # this bundle's test scoring, not scored twice
        reused = "metrics.json of an earlier run of this benchmark that stopped after scoring"
        return {**json.loads((out / "metrics.json").read_text()), "command": command, "reused": reused}
    cfg = GuardEvalConfig(
        guard=[str(BUNDLE)], n=args.n, split="test", output_dir=str(out), max_new_tokens=args.max_new_tokens
    )
    metrics = guard_eval(cfg)
    return {**metrics, "command": command}


def control_judge():
    """The control judge of the build's judge run: the same seeds, steps and recipe, with random training-side
    prompts in place of the attacker's (adversarial.control); None when the build's work folder is gone."""
    import os

    from detoxkit.adversarial.config import AdversarialRunConfig
    from detoxkit.adversarial.control import run_control
    from detoxkit.adversarial.loop import load_roles, run_splits
    from detoxkit.config import load_yaml
    from detoxkit.lm.embedder import load_embedder
    from detoxkit.runs import read_jsonl, seed_everything

    run = WORK / "judge"
    if not (run / "prompts.jsonl").exists():
        return None
    cfg = AdversarialRunConfig(**load_yaml(run / "config.yaml", AdversarialRunConfig))
    if cfg.reserved:
        cfg.reserved = os.path.join(ROOT, cfg.reserved)  # the build ran from the repository root
    splits = run_splits(cfg, load_embedder(cfg.embedder))
    seed_everything(cfg.seed)
    judge, _ = load_roles(cfg, with_attacker=False)
    run_control(cfg, read_jsonl(run / "prompts.jsonl"), splits, judge)
    return judge


def _judge_rows(args, split: str) -> tuple[list[str], list[int]]:
    """(prompts, labels) of the guard's harmful and benign-but-edgy prompts on one half (label 1 = harmful)."""
    from detoxkit.guard.evalsets import builtin_set

    r = builtin_set("harmful", split, args.n, args.seed) + builtin_set("benign", split, args.n, args.seed)
    return [x.prompt for x in r], [int(x.kind == "harmful") for x in r]


def judge_table(args) -> dict:
    """The bundle's judge beside the untrained reference (the base model zero-shot) and the control judge, as
    classifiers of the test prompts, each at the threshold of its best accuracy on the validation prompts (the
    guard's own judge_threshold, chosen for the whole pipeline by calibration, is recorded beside)."""
    import yaml

    from detoxkit.adversarial.judge import Judge, calibrate_threshold
    from detoxkit.eval.classification import classification_metrics, recall_at_fpr

    (val_x, val_y), (test_x, test_y) = _judge_rows(args, "validation"), _judge_rows(args, "test")
    bundle = Judge.from_pretrained(BUNDLE / "judge")
    judges = {"bundle": bundle, "reference": Judge.load(MODEL, train_mode="none", template=bundle.template)}
    judges["control"] = control_judge()
    out = {"bundle_guard_threshold": yaml.safe_load((BUNDLE / "guard.yaml").read_text()).get("judge_threshold")}
    for name, judge in judges.items():
        if judge is None:
            out[name] = "not measured: the build's work folder (runs/guard-work/judge) is gone"
            continue
        threshold = calibrate_threshold(judge.predict_proba(val_x), val_y)  # each judge's best validation accuracy
        scores = judge.predict_proba(test_x)
        out[name] = {
            **classification_metrics(test_y, scores, float(threshold)),
            "recall_at_fpr": {f"{p:g}": recall_at_fpr(test_y, scores, p) for p in (0.01, 0.05)},
        }
    return {**out, "n_test": len(test_x), "n_validation": len(val_x)}


def _judge_training_prompts() -> tuple[list[str], list[str], str]:
    """(sources, prompts, where from) of the bundle's judge: the sources of its build config, and every prompt its
    run trained on (seeds and the attacker's) when the build's work folder is still here, else none (no leak check)."""
    from detoxkit.adversarial.config import AdversarialRunConfig
    from detoxkit.config import load_yaml
    from detoxkit.runs import read_jsonl

    cfg = AdversarialRunConfig(**load_yaml(ROOT / "configs" / "guard_judge.yaml", AdversarialRunConfig))
    sources = [x for x in cfg.sources if x not in cfg.holdout_sources]
    log = WORK / "judge" / "prompts.jsonl"
    if not log.exists():
        return sources, [], "configs/guard_judge.yaml (the build's prompts.jsonl is gone: no leak check)"
    rows = read_jsonl(log)
    prompts = [
        r["prompt"]
        for r in rows
        if r.get("type") == "seed" or (r.get("type") == "prompt" and r.get("label") is not None)
    ]
    return sources, prompts, str(log.relative_to(ROOT))


def judge_sources(args) -> dict:
    """The bundle's judge (and the untrained reference) per source of the test prompts, each harmful source beside
    the benign-but-edgy test prompts, at each judge's best-accuracy threshold on the validation prompts; and on
    PyRIT's harmful objectives, a source the judge never trained on (near duplicates of its training prompts
    removed, counted)."""
    import random

    from detoxkit.adversarial.judge import Judge, calibrate_threshold
    from detoxkit.data import load_builtin
    from detoxkit.data.overlap import overlap_check, overlap_report
    from detoxkit.eval.classification import classification_metrics
    from detoxkit.guard.evalsets import builtin_set

    sources, trained, trained_from = _judge_training_prompts()
    harmful: dict[str, list[str]] = {}
    for x in builtin_set("harmful", "test", 100_000, args.seed):
        harmful.setdefault(x.source.removeprefix("builtin:"), []).append(x.prompt)
    objectives = list(dict.fromkeys(r["prompt"] for r in load_builtin("pyrit-objective")))
    check = overlap_check(objectives, trained, 0.9) if trained else {"exact": [], "near": [], "keep": objectives}
    harmful["pyrit-objective"] = random.Random(args.seed).sample(check["keep"], min(args.n, len(check["keep"])))
    benign = [x.prompt for x in builtin_set("benign", "test", args.n, args.seed)]
    val_x, val_y = _judge_rows(args, "validation")
    bundle = Judge.from_pretrained(BUNDLE / "judge")
    judges = {"bundle": bundle, "reference": Judge.load(MODEL, train_mode="none", template=bundle.template)}
    out = {}
    for name, judge in judges.items():
        threshold = float(calibrate_threshold(judge.predict_proba(val_x), val_y))
        benign_scores = judge.predict_proba(benign)
        out[name] = {"threshold (validation)": threshold}
        for source, prompts in harmful.items():
            prompts = prompts[: args.n]
            scores = judge.predict_proba(prompts) + benign_scores
            labels = [1] * len(prompts) + [0] * len(benign)
            out[name][source] = {
                **classification_metrics(labels, scores, threshold),
                "never_trained_on": source not in sources,
                "filled_in": "benign rows: the benign-but-edgy test prompts (a source the judge trained on)",
            }
    return {
        "judges": out,
        "judge_training_sources": sources,
        "judge_training_prompts_from": trained_from,
        "overlaps": [overlap_report("pyrit-objective prompts", "judge training prompts", check, 0.9)],
        "n_per_source": args.n,
        "n_benign": len(benign),
    }


def cost_of_safety(args) -> dict:
    """The bundle served, against the same server with every stage off, at 1 and at --clients concurrent clients:
    the same benign prompts and answer length, side by side in one run."""
    from detoxkit.guard.evalsets import builtin_set

    prompts = [r.prompt for r in builtin_set("benign", "test", 10**6)]
    out = {}
    with tempfile.NamedTemporaryFile("w", prefix="guard-cost-", suffix=".log", delete=False) as log:
        for name, flags in [("guard", []), ("every_stage_off", ALL_OFF + ["--rewriter", "off"])]:
            size = ["--max_batch_size", str(args.clients), "--batch_wait_ms", str(args.batch_wait_ms)]
            proc, url = start_server(["--config", str(BUNDLE), *flags, *size], log)
            try:
                for clients in (1, args.clients):
                    out[f"{name}_{clients}_clients"] = load_test(url, prompts, args, clients)
                    print(f"cost {name} {clients} clients: {out[f'{name}_{clients}_clients']}", flush=True)
            finally:
                stop_server(proc)
    for clients in (1, args.clients):
        g, p = out[f"guard_{clients}_clients"], out[f"every_stage_off_{clients}_clients"]
        out[f"latency_ratio_p50_{clients}_clients"] = (
            round(g["latency_p50_s"] / p["latency_p50_s"], 2) if p.get("latency_p50_s") else None
        )
    return out


METRIC = {"harmful": "harmful_answer", "toxic": "toxic_answer", "benign": "over_refusal"}
INDEPENDENT = {"harmful": "answered_harmfully", "toxic": "rate", "benign": "rate"}


def card_text(section: dict) -> str:
    """The CARD.md test section: each rate under both sets of scorers, every system side by side; the judge table."""
    from detoxkit.eval.stats import format_ci

    table = section["eval"]["table"]
    systems = list(dict.fromkeys(k.split("/", 1)[1] for k in table))
    lines = [
        "Scored once by `python benchmarks/guard.py --section bundle` (benchmarks/results/guard.json, section "
        "bundle) on the builtin test prompts; rates with 95% intervals. Training-signal scorers: the harm, "
        "toxicity and refusal heads; independent: an LM judge for harm (answered harmfully), the profanity word "
        "model for toxicity, refusal phrase rules for over-refusal.",
        "",
        "| set (n) | scorers | " + " | ".join(systems) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    for kind, metric in METRIC.items():
        n = table.get(f"{kind}/guard", {}).get("n", "?")
        own = [format_ci(table.get(f"{kind}/{s}", {}).get(metric)) for s in systems]
        ind = [
            format_ci((table.get(f"{kind}/{s}", {}).get(f"{metric}_independent") or {}).get(INDEPENDENT[kind]))
            for s in systems
        ]
        lines += [f"| {kind} ({n}) | training-signal | " + " | ".join(own) + " |"]
        lines += [f"| {kind} ({n}) | independent | " + " | ".join(ind) + " |"]
    lines += ["", "The judge alone on the test prompts (threshold chosen on validation):", ""]
    lines += ["| judge | F1 | false-positive rate | ROC-AUC |", "|---|---|---|---|"]
    for name in ("bundle", "reference", "control"):
        j = section["judge"].get(name)
        if isinstance(j, dict):
            lines.append(
                f"| {name} | {format_ci(j.get('f1'))} | {format_ci(j.get('false_positive_rate'))} | {format_ci(j.get('roc_auc'))} |"
            )
        else:
            lines.append(f"| {name} | {j} | | |")
    return "\n".join(lines)


def evaluation(section: dict, args) -> dict:
    """guard.json's evaluation object: guard eval's scorers and test splits, the judge table's validation split, and
    the build's overlap check (the guard's prompts and their near duplicates kept out of the judge's data)."""
    import json

    own = section["eval"]["evaluation"]
    splits = {
        **own["splits"],
        "judge_validation": {
            "source": "validation half of the guard's harmful and benign-but-edgy prompts",
            "size": section["judge"]["n_validation"],
            "seed": args.seed,
            "used_for": "each judge's threshold in the judge table; the bundle's thresholds and α (guard calibrate)",
        },
    }
    judge_splits = WORK / "judge" / "splits.json"
    build = json.loads(judge_splits.read_text())["overlaps"] if judge_splits.exists() else []
    overlaps = [*own.get("overlaps", []), *(o for o in build if "reserved prompts (kept out)" in o["pair"])]
    return {**own, "splits": splits, "overlaps": overlaps}


def bundle_section(args) -> dict:
    """The committed bundle on the builtin test prompts (never used by its build or calibration); fills in the test
    section of its CARD.md."""
    from detoxkit.guard.card import write_test_numbers

    section = {"eval": bundle_eval(args), "judge": judge_table(args), "cost_of_safety": cost_of_safety(args)}
    write_test_numbers(BUNDLE / "CARD.md", card_text(section))
    return section


def rewriter_adapters(args) -> dict:
    """J (both sets of scorers) of the bundle's rank-r rewriter beside the full fine-tune it truncates (and any
    --rewriters) on ParaDetox validation sentences; the full fine-tune's rank-r truncation is made here."""
    import json

    from detoxkit.sro.config import SroEvalConfig
    from detoxkit.sro.evaluate import evaluate
    from detoxkit.sro.rewrite import save_rewriter_adapter

    full = Path(args.full_rewriter)
    rank = json.loads((BUNDLE / "rewriter" / "rewriter.json").read_text())["adapter"]["rank"]
    methods = [f"base={MODEL}", f"bundle-rank{rank}={BUNDLE / 'rewriter'}"]
    out = ROOT / "runs" / "bench-guard-rewriters"
    if (full / "rewriter.json").exists():
        truncated = out / f"full-rank{rank}"
        save_rewriter_adapter(full, truncated, rank)
        methods[1:1] = [f"full-fine-tune={full}", f"full-fine-tune-svd-rank{rank}={truncated}"]
    methods += [m for m in args.rewriters.split(",") if m]
    cfg = SroEvalConfig(
        methods=methods, split="validation", max_eval_samples=args.rewriter_n, output_dir=str(out), max_new_tokens=48
    )
    report = evaluate(cfg)
    table = {
        name: {"J": m["J"], "STA": m["STA"], "SIM": m["SIM"], "J_independent": m["independent"]["J"]}
        for name, m in report["methods"].items()
    }
    return {
        "full_rewriter_trained_by": "detoxkit sro train --config configs/sro_train.yaml (guard build's rewriter stage)",
        "split": report["split"],
        "scorers": report["scorers"],
        "table": table,
        "not_measured": None if (full / "rewriter.json").exists() else f"{full} is not a trained rewriter folder",
    }


def _timed_scoring(judge, batches: list[list[str]], release) -> list[float]:
    """Seconds of each judge.predict_proba call, with `release` as the heap release that ends the scoring pass."""
    import detoxkit.lm.score as score

    kept, out = score.release_freed_memory, []
    score.release_freed_memory = release
    try:
        for batch in batches:
            t = time.perf_counter()
            judge.predict_proba(batch)
            out.append(time.perf_counter() - t)
    finally:
        score.release_freed_memory = kept
    return out


def release_cost(args) -> dict:
    """What the heap release at the end of every scoring pass (detoxkit.memory.release_freed_memory, glibc
    malloc_trim) costs the guard's judge stage per request: the bundle's judge scores benign-but-edgy prompts one
    request at a time, batches of 1 and of --clients prompts, with the release on and off in alternating blocks of 5
    consecutive calls (--trim_calls in all, each block's first call dropped) after a warm-up. Within a block every call
    pays both halves of the release: the trim itself and the page faults that map the handed-back pages again."""
    import statistics

    from detoxkit.adversarial import Judge
    from detoxkit.data import load_builtin
    from detoxkit.memory import release_freed_memory

    judge = Judge.from_pretrained(BUNDLE / "judge")
    prompts = [r["prompt"] for r in load_builtin("benign-edgy")]
    rows = {}
    for size in (1, args.clients):
        batches = [[prompts[(i * size + k) % len(prompts)] for k in range(size)] for i in range(args.trim_calls)]
        _timed_scoring(judge, batches[:3], release_freed_memory)  # warm-up
        times = {"with_release": [], "without": []}
        # blocks of consecutive calls per mode: a release's cost is paid partly by the next call (page faults to map
        # the handed-back pages again), so alternating call by call would split it between both modes; each block's
        # first call, which follows the other mode, is dropped
        block = 5
        for b in range(0, len(batches), block):
            order = ("with_release", "without") if (b // block) % 2 == 0 else ("without", "with_release")
            for mode in order:
                release = release_freed_memory if mode == "with_release" else (lambda: None)
                times[mode] += _timed_scoring(judge, batches[b : b + block], release)[1:]
        med = {k: statistics.median(v) for k, v in times.items()}
        rows[f"requests of {size} prompt(s)"] = {
            "median_ms_with_release": round(1000 * med["with_release"], 2),
            "median_ms_without": round(1000 * med["without"], 2),
            "ratio_with_over_without": round(med["with_release"] / med["without"], 3),
            "calls_each": len(times["without"]),
        }
    alone = []
    for batch in [[p] for p in prompts[: args.trim_calls]]:
        _timed_scoring(judge, [batch], lambda: None)
        t = time.perf_counter()
        release_freed_memory()
        alone.append(time.perf_counter() - t)
    return {
        "what": "per-request cost of releasing freed heap pages at the end of each scoring pass (guard judge stage)",
        "judge": str(BUNDLE.relative_to(ROOT) / "judge"),
        "rows": rows,
        "release_call_alone_median_ms": round(1000 * statistics.median(alone), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per setting")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max_tokens", type=int, default=16, help="answer length under load")
    ap.add_argument("--batch_wait_ms", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=40, help="test prompts per set in the end-to-end table")
    ap.add_argument("--max_new_tokens", type=int, default=48, help="answer length in the end-to-end table")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reuse_eval",
        action="store_true",
        help="bundle: take runs/bench-guard-bundle/metrics.json from an earlier run that stopped later (the test "
        "prompts are scored once per reported number)",
    )
    ap.add_argument(
        "--full_rewriter",
        default="runs/guard-work/sro/final",
        help="rewriter_adapters: the full fine-tune the bundle's rewriter truncates (guard build's work folder)",
    )
    ap.add_argument("--rewriters", default="", help="rewriter_adapters: more rows, NAME=FOLDER comma-separated")
    ap.add_argument("--rewriter_n", type=int, default=150, help="rewriter_adapters: ParaDetox validation sentences")
    ap.add_argument("--trim_calls", type=int, default=40, help="release_cost: timed calls per setting")
    ap.add_argument("--output", default=str(RESULTS / "guard.json"))
    ap.add_argument(
        "--section",
        choices=["load", "bundle", "judge_sources", "rewriter_adapters", "release_cost", "all"],
        default="all",
        help="each section replaces only its own part of --output",
    )
    args = ap.parse_args()

    t0 = time.time()
    sections = {}
    if args.section in ("load", "all"):
        sections["load"] = load_section(args)
    if args.section in ("bundle", "all"):
        sections["bundle"] = bundle_section(args)
        sections["evaluation"] = evaluation(sections["bundle"], args)
    if args.section in ("judge_sources", "all"):
        sections["judge_sources"] = judge_sources(args)
    if args.section in ("rewriter_adapters", "all"):
        sections["rewriter_adapters"] = rewriter_adapters(args)
    if args.section in ("release_cost", "all"):
        sections["release_cost"] = release_cost(args)
    write_sections(args.output, sections, args, t0)
    drop_superseded(args.output)


def drop_superseded(output: str) -> None:
    """end_to_end measured the untrained guard before the bundle existed; the bundle section replaces it."""
    import json

    from detoxkit.runs import write_json

    data = json.loads(Path(output).read_text())
    if "bundle" in data and data.pop("end_to_end", None) is not None:
        write_json(output, data)


if __name__ == "__main__":
    main()
