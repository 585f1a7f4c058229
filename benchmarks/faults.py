"""Fault probes of `detoxkit serve` on loopback -> benchmarks/results/faults.json.

Each probe starts `detoxkit serve` (builtin model, toxicity screener on, judge/ACD/rewriter off, --max_new_tokens 8:
the server of issue 13's probes) in a subprocess, does what a hostile but fair client would, and records the
expected and the observed outcome. Probes: a log under a path that cannot be created, a log on /dev/full and a log
whose folder appears mid-run; >= 1,000 mixed malformed requests (HTTP-parser errors, deep nesting, invalid Unicode,
out-of-range and loosely typed fields, oversized bodies, HEAD); a 900 KB message and 190,000 moderation inputs
while other clients keep asking (their p95 against their idle p95); clients that give up while queued; a request
past its deadline; a silent body; clients dropping mid-body; SIGTERM with requests in flight; bad command-line
input. Bounded: about 4 minutes on 2 cores, loopback only.

    python benchmarks/faults.py [--malformed 1200] [--output benchmarks/results/faults.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m-instruct"
NAME = "detoxkit-guard"
BASE = [
    "--judge",
    "off",
    "--acd_safe_prompt",
    "off",
    "--acd_adv_prompt",
    "off",
    "--rewriter",
    "off",
    "--screener",
    "toxicity",
    "--max_new_tokens",
    "8",
]
# The builtin model keeps counting for hundreds of tokens: a request that is surely still running seconds later.
COUNTING = "Count from 1 to 1000, separated by commas."
CHAT = {"model": NAME, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`detoxkit serve` in a subprocess; .url is http://127.0.0.1:PORT; .output() what it printed."""

    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.out = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "detoxkit.cli", "serve", "--model", MODEL, *BASE, "--port", str(self.port), *args]
        self.proc = subprocess.Popen(
            cmd, stdout=self.out, stderr=subprocess.STDOUT, env={**os.environ, "DETOXKIT_PROGRESS": "0", **(env or {})}
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{self.output()}")
            time.sleep(0.2)

    def health(self) -> dict:
        r = httpx.get(f"{self.url}/healthz", timeout=5)
        return {"http_status": r.status_code, **r.json()}

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM; returns the seconds until the process ended."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return float("inf")
        return time.monotonic() - t0

    def output(self) -> str:
        self.out.flush()
        return Path(self.out.name).read_text(errors="replace")


@contextlib.contextmanager
def serving(*args: str, env: dict | None = None):
    s = Server(*args, env=env)
    try:
        yield s
    finally:
        s.stop()


def chat(url: str, payload=None, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=payload or CHAT, timeout=timeout)


def probe(name: str, expected: str, observed: dict, ok: bool) -> dict:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {json.dumps(observed)[:200]}", flush=True)
    return {"probe": name, "expected": expected, "observed": observed, "ok": bool(ok)}


# ------------------------------------------------------------------------------------------------ the log


def log_probes(tmp: Path) -> list[dict]:
    out = []
    blocker = tmp / "not-a-folder"
    blocker.write_text("a file where the log's folder should be")
    log = blocker / "requests.jsonl"
    with serving("--log_path", str(log)) as s:
        codes = [chat(s.url).status_code for _ in range(10)]
        h = s.health()
        out.append(
            probe(
                "log_path_cannot_be_created",
                "every request 200; write errors counted in /healthz; healthy",
                {"statuses": sorted(set(codes)), "n": len(codes), "healthz": h["status"], "log": h["log"]},
                codes == [200] * 10 and h["log"]["write_errors"] == 10 and h["status"] == "ok",
            )
        )
        blocker.unlink()
        blocker.mkdir()  # the "disk" recovers: the folder can now be created
        codes2 = [chat(s.url).status_code for _ in range(3)]
        rows = log.read_text().splitlines()
        whole = all(json.loads(r) for r in rows)
        h = s.health()
        out.append(
            probe(
                "log_recovers",
                "writes resume; the 10 backlogged rows and the 3 new ones all land, each a whole JSON row",
                {"statuses": sorted(set(codes2)), "rows": len(rows), "log": h["log"]},
                codes2 == [200] * 3 and len(rows) == 13 and whole and h["log"]["rows_backlogged"] == 0,
            )
        )
    with serving("--log_path", "/dev/full") as s:
        codes = [chat(s.url).status_code for _ in range(10)]
        h = s.health()
        out.append(
            probe(
                "log_on_full_disk",
                "every request 200 (ENOSPC counted, not fatal)",
                {"statuses": sorted(set(codes)), "n": len(codes), "healthz": h["status"], "log": h["log"]},
                codes == [200] * 10 and h["log"]["write_errors"] == 10 and h["status"] == "ok",
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ malformed input


def _raw(port: int, data: bytes, timeout: float = 10) -> tuple[int | None, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while chunk := sock.recv(65536):
                got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), body
    except (IndexError, ValueError):
        return None, got


def malformed_cases() -> list[tuple[str, dict]]:
    """(kind, httpx request kwargs or {"raw": bytes}) for every kind of client mistake probed."""
    msg = [{"role": "user", "content": "hi"}]
    j = lambda **kw: {"json": {"model": NAME, "messages": msg, **kw}}  # noqa: E731
    c = lambda b: {"content": b}  # noqa: E731
    return [
        ("not_json", c(b"{not json")),
        ("truncated_json", c(b'{"model": "detoxkit-guard", "messa')),
        ("binary_body", c(bytes(range(256)))),
        ("empty_body", c(b"")),
        ("json_null", c(b"null")),
        ("json_array", c(b"[1, 2, 3]")),
        ("deep_nesting_5000", c(b"[" * 5000 + b"]" * 5000)),
        ("deep_nesting_in_field", c(b'{"model": "detoxkit-guard", "messages": ' + b"[" * 990 + b"]" * 990 + b"}")),
        (
            "lone_surrogate_escape",
            c(b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "\\ud800"}]}'),
        ),
        ("lone_surrogate_in_model", c(b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}')),
        (
            "raw_surrogate_bytes",
            c(b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}'),
        ),
        ("nan", c(b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}')),
        (
            "infinity",
            c(b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}'),
        ),
        ("missing_model", {"json": {"messages": msg}}),
        ("missing_messages", {"json": {"model": NAME}}),
        ("empty_messages", j(messages=[])),
        ("bad_role", j(messages=[{"role": "wizard", "content": "hi"}])),
        ("content_number", j(messages=[{"role": "user", "content": 3}])),
        ("image_part", j(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}])),
        ("only_system", j(messages=[{"role": "system", "content": "hi"}])),
        ("messages_string", j(messages="hi")),
        ("unknown_model", j(model="gpt-9")),
        ("max_tokens_zero", j(max_tokens=0)),
        ("max_tokens_huge", j(max_tokens=10**9)),
        ("max_tokens_bool", j(max_tokens=True)),
        ("max_tokens_string", j(max_tokens="5")),
        ("max_tokens_float", j(max_tokens=5.5)),
        ("temperature_negative", j(temperature=-1)),
        ("temperature_high", j(temperature=7)),
        ("temperature_bool", j(temperature=True)),
        ("temperature_string", j(temperature="0.5")),
        ("top_p_zero", j(top_p=0)),
        ("n_two", j(n=2)),
        ("stream_int", j(stream=1)),
        ("too_many_messages", j(messages=msg * 65)),
        ("message_too_long", j(messages=[{"role": "user", "content": "a" * 40_000}])),
        ("context_exceeded", j(messages=[{"role": "user", "content": "word " * 5000}])),
        ("moderation_no_input", {"path": "/v1/moderations", "json": {}}),
        ("moderation_bad_input", {"path": "/v1/moderations", "json": {"input": [1, 2]}}),
        ("moderation_too_many", {"path": "/v1/moderations", "json": {"input": ["a"] * 129}}),
        ("oversized_body", c(b'{"x": "' + b"a" * 1_100_000 + b'"}')),
        ("wrong_route", {"path": "/v1/nothing", "json": {}}),
        ("get_on_post_route", {"method": "GET"}),
        ("head_on_post_route", {"method": "HEAD"}),
        ("parser_garbage", {"raw": b"GARBAGE \x00\x01\r\n\r\n"}),
        ("parser_bad_header", {"raw": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"}),
        ("parser_bad_length", {"raw": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"}),
        ("parser_non_ascii_path", {"raw": b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"}),
    ]


def malformed_probe(n: int, seed: int = 0) -> dict:
    cases, rng = malformed_cases(), random.Random(seed)
    statuses: dict[str, dict[str, int]] = {}
    bad_shape, five_xx, t0 = [], 0, time.monotonic()
    with serving() as s, httpx.Client(base_url=s.url, timeout=30) as client:
        order = [cases[i % len(cases)] for i in range(n)]
        rng.shuffle(order)
        for kind, req in order:
            if "raw" in req:
                status, body = _raw(s.port, req["raw"])
            else:
                r = client.request(
                    req.get("method", "POST"),
                    req.get("path", "/v1/chat/completions"),
                    **{k: v for k, v in req.items() if k in ("json", "content")},
                )
                status, body = r.status_code, r.content
            statuses.setdefault(kind, {}).setdefault(str(status), 0)
            statuses[kind][str(status)] += 1
            five_xx += status is None or status >= 500
            if status is None or (body and not _is_openai_error(body)):
                bad_shape.append(kind)
        after = chat(s.url).status_code
        h = s.health()
        tracebacks = s.output().count("Traceback")
    observed = {
        "requests": n,
        "kinds": len(cases),
        "five_xx": five_xx,
        "not_openai_error_shape": sorted(set(bad_shape)),
        "statuses_by_kind": statuses,
        "valid_request_after": after,
        "healthz": h["status"],
        "server_tracebacks": tracebacks,
        "seconds": round(time.monotonic() - t0, 1),
    }
    return probe(
        "malformed_requests",
        ">= 1,000 mixed malformed requests: zero 5xx, every error body in OpenAI's "
        "shape (HEAD: no body), then a valid request is 200",
        observed,
        five_xx == 0 and not bad_shape and after == 200 and h["status"] == "ok" and tracebacks == 0,
    )


def _is_openai_error(body: bytes) -> bool:
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return set(err) == {"message", "type", "param", "code"}


# ------------------------------------------------------------------------------------------------ bounded work


def _background(url: str, stop: threading.Event, latencies: list, errors: list, clients: int = 3) -> list:
    def go():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = chat(url, timeout=30)
                (latencies if r.status_code == 200 else errors).append(time.perf_counter() - t0)
            except httpx.HTTPError:
                errors.append(None)

    threads = [threading.Thread(target=go, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads


def _p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20)[-1] if len(xs) >= 2 else float("nan")


def oversized_work_probes(seconds: float = 15) -> list[dict]:
    out = []
    huge_msg = {"model": NAME, "messages": [{"role": "user", "content": "a" * 900_000}], "max_tokens": 8}
    huge_mod = {"model": NAME, "input": ["a"] * 190_000}
    with serving() as s:
        for _ in range(3):
            chat(s.url)  # warm up
        idle, errors, stop = [], [], threading.Event()
        threads = _background(s.url, stop, idle, errors)
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
        for name, path, payload in [
            ("message_900kb", "/v1/chat/completions", huge_msg),
            ("moderation_190k_inputs", "/v1/moderations", huge_mod),
        ]:
            busy, errs, stop = [], [], threading.Event()
            threads = _background(s.url, stop, busy, errs)
            answers, t_end = [], time.monotonic() + seconds
            while time.monotonic() < t_end:
                t0 = time.perf_counter()
                r = httpx.post(f"{s.url}{path}", json=payload, timeout=60)
                answers.append((r.status_code, time.perf_counter() - t0, r.json()["error"]["code"]))
            stop.set()
            for t in threads:
                t.join()
            worst = max(a[1] for a in answers)
            ratio = _p95(busy) / _p95(idle)
            out.append(
                probe(
                    name,
                    "400 in under 1 s (each of the repeated sends); 3 other clients' p95 latency "
                    "under 2x their idle p95, no errors",
                    {
                        "sent": len(answers),
                        "statuses": sorted({a[0] for a in answers}),
                        "codes": sorted({a[2] for a in answers}),
                        "slowest_s": round(worst, 3),
                        "others_idle_p95_s": round(_p95(idle), 3),
                        "others_p95_s": round(_p95(busy), 3),
                        "p95_ratio": round(ratio, 2),
                        "others_requests": len(busy),
                        "others_errors": len(errs),
                    },
                    {a[0] for a in answers} == {400} and worst < 1 and ratio < 2 and not errs,
                )
            )
    return out


def gone_client_probes(tmp: Path) -> list[dict]:
    out = []
    log = tmp / "gone.jsonl"
    with serving("--log_path", str(log), "--max_tokens_limit", "512") as s:
        long = {**CHAT, "max_tokens": 200, "messages": [{"role": "user", "content": COUNTING}]}
        first = []
        t = threading.Thread(target=lambda: first.append(chat(s.url, long)))
        t.start()
        time.sleep(0.5)
        gave_up = 0
        for i in range(6):
            with contextlib.suppress(httpx.ReadTimeout):
                chat(s.url, {**CHAT, "messages": [{"role": "user", "content": f"gone {i}"}]}, timeout=0.3)
                continue
            gave_up += 1
        t.join()
        time.sleep(1.0)
        rows = [json.loads(x) for x in log.read_text().splitlines()]
        gone = [r for r in rows if r["messages"][-1]["content"].startswith("gone")]
        out.append(
            probe(
                "clients_gone_while_queued",
                "their work is dropped before it runs and logged 'cancelled'",
                {
                    "gave_up": gave_up,
                    "logged": len(gone),
                    "statuses": sorted({r["status"] for r in gone}),
                    "first": first[0].status_code,
                },
                gave_up == 6 and len(gone) == 6 and {r["status"] for r in gone} == {"cancelled"},
            )
        )
    with serving("--request_timeout_s", "2", "--max_tokens_limit", "512") as s:
        long = {**CHAT, "max_tokens": 512, "messages": [{"role": "user", "content": COUNTING}]}
        t0 = time.monotonic()
        r = chat(s.url, long)
        took = time.monotonic() - t0
        t1 = time.monotonic()
        after = chat(s.url)
        next_s = time.monotonic() - t1
        out.append(
            probe(
                "request_deadline",
                "504 'timeout' at request_timeout_s (2 s); the worker drops the work, so "
                "the next request is answered at once",
                {
                    "status": r.status_code,
                    "code": r.json()["error"]["code"],
                    "seconds": round(took, 2),
                    "next_status": after.status_code,
                    "next_seconds": round(next_s, 2),
                },
                r.status_code == 504 and took < 4 and after.status_code == 200 and next_s < 3,
            )
        )
    return out


def connection_probes() -> list[dict]:
    out = []
    with serving("--body_timeout_s", "2") as s:
        t0 = time.monotonic()
        status, body = _raw(
            s.port,
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b'\r\nContent-Length: 100\r\n\r\n{"mo',
            timeout=30,
        )
        took = time.monotonic() - t0
        out.append(
            probe(
                "silent_body",
                "408 after body_timeout_s (2 s), connection closed",
                {"status": status, "seconds": round(took, 2)},
                status == 408 and took < 5,
            )
        )
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", s.port)) as sock:
                sock.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"mod')
        time.sleep(1)
        text = s.output()
        out.append(
            probe(
                "clients_drop_mid_body",
                "no traceback in the server's output; still healthy",
                {"tracebacks": text.count("Traceback"), "healthz": s.health()["status"]},
                "Traceback" not in text and s.health()["status"] == "ok",
            )
        )
    with serving("--api_key", "sekret") as s:
        lower = httpx.get(f"{s.url}/v1/models", headers={"Authorization": "bearer sekret"}, timeout=10).status_code
        wrong = httpx.get(f"{s.url}/v1/models", headers={"Authorization": "Bearer nope"}, timeout=10).status_code
        said = "auth on (bearer key)" in s.output()
        out.append(
            probe(
                "auth",
                "lowercase 'bearer' accepted, a wrong key 401, start-up line says auth is on",
                {"lowercase_bearer": lower, "wrong_key": wrong, "startup_says_auth_on": said},
                lower == 200 and wrong == 401 and said,
            )
        )
    return out


def shutdown_probes() -> list[dict]:
    out = []
    s = Server("--max_batch_size", "8")
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(chat(s.url, {**CHAT, "max_tokens": 32}).status_code))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)
    took = s.stop()
    for t in threads:
        t.join()
    out.append(
        probe(
            "sigterm_with_8_in_flight",
            "all 8 answered, then the process exits",
            {"statuses": results, "exit_seconds": round(took, 2)},
            results == [200] * 8 and took < 60,
        )
    )
    s = Server("--drain_timeout_s", "3", "--max_tokens_limit", "512", "--request_timeout_s", "600")
    late: list = []
    counting = {**CHAT, "max_tokens": 512, "messages": [{"role": "user", "content": COUNTING}]}
    t = threading.Thread(target=lambda: late.append(chat(s.url, counting, timeout=120)), daemon=True)
    t.start()
    time.sleep(1.0)
    h = s.health()
    took = s.stop(timeout=60)
    t.join(10)
    r = late[0] if late else None
    observed = {
        "in_flight_at_sigterm": h["busy"] and h["answered"] == 0,
        "exit_seconds": round(took, 2),
        "client_status": None if r is None else r.status_code,
        "client_code": None if r is None or r.status_code == 200 else r.json()["error"]["code"],
    }
    out.append(
        probe(
            "sigterm_with_a_long_request",
            "the process exits within drain_timeout_s (3 s) + 10 s; the "
            "unfinished request gets 503 'shutting_down' in OpenAI's shape",
            observed,
            observed["in_flight_at_sigterm"] and took < 13 and observed["client_code"] == "shutting_down",
        )
    )
    return out


# ------------------------------------------------------------------------------------------------ the command line


def cli_probes(tmp: Path) -> list[dict]:
    junk = tmp / "junk.yaml"
    junk.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(512)))
    listed = tmp / "listed.yaml"
    listed.write_text("max_batch_size: [1, 2]\n")
    fake = tmp / "prompt.safetensors"
    fake.write_bytes(bytes(random.Random(1).randrange(256) for _ in range(512)))
    text_named = tmp / "text.safetensors"
    text_named.write_text("You are a helpful assistant.")
    cases = [
        ("yaml_random_bytes", ["--config", str(junk)], {}),
        ("yaml_list_for_int", ["--config", str(listed)], {}),
        ("config_is_a_folder", ["--config", str(tmp)], {}),
        ("prompt_random_bytes", ["--acd_safe_prompt", str(fake)], {}),
        ("prompt_text_named_safetensors", ["--acd_safe_prompt", str(text_named)], {}),
        ("prompt_file_missing", ["--acd_safe_prompt", "notes.txt"], {}),
        ("empty_api_key", ["--api_key", ""], {}),
        ("empty_key_in_env", [], {"DETOXKIT_API_KEY": ""}),
        ("negative_limit", ["--max_messages", "0"], {}),
        ("bad_port_type", ["--port", "eighty"], {}),
    ]
    rows = []
    for name, args, env in cases:
        r = subprocess.run(
            [sys.executable, "-m", "detoxkit.cli", "serve", "--model", MODEL, *BASE, "--port", str(free_port()), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "DETOXKIT_PROGRESS": "0", **env},
        )
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        ok = r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
        rows.append(
            {
                "case": name,
                "exit": r.returncode,
                "stderr": lines[-1] if lines else "",
                "one_line": len(lines) == 1,
                "ok": ok,
            }
        )
    return [
        probe(
            "cli_input_errors",
            "each: one line naming the file or field, exit 2, no traceback",
            {"cases": rows},
            all(r["ok"] for r in rows),
        )
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--malformed", type=int, default=1200, help="how many malformed requests (>= 1000 for the aim)")
    ap.add_argument("--seconds", type=float, default=15, help="length of each latency window of the oversize probes")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "faults.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from detoxkit.runs import write_json

    tmp = Path(tempfile.mkdtemp(prefix="detoxkit-faults-"))
    t0 = time.monotonic()
    try:
        probes = [
            *log_probes(tmp),
            malformed_probe(args.malformed),
            *oversized_work_probes(args.seconds),
            *gone_client_probes(tmp),
            *connection_probes(),
            *shutdown_probes(),
            *cli_probes(tmp),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(p["ok"] for p in probes)
    write_json(
        args.output,
        {
            "what": "fault probes of `detoxkit serve` on loopback (benchmarks/faults.py)",
            "command": " ".join(["python", *sys.argv]),
            "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "server": f"detoxkit serve --model {MODEL} {' '.join(BASE)}",
            "seconds": round(time.monotonic() - t0, 1),
            "passed": passed,
            "probes_total": len(probes),
            "probes": probes,
        },
    )
    print(f"faults: {passed}/{len(probes)} probes as expected -> {args.output}")
    return 0 if passed == len(probes) else 1


if __name__ == "__main__":
    sys.exit(main())
