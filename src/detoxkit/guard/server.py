"""`detoxkit serve`: the guard behind an OpenAI-compatible HTTP server (FastAPI + uvicorn).

Endpoints: POST /v1/chat/completions (``stream: true`` gives SSE chunks ending in ``data: [DONE]``), POST
/v1/moderations, GET /v1/models, GET /healthz (no key needed; 503 when the worker is dead or stuck), GET /metrics
(Prometheus text, no key needed; see ``ops``), GET / (the playground page in ``static/``, no key needed). Client
mistakes get a 4xx with OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``, the HTTP parser's
own 400s included; only a fault of the guard itself is a 500, and it fails that request alone.

Every request's work is bounded (messages, characters, prompt tokens against the model's context, moderation
inputs: each a config field, named in its 400) and has a deadline (``request_timeout_s``: 504); a full queue
(``max_queue``) or a key over ``rate_limit_rpm`` gets a 429 with Retry-After; work for a client that has gone is
dropped and logged "cancelled". The OpenAI shapes and input rules are in ``protocol``, the per-request checks and
waiting in ``service``, metrics, rate limits and JSON logs in ``ops``.

Streamed answers are sent as they decode, but only as far as the screener has passed them (a held-back window,
see ``streaming``): a guard cannot take back tokens it has already sent, so nothing leaves before it is screened.
``temperature`` defaults to 0 (greedy) rather than OpenAI's 1, so the same prompt gets the same screened answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Recipe
from .config import API_KEY_ENV, GuardConfig, is_off, resolve_api_key
from .ops import OPS, OpsMiddleware
from .pipeline import GREEDY_BELOW
from .protocol import APIError, ChatRequest, ModerationRequest, error_body
from .service import GuardService


def create_app(guard, cfg: GuardConfig):
    """The FastAPI app around one Guard; its lifespan starts the batching worker and drains it on shutdown."""
    service = GuardService(guard, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        service.start()
        app.state.batcher = service.batcher
        yield
        await service.stop()

    app = FastAPI(title="detoxkit guard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    _error_handlers(app)
    _playground(app)
    app.add_middleware(OpsMiddleware, metrics=service.metrics, log=lambda: service.request_log)

    @app.get("/healthz")
    async def healthz():
        h = service.batcher.health()
        body = {"status": "ok" if h["healthy"] else "unhealthy", "model": cfg.served_model_name, **h}
        return JSONResponse(body, status_code=200 if h["healthy"] else 503)

    @app.get("/metrics")
    async def metrics():
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(request: Request):
        service.authorize(request)
        return {
            "object": "list",
            "data": [
                {
                    "id": cfg.served_model_name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "detoxkit",
                    "root": cfg.model if cfg.upstream is None else cfg.upstream_model,
                }
            ],
        }

    @app.post("/v1/moderations")
    async def moderations(request: Request):
        return await _moderations(service, request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _chat(service, request)

    return app


# The playground's page may talk to this server only, and runs no inline script: model text that slipped into the
# page as markup could not run.
PLAYGROUND_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _playground(app) -> None:
    """GET / (the playground page) and GET /playground.js: static package data, no key needed (the page holds no
    secret; its API calls send the key the user types)."""
    from importlib.resources import files

    static = files("detoxkit.guard") / "static"

    @app.get("/", include_in_schema=False)
    async def playground():
        html = (static / "index.html").read_text(encoding="utf-8")
        return Response(html, media_type="text/html", headers=PLAYGROUND_HEADERS)

    @app.get("/playground.js", include_in_schema=False)
    async def playground_js():
        js = (static / "playground.js").read_text(encoding="utf-8")
        return Response(js, media_type="text/javascript", headers=PLAYGROUND_HEADERS)


def _error_handlers(app) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request, e: APIError):
        request.scope.setdefault(OPS, {})["error"] = e.code or e.type
        return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, e):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(
            error_body(str(e.detail), "invalid_request_error", None, code),
            status_code=e.status_code,
            headers=getattr(e, "headers", None),
        )  # 405 keeps its Allow header

    @app.exception_handler(Exception)
    async def _server_error(request, e):
        return JSONResponse(error_body(f"the guard failed: {type(e).__name__}: {e}", "server_error"), status_code=500)


async def _moderations(service: GuardService, request: Request) -> dict:
    cfg = service.cfg
    req, policy = await service.accept(request, ModerationRequest)
    texts = [req.input] if isinstance(req.input, str) else req.input
    service.check_texts(texts, "input", cfg.max_moderation_inputs, "max_moderation_inputs", "too_many_inputs")
    rid = request.scope.setdefault(OPS, {})["id"] = f"modr-{uuid.uuid4().hex}"
    payload = texts if policy is None else (texts, policy)
    job = service.submit("moderate", payload, {"id": rid, "endpoint": "moderations", "input": texts})
    return {"id": rid, "model": cfg.served_model_name, "results": await service.answer(job, request)}


async def _chat(service: GuardService, request: Request):
    cfg = service.cfg
    req, policy = await service.accept(request, ChatRequest)
    max_tokens = req.max_completion_tokens or req.max_tokens or cfg.max_new_tokens
    if max_tokens > cfg.max_tokens_limit:
        raise APIError(
            400,
            f"max_tokens is too large: {max_tokens}. This server allows at most "
            f"{cfg.max_tokens_limit} completion tokens.",
            param="max_tokens",
            code="invalid_value",
        )
    messages = [m.plain() for m in req.messages]
    if not any(m["role"] == "user" for m in messages):
        raise APIError(400, "messages must contain at least one user message", param="messages", code="invalid_value")
    service.check_texts(
        [m["content"] for m in messages], "messages", cfg.max_messages, "max_messages", "too_many_messages"
    )
    await service.check_prompt_tokens(messages, max_tokens)
    rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    ops = request.scope.setdefault(OPS, {})
    ops["id"] = rid
    temperature = req.temperature if req.temperature >= GREEDY_BELOW else 0.0
    top_p = req.top_p if temperature > 0 else 1.0  # greedy ignores top_p: do not split batches over it
    pieces: asyncio.Queue | None = asyncio.Queue() if req.stream else None
    job = service.submit(
        "chat",
        (messages, max_tokens, temperature, top_p, None if pieces is None else _emitter(pieces), policy),
        {"id": rid, "endpoint": "chat.completions", "messages": messages, "max_tokens": max_tokens},
    )
    head = {"id": rid, "created": created, "model": cfg.served_model_name}
    if req.stream:
        return StreamingResponse(
            _sse(head, service.answer(job, None), pieces, ops),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )
    r = await service.answer(job, request)
    ops["trace"] = r.trace
    return {
        **head,
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        },
        "guard": r.trace,
    }


def _emitter(pieces: asyncio.Queue):
    """The stream callback the worker thread calls with each screened piece: hands it to the event loop."""
    loop = asyncio.get_running_loop()
    return lambda text: loop.call_soon_threadsafe(pieces.put_nowait, text)


async def _sse(head: dict, answer, pieces: asyncio.Queue, ops: dict):
    """SSE events of one streamed answer: each screened piece as the worker releases it, then the finish chunk with
    the guard's trace. A client that disconnects cancels this generator (and its job). ops: the request's ops
    record (metrics, JSON log), which gets the trace once the answer is in."""

    def event(delta: dict, finish: str | None = None, **extra) -> str:
        chunk = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

    yield event({"role": "assistant", "content": ""})
    result = asyncio.ensure_future(answer)
    try:
        while not result.done():
            piece = asyncio.ensure_future(pieces.get())
            await asyncio.wait({piece, result}, return_when=asyncio.FIRST_COMPLETED)
            if not piece.done():
                piece.cancel()
            elif text := piece.result():
                yield event({"content": text})
        r = result.result()
    except Exception as e:  # headers are sent: the error travels as an event, as OpenAI's API does
        err = (
            error_body(e.message, e.type, e.param, e.code)
            if isinstance(e, APIError)
            else error_body(f"the guard failed: {type(e).__name__}: {e}", "server_error")
        )
        ops["error"] = err["error"]["code"] or err["error"]["type"]
        yield f"data: {json.dumps(err)}\n\n"
        yield "data: [DONE]\n\n"
        return
    finally:
        result.cancel()  # the client went away: the job is abandoned (no-op once answered)
    ops["trace"] = r.trace
    while not pieces.empty():  # the worker releases every piece before it sets the result
        if text := pieces.get_nowait():
            yield event({"content": text})
    yield event({}, r.finish_reason, guard=r.trace)
    yield "data: [DONE]\n\n"


class _OpenAIErrorH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, but its own 400s (a request the parser rejects) carry OpenAI's JSON error body."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps(
            error_body(f"Invalid HTTP request: {msg}", "invalid_request_error", None, "invalid_http_request")
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


# ------------------------------------------------------------------------------------------------ running it


def uvicorn_config(app, cfg: GuardConfig, log_level: str = "info"):
    """uvicorn settings shared by `detoxkit serve` and running_server: JSON parser errors, a bounded drain."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_level=log_level,
        access_log=False,
        http=_OpenAIErrorH11,
        timeout_graceful_shutdown=cfg.drain_timeout_s,
    )


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


def startup_lines(cfg: GuardConfig, api_key: str | None, source: str | None = None) -> list[str]:
    """What `detoxkit serve` prints before it listens: where the config came from, the pieces, the address,
    whether auth is on, warnings."""

    pieces = ", ".join(
        f"{k}={v}"
        for k, v in [
            ("judge", cfg.judge),
            ("acd", not is_off(cfg.acd_safe_prompt)),
            ("screener", cfg.screener),
            ("rewriter", cfg.rewriter),
        ]
    )
    auth = "on (bearer key)" if api_key else "off (no key)"
    answering = cfg.model if cfg.upstream is None else f"upstream {cfg.upstream_model} at {cfg.upstream}"
    lines = [
        f"detoxkit serve: {source + ': ' if source else ''}{answering} as `{cfg.served_model_name}` ({pieces}) on "
        f"http://{cfg.host}:{cfg.port}/v1, auth {auth}"
    ]
    if api_key is None and not is_loopback(cfg.host):
        lines.append(
            f"detoxkit serve: warning: {cfg.host} is reachable from other machines and no api_key is set: "
            f"anyone who can reach it can use the model (set api_key or ${API_KEY_ENV})"
        )
    return lines


def serve(cfg: GuardConfig, source: str | None = None) -> None:
    """`detoxkit serve`: load the guard, say what it serves (source: where cfg came from) and whether auth is on,
    and serve until SIGTERM."""
    import uvicorn

    from .pipeline import Guard

    api_key = resolve_api_key(cfg)  # before the model loads: a bad key fails at once
    guard = Guard.from_config(cfg)
    for i, line in enumerate(startup_lines(cfg, api_key, source)):
        print(line, file=sys.stderr if i else sys.stdout, flush=True)
    uvicorn.Server(uvicorn_config(create_app(guard, cfg), cfg)).run()


def serve_config(argv: list[str] | None, prog: str = "detoxkit serve") -> tuple[GuardConfig, str]:
    """The command line -> (GuardConfig, where it came from). --config is a guard YAML or a bundle folder; without
    it, the builtin bundle when it is built, else the defaults; flags override either."""
    from ..config import parse_flags
    from .bundle import builtin_bundle, load_guard_config

    config, flags = parse_flags(GuardConfig, argv, prog)
    # The builtin bundle's pieces (ACD's soft prompts above all) are trained on its own model: a command line that
    # names another model or an upstream starts from the defaults, as it did before there was a bundle.
    builtin = builtin_bundle() if config is None and not {"model", "upstream"} & flags.keys() else None
    if config is None and builtin is None:
        return GuardConfig(**flags), "defaults and flags"
    path = Path(config or builtin)
    what = "builtin guard bundle" if builtin else "guard bundle" if path.is_dir() else "config"
    return load_guard_config(path, **flags), f"{what} {path}"


@dataclasses.dataclass(frozen=True)
class _ServeRecipe(Recipe):
    """SERVE's command line resolves bundles (serve_config) rather than only YAML files; SERVE.run(cfg) is unchanged."""

    def main(self, argv: list[str], prog: str = "detoxkit serve") -> int:
        cfg, source = serve_config(argv, prog)
        serve(cfg, source)
        return 0


SERVE = _ServeRecipe(GuardConfig, serve)
