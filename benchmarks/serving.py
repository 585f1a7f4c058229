"""Shared by the guard benchmarks: start `detoxkit serve` in its own process on loopback, and drive it with
concurrent OpenAI-style clients for a fixed time (latency, time to first token, errors by status)."""

from __future__ import annotations

import collections
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    flags: list[str], log, port: int | None = None, timeout_s: float = 180
) -> tuple[subprocess.Popen, str]:
    """`detoxkit serve FLAGS --port P` in a subprocess (its own GIL and threads); returns (process, base URL .../v1)
    once /healthz answers."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "detoxkit.cli", "serve", *flags, "--port", str(port)]
    return start_process(cmd, port, "/healthz", log, timeout_s)


def start_process(cmd: list[str], port: int, health: str, log, timeout_s: float = 180) -> tuple[subprocess.Popen, str]:
    """Any OpenAI-compatible server command on loopback; returns (process, base URL .../v1) once `health` is 200."""
    import httpx

    env = {**os.environ, "DETOXKIT_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{base}{health}", timeout=1).status_code == 200:
                return proc, base + "/v1"
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the server did not start ({' '.join(cmd)}); see {log.name}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM: uvicorn's graceful shutdown
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 4)


def one_request(client, url: str, body: dict, on_chunk=None) -> dict:
    """One chat completion; streamed when body["stream"]: time to first content, the text, the final chunk."""
    import httpx

    t0 = time.perf_counter()
    try:
        if not body.get("stream"):
            r = client.post(f"{url}/chat/completions", json=body)
            out = {"status": r.status_code, "seconds": time.perf_counter() - t0}
            if r.status_code == 200:
                out["text"] = r.json()["choices"][0]["message"]["content"]
            return out
        first, text, last, status = None, "", None, None
        with client.stream("POST", f"{url}/chat/completions", json=body) as r:
            status = r.status_code
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    status = f"stream error {event['error'].get('code')}"
                    continue
                piece = event["choices"][0]["delta"].get("content")
                if piece:
                    first = first or time.perf_counter() - t0
                    text += piece
                    if on_chunk is not None:
                        on_chunk(text)
                last = event
        return {"status": status, "seconds": time.perf_counter() - t0, "ttft": first, "text": text, "last": last}
    except httpx.HTTPError as e:
        return {"status": type(e).__name__, "seconds": time.perf_counter() - t0}


def load(url: str, bodies: list[dict], clients: int, seconds: float, timeout_s: float = 120, on_result=None) -> dict:
    """`clients` threads post bodies (round robin) back to back for `seconds`: statuses, latency and TTFT quantiles."""
    import httpx

    results: list[dict] = []
    lock = threading.Lock()

    def client(k: int, until: float) -> None:
        with httpx.Client(timeout=timeout_s) as c:
            i = k
            while time.perf_counter() < until:
                r = one_request(c, url, bodies[i % len(bodies)])
                r["sent_at"] = time.perf_counter()
                with lock:
                    results.append(r)
                if on_result is not None:
                    on_result(r)
                i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k, t0 + seconds)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(results, time.perf_counter() - t0)


def summarise(results: list[dict], wall: float) -> dict:
    ok = [r for r in results if r["status"] == 200]
    lat = [r["seconds"] for r in ok]
    ttft = [r["ttft"] for r in ok if r.get("ttft") is not None]
    statuses = collections.Counter(str(r["status"]) for r in results)
    return {
        "requests": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "statuses": dict(statuses),
        "seconds": round(wall, 2),
        "requests_per_s": round(len(ok) / wall, 3) if wall else None,
        "latency_p50_s": quantile(lat, 0.5),
        "latency_p95_s": quantile(lat, 0.95),
        **({"ttft_p50_s": quantile(ttft, 0.5), "ttft_p95_s": quantile(ttft, 0.95)} if ttft else {}),
    }


def write_sections(output: str, sections: dict, args, t0: float) -> None:
    """Each section with the settings and machine it ran with, into the result file (other sections kept)."""
    from detoxkit.runs import update_json

    for part in sections.values():
        part.update(
            settings=vars(args),
            machine={"cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
            wall_s=round(time.time() - t0, 1),
        )
    update_json(output, sections, ["python", *sys.argv])
    print(f"-> {output} ({round(time.time() - t0, 1)} s)")
