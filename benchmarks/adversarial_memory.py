"""Peak resident memory and per-stage times of `detoxkit adversarial run` on the builtin SmolLM2-135M (issue 16,
items 4 and 5), for the detoxkit source tree given by --src (this checkout's src/, or another checkout's, to measure
the code before a change on the same machine).

--scale short (about 2 min) is a one-round run of the default config with 4 prompts (no attacker fine-tune: that
comes before a later round); --scale fine_tunes (about 7 min at 2 threads) runs the main result's 96 + 96 seeds
through both roles' fine-tunes (2 rounds of 8 prompts, one judge epoch, no control judge, no evaluation), the stages
that set the main result's peak; --scale benchmark (about 55 min at 2 threads) is the loop benchmarks/adversarial.py
runs at its main result's settings (seed 0: 2 rounds of 16 prompts, 96 + 96 seeds, the control judge; no oracle
comparison), the scale its peak-RSS target is set at. The run is a child process:
its peak RSS is ru_maxrss of the children (the child is the only one), so it includes everything the run holds
(models, embedder, oracle, hold-out, fine-tuning activations, the control judge). Each call adds one entry under
--label to benchmarks/results/adversarial_memory.json and, where the run wrote run_summary.json, copies the measured
peaks of every label into it ("memory").

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adversarial_memory.py --src /path/to/old/src --label before
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/adversarial_memory.py --label after
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "adversarial_memory.json"
RUN_ARGS = (
    "--rounds 1 --prompts_per_round 4 --max_new_tokens 16 --judge_epochs 1 --attacker_epochs 1 "
    "--holdout_problematic 8 --holdout_benign 8 --transfer_size 10 --seed 0"
).split()
# the main result's seeds and both roles' fine-tunes (the attacker's only runs before a later round), one judge epoch
# and no evaluation: the stages that set the main result's peak, in a fraction of its time
FINE_TUNES_ARGS = (
    "--rounds 2 --prompts_per_round 8 --seed_problematic 96 --seed_benign 96 --seeds_per_round 16 --max_new_tokens 24 "
    "--judge_epochs 1 --attacker_epochs 2 --no-control_judge --no-eval_each_round --seed 0"
).split()
# benchmarks/adversarial.py's main result (the command in adversarial.json), without the oracle comparison
BENCHMARK_ARGS = (
    "--rounds 2 --prompts_per_round 16 --seed_problematic 96 --seed_benign 96 --seeds_per_round 16 --holdout 40 "
    "--heldout_source_size 200 --validation_size 40 --seed 0 --skip_oracle_comparison"
).split()


def child_command(scale: str, out: Path, scratch: Path) -> tuple[list[str], str]:
    """The child's argv and the command as the result file shows it."""
    if scale == "benchmark":
        script = ROOT / "benchmarks" / "adversarial.py"
        argv = [*BENCHMARK_ARGS, "--output_dir", str(out), "--results", str(scratch)]
        return [sys.executable, str(script), *argv], "python benchmarks/adversarial.py " + " ".join(BENCHMARK_ARGS)
    cmd = [sys.executable, "-c", "import sys; from detoxkit.cli import main; sys.exit(main())", "adversarial", "run"]
    args = FINE_TUNES_ARGS if scale == "fine_tunes" else RUN_ARGS
    return [*cmd, *args, "--output_dir", str(out)], "detoxkit adversarial run " + " ".join(args)


def measure(src: Path, out: Path, scale: str = "short") -> dict:
    """Run the command in a child with detoxkit from `src`; its peak RSS (MB), wall time and stage times."""
    shutil.rmtree(out, ignore_errors=True)
    scratch = out.with_name(out.name + "-results")  # the benchmark's own result file stays out of benchmarks/results
    if scale == "benchmark":
        scratch.mkdir(parents=True, exist_ok=True)
    cmd, shown = child_command(scale, out, scratch)
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.setdefault("DETOXKIT_PROGRESS", "0")
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((out / "run_summary.json").read_text()) if (out / "run_summary.json").exists() else {}
    return {
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "wall_s": round(wall, 1),
        "command": f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']} {shown}",
        "scale": scale,
        "src": str(src),
        "shared_base": summary.get("shared_base"),
        "rounds": [{"round": r["round"], "time_s": r.get("time_s")} for r in summary.get("rounds", [])],
        "setup_s": summary.get("setup_s"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT / "src"), help="the detoxkit source tree to run (its src/ folder)")
    ap.add_argument("--label", default="after", help="the entry name in the result file (before, after)")
    ap.add_argument(
        "--scale",
        choices=("short", "fine_tunes", "benchmark"),
        default="short",
        help="short: ~2 min; fine_tunes: ~7 min; benchmark: ~55 min (see above)",
    )
    ap.add_argument("--out", default=None, help="run folder (default: runs/adversarial-memory-<label>)")
    args = ap.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / f"adversarial-memory-{args.label}")
    entry = measure(Path(args.src), out, args.scale)
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    results[args.label] = entry
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
    if (out / "run_summary.json").exists():
        summary = json.loads((out / "run_summary.json").read_text())
        summary["memory"] = {k: v["peak_rss_mb"] for k, v in results.items()}
        (out / "run_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({args.label: entry}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
