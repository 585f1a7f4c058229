"""SRO benchmark -> benchmarks/results/sro.json (+ sro_curve.png).

1. Speed: examples/s of the toolkit's offline DPO step (reference log-probs computed once and cached, no
   reference model in memory while training, the rows' shared prompt start run once) against TRL's DPOTrainer (reference forward every step), fp32,
   same model, same batch, same ParaDetox pairs (prompt = the rewrite prompt, chosen = a human rewrite,
   rejected = the toxic input). Each side runs in its own subprocess, alternated, so peak RSS is each side's
   own; per-step medians; the ratio is measured side by side in one run.
2. SRO trained on builtin:jigsaw-toxic (no parallel data), evaluated during training (the curve: pass rate
   and J over steps) and afterwards on the held-out ParaDetox split with the same scorers as the human
   rewrites and zero-shot prompting (a subset of the 670 sentences: sizes below).
   The follower is content-aware (--screener_min_similarity, τ): pass = toxicity screener passes AND MiniLM
   cosine(input, paraphrase) >= τ; τ = 0 gives the paper's toxicity-only follower (which collapsed in the first run).
   The sro run's leader can sample --num_generations paraphrases per input at --temperature (the loss takes the
   passing one most similar to the input), weight its fail branch by --fail_weight and add --rpo_alpha × the NLL of
   passing paraphrases; the defaults are the paper's.
Optional (flags): the dpo-pass-only, sro-greedy (the paper's leader, beside an sro run with other settings) and sft
baselines, and the feedback-noise study (SRO at noise 0.1 and 0.2 with the sro run's settings; noise 0 is the main run). With --reuse_speed the speed section is copied from an earlier results file
and marked with its date instead of being re-measured.

Sizes are set for ~25 minutes on the shared 2-core CPU; on a GPU or an idle machine raise them.
    python benchmarks/sro.py [--train_steps 8] [--eval_n 50] [--baselines] [--noise_study] [--reuse_speed FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _pairs(n: int):
    from detoxkit.sro.data import paradetox_split

    train_rows = paradetox_split()[0]
    return [(r["text"], r["references"][0]) for r in train_rows[:n]]


def speed_worker(side: str, model_name: str, batch: int, steps: int, warmup: int, out: str) -> None:
    """One side of the speed comparison; writes {step_seconds, peak_rss_mb, ...} to `out`."""
    import resource

    import torch

    from detoxkit.lm.load import load_model_and_tokenizer
    from detoxkit.sro.rewrite import build_prompt

    torch.manual_seed(0)
    pairs = _pairs(batch * (steps + warmup))
    lr = 1e-6
    model, tok = load_model_and_tokenizer(model_name)
    times: list[float] = []
    extra = {}
    if side == "ours":
        from accelerate import Accelerator

        from detoxkit.core.preference import dpo_loss
        from detoxkit.lm.load import load_model
        from detoxkit.lm.score import completion_logprobs as completion_logps
        from detoxkit.sro.rewrite import prompt_ids
        from detoxkit.training import optimizer_step as policy_step

        eos, pad = tok.eos_token_id, tok.pad_token_id
        prompts = prompt_ids(tok, [x for x, _ in pairs], shots=())  # TRL's side gets the single-turn prompt too
        chosen = [tok(y, add_special_tokens=False)["input_ids"] + [eos] for _, y in pairs]
        rejected = [tok(x, add_special_tokens=False)["input_ids"] + [eos] for x, _ in pairs]
        t0 = time.perf_counter()
        ref = load_model(model_name).requires_grad_(False)
        with torch.no_grad():
            ref_c = torch.cat(
                [
                    completion_logps(ref, prompts[s : s + batch], chosen[s : s + batch], pad)
                    for s in range(0, len(pairs), batch)
                ]
            )
            ref_r = torch.cat(
                [
                    completion_logps(ref, prompts[s : s + batch], rejected[s : s + batch], pad)
                    for s in range(0, len(pairs), batch)
                ]
            )
        del ref  # the cache replaces the reference model for the whole run
        extra["ref_precompute_seconds"] = time.perf_counter() - t0
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        acc = Accelerator(cpu=True)
        for k in range(steps + warmup):
            sl = slice(k * batch, (k + 1) * batch)

            def loss_fn(sl=sl):  # bound now: the closure runs within this iteration
                both = completion_logps(model, prompts[sl] + prompts[sl], chosen[sl] + rejected[sl], pad)
                return dpo_loss(both[:batch], both[batch:], ref_c[sl], ref_r[sl], beta=0.1)

            t = time.perf_counter()
            policy_step(model, opt, acc, loss_fn, 1.0, lr)
            if k >= warmup:
                times.append(time.perf_counter() - t)
    else:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import DPOConfig, DPOTrainer

        rows = [
            {
                "prompt": [{"role": "user", "content": build_prompt(x)}],
                "chosen": [{"role": "assistant", "content": y}],
                "rejected": [{"role": "assistant", "content": x}],
            }
            for x, y in pairs
        ]

        class Timer(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                self.t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if state.global_step > warmup:
                    times.append(time.perf_counter() - self.t)

        args = DPOConfig(
            output_dir=str(Path(out).parent / "trl-speed"),
            per_device_train_batch_size=batch,
            max_steps=steps + warmup,
            learning_rate=lr,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            warmup_steps=0,
            beta=0.1,
            loss_type=["sigmoid"],
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            logging_steps=10_000,
            max_grad_norm=1.0,
            dataloader_drop_last=True,
            disable_tqdm=True,
            seed=0,
            # TRL's DPOConfig defaults to bf16 autocast and activation checkpointing; the comparison
            # is fp32 without checkpointing on both sides.
            bf16=False,
            gradient_checkpointing=False,
            # TRL at its best for this job: the reference log-probs computed once before training, as ours does.
            precompute_ref_log_probs=side == "trl-precompute",
        )
        t0 = time.perf_counter()
        trainer = DPOTrainer(
            model=model, args=args, processing_class=tok, train_dataset=Dataset.from_list(rows), callbacks=[Timer()]
        )
        trainer.train()
        extra["train_call_seconds"] = time.perf_counter() - t0  # includes TRL's reference precompute when on
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"side": side, "step_seconds": times, "peak_rss_mb": peak, **extra}))


def speed(args) -> dict:
    runs = {"ours": [], "trl-precompute": [], "trl": []}
    tmp = RESULTS / ".sro-speed"
    tmp.mkdir(parents=True, exist_ok=True)
    for rep in range(args.speed_reps):
        for side in runs:  # alternated, so drifting machine load hits every side alike
            out = tmp / f"{side}-{rep}.json"
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--speed_worker",
                    side,
                    "--speed_out",
                    str(out),
                    "--speed_batch",
                    str(args.speed_batch),
                    "--speed_steps",
                    str(args.speed_steps),
                ],
                check=True,
                env={**os.environ, "DETOXKIT_PROGRESS": "0", "TRANSFORMERS_VERBOSITY": "error"},
            )
            runs[side].append(json.loads(out.read_text()))
            print(
                f"speed {side} rep {rep}: median step {statistics.median(runs[side][-1]['step_seconds']):.2f}s",
                flush=True,
            )
    res = {}
    for side, rs in runs.items():
        steps = [t for r in rs for t in r["step_seconds"]]
        med = statistics.median(steps)
        res[side] = {
            "median_step_seconds": med,
            "examples_per_second": args.speed_batch / med,
            "n_steps": len(steps),
            "step_seconds": steps,
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
        }
        if side == "ours":
            res[side]["ref_precompute_seconds"] = statistics.median(r["ref_precompute_seconds"] for r in rs)
    res["speedup_vs_trl_precompute"] = res["ours"]["examples_per_second"] / res["trl-precompute"]["examples_per_second"]
    res["speedup_examples_per_second"] = res["ours"]["examples_per_second"] / res["trl"]["examples_per_second"]
    res["speedup_examples_per_second_label"] = "vs TRL at its default (reference recomputed every step)"
    res["setup"] = {
        "model": "smollm2-135m-instruct",
        "dtype": "float32",
        "pairs_per_step": args.speed_batch,
        "timed_steps_per_run": args.speed_steps,
        "warmup_steps": 1,
        "runs_per_side": args.speed_reps,
        "trl_config": "DPOConfig(bf16=False, gradient_checkpointing=False, loss_type=[sigmoid], beta=0.1); "
        "trl-precompute adds precompute_ref_log_probs=True (TRL's peer at its best: no reference pass per step)",
        "trl": __import__("importlib.metadata").metadata.version("trl"),
        "note": "ours runs the prompt start its rows share (template + instruction) once as a KV cache; "
        "ours excludes the one-off reference pass (ref_precompute_seconds, reported) from step times; "
        "TRL's default recomputes the reference every step, trl-precompute does not (its one-off pass is in "
        "train_call_seconds, not in step times). Peak RSS is the whole process "
        "(model load included); TRL keeps a reference copy in memory, ours frees it after caching. "
        "TRL's chat-template completion adds a trailing newline token ours does not.",
    }
    return res


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=20)
    p.add_argument("--learning_rate", type=float, default=3e-5)
    p.add_argument("--screener_min_similarity", type=float, default=0.5)
    p.add_argument(
        "--split_sentences",
        action="store_true",
        help="train on the screener-flagged sentences of the Jigsaw comments (see SroTrainConfig)",
    )
    p.add_argument("--max_train_samples", type=int, default=0, help="inputs to draw (0: all)")
    p.add_argument(
        "--num_generations",
        type=int,
        default=1,
        help="the sro run (and its noise runs): paraphrases sampled per input (1: one greedy, the paper's)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature when --num_generations > 1")
    p.add_argument("--fail_weight", type=float, default=1.0, help="the sro run's fail-branch weight (1: the paper's)")
    p.add_argument(
        "--rpo_alpha",
        type=float,
        default=0.0,
        help="the sro run's NLL weight on passing paraphrases (0: the paper's plain DPO pass branch)",
    )
    p.add_argument(
        "--seeds",
        default="42",
        help="seeds of the sro run, comma-separated; the first also draws the curve, the rest add headline rows",
    )
    p.add_argument("--eval_n", type=int, default=50, help="held-out sentences scored in the table (a subset of 670)")
    p.add_argument("--curve_n", type=int, default=30, help="held-out sentences scored at each curve point")
    p.add_argument(
        "--curve_points",
        type=int,
        default=0,
        help="in-training curve evaluations after step 0 (0: the curve's J is zero-shot at step 0 and the "
        "trained SRO row at the last step, both from the table)",
    )
    p.add_argument("--reuse_speed", help="copy the speed section of this earlier results file instead of measuring")
    p.add_argument("--n_calibration", type=int, default=200)
    p.add_argument(
        "--baselines",
        nargs="?",
        const="dpo-pass-only,sft",
        default="",
        help="also train these baselines (same steps; bare flag: dpo-pass-only,sft). sro-greedy: SRO as "
        "the paper runs it (one greedy paraphrase, fail weight 1), beside an sro run with other settings; "
        "dpo-pass-only is greedy too",
    )
    p.add_argument(
        "--reuse_trained",
        action="store_true",
        help="skip training a run whose runs/bench-sro/NAME has finished with the same training settings",
    )
    p.add_argument(
        "--wait_noise",
        help="instead of training the noise runs, wait for this noise-worker output "
        "(from an earlier invocation still running) and merge it",
    )
    p.add_argument("--noise_study", action="store_true", help="also train SRO at feedback noise 0.1 and 0.2")
    p.add_argument("--speed_batch", type=int, default=2)
    p.add_argument("--speed_steps", type=int, default=3)
    p.add_argument("--speed_reps", type=int, default=2)
    p.add_argument("--skip_speed", action="store_true")
    p.add_argument(
        "--speed_only",
        action="store_true",
        help="measure only the speed section and replace it in the existing sro.json",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest when the 2 cores are shared)")
    p.add_argument("--speed_worker", choices=["ours", "trl", "trl-precompute"], help=argparse.SUPPRESS)
    p.add_argument("--speed_out", help=argparse.SUPPRESS)
    p.add_argument("--noise_worker", help=argparse.SUPPRESS)
    return p


def _speed_section(args) -> dict | None:
    """The speed section: copied from --reuse_speed's file (marked with its date), measured, or None (skipped)."""
    if args.reuse_speed:
        earlier = Path(args.reuse_speed)
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(earlier.stat().st_mtime))
        copied = json.loads(earlier.read_text())
        by = copied.get("provenance", {}).get("speed", {}).get("command", "an earlier run")
        return {
            **copied["speed"],
            "measured": f"not re-measured in this run: copied from {earlier.name} written {stamp}, measured by `{by}`",
        }
    if not args.skip_speed and not args.noise_worker:
        return speed(args)
    return None


def _speed_line(section: dict) -> str:
    return (
        f"speed: ours {section['ours']['examples_per_second']:.3f} ex/s vs TRL "
        f"{section['trl']['examples_per_second']:.3f} ex/s -> {section['speedup_examples_per_second']:.2f}x"
    )


def _start_noise_worker() -> subprocess.Popen:
    """The noise runs train in a second process alongside the main ones: on the shared CPU two 1-thread processes
    get more of the machine than one, and the runs are independent (same seed and settings)."""
    noise_out = RESULTS / ".sro-noise.json"
    noise_out.unlink(missing_ok=True)
    argv = [a for a in sys.argv[1:] if a != "--noise_study"]
    if "--baselines" in argv:  # the worker trains only the noise runs; drop the flag and its optional value
        k = argv.index("--baselines")
        del argv[k : k + (2 if k + 1 < len(argv) and not argv[k + 1].startswith("--") else 1)]
    argv = [a for a in argv if not a.startswith("--baselines=")]
    return subprocess.Popen(
        [sys.executable, __file__, *argv, "--noise_worker", str(noise_out)],
        env={**os.environ, "DETOXKIT_PROGRESS": "0"},
    )


def _plan(args, seeds: list[int]) -> list[tuple[str, dict]]:
    """(run name, its SroTrainConfig fields beyond the common ones) for every run this invocation trains."""
    jigsaw = dict(split_sentences=args.split_sentences)  # the SRO-style runs; sft trains on ParaDetox references
    leader = dict(
        num_generations=args.num_generations,
        temperature=args.temperature,
        fail_weight=args.fail_weight,
        rpo_alpha=args.rpo_alpha,
    )
    if args.noise_worker:
        return [(f"sro-noise-{q}", dict(loss_type="sro", feedback_noise=q, **jigsaw, **leader)) for q in (0.1, 0.2)]
    curve_every = max(1, args.train_steps // args.curve_points) if args.curve_points else 0
    plan = [("sro", dict(loss_type="sro", eval_steps=curve_every, eval_size=args.curve_n, **jigsaw, **leader))]
    plan[0][1]["seed"] = seeds[0]
    plan += [(f"sro-seed{q}", dict(loss_type="sro", seed=q, **jigsaw, **leader)) for q in seeds[1:]]
    baselines = {
        "dpo-pass-only": dict(loss_type="dpo_pass_only", **jigsaw),
        "sro-greedy": dict(loss_type="sro", **jigsaw),
        "sft": dict(loss_type="sft", train_dataset="builtin:paradetox"),
    }
    return plan + [(name, baselines[name]) for name in filter(None, args.baselines.split(","))]


def _train_all(args, plan: list[tuple[str, dict]], common: dict, runs: Path, evaluator) -> dict:
    """Train (or, with --reuse_trained, reuse) every planned run; returns {name: its training record}."""
    from detoxkit.sro.config import SroTrainConfig
    from detoxkit.sro.train import train

    trained = {}
    for name, kw in plan:
        cfg = SroTrainConfig(**{**common, **kw, "output_dir": str(runs / name)})
        done = runs / name / "metrics.json"
        m = json.loads(done.read_text()) if args.reuse_trained and done.exists() else None
        if m and finished_same_training(runs / name, m, cfg):
            print(f"reusing the trained {name} (an earlier invocation)", flush=True)
            m["reused_from_earlier_invocation"] = True
        else:
            m = train(cfg, evaluator=evaluator)
        trained[name] = {
            "output_dir": str(runs / name / "final"),
            "seconds": m["seconds_this_session"],
            "reused": bool(m.get("reused_from_earlier_invocation")),
            "pass_rate_overall": m["pass_rate_overall"],
            "history": m["history"],
            "eval_history": m["eval_history"],
            "data": m.get("data"),
            "config": {**common, **kw},
        }
        print(f"trained {name} in {trained[name]['seconds']:.0f}s", flush=True)
    return trained


def _merge_noise(args, noise_proc, trained: dict, report: dict) -> None:
    """Add the noise worker's runs (this invocation's, or --wait_noise's) to trained and report."""
    if noise_proc is not None and noise_proc.wait() != 0:
        raise SystemExit("the noise-study process failed (see its output above)")
    noise_file = Path(args.wait_noise) if args.wait_noise else RESULTS / ".sro-noise.json"
    while not noise_file.exists():
        time.sleep(5)
    noise = json.loads(noise_file.read_text())
    trained.update(noise["training"])
    report["methods"].update(noise["results"]["methods"])
    report["seconds"].update(noise["results"]["seconds"])


def _targets(args, result: dict, j: dict, ji: dict) -> dict:
    """The issue's targets, from the J of each method (j) and by the independent judges (ji)."""
    return {
        "J_sro": j.get("sro"),
        "J_human": j.get("human"),
        "J_zero_shot": j.get("zero-shot"),
        "sro_ge_human": j.get("sro", -1) >= j.get("human", 2),
        "sro_ge_zero_shot_plus_0.15": j.get("sro", -1) >= j.get("zero-shot", 2) + 0.15,
        "independent": {
            "J_sro_mean_over_seeds": result["seeds"]["J_independent"]["mean"],
            "J_zero_shot": ji.get("zero-shot"),
            "J_human": ji.get("human"),
            "sro_mean_ge_zero_shot_plus_0.15": result["seeds"]["J_independent"]["mean"]
            >= ji.get("zero-shot", 2) + 0.15,
            "sro_mean_minus_human": result["seeds"]["J_independent"]["mean"] - ji.get("human", 0.0),
        },
        "speedup_ge_1.3": result.get("speed", {}).get("speedup_examples_per_second", 0) >= 1.3,
        "sro_ge_dpo_pass_only": j.get("sro", -1) >= j["dpo-pass-only"] if "dpo-pass-only" in j else "not run",
        "sro_ge_sro_greedy": j.get("sro", -1) >= j["sro-greedy"] if "sro-greedy" in j else "not run",
        "sro_ge_sft": j.get("sro", -1) >= j["sft"] if "sft" in j else "not run",
        "noise_study": {
            f"noise_{q}": j.get(n) for q, n in ((0.0, "sro"), (0.1, "sro-noise-0.1"), (0.2, "sro-noise-0.2"))
        }
        if args.noise_study or args.wait_noise
        else "not run (time)",
    }


def _curves(args, trained: dict, ms: dict) -> tuple[list[dict], list[dict]]:
    """The sro run's J curve (its in-training evaluations, else zero-shot at step 0 and the trained row) and its
    pass-rate curve."""
    curve = [
        {"step": h["step"], "J": h["J"], "J_ci95": h["J_ci95"], "n": h["n"]} for h in trained["sro"]["eval_history"]
    ]
    if not curve:  # step 0 is the base model with the same prompt, i.e. the zero-shot row
        curve = [
            {"step": s, "J": ms[k]["J"]["value"], "J_ci95": ms[k]["J"]["ci95"], "n": ms[k]["n"]}
            for s, k in ((0, "zero-shot"), (args.train_steps, "sro"))
        ]
    pass_curve = [{"step": h["step"], "pass_rate": h["pass_rate"]} for h in trained["sro"]["history"]]
    return curve, pass_curve


def main() -> int:
    args = _parser().parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.speed_worker:
        speed_worker(args.speed_worker, "smollm2-135m-instruct", args.speed_batch, args.speed_steps, 1, args.speed_out)
        return 0

    from detoxkit.runs import update_json, write_json

    if args.speed_only:
        result = update_json(RESULTS / "sro.json", {"speed": speed(args)}, ["python", *sys.argv])
        print(_speed_line(result["speed"]))
        return 0
    from detoxkit.sro.config import SroEvalConfig
    from detoxkit.sro.data import paradetox_split
    from detoxkit.sro.evaluate import DetoxEvaluator, evaluate

    t_all = time.perf_counter()
    result: dict = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{os.cpu_count()} CPU cores (shared), torch threads {args.threads}",
        "scorers_note": "STA = toxicity scorer (MiniLM head) < 0.5, SIM = MiniLM cosine, FL = fluency proxy "
        "(smollm2 NLL vs the 95th percentile of training-split human rewrites): offline "
        "proxies of the official ParaDetox metrics. The screener used in training is the "
        "same toxicity scorer, so STA partly measures agreement with the screener.",
    }
    section = _speed_section(args)
    if section is not None:
        result["speed"] = section
        print(_speed_line(section), flush=True)
    noise_proc = _start_noise_worker() if args.noise_study and not args.noise_worker else None
    train_rows = paradetox_split()[0]
    evaluator = DetoxEvaluator(train_rows, n_calibration=args.n_calibration)
    runs = ROOT / "runs" / "bench-sro"
    common = dict(
        per_device_train_batch_size=args.batch,
        max_new_tokens=args.max_new_tokens,
        max_steps=args.train_steps,
        learning_rate=args.learning_rate,
        save_steps=0,
        logging_steps=1,
        max_input_tokens=48,
        seed=42,
        screener_min_similarity=args.screener_min_similarity,
        max_train_samples=args.max_train_samples,
    )
    seeds = [int(x) for x in args.seeds.split(",")]
    trained = _train_all(args, _plan(args, seeds), common, runs, evaluator)
    result["training"] = trained

    methods = [] if args.noise_worker else ["human=human", "zero-shot=smollm2-135m-instruct"]
    methods += [f"{n}={t['output_dir']}" for n, t in trained.items()]
    ecfg = SroEvalConfig(
        methods=methods,
        max_eval_samples=args.eval_n,
        max_new_tokens=args.max_new_tokens,
        output_dir=str(runs / ("eval-noise" if args.noise_worker else "eval")),
    )
    report = evaluate(ecfg, evaluator=evaluator)
    if args.noise_worker:
        write_json(Path(args.noise_worker), {"training": trained, "results": report})
        return 0
    if noise_proc is not None or args.wait_noise:
        _merge_noise(args, noise_proc, trained, report)
    result["results"] = report
    ms = report["methods"]
    j = {k: v["J"]["value"] for k, v in ms.items()}
    ji = {k: v["independent"]["J"]["value"] for k, v in ms.items() if "independent" in v}
    seed_names = ["sro"] + [f"sro-seed{q}" for q in seeds[1:]]
    from detoxkit.eval.stats import seed_spread

    result["seeds"] = {
        "seeds": seeds,
        "J": seed_spread({q: j[n] for q, n in zip(seeds, seed_names)}),
        "J_independent": seed_spread({q: ji[n] for q, n in zip(seeds, seed_names)}),
    }
    result["evaluation"] = _evaluation_record(args, trained, report)
    result["targets"] = _targets(args, result, j, ji)
    curve, pass_curve = _curves(args, trained, ms)
    result["curve"] = {"J": curve, "pass_rate": pass_curve}
    _plot(curve, pass_curve, RESULTS / "sro_curve.png")
    result["total_seconds"] = time.perf_counter() - t_all
    write_json(RESULTS / "sro.json", result)
    print(
        f"sro bench: J sro {j.get('sro'):.3f} | human {j.get('human'):.3f} | zero-shot {j.get('zero-shot'):.3f} "
        f"on {report['split']['scored']} held-out sentences; speed x{result.get('speed', {}).get('speedup_examples_per_second', float('nan')):.2f}; "
        f"{result['total_seconds'] / 60:.1f} min -> benchmarks/results/sro.json"
    )
    return 0


def _evaluation_record(args, trained: dict, report: dict) -> dict:
    from detoxkit.eval.provenance import evaluation_record, split_record
    from detoxkit.sro.evaluate import INDEPENDENT, TRAINING_SIGNAL

    data = trained["sro"].get("data") or {}
    overlaps = [t["data"]["heldout_overlap"] for t in trained.values() if (t.get("data") or {}).get("heldout_overlap")]
    return evaluation_record(
        training_signal=TRAINING_SIGNAL,
        independent=INDEPENDENT,
        splits={
            "train": split_record(
                "builtin:jigsaw-toxic sentences the screener flags", data.get("used", 0), 42, "SRO training inputs"
            ),
            "validation": split_record(
                "ParaDetox held-out pool less the test split", args.curve_n, 0, "the in-training J curve (curve_n rows)"
            ),
            "test": split_record(
                "ParaDetox held-out pool, seeded 670-row test split",
                report["split"]["scored"],
                0,
                "the table, scored once per reported number (first eval_n rows)",
            ),
        },
        overlaps=overlaps,
        notes=[
            "FL (SmolLM2 NLL proxy) is shared by both J's: not a training signal, but it shares weights with the "
            "rewriter's starting point; no independent fluency model is offline.",
            "The recipe (k, T, rpo_alpha, fail_weight, 48 steps) was chosen in earlier sessions on a curve drawn from "
            "the first rows of what is now the test split; from this run on the curve reads validation only.",
        ],
    )


def finished_same_training(run: Path, metrics: dict, cfg) -> bool:
    """Whether the run folder holds a *finished* run (its metrics.json written after its config.yaml, at cfg's steps)
    that trained as cfg would: every field but where it writes, how often it logs and its in-training evaluation
    (fields added since the run was saved count at their defaults)."""
    import dataclasses

    import yaml

    from detoxkit.sro.config import SroTrainConfig

    saved_yaml = run / "config.yaml"
    if metrics.get("steps") != cfg.max_steps or (run / "metrics.json").stat().st_mtime < saved_yaml.stat().st_mtime:
        return False
    saved = SroTrainConfig(**yaml.safe_load(saved_yaml.read_text()))
    ignore = {
        "output_dir",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "eval_steps",
        "eval_size",
        "generation_batch_size",
        "resume_from_checkpoint",
    }
    return all(getattr(saved, f.name) == getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in ignore)


def _plot(curve, pass_curve, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(
        [p["step"] for p in pass_curve], [p["pass_rate"] for p in pass_curve], "o-", label="screener pass rate (batch)"
    )
    ax.errorbar(
        [c["step"] for c in curve],
        [c["J"] for c in curve],
        yerr=[[c["J"] - c["J_ci95"][0] for c in curve], [c["J_ci95"][1] - c["J"] for c in curve]],
        fmt="s-",
        capsize=3,
        label=f"ParaDetox validation J (n={curve[0]['n'] if curve else 0})",
    )
    ax.set_xlabel("training step")
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("SRO on Jigsaw toxic comments")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
