"""`detoxkit serve`: the guard behind an OpenAI-compatible HTTP server (FastAPI + uvicorn).

Endpoints: POST /v1/chat/completions (``stream: true`` gives SSE chunks ending in ``data: [DONE]``), POST
/v1/moderations, GET /v1/models, GET /healthz (no key needed; 503 when the worker is dead or stuck). Client mistakes
get a 4xx with OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``, the HTTP parser's own 400s
included; only a fault of the guard itself is a 500, and it fails that request alone.

Input rules: the body must be UTF-8 JSON without NaN/Infinity, and a lone UTF-16 surrogate escape (``"\\ud800"``)
is rejected (400 ``invalid_unicode``) rather than replaced, so the text the judge sees is the text the client sent.
Field types are strict (``max_tokens: true`` or ``"5"`` is a 400). Every request's work is bounded (messages,
characters, prompt tokens against the model's context, moderation inputs: each a config field, named in its 400)
and has a deadline (``request_timeout_s``: 504); work for a client that has gone is dropped and logged "cancelled".

Streamed answers are sent after the screener has seen them: a guard cannot take back tokens it has already
streamed, so the stream opens at once (role chunk) and the screened (possibly rewritten) text follows in pieces.
``temperature`` defaults to 0 (greedy) rather than OpenAI's 1, so the same prompt gets the same screened answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import sys
import threading
import time
import uuid
from typing import Literal, Optional, Union

import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import API_KEY_ENV, GuardConfig, resolve_api_key
from .pipeline import GREEDY_BELOW


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers


# An answer sent before the body was read whole: the rest of the connection cannot be trusted, so it closes.
_CLOSE = {"Connection": "close"}


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------------ request schemas

class _Strict(BaseModel):
    # OpenAI clients send fields this server does not use (ignored); the ones it uses are typed strictly.
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Strict):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False


class ModerationRequest(_Strict):
    input: Union[str, list[str]]
    model: Optional[str] = None


def _validation_error(e: ValidationError) -> APIError:
    err = e.errors()[0]
    param = ".".join(str(x) for x in err["loc"]) or None
    return APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param, code="invalid_value")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate_at(data) -> str | None:
    """The path (e.g. "messages.0.content") of the first string holding a lone surrogate, walked without recursion."""
    stack = [("", data)]
    while stack:
        path, node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and not _valid_unicode(k):
                return path or "(body)"
            if isinstance(v, str):
                if not _valid_unicode(v):
                    return sub
            elif isinstance(v, (dict, list)):
                stack.append((sub, v))
    return None


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json_body(body: bytes):
    """A request body -> JSON value, or a 400 that says what is wrong (encoding, syntax, depth, surrogates)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise APIError(400, f"the request body is not valid UTF-8 (byte {e.start}: {e.reason})",
                       code="invalid_json") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise APIError(400, "the JSON body is nested too deeply", code="invalid_json") from None
    except ValueError as e:
        raise APIError(400, f"We could not parse the JSON body of your request: {e}", code="invalid_json") from None
    if _SURROGATE_ESCAPE.search(text) and (where := _lone_surrogate_at(data)) is not None:
        raise APIError(400, f"{where}: holds a lone UTF-16 surrogate escape (such as \\ud800), which is not valid "
                            "Unicode; send well-formed text", param=where, code="invalid_unicode")
    return data


# ------------------------------------------------------------------------------------------------ the app

def create_app(guard, cfg: GuardConfig):
    """The FastAPI app around one Guard; its lifespan starts the batching worker and drains it on shutdown."""
    from .batching import Batcher, DeadlineExceeded, ShuttingDown
    from .requestlog import RequestLog

    api_key = resolve_api_key(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        log = RequestLog(cfg.log_path) if cfg.log_path else None
        app.state.batcher = Batcher(guard, cfg.max_batch_size, cfg.batch_wait_ms / 1000, log,
                                    cfg.stall_timeout_s).start()
        yield
        # uvicorn has already waited (up to drain_timeout_s) for requests in flight; the worker finishes anything
        # still queued, but a stuck worker must not keep the process alive.
        await asyncio.to_thread(app.state.batcher.close, min(10.0, cfg.drain_timeout_s))

    app = FastAPI(title="detoxkit guard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(error_body(str(e.detail), "invalid_request_error", None, code), status_code=e.status_code,
                            headers=getattr(e, "headers", None))  # 405 keeps its Allow header

    @app.exception_handler(Exception)
    async def _server_error(request, e):
        return JSONResponse(error_body(f"the guard failed: {type(e).__name__}: {e}", "server_error"), status_code=500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), api_key.encode())):
            raise APIError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.",
                           code="invalid_api_key")

    async def read_json(request: Request, schema):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cfg.max_request_bytes:
            raise APIError(413, f"request body of {declared} bytes exceeds the limit of {cfg.max_request_bytes}",
                           code="request_too_large", headers=_CLOSE)
        body = bytearray()
        try:
            async with asyncio.timeout(cfg.body_timeout_s):
                async for chunk in request.stream():  # a body without a length is counted as it arrives
                    body += chunk
                    if len(body) > cfg.max_request_bytes:
                        raise APIError(413, f"request body exceeds the limit of {cfg.max_request_bytes} bytes",
                                       code="request_too_large", headers=_CLOSE)
        except TimeoutError:
            raise APIError(408, f"the request body did not arrive within {cfg.body_timeout_s:g} s (body_timeout_s)",
                           code="request_timeout", headers=_CLOSE) from None
        except ClientDisconnect:
            raise APIError(400, "the client disconnected while sending its body", code="client_disconnected") from None
        try:
            return schema.model_validate(parse_json_body(bytes(body)))
        except ValidationError as e:
            raise _validation_error(e) from None
        except RecursionError:
            raise APIError(400, "the JSON body is nested too deeply", code="invalid_json") from None

    def check_model(name: str | None) -> None:
        if name is not None and name != cfg.served_model_name:
            raise APIError(404, f"The model `{name}` does not exist (this server serves `{cfg.served_model_name}`).",
                           param="model", code="model_not_found")

    def check_texts(texts: list[str], param: str, limit: int, limit_name: str, code: str) -> None:
        if len(texts) > limit:
            raise APIError(400, f"{param}: {len(texts)} items; this server allows at most {limit} ({limit_name})",
                           param=param, code=code)
        for i, t in enumerate(texts):
            if len(t) > cfg.max_message_chars:
                raise APIError(400, f"{param}.{i}: {len(t)} characters; this server allows at most "
                                    f"{cfg.max_message_chars} per message (max_message_chars)",
                               param=f"{param}.{i}", code="message_too_long")

    async def check_prompt_tokens(messages: list[dict], max_tokens: int) -> None:
        n = await asyncio.to_thread(guard.prompt_tokens, messages)  # tokenizing 1 MB must not stall the event loop
        context = guard.context_length
        if n > cfg.max_prompt_tokens:
            raise APIError(400, f"messages: {n} prompt tokens; this server allows at most {cfg.max_prompt_tokens} "
                                "(max_prompt_tokens)", param="messages", code="context_length_exceeded")
        if context is not None and n + max_tokens > context:
            raise APIError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                                f"{n + max_tokens} tokens ({n} in the messages, {max_tokens} in the completion).",
                           param="messages", code="context_length_exceeded")

    def submit(kind: str, payload, log: dict):
        try:
            return app.state.batcher.submit(kind, payload, log, time.monotonic() + cfg.request_timeout_s)
        except ShuttingDown:
            raise APIError(503, "the server is shutting down", "server_error", code="shutting_down") from None

    async def answer(job, request: Request | None):
        """The job's result; 504 at its deadline; a disconnected client (or a cancelled stream) abandons it."""
        fut = asyncio.wrap_future(job.future)
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    Batcher.abandon(job, "deadline")
                    break
                done, _ = await asyncio.wait({fut}, timeout=min(_POLL_S, remaining))
                if done:
                    return fut.result()
                if request is not None and await request.is_disconnected():
                    Batcher.abandon(job, "client_disconnected")
                    raise APIError(400, "the client disconnected", code="client_disconnected")
        except asyncio.CancelledError:
            if request is None:  # a stream whose client went away
                Batcher.abandon(job, "client_disconnected")
                raise
            # A plain request is cancelled only by uvicorn when drain_timeout_s has run out: say so, in OpenAI's shape.
            Batcher.abandon(job, "shutdown")
            raise APIError(503, "the server shut down before this request was answered (drain_timeout_s)",
                           "server_error", code="shutting_down") from None
        except DeadlineExceeded:
            pass
        raise APIError(504, f"the guard did not answer within {cfg.request_timeout_s:g} s (request_timeout_s)",
                       "server_error", code="timeout")

    @app.get("/healthz")
    async def healthz():
        h = app.state.batcher.health()
        body = {"status": "ok" if h["healthy"] else "unhealthy", "model": cfg.served_model_name, **h}
        return JSONResponse(body, status_code=200 if h["healthy"] else 503)

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [{"id": cfg.served_model_name, "object": "model", "created": 0,
                                            "owned_by": "detoxkit", "root": cfg.model}]}

    @app.post("/v1/moderations")
    async def moderations(request: Request):
        authorize(request)
        req = await read_json(request, ModerationRequest)
        check_model(req.model)
        texts = [req.input] if isinstance(req.input, str) else req.input
        check_texts(texts, "input", cfg.max_moderation_inputs, "max_moderation_inputs", "too_many_inputs")
        rid = f"modr-{uuid.uuid4().hex}"
        results = await answer(submit("moderate", texts, {"id": rid, "endpoint": "moderations", "input": texts}),
                               request)
        return {"id": rid, "model": cfg.served_model_name, "results": results}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        authorize(request)
        req = await read_json(request, ChatRequest)
        check_model(req.model)
        max_tokens = req.max_completion_tokens or req.max_tokens or cfg.max_new_tokens
        if max_tokens > cfg.max_tokens_limit:
            raise APIError(400, f"max_tokens is too large: {max_tokens}. This server allows at most "
                                f"{cfg.max_tokens_limit} completion tokens.", param="max_tokens", code="invalid_value")
        messages = [m.plain() for m in req.messages]
        if not any(m["role"] == "user" for m in messages):
            raise APIError(400, "messages must contain at least one user message", param="messages",
                           code="invalid_value")
        check_texts([m["content"] for m in messages], "messages", cfg.max_messages, "max_messages",
                    "too_many_messages")
        await check_prompt_tokens(messages, max_tokens)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        temperature = req.temperature if req.temperature >= GREEDY_BELOW else 0.0
        top_p = req.top_p if temperature > 0 else 1.0  # greedy ignores top_p: do not split batches over it
        job = submit("chat", (messages, max_tokens, temperature, top_p),
                     {"id": rid, "endpoint": "chat.completions", "messages": messages, "max_tokens": max_tokens})
        head = {"id": rid, "created": created, "model": cfg.served_model_name}
        if req.stream:
            return StreamingResponse(_sse(head, answer(job, None)), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        r = await answer(job, request)
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                             "finish_reason": r.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                          "total_tokens": r.prompt_tokens + r.completion_tokens},
                "guard": r.trace}

    return app


_POLL_S = 0.25  # how often a waiting request checks that its client is still connected


async def _sse(head: dict, answer):
    """SSE events of one streamed answer. A client that disconnects cancels this generator (and its job)."""

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        r = await answer
    except Exception as e:  # headers are sent: the error travels as an event, as OpenAI's API does
        err = (error_body(e.message, e.type, e.param, e.code) if isinstance(e, APIError)
               else error_body(f"the guard failed: {type(e).__name__}: {e}", "server_error"))
        yield f"data: {json.dumps(err)}\n\n"
        yield "data: [DONE]\n\n"
        return
    for piece in re.findall(r"\s*\S+", r.text):
        yield event({"content": piece})
    yield event({}, r.finish_reason, guard=r.trace)
    yield "data: [DONE]\n\n"


class _OpenAIErrorH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, but its own 400s (a request the parser rejects) carry OpenAI's JSON error body."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(error_body(f"Invalid HTTP request: {msg}", "invalid_request_error", None,
                                     "invalid_http_request")).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


# ------------------------------------------------------------------------------------------------ running it

def uvicorn_config(app, cfg: GuardConfig, log_level: str = "info"):
    """uvicorn settings shared by `detoxkit serve` and running_server: JSON parser errors, a bounded drain."""
    import uvicorn

    return uvicorn.Config(app, host=cfg.host, port=cfg.port, log_level=log_level, access_log=False,
                          http=_OpenAIErrorH11, timeout_graceful_shutdown=cfg.drain_timeout_s)


@contextlib.contextmanager
def running_server(guard, cfg: GuardConfig):
    """Serve on cfg.host in a background thread (cfg.port 0: any free port); yields the base URL, e.g.
    "http://127.0.0.1:PORT/v1". Used by tests, the demo and benchmarks; on exit it shuts down gracefully."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(create_app(guard, cfg), cfg, log_level="warning"))
    thread = threading.Thread(target=server.run, name="guard-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the guard server did not start on {cfg.host}:{cfg.port}")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{cfg.host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def startup_lines(cfg: GuardConfig, api_key: str | None) -> list[str]:
    """What `detoxkit serve` prints before it listens: the pieces, the address, whether auth is on, warnings."""
    from .pipeline import is_off

    pieces = ", ".join(f"{k}={v}" for k, v in [("judge", cfg.judge), ("acd", not is_off(cfg.acd_safe_prompt)),
                                                ("screener", cfg.screener), ("rewriter", cfg.rewriter)])
    auth = "on (bearer key)" if api_key else "off (no key)"
    lines = [f"detoxkit serve: {cfg.model} as `{cfg.served_model_name}` ({pieces}) on "
             f"http://{cfg.host}:{cfg.port}/v1, auth {auth}"]
    if api_key is None and not is_loopback(cfg.host):
        lines.append(f"detoxkit serve: warning: {cfg.host} is reachable from other machines and no api_key is set: "
                     f"anyone who can reach it can use the model (set api_key or ${API_KEY_ENV})")
    return lines


def main(argv: list[str]) -> int:
    import uvicorn

    from ..config import parse_config
    from .pipeline import Guard

    cfg = parse_config(GuardConfig, argv, "detoxkit serve")
    api_key = resolve_api_key(cfg)  # before the model loads: a bad key fails at once
    guard = Guard.from_config(cfg)
    for i, line in enumerate(startup_lines(cfg, api_key)):
        print(line, file=sys.stderr if i else sys.stdout, flush=True)
    uvicorn.Server(uvicorn_config(create_app(guard, cfg), cfg)).run()
    return 0
