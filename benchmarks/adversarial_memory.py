"""Peak resident memory and per-stage times of a short `detoxkit adversarial run` on the builtin SmolLM2-135M (issue 16,
items 4 and 5), for the detoxkit source tree given by --src (this checkout's src/, or another checkout's, to measure
the code before a change on the same machine).

The run is a child process: its peak RSS is ru_maxrss of the children (the child is the only one), so it includes
everything the run holds (models, embedder, oracle, hold-out, fine-tuning activations). Each call adds one entry
under --label to benchmarks/results/adversarial_memory.json and, where the run wrote run_summary.json, copies the
measured peaks of every label into it ("memory").

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


def measure(src: Path, out: Path) -> dict:
    """Run the command in a child with detoxkit from `src`; its peak RSS (MB), wall time and stage times."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-c", "import sys; from detoxkit.cli import main; sys.exit(main())", "adversarial", "run"]
    cmd += [*RUN_ARGS, "--output_dir", str(out)]
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
        "command": "OMP_NUM_THREADS=1 detoxkit adversarial run " + " ".join(RUN_ARGS),
        "src": str(src),
        "shared_base": summary.get("shared_base"),
        "rounds": [{"round": r["round"], "time_s": r.get("time_s")} for r in summary.get("rounds", [])],
        "setup_s": summary.get("setup_s"),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(ROOT / "src"), help="the detoxkit source tree to run (its src/ folder)")
    ap.add_argument("--label", default="after", help="the entry name in the result file (before, after)")
    ap.add_argument("--out", default=None, help="run folder (default: runs/adversarial-memory-<label>)")
    args = ap.parse_args(argv)
    out = Path(args.out or ROOT / "runs" / f"adversarial-memory-{args.label}")
    entry = measure(Path(args.src), out)
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
