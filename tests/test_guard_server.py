"""The guard's OpenAI-compatible server: schema, errors, limits, streaming, batching, faults, the openai client.

In-process requests go through FastAPI's TestClient; concurrency, disconnects, shutdown and the official `openai`
client run against a real uvicorn on a free loopback port. The guard is a tiny random model with stand-in stages.
"""

import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from test_guard import ConstScreener, KeywordJudge

from detoxkit.guard import Guard, GuardConfig
from detoxkit.guard.server import create_app, running_server

MODEL = "detoxkit-guard"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class GatedGuard:
    """The real guard, but chat() holds until `gate` is set once `entered` is: the test decides what is in flight."""

    def __init__(self, guard, hold_s=30):
        self.guard, self.entered, self.gate, self.hold_s = guard, threading.Event(), threading.Event(), hold_s
        self.returned = threading.Event()  # set when a chat call has finished (the worker is idle again)
        self.chat_calls = []

    def chat(self, messages_batch, *args, **kwargs):
        self.chat_calls.append([m[-1]["content"] for m in messages_batch])
        self.entered.set()
        self.gate.wait(self.hold_s)
        try:
            return self.guard.chat(messages_batch, *args, **kwargs)
        finally:
            self.returned.set()

    def __getattr__(self, name):  # moderate, prompt_tokens, context_length: the real guard's
        return getattr(self.guard, name)


@pytest.fixture(scope="module")
def guard(tiny_lm):
    return Guard(*tiny_lm, GuardConfig(), judge=KeywordJudge(), screener=ConstScreener(0.1))


def cfg(**kw):
    return GuardConfig(port=0, **kw)


@pytest.fixture(scope="module")
def client(guard, tmp_path_factory):
    log = tmp_path_factory.mktemp("guard-log") / "requests.jsonl"
    with TestClient(create_app(guard, cfg(max_request_bytes=100_000, max_tokens_limit=16, log_path=str(log)))) as c:
        c.log_path = log
        yield c


def error_of(resp, status, code=None, param=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code is not None:
        assert err["code"] == code
    if param is not None:
        assert err["param"] == param
    return err


def sse_events(text):
    return [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]


def test_models_health_and_chat(client):
    assert client.get("/healthz").json()["status"] == "ok"
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [MODEL]
    body = client.post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["usage"]["completion_tokens"] <= 4
    assert body["guard"]["judge"]["decision"] == "allow" and body["guard"]["screen"]["decision"] == "pass"
    blocked = client.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "a bomb"}]})
    choice = blocked.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and choice["message"]["content"] == GuardConfig().block_message
    logged = [json.loads(line) for line in client.log_path.read_text().splitlines()]
    assert {"id", "messages", "text", "trace", "batch_size"} <= set(logged[-1]) and logged[-1]["trace"]["judge"]


def test_stream_sends_chunks_then_done(client):
    resp = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length") and "judge" in chunks[-1]["guard"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_moderations(client):
    body = client.post("/v1/moderations", json={"input": ["how to make a bomb", "hello"]}).json()
    assert [r["flagged"] for r in body["results"]] == [True, False]
    assert body["results"][0]["category_scores"]["harmful_request"] == 0.9


@pytest.mark.parametrize(
    "payload,param",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": MODEL, "messages": [{"role": "user", "content": 3}]}, None),
        ({**CHAT, "temperature": 7}, "temperature"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "max_tokens": 17}, "max_tokens"),  # above max_tokens_limit
        ({**CHAT, "n": 2}, "n"),
        ({**CHAT, "messages": [{"role": "system", "content": "only a system turn"}]}, "messages"),
        ([1, 2, 3], None),
    ],
)
def test_schema_errors_are_400(client, payload, param):
    error_of(client.post("/v1/chat/completions", json=payload), 400, param=param)


def test_invalid_json_unknown_model_oversize_and_routes(client):
    error_of(client.post("/v1/chat/completions", content=b"{not json"), 400, code="invalid_json")
    error_of(client.post("/v1/chat/completions", content=b"\xff\xfe"), 400, code="invalid_json")
    error_of(client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}), 404, "model_not_found", "model")
    error_of(client.post("/v1/moderations", json={"input": "x", "model": "gpt-9"}), 404, "model_not_found")
    big = {**CHAT, "messages": [{"role": "user", "content": "a" * 10_000_000}]}
    error_of(client.post("/v1/chat/completions", json=big), 413, "request_too_large")
    error_of(client.get("/v1/nothing"), 404)
    error_of(client.get("/v1/chat/completions"), 405)


def test_a_thousand_malformed_requests_then_a_valid_one(client):
    bad = [
        dict(content=b"{"),
        dict(json={"model": MODEL}),
        dict(json={**CHAT, "model": "nope"}),
        dict(json={**CHAT, "max_tokens": "many"}),
        dict(content=b"null"),
        dict(json={**CHAT, "messages": "hi"}),
    ]
    statuses = {client.post("/v1/chat/completions", **bad[i % len(bad)]).status_code for i in range(1000)}
    assert statuses == {400, 404}
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_api_key(guard):
    with TestClient(create_app(guard, cfg(api_key="sekret"))) as c:
        error_of(c.post("/v1/chat/completions", json=CHAT), 401, "invalid_api_key")
        error_of(c.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401, "invalid_api_key")
        assert c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sekret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # health checks need no key


# ------------------------------------------------------------------------------------------ real uvicorn


def test_openai_client_stream_and_not(guard):
    from openai import OpenAI

    with running_server(guard, cfg(api_key="k")) as url:
        client = OpenAI(base_url=url, api_key="k", max_retries=0)
        assert [m.id for m in client.models.list()] == [MODEL]
        r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert r.choices[0].message.role == "assistant" and r.model_extra["guard"]["decode"]["decision"] == "plain"
        chunks = list(
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == r.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
        mod = client.moderations.create(input="how to make a bomb", model=MODEL)
        assert mod.results[0].flagged
        from openai import AuthenticationError, NotFoundError

        with pytest.raises(NotFoundError):
            client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(AuthenticationError):
            OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()


def _post_in_thread(url, payload, results, **kw):
    def go():
        results.append(httpx.post(f"{url}/chat/completions", json=payload, timeout=60, **kw))

    t = threading.Thread(target=go)
    t.start()
    return t


def _wait_queued(url, n):
    deadline = time.monotonic() + 30
    while httpx.get(f"{url[:-3]}/healthz").json()["queued"] < n:
        assert time.monotonic() < deadline, "requests never reached the queue"
        time.sleep(0.02)


def test_concurrent_requests_are_batched(guard):
    gated = GatedGuard(guard)
    with running_server(gated, cfg(max_batch_size=8)) as url:
        results = []
        first = _post_in_thread(url, CHAT, results)
        assert gated.entered.wait(30)  # the worker is busy with the first request ...
        rest = [_post_in_thread(url, {**CHAT, "max_tokens": 2 + i}, results) for i in range(3)]
        _wait_queued(url, 3)  # ... while three more queue up
        gated.gate.set()
        for t in [first, *rest]:
            t.join()
        health = httpx.get(f"{url[:-3]}/healthz").json()
    assert [r.status_code for r in results] == [200] * 4
    assert health["max_batch_size_seen"] == 3
    assert sorted(r.json()["guard"]["batch_size"] for r in results) == [1, 3, 3, 3]


def test_client_disconnect_mid_stream_and_oversize_over_a_socket(guard):
    gated = GatedGuard(guard)
    with running_server(gated, cfg(max_request_bytes=1_000_000)) as url:
        with httpx.Client(timeout=30) as c:
            with c.stream("POST", f"{url}/chat/completions", json={**CHAT, "stream": True}) as resp:
                first = next(resp.iter_lines())
                assert (
                    first.startswith("data: ") and json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
                )
            # closing the stream dropped the connection while the answer was in flight
        gated.gate.set()
        assert httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30).status_code == 200
        big = {**CHAT, "messages": [{"role": "user", "content": "a" * 10_000_000}]}
        error_of(httpx.post(f"{url}/chat/completions", json=big, timeout=30), 413, "request_too_large")
        assert httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30).status_code == 200


def test_shutdown_finishes_in_flight_requests(guard):
    gated, results = GatedGuard(guard), []
    with running_server(gated, cfg()) as url:
        t = _post_in_thread(url, CHAT, results)
        assert gated.entered.wait(30)
        threading.Timer(0.3, gated.gate.set).start()  # released only after shutdown has begun
    t.join()  # running_server's exit waited for uvicorn's graceful shutdown
    assert [r.status_code for r in results] == [200]


def test_api_key_from_the_environment(guard, monkeypatch):
    monkeypatch.setenv("DETOXKIT_API_KEY", "from-env")
    with TestClient(create_app(guard, cfg())) as c:
        error_of(c.get("/v1/models"), 401, "invalid_api_key")
        assert c.get("/v1/models", headers={"Authorization": "Bearer from-env"}).status_code == 200


def test_serve_command_answers_and_stops_on_sigterm(tiny_lm_dir, tmp_path):
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detoxkit.cli",
            "serve",
            "--model",
            str(tiny_lm_dir),
            "--screener",
            "off",
            "--port",
            str(port),
            "--log_path",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DETOXKIT_API_KEY"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.poll() else ""
                time.sleep(0.1)
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT, timeout=30).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn re-raises the signal once its graceful shutdown is done, so the exit status says "ended by SIGTERM"
    assert proc.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in out, out
    assert "auth off (no key)" in out
    assert json.loads(log.read_text().splitlines()[0])["endpoint"] == "chat.completions"


# ------------------------------------------------------------------------------------------ operations (issue 18)


def scrape(client_or_url) -> dict:
    """/metrics as {(sample name, frozenset of labels): value}; a TestClient or a base URL ending in /v1."""
    from prometheus_client.parser import text_string_to_metric_families

    if isinstance(client_or_url, str):
        resp = httpx.get(f"{client_or_url[:-3]}/metrics", timeout=10)
    else:
        resp = client_or_url.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_every_stage_of_every_request(guard):
    n, auth = 4, {"Authorization": "Bearer k"}
    with TestClient(create_app(guard, cfg(api_key="k"))) as c:
        for i in range(n):
            assert c.post("/v1/chat/completions", json={**CHAT, "stream": i == 0}, headers=auth).status_code == 200
        blocked = {**CHAT, "messages": [{"role": "user", "content": "a bomb"}]}
        assert c.post("/v1/chat/completions", json=blocked, headers=auth).status_code == 200
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 401
        m = scrape(c)  # no key needed, like /healthz
    chat = "/v1/chat/completions"
    assert metric(m, "detoxkit_guard_requests_total", endpoint=chat, status="200") == n + 1
    assert metric(m, "detoxkit_guard_requests_total", endpoint=chat, status="401") == 1
    assert metric(m, "detoxkit_guard_request_seconds_count", endpoint=chat) == n + 2
    assert metric(m, "detoxkit_guard_stage_seconds_count", stage="judge") == n + 1
    for stage in ("decode", "screen"):  # the blocked request is neither decoded nor screened
        assert metric(m, "detoxkit_guard_stage_seconds_count", stage=stage) == n
    assert metric(m, "detoxkit_guard_decisions_total", stage="judge", decision="allow", category="") == n
    assert metric(m, "detoxkit_guard_decisions_total", stage="judge", decision="block", category="") == 1
    assert metric(m, "detoxkit_guard_decisions_total", stage="screen", decision="pass", category="stand-in") == n
    assert metric(m, "detoxkit_guard_batch_size_sum") == n + 1 and metric(m, "detoxkit_guard_batch_size_count") >= 1
    assert ("detoxkit_guard_queue_depth", frozenset()) in m


def test_apps_in_one_process_keep_their_own_metrics(guard):
    with TestClient(create_app(guard, cfg())) as a, TestClient(create_app(guard, cfg())) as b:
        assert a.post("/v1/chat/completions", json=CHAT).status_code == 200
        ma, mb = scrape(a), scrape(b)
    chat = "/v1/chat/completions"
    assert metric(ma, "detoxkit_guard_requests_total", endpoint=chat, status="200") == 1
    assert metric(mb, "detoxkit_guard_requests_total", endpoint=chat, status="200") == 0


def test_judge_deadline_fail_closed_blocks_every_request_and_counts_it(tiny_lm):
    from test_guard import SlowJudge

    config = cfg(judge_deadline_ms=1, on_stage_timeout="closed")
    slow = Guard(*tiny_lm, config, judge=SlowJudge(0.02), screener=ConstScreener(0.1))
    with TestClient(create_app(slow, config)) as c:
        bodies = [c.post("/v1/chat/completions", json=CHAT).json() for _ in range(3)]
        m = scrape(c)
    for b in bodies:
        assert b["choices"][0]["finish_reason"] == "content_filter"
        assert b["choices"][0]["message"]["content"] == config.block_message
        assert b["guard"]["judge"]["decision"] == "timeout_blocked" and b["guard"]["decode"]["decision"] == "skipped"
    assert metric(m, "detoxkit_guard_stage_timeouts_total", stage="judge", outcome="blocked") == 3
    assert metric(m, "detoxkit_guard_decisions_total", stage="judge", decision="timeout_blocked", category="") == 3
    assert metric(m, "detoxkit_guard_stage_seconds_count", stage="decode") == 0


def test_full_queue_is_429_with_retry_after_never_500(guard):
    gated = GatedGuard(guard)
    with running_server(gated, cfg(max_queue=2, max_batch_size=1)) as url:
        results = []
        first = _post_in_thread(url, CHAT, results)
        assert gated.entered.wait(30)  # the worker holds one request; two more fit the queue, five do not
        burst = [_post_in_thread(url, {**CHAT, "stream": i % 2 == 1}, results) for i in range(7)]
        deadline = time.monotonic() + 10
        try:
            while len(results) < 5:  # the refused ones are answered at once, while the worker is still held
                assert time.monotonic() < deadline, [r.status_code for r in results]
                time.sleep(0.02)
        finally:
            gated.gate.set()
        refused = results[:5]
        for t in [first, *burst]:
            t.join()
        m = scrape(url)
    assert sorted(r.status_code for r in results) == [200] * 3 + [429] * 5
    for r in refused:
        err = error_of(r, 429, "queue_full")
        assert err["type"] == "requests" and int(r.headers["retry-after"]) >= 1
    assert metric(m, "detoxkit_guard_rejected_total", reason="queue_full") == 5


def test_rate_limit_is_429_on_the_request_past_rpm(guard):
    rpm = 3
    with TestClient(create_app(guard, cfg(rate_limit_rpm=rpm))) as c:
        statuses = [c.post("/v1/chat/completions", json=CHAT).status_code for _ in range(rpm)]
        over = c.post("/v1/moderations", json={"input": "hello"})
        other = TestClient(c.app, client=("10.0.0.7", 4242))  # another client, its own bucket (no second lifespan)
        assert other.post("/v1/chat/completions", json=CHAT).status_code == 200
        assert c.get("/v1/models").status_code == 200 and c.get("/healthz").status_code == 200  # not counted
        m = scrape(c)
    assert statuses == [200] * rpm
    err = error_of(over, 429, "rate_limit_exceeded")
    assert err["type"] == "requests" and 1 <= int(over.headers["retry-after"]) <= 60 // rpm
    assert metric(m, "detoxkit_guard_rejected_total", reason="rate_limited") == 1


def test_token_bucket_refills_per_key():
    from detoxkit.guard.ops import TokenBucket

    now = [0.0]
    bucket = TokenBucket(2, clock=lambda: now[0])
    assert [bucket.take("a"), bucket.take("a")] == [0.0, 0.0]
    assert bucket.take("a") == pytest.approx(30.0) and bucket.take("b") == 0.0
    now[0] = 29.0
    assert bucket.take("a") == pytest.approx(1.0)
    now[0] = 30.0
    assert bucket.take("a") == 0.0 and bucket.take("a") > 0
    now[0] = 1000.0
    assert [bucket.take("a"), bucket.take("a"), bucket.take("a") > 0] == [0.0, 0.0, True]  # bursts stop at rpm


def test_json_log_has_a_line_per_request_and_no_api_key(guard, tmp_path, capsys):
    from detoxkit.guard.ops import key_id

    key, path = "sk-very-secret-key-123", tmp_path / "requests.log"
    with TestClient(create_app(guard, cfg(api_key=key, json_logs=True, json_log_path=str(path)))) as c:
        ok = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}).json()
        assert c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer wrong"}).status_code == 401
    text = path.read_text()
    assert key not in text and "wrong" not in text
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["status"] for r in rows] == [200, 401]
    assert rows[0]["request_id"] == ok["id"] and rows[0]["endpoint"] == "/v1/chat/completions"
    assert rows[0]["key_id"] == key_id(key) and rows[0]["key_id"].startswith("key-") and rows[0]["latency_s"] > 0
    assert rows[0]["decisions"] == {"judge": "allow", "decode": "plain", "screen": "pass", "rewrite": "not_needed"}
    assert rows[1]["error"] == "invalid_api_key" and rows[1]["key_id"] != rows[0]["key_id"]
    with TestClient(create_app(guard, cfg(json_logs=True))) as c:  # no path: stderr
        assert c.get("/healthz").status_code == 200
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert json.loads(line)["endpoint"] == "/healthz"
