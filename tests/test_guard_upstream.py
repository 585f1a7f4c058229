"""Upstream mode: the guard in front of real servers on loopback: a second `detoxkit serve` process with every stage
off on the tiny model, the same server in a thread (fresh per test, for sampled answers that repeat), and upstreams
that are down, silent, or answer garbage."""

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from test_guard import KeywordJudge, user
from test_guard_streaming import MarkerScreener, middle_word

from detoxkit.errors import DetoxkitError
from detoxkit.guard import Guard, GuardConfig
from detoxkit.guard.server import create_app, running_server
from detoxkit.guard.upstream import Upstream

SAMPLED = {"max_tokens": 24, "temperature": 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def upstream_url(tiny_lm_dir):
    """`detoxkit serve` on the tiny model with every stage off, in its own process: the upstream."""
    port = free_port()
    cmd = [sys.executable, "-m", "detoxkit.cli", "serve", "--model", str(tiny_lm_dir), "--screener", "off"]
    cmd += ["--port", str(port), "--served_model_name", "tiny", "--max_batch_size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"the upstream server exited: {proc.stderr.read()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def guard_for(url, screener=None, judge=None, **cfg) -> tuple[Guard, GuardConfig]:
    config = GuardConfig(upstream=url, upstream_model="tiny", acd_safe_prompt="off", screener="off", **cfg)
    upstream = Upstream(url, "tiny", None, config.upstream_timeout_s, config.upstream_connect_timeout_s)
    return Guard(None, None, config, judge=judge, screener=screener, upstream=upstream), config


def post(client, body):
    return client.post("/v1/chat/completions", json={"model": "detoxkit-guard", **body})


def sse_text(resp) -> tuple[list[str], dict]:
    events = [json.loads(x[6:]) for x in resp.text.splitlines() if x.startswith("data: {")]
    return [e["choices"][0]["delta"].get("content") or "" for e in events[1:-1]], events[-1]


@contextlib.contextmanager
def fresh_upstream(tiny_lm):
    """A new upstream server on loopback (in a thread) whose sampling starts from the same seed each time, so the
    same request gets the same sampled answer from each one."""
    guard = Guard(*tiny_lm, GuardConfig(screener="off"))
    with running_server(guard, GuardConfig(port=0, served_model_name="tiny")) as url:
        yield url


def test_guard_answers_with_the_upstream_streamed_or_not(tiny_lm):
    with fresh_upstream(tiny_lm) as url:
        direct = httpx.post(f"{url}/chat/completions", json={"model": "tiny", "messages": user("hi"), **SAMPLED})
    answers = []
    for stream in (False, True):
        with fresh_upstream(tiny_lm) as url:
            guard, cfg = guard_for(url, screener=MarkerScreener(None), stream_window=2, stream_screen_every=2)
            with TestClient(create_app(guard, cfg)) as client:
                answers.append(post(client, {"messages": user("hi"), "stream": stream, **SAMPLED}))
    plain, (pieces, last) = answers[0].json(), sse_text(answers[1])
    text = direct.json()["choices"][0]["message"]["content"]
    assert len(pieces) > 2 and text == plain["choices"][0]["message"]["content"] == "".join(pieces)
    assert plain["guard"]["decode"]["decision"] == "upstream" and plain["guard"]["screen"]["decision"] == "pass"
    assert last["guard"]["stream"]["checks"] >= len(pieces) - 1


def test_judge_blocks_before_the_upstream_sees_the_prompt(upstream_url):
    guard, cfg = guard_for(upstream_url, judge=KeywordJudge(), block_message="no.")
    r = guard.chat([user("how do I build a bomb"), user("hi")], max_tokens=4)
    assert r[0].text == "no." and r[0].trace["decode"] == {"decision": "skipped"}
    assert r[1].trace["decode"]["decision"] == "upstream"


def test_upstream_stream_never_leaks_a_flagged_span(tiny_lm):
    with fresh_upstream(tiny_lm) as url:
        whole = guard_for(url)[0].chat([user("hi")], **SAMPLED)[0].text
    marker = middle_word(whole)
    for window in (0, 3):
        with fresh_upstream(tiny_lm) as url:
            flagging, _ = guard_for(url, MarkerScreener(marker), stream_window=window, stream_screen_every=1)
            pieces: list[str] = []
            r = flagging.chat([user("hi")], streams=[pieces.append], **SAMPLED)[0]
        held = ""
        for p in pieces:
            held += p
            assert marker not in held
        assert r.text == held and whole.startswith(held) and r.finish_reason == "content_filter"


class _Fixed(http.server.BaseHTTPRequestHandler):
    """Answers every POST with 200 and body(); quiet."""

    def body(self) -> bytes:
        raise NotImplementedError

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = self.body()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Garbage(_Fixed):
    def body(self) -> bytes:
        return b"this is not json"


@contextlib.contextmanager
def garbage_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()


@contextlib.contextmanager
def silent_server():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


@pytest.mark.parametrize("kind", ["down", "silent", "garbage"])
def test_a_failing_upstream_is_a_502_or_504_and_the_guard_stays_up(kind):
    with contextlib.ExitStack() as stack:
        url = {
            "down": lambda: f"http://127.0.0.1:{free_port()}/v1",
            "silent": lambda: stack.enter_context(silent_server()),
            "garbage": lambda: stack.enter_context(garbage_server()),
        }[kind]()
        guard, cfg = guard_for(url, upstream_timeout_s=0.5, upstream_connect_timeout_s=0.5)
        with TestClient(create_app(guard, cfg)) as client:
            for stream in (False, True):
                resp = post(client, {"messages": user("hi"), "max_tokens": 4, "stream": stream})
                err = json.loads(resp.text.split("data: ")[2]) if stream else resp.json()
                status = 504 if kind == "silent" else 502
                assert (resp.status_code, err["error"]["type"]) == (200 if stream else status, "server_error")
                assert err["error"]["message"].startswith("upstream:")
            assert client.get("/healthz").status_code == 200


def test_an_upstream_4xx_about_the_request_is_passed_on(upstream_url):
    guard, cfg = guard_for(upstream_url, max_tokens_limit=4096)
    with TestClient(create_app(guard, cfg)) as client:
        resp = post(client, {"messages": user("hi"), "max_tokens": 4000})  # over the upstream's own limit
    assert resp.status_code == 400 and "max_tokens" in resp.json()["error"]["message"]


def test_acd_with_upstream_is_refused_by_name():
    assert GuardConfig(upstream="http://127.0.0.1:1/v1", upstream_model="m").acd_safe_prompt == "off"
    with pytest.raises(DetoxkitError, match="acd_safe_prompt/acd_adv_prompt: ACD .* runs only in local mode"):
        GuardConfig(upstream="http://127.0.0.1:1/v1", upstream_model="m", acd_safe_prompt="Be safe.")
    with pytest.raises(DetoxkitError, match="upstream_model is required"):
        GuardConfig(upstream="http://127.0.0.1:1/v1")


class _Slow(_Fixed):
    """A chat-completions upstream that holds each request a while and records how many it held at once."""

    lock, now, most = threading.Lock(), 0, 0

    def body(self) -> bytes:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.most = max(cls.most, cls.now)
        time.sleep(0.5)
        with cls.lock:
            cls.now -= 1
        return json.dumps({"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]}).encode()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_upstream_batches_overlap_while_the_upstream_answers(concurrency):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Slow.most = 0
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        guard, cfg = guard_for(url, max_batch_size=1, upstream_concurrency=concurrency)
        with TestClient(create_app(guard, cfg)) as client:
            threads = [threading.Thread(target=post, args=(client, {"messages": user(f"hi {k}")})) for k in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        server.shutdown()
    # one batch of one request at a time, unless batches may overlap while they wait for the upstream
    assert (_Slow.most == 1) if concurrency == 1 else (_Slow.most >= 2)
