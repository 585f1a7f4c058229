"""`detoxkit serve`: the guard behind an OpenAI-compatible HTTP server (FastAPI + uvicorn).

Endpoints: POST /v1/chat/completions (``stream: true`` gives SSE chunks ending in ``data: [DONE]``), POST
/v1/moderations, GET /v1/models, GET /healthz (no key needed). Client mistakes get a 4xx with OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}``; only a fault of the guard itself is a 500.

Streamed answers are sent after the screener has seen them: a guard cannot take back tokens it has already
streamed, so the stream opens at once (role chunk) and the screened (possibly rewritten) text follows in pieces.
``temperature`` defaults to 0 (greedy) rather than OpenAI's 1, so the same prompt gets the same screened answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from typing import Literal, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .config import API_KEY_ENV, GuardConfig


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


# ------------------------------------------------------------------------------------------------ request schemas

class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields this server does not use


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class Message(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(_Lenient):
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False


class ModerationRequest(_Lenient):
    input: Union[str, list[str]]
    model: Optional[str] = None


def _validation_error(e: ValidationError) -> APIError:
    err = e.errors()[0]
    param = ".".join(str(x) for x in err["loc"]) or None
    return APIError(400, f"{param}: {err['msg']}" if param else err["msg"], param=param, code="invalid_value")


# ------------------------------------------------------------------------------------------------ the app

def create_app(guard, cfg: GuardConfig):
    """The FastAPI app around one Guard; its lifespan starts the batching worker and drains it on shutdown."""
    from .batching import Batcher, ShuttingDown

    api_key = cfg.api_key or os.environ.get(API_KEY_ENV) or None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.state.batcher = Batcher(guard, cfg.max_batch_size, cfg.batch_wait_ms / 1000, cfg.log_path).start()
        yield
        # uvicorn has already waited for in-flight requests; the worker finishes anything still queued.
        await asyncio.to_thread(app.state.batcher.close)

    app = FastAPI(title="detoxkit guard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(error_body(str(e.detail), "invalid_request_error", None, code), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _server_error(request, e):
        return JSONResponse(error_body(f"the guard failed: {type(e).__name__}: {e}", "server_error"), status_code=500)

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        got = request.headers.get("authorization", "")
        if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].encode(), api_key.encode())):
            raise APIError(401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.",
                           code="invalid_api_key")

    async def read_json(request: Request, schema):
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cfg.max_request_bytes:
            raise APIError(413, f"request body of {declared} bytes exceeds the limit of {cfg.max_request_bytes}",
                           code="request_too_large")
        body = bytearray()
        async for chunk in request.stream():  # a body without a length is counted as it arrives
            body += chunk
            if len(body) > cfg.max_request_bytes:
                raise APIError(413, f"request body exceeds the limit of {cfg.max_request_bytes} bytes",
                               code="request_too_large")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise APIError(400, f"We could not parse the JSON body of your request: {e}", code="invalid_json") from None
        try:
            return schema.model_validate(data)
        except ValidationError as e:
            raise _validation_error(e) from None

    def check_model(name: str | None) -> None:
        if name is not None and name != cfg.served_model_name:
            raise APIError(404, f"The model `{name}` does not exist (this server serves `{cfg.served_model_name}`).",
                           param="model", code="model_not_found")

    def submit(kind: str, payload, log: dict):
        try:
            return asyncio.wrap_future(app.state.batcher.submit(kind, payload, log))
        except ShuttingDown:
            raise APIError(503, "the server is shutting down", "server_error", code="shutting_down") from None

    @app.get("/healthz")
    async def healthz():
        b = app.state.batcher
        return {"status": "ok", "model": cfg.served_model_name, "queued": b.queue.qsize(),
                "batches": sum(b.batch_sizes.values()), "max_batch_size_seen": b.max_batch_seen}

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
        rid = f"modr-{uuid.uuid4().hex}"
        results = await submit("moderate", texts, {"id": rid, "endpoint": "moderations", "input": texts})
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
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        top_p = req.top_p if req.temperature > 0 else 1.0  # greedy ignores top_p: do not split batches over it
        future = submit("chat", (messages, max_tokens, req.temperature, top_p),
                        {"id": rid, "endpoint": "chat.completions", "messages": messages, "max_tokens": max_tokens})
        head = {"id": rid, "created": created, "model": cfg.served_model_name}
        if req.stream:
            return StreamingResponse(_sse(head, future), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        r = await future
        return {**head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                             "finish_reason": r.finish_reason, "logprobs": None}],
                "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                          "total_tokens": r.prompt_tokens + r.completion_tokens},
                "guard": r.trace}

    return app


async def _sse(head: dict, future):
    """SSE events of one streamed answer. A client that disconnects cancels this generator (and its queued job)."""

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {**head, "object": "chat.completion.chunk",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        r = await future
    except Exception as e:  # headers are sent: the error travels as an event, as OpenAI's API does
        yield f"data: {json.dumps(error_body(f'the guard failed: {e}', 'server_error'))}\n\n"
        yield "data: [DONE]\n\n"
        return
    for piece in re.findall(r"\s*\S+", r.text):
        yield event({"content": piece})
    yield event({}, r.finish_reason, guard=r.trace)
    yield "data: [DONE]\n\n"


# ------------------------------------------------------------------------------------------------ running it

@contextlib.contextmanager
def running_server(guard, cfg: GuardConfig):
    """Serve on cfg.host in a background thread (cfg.port 0: any free port); yields the base URL, e.g.
    "http://127.0.0.1:PORT/v1". Used by tests, the demo and benchmarks; on exit it shuts down gracefully."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(guard, cfg), host=cfg.host, port=cfg.port, log_level="warning",
                                           access_log=False))
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


def main(argv: list[str]) -> int:
    import uvicorn

    from ..config import parse_config
    from .pipeline import Guard, is_off

    cfg = parse_config(GuardConfig, argv, "detoxkit serve")
    guard = Guard.from_config(cfg)
    pieces = ", ".join(f"{k}={v}" for k, v in [("judge", cfg.judge), ("acd", not is_off(cfg.acd_safe_prompt)),
                                                ("screener", cfg.screener), ("rewriter", cfg.rewriter)])
    print(f"detoxkit serve: {cfg.model} as `{cfg.served_model_name}` ({pieces}) on http://{cfg.host}:{cfg.port}/v1",
          flush=True)
    uvicorn.run(create_app(guard, cfg), host=cfg.host, port=cfg.port, log_level="info", access_log=False)
    return 0
