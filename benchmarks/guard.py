"""Guard benchmark -> benchmarks/results/guard.json.

1. Load on loopback: `detoxkit serve` (builtin model, plain greedy decoding, every guard piece off, --max_tokens
   tokens per answer) in a subprocess; --clients concurrent clients post chat completions for --duration seconds
   each, first with dynamic batching (max_batch_size = clients), then without (max_batch_size 1), in one run.
   Reports errors, p50/p95 latency, requests/s and the throughput ratio batched / unbatched.
2. End to end: `detoxkit guard calibrate` on the validation half (judge/screener thresholds, ACD α), then
   `detoxkit guard eval` of the calibrated guard on the test half of the builtin held-out harmful, toxic and
   benign-but-edgy prompts, the guard beside each stage switched off and the bare model, under the training-signal
   and the independent judges. The guard uses the trained pieces in runs/ when they exist (judge:
   runs/bench_adversarial, ACD: runs/bench-acd), else the hand-written safe and opposite ACD prompts and no judge;
   flags override.

CPU contention ruins timings: run it on a quiet machine.
    python benchmarks/guard.py [--duration 60] [--n 40] [--clients 8] [--max_tokens 16]
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


def load_test(url: str, prompts: list[str], args) -> dict:
    bodies = [
        {"model": "detoxkit-guard", "max_tokens": args.max_tokens, "messages": [{"role": "user", "content": p}]}
        for p in prompts
    ]
    load(url, bodies, args.clients, min(5.0, args.duration))  # warm-up: first-call allocations, thread pools
    return load(url, bodies, args.clients, args.duration)


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


# ------------------------------------------------------------------------------------------------ end to end


def guard_config(args):
    from detoxkit.acd.config import OPPOSITE_PROMPT, SAFE_PROMPT
    from detoxkit.guard import GuardConfig

    judge = args.judge or ("runs/bench_adversarial" if (ROOT / "runs/bench_adversarial").is_dir() else "off")
    acd = ROOT / (args.acd_dir or "runs/bench-acd")
    tuned = (acd / "safe_prompt.safetensors").exists() and (acd / "adv_prompt.safetensors").exists()
    return GuardConfig(
        model=MODEL,
        judge=str(ROOT / judge) if judge != "off" else "off",
        acd_safe_prompt=str(acd / "safe_prompt.safetensors") if tuned else SAFE_PROMPT,
        acd_adv_prompt=str(acd / "adv_prompt.safetensors") if tuned else OPPOSITE_PROMPT,
        screener="toxicity",
        rewriter=args.rewriter,
        max_new_tokens=args.max_new_tokens,
    )


def end_to_end(args) -> dict:
    """`detoxkit guard calibrate` on the validation half, then `detoxkit guard eval` of the calibrated guard on the
    test half (scored once), every stage ablated and the bare model beside."""
    import dataclasses

    import yaml

    from detoxkit.guard.calibrate import GuardCalibrateConfig
    from detoxkit.guard.calibrate import run as calibrate
    from detoxkit.guard.evaluate import GuardEvalConfig
    from detoxkit.guard.evaluate import run as guard_eval

    out = ROOT / "runs" / "bench-guard-eval"
    out.mkdir(parents=True, exist_ok=True)
    guard_yaml = out / "guard.yaml"
    guard_yaml.write_text(yaml.safe_dump(dataclasses.asdict(guard_config(args)), sort_keys=False))
    common = dict(max_new_tokens=args.max_new_tokens, seed=args.seed)
    cal = calibrate(
        GuardCalibrateConfig(guard=[str(guard_yaml)], n=args.n_val, output_dir=str(out / "calibration"), **common)
    )
    calibrated = out / "calibration" / "guard.yaml"
    metrics = guard_eval(
        GuardEvalConfig(guard=[str(calibrated)], n=args.n, split="test", output_dir=str(out / "test"), **common)
    )
    return {
        **metrics,
        "calibration": {"chosen": cal["chosen"], "validation": cal["validation"]},
        "commands": [
            f"detoxkit guard calibrate {guard_yaml} --n {args.n_val}",
            f"detoxkit guard eval {calibrated} --n {args.n} --split test",
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per setting")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max_tokens", type=int, default=16, help="answer length under load")
    ap.add_argument("--batch_wait_ms", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=40, help="test prompts per set in the end-to-end table")
    ap.add_argument("--n_val", type=int, default=30, help="validation prompts per kind for calibration")
    ap.add_argument("--max_new_tokens", type=int, default=48, help="answer length in the end-to-end table")
    ap.add_argument("--judge", default=None, help="judge run folder (default: runs/bench_adversarial if present)")
    ap.add_argument(
        "--acd_dir", default=None, help="folder with tuned ACD prompts (default: runs/bench-acd if present)"
    )
    ap.add_argument("--rewriter", default=MODEL)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", default=str(RESULTS / "guard.json"))
    ap.add_argument(
        "--section",
        choices=["load", "end_to_end", "all"],
        default="all",
        help="each section replaces only its own part of --output",
    )
    args = ap.parse_args()

    t0 = time.time()
    sections = {}
    if args.section in ("load", "all"):
        sections["load"] = load_section(args)
    if args.section in ("end_to_end", "all"):
        sections["end_to_end"] = end_to_end(args)
    write_sections(args.output, sections, args, t0)


if __name__ == "__main__":
    main()
