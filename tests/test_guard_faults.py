"""The guard server under faults (issue 13): a failing log, oversized work, hostile input, gone clients, stuck
workers, bad CLI input. Each test here failed on the server before these fixes."""

import errno
import json
import logging
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from test_guard import ConstScreener, KeywordJudge
from test_guard_server import CHAT, GatedGuard, error_of

from detoxkit.cli import main as cli_main
from detoxkit.errors import DetoxkitError
from detoxkit.guard import Guard, GuardConfig, requestlog
from detoxkit.guard.requestlog import RequestLog
from detoxkit.guard.server import create_app, running_server, startup_lines


@pytest.fixture(scope="module")
def guard(tiny_lm):
    return Guard(*tiny_lm, GuardConfig(), judge=KeywordJudge(), screener=ConstScreener(0.1))


def cfg(**kw):
    return GuardConfig(port=0, **kw)


def health(url):
    return httpx.get(f"{url[:-3]}/healthz", timeout=10)


def user(text):
    return {**CHAT, "messages": [{"role": "user", "content": text}]}


# ------------------------------------------------------------------------------------------ the log and the worker


def test_unwritable_log_answers_every_request_and_reports_it(guard, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with running_server(guard, cfg(log_path=str(blocker / "requests.jsonl"))) as url:
        statuses = [httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30).status_code for _ in range(3)]
        h = health(url)
    assert statuses == [200, 200, 200]
    assert h.status_code == 200 and h.json()["log"]["write_errors"] == 3 and h.json()["log"]["rows_backlogged"] == 3


def test_log_rolls_back_a_partial_row_and_catches_up_when_the_disk_recovers(tmp_path, monkeypatch):
    path = tmp_path / "requests.jsonl"
    log = RequestLog(path)
    assert log.write([{"id": 1}])
    real_write = requestlog.os.write

    def full_disk(fd, data):  # half the bytes land, then the disk is full
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(requestlog.os, "write", full_disk)
    assert not log.write([{"id": 2}, {"id": 3}])
    assert path.read_text() == '{"id": 1}\n'  # no partial row
    monkeypatch.setattr(requestlog.os, "write", real_write)
    assert log.write([{"id": 4}])
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == [1, 2, 3, 4]
    assert log.stats()["write_errors"] == 1 and log.stats()["rows_dropped"] == 0


def test_log_backlog_is_bounded(tmp_path):
    log = RequestLog(tmp_path / "file" / "x.jsonl", max_backlog=3)
    (tmp_path / "file").write_text("not a folder")
    for i in range(5):
        log.write([{"id": i}])
    assert log.stats()["rows_backlogged"] == 3 and log.stats()["rows_dropped"] == 2


class FailingGuard:
    """chat() raises what it is told for prompts that contain "boom"; BaseException kills a bare worker loop."""

    def __init__(self, guard, exc):
        self.guard, self.exc = guard, exc

    def chat(self, messages_batch, *args, **kwargs):
        if any("boom" in m[-1]["content"] for m in messages_batch):
            raise self.exc
        return self.guard.chat(messages_batch, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.guard, name)


@pytest.mark.parametrize("exc", [RuntimeError("scoring failed"), SystemExit(3)])
def test_worker_survives_a_failing_request(guard, exc):
    with running_server(FailingGuard(guard, exc), cfg()) as url:
        bad = httpx.post(f"{url}/chat/completions", json=user("boom"), timeout=30)
        good = httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30)
        h = health(url).json()
    error_of(bad, 500)
    assert good.status_code == 200 and h["status"] == "ok"
    assert h["failed"] + h["worker_errors"] == 1 and h["last_error"]


def test_healthz_reports_a_stuck_worker(guard):
    gated = GatedGuard(guard)
    with running_server(gated, cfg(stall_timeout_s=0.3)) as url:
        results = []
        t = threading.Thread(
            target=lambda: results.append(httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30))
        )
        t.start()
        assert gated.entered.wait(30)
        time.sleep(0.5)
        stuck = health(url)
        gated.gate.set()
        t.join()
        time.sleep(0.05)
        recovered = health(url)
    assert (
        stuck.status_code == 503 and stuck.json()["status"] == "unhealthy" and "no progress" in stuck.json()["reason"]
    )
    assert recovered.status_code == 200 and results[0].status_code == 200


def test_shutdown_is_bounded_when_the_worker_is_stuck(guard):
    gated = GatedGuard(guard, hold_s=120)
    results = []
    with running_server(gated, cfg(drain_timeout_s=1.0)) as url:
        t = threading.Thread(
            target=lambda: results.append(httpx.post(f"{url}/chat/completions", json=CHAT, timeout=60)), daemon=True
        )
        t.start()
        assert gated.entered.wait(30)
        t0 = time.monotonic()
    took = time.monotonic() - t0
    t.join(10)
    gated.gate.set()
    assert gated.returned.wait(30)  # a worker still decoding when the interpreter exits aborts the process
    assert took < 15, f"shutdown took {took:.1f} s with drain_timeout_s 1"
    error_of(results[0], 503, "shutting_down")


# ------------------------------------------------------------------------------------------ bounded work


@pytest.fixture(scope="module")
def client(guard):
    with TestClient(
        create_app(
            guard,
            cfg(
                max_messages=4,
                max_message_chars=100,
                max_prompt_tokens=120,
                max_moderation_inputs=3,
                max_tokens_limit=500,
            ),
        )
    ) as c:
        yield c


def test_limits_are_400s_naming_the_limit(client):
    many = {**CHAT, "messages": [{"role": "user", "content": "hi"}] * 5}
    assert (
        "max_messages" in error_of(client.post("/v1/chat/completions", json=many), 400, "too_many_messages")["message"]
    )
    long = user("a" * 101)
    err = error_of(client.post("/v1/chat/completions", json=long), 400, "message_too_long", "messages.0")
    assert "max_message_chars" in err["message"]
    tokens = {**CHAT, "messages": [{"role": "user", "content": "a b c d " * 12}] * 4}
    err = error_of(client.post("/v1/chat/completions", json=tokens), 400, "context_length_exceeded")
    assert "max_prompt_tokens" in err["message"]
    mods = client.post("/v1/moderations", json={"input": ["a"] * 4})
    assert "max_moderation_inputs" in error_of(mods, 400, "too_many_inputs")["message"]
    error_of(client.post("/v1/moderations", json={"input": "a" * 101}), 400, "message_too_long")


def test_prompt_plus_completion_must_fit_the_context(guard):
    # the tiny model's context is 512 tokens
    with TestClient(create_app(guard, cfg(max_tokens_limit=600))) as c:
        err = error_of(c.post("/v1/chat/completions", json={**CHAT, "max_tokens": 510}), 400, "context_length_exceeded")
        assert "maximum context length is 512" in err["message"]
        assert c.post("/v1/chat/completions", json={**CHAT, "max_tokens": 4}).status_code == 200


def test_huge_moderation_request_is_refused_fast(client):
    t0 = time.perf_counter()
    error_of(client.post("/v1/moderations", json={"input": ["a"] * 190_000}), 400, "too_many_inputs")
    assert time.perf_counter() - t0 < 5  # generous: the point is that no scoring happened


def test_deadline_gives_504_and_the_log_says_cancelled(guard, tmp_path):
    gated, log = GatedGuard(guard), tmp_path / "log.jsonl"
    with running_server(gated, cfg(request_timeout_s=0.5, log_path=str(log))) as url:
        first = []
        t = threading.Thread(target=lambda: first.append(httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30)))
        t.start()
        assert gated.entered.wait(30)
        queued = httpx.post(f"{url}/chat/completions", json=user("queued"), timeout=30)
        t.join()
        gated.gate.set()
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines() if log.exists() else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    error_of(first[0], 504, "timeout")
    error_of(queued, 504, "timeout")
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(r["status"] for r in rows) == ["cancelled", "cancelled"]
    assert ["queued"] not in gated.chat_calls  # dropped before it ran


def test_work_of_a_disconnected_client_is_dropped(guard, tmp_path):
    gated, log = GatedGuard(guard), tmp_path / "log.jsonl"
    with running_server(gated, cfg(log_path=str(log))) as url:
        first = []
        t = threading.Thread(target=lambda: first.append(httpx.post(f"{url}/chat/completions", json=CHAT, timeout=30)))
        t.start()
        assert gated.entered.wait(30)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while its request is queued
            httpx.post(f"{url}/chat/completions", json=user("gone"), timeout=0.5)
        time.sleep(0.6)  # the server notices within a poll
        gated.gate.set()
        t.join()
        deadline = time.monotonic() + 10
        while len(log.read_text().splitlines() if log.exists() else []) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert first[0].status_code == 200
    rows = {r["messages"][-1]["content"]: r for r in map(json.loads, log.read_text().splitlines())}
    assert rows["hi"]["status"] == "answered"
    assert rows["gone"]["status"] == "cancelled" and rows["gone"]["reason"] == "client_disconnected"
    assert ["gone"] not in gated.chat_calls


# ------------------------------------------------------------------------------------------ client mistakes


@pytest.fixture(scope="module")
def plain(guard):
    with TestClient(create_app(guard, cfg())) as c:
        yield c


@pytest.mark.parametrize(
    "body,code",
    [
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b'{"model": "detoxkit-guard", "messages": ' + b"[" * 990 + b"]" * 990 + b"}", None),
        (b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_unicode"),
        (b'{"model": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}', "invalid_unicode"),
        (b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "invalid_json"),
        (
            b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
            "invalid_json",
        ),
        (
            b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "max_tokens": true}',
            "invalid_value",
        ),
        (
            b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}',
            "invalid_value",
        ),
        (
            b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "temperature": true}',
            "invalid_value",
        ),
        (b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "hi"}], "stream": 1}', "invalid_value"),
    ],
)
def test_client_mistakes_are_400s(plain, body, code):
    error_of(plain.post("/v1/chat/completions", content=body), 400, code)


def test_a_paired_surrogate_escape_is_fine(plain):
    emoji = b'{"model": "detoxkit-guard", "messages": [{"role": "user", "content": "\\ud83d\\ude00"}], "max_tokens": 2}'
    assert plain.post("/v1/chat/completions", content=emoji).status_code == 200


def test_a_subnormal_temperature_is_greedy(plain):
    tiny = plain.post("/v1/chat/completions", json={**CHAT, "temperature": 1e-320}).json()
    greedy = plain.post("/v1/chat/completions", json=CHAT).json()
    assert tiny["choices"][0]["message"]["content"] == greedy["choices"][0]["message"]["content"]
    streamed = plain.post("/v1/chat/completions", json={**CHAT, "temperature": 1e-320, "stream": True}).text
    assert '"error"' not in streamed and streamed.rstrip().endswith("[DONE]")


def test_head_on_a_post_route_is_405_with_allow(plain):
    r = plain.head("/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_lowercase_bearer_scheme(guard):
    with TestClient(create_app(guard, cfg(api_key="k"))) as c:
        assert c.get("/v1/models", headers={"Authorization": "bearer k"}).status_code == 200


def _raw(port: int, data: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_parser_errors_and_silent_bodies_over_a_socket(guard):
    handler_records = []

    class Catch(logging.Handler):
        def emit(self, record):
            handler_records.append(record.getMessage())

    catch = Catch()
    logging.getLogger("uvicorn.error").addHandler(catch)
    try:
        with running_server(guard, cfg(body_timeout_s=0.5)) as url:
            port = int(url.split(":")[2].split("/")[0])
            garbage = _raw(port, b"GARBAGE \x00\x01\r\n\r\n")
            head, _, body = garbage.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "invalid_http_request"
            t0 = time.monotonic()
            silent = _raw(
                port,
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"mo',
            )
            assert silent.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 5
            assert b"request_timeout" in silent
            with socket.create_connection(("127.0.0.1", port)) as s:  # a client that drops mid-body
                s.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mo')
            time.sleep(0.3)
            assert health(url).status_code == 200
    finally:
        logging.getLogger("uvicorn.error").removeHandler(catch)
    assert not [m for m in handler_records if "Exception in ASGI application" in m], handler_records


# ------------------------------------------------------------------------------------------ the command line


def _serve_error(capsys, *argv) -> str:
    assert cli_main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_cli_config_mistakes_are_one_line_exit_2(tmp_path, capsys, tiny_lm_dir):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(bytes(range(128, 256)) * 4)
    assert "junk.yaml" in _serve_error(capsys, "--config", str(junk))
    listed = tmp_path / "listed.yaml"
    listed.write_text("max_batch_size: [1, 2]\n")
    assert "max_batch_size" in _serve_error(capsys, "--config", str(listed))
    assert str(tmp_path) in _serve_error(capsys, "--config", str(tmp_path))
    fake = tmp_path / "prompt.safetensors"
    fake.write_bytes(b"\x00\x01 not safetensors")
    assert "prompt.safetensors" in _serve_error(
        capsys, "--model", str(tiny_lm_dir), "--screener", "off", "--acd_safe_prompt", str(fake)
    )
    assert "notes.txt" in _serve_error(
        capsys, "--model", str(tiny_lm_dir), "--screener", "off", "--acd_safe_prompt", "notes.txt"
    )
    assert "api_key" in _serve_error(capsys, "--api_key", "")


def test_empty_key_in_the_environment_is_an_error(guard, monkeypatch):
    monkeypatch.setenv("DETOXKIT_API_KEY", "")
    with pytest.raises(DetoxkitError, match="DETOXKIT_API_KEY"):
        create_app(guard, cfg())


def test_startup_says_whether_auth_is_on_and_warns_on_an_open_bind():
    lines = startup_lines(GuardConfig(host="0.0.0.0"), None)
    assert "auth off" in lines[0] and any("warning" in x and "0.0.0.0" in x for x in lines)
    assert startup_lines(GuardConfig(), "k")[0].endswith("auth on (bearer key)")
    assert len(startup_lines(GuardConfig(), None)) == 1


def test_a_prompt_text_file_is_read(tiny_lm, tmp_path):
    from detoxkit.acd.decode import as_soft_prompt

    (tmp_path / "notes.txt").write_text("Be kind.\n")
    from_file = as_soft_prompt(*tiny_lm, tmp_path / "notes.txt")
    from_text = as_soft_prompt(*tiny_lm, "Be kind.")
    assert from_file.embeddings.equal(from_text.embeddings)
