"""What the server does for each request, apart from HTTP: the key check, reading the body within its limits and
deadline, the per-request work limits, handing the work to the batching worker and waiting for it (504 at the
deadline; a client that has gone abandons its work)."""

from __future__ import annotations

import asyncio
import hmac
import time

from starlette.requests import ClientDisconnect, Request

from .batching import Batcher, DeadlineExceeded, QueueFull, ShuttingDown
from .config import GuardConfig, resolve_api_key
from .ops import GuardMetrics, TokenBucket, bearer, key_id, request_logger, retry_after_header
from .protocol import APIError, validate

# An answer sent before the body was read whole: the rest of the connection cannot be trusted, so it closes.
CLOSE = {"Connection": "close"}
POLL_S = 0.25  # how often a waiting request checks that its client is still connected


class GuardService:
    def __init__(self, guard, cfg: GuardConfig):
        self.guard, self.cfg = guard, cfg
        self.api_key = resolve_api_key(cfg)
        self.tenants: dict = {}  # API key -> (policy name or None, policies it may choose)
        if cfg.policy_file is not None:
            from .policy import resolve_tenants

            self.tenants = resolve_tenants(cfg.tenants, guard.policies, cfg.policy, cfg.policy_choices)
        self.batcher: Batcher | None = None
        self.metrics = GuardMetrics(queue_depth=lambda: 0 if self.batcher is None else self.batcher.queue.qsize())
        self.limiter = TokenBucket(cfg.rate_limit_rpm) if cfg.rate_limit_rpm else None
        self.request_log = self._log_handler = None  # the JSON request logger while json_logs is on and serving

    def start(self) -> None:
        from .requestlog import RequestLog

        cfg = self.cfg
        log = RequestLog(cfg.log_path) if cfg.log_path else None
        self.batcher = Batcher(
            self.guard,
            cfg.max_batch_size,
            cfg.batch_wait_ms / 1000,
            log,
            cfg.stall_timeout_s,
            max_queue=cfg.max_queue,
            on_batch=self.metrics.batch_size.observe,
            concurrency=cfg.upstream_concurrency if getattr(self.guard, "upstream", None) is not None else 1,
        ).start()
        if cfg.json_logs:
            self.request_log, self._log_handler = request_logger(cfg.json_log_path)

    async def stop(self) -> None:
        # uvicorn has already waited (up to drain_timeout_s) for requests in flight; the worker finishes anything
        # still queued, but a stuck worker must not keep the process alive.
        await asyncio.to_thread(self.batcher.close, min(10.0, self.cfg.drain_timeout_s))
        if self._log_handler is not None:
            self.request_log.removeHandler(self._log_handler)
            self._log_handler.close()
            self.request_log = self._log_handler = None

    def authorize(self, request: Request) -> None:
        keys = ([self.api_key] if self.api_key is not None else []) + list(self.tenants)
        if not keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip().encode()
        # every key is compared (no early exit), so the time taken does not say which one nearly matched
        matches = [hmac.compare_digest(given, k.encode()) for k in keys]
        if not (scheme.lower() == "bearer" and any(matches)):
            raise APIError(
                401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.", code="invalid_api_key"
            )

    def rate_limit(self, request: Request) -> None:
        """rate_limit_rpm per API key (per client address when the server has no key): a 429 with Retry-After."""
        if self.limiter is None:
            return
        if self.api_key is not None or self.tenants:
            who = key_id(bearer(request.headers))
        else:
            who = f"client:{request.client.host if request.client else 'unknown'}"
        wait = self.limiter.take(who)
        if wait > 0:
            self.metrics.rejected.labels("rate_limited").inc()
            raise APIError(
                429,
                f"Rate limit reached: {self.cfg.rate_limit_rpm} requests per minute (rate_limit_rpm). "
                f"Please try again in {wait:.1f}s.",
                "requests",
                code="rate_limit_exceeded",
                headers=retry_after_header(wait),
            )

    def policy_for(self, request: Request) -> str | None:
        """The request's policy name: the X-Detoxkit-Policy header's choice if its key may make it (403 if not, 400
        for a policy the server does not have), else its key's policy (tenants), else None (config.policy)."""
        from .policy import POLICY_HEADER

        if self.cfg.policy_file is None:
            return None
        own, may = self.tenants.get(bearer(request.headers) or "", (None, tuple(self.cfg.policy_choices)))
        chosen = request.headers.get(POLICY_HEADER)
        if chosen is None:
            return own
        if chosen not in self.guard.policies:
            raise APIError(
                400,
                f"unknown policy {chosen!r} in the {POLICY_HEADER} header",
                param=POLICY_HEADER,
                code="policy_not_found",
            )
        if chosen != (own or self.cfg.policy) and chosen not in may:
            raise APIError(
                403,
                f"this API key may not choose the policy {chosen!r} (it may choose: {', '.join(may) or 'none'})",
                "permission_error",
                param=POLICY_HEADER,
                code="policy_not_allowed",
            )
        return chosen

    async def read(self, request: Request, schema):
        """The body, within max_request_bytes (413) and body_timeout_s (408), validated against `schema` (400)."""
        limit = self.cfg.max_request_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise APIError(
                413,
                f"request body of {declared} bytes exceeds the limit of {limit}",
                code="request_too_large",
                headers=CLOSE,
            )
        body = bytearray()
        try:
            async with asyncio.timeout(self.cfg.body_timeout_s):
                async for chunk in request.stream():  # a body without a length is counted as it arrives
                    body += chunk
                    if len(body) > limit:
                        raise APIError(
                            413,
                            f"request body exceeds the limit of {limit} bytes",
                            code="request_too_large",
                            headers=CLOSE,
                        )
        except TimeoutError:
            raise APIError(
                408,
                f"the request body did not arrive within {self.cfg.body_timeout_s:g} s (body_timeout_s)",
                code="request_timeout",
                headers=CLOSE,
            ) from None
        except ClientDisconnect:
            raise APIError(400, "the client disconnected while sending its body", code="client_disconnected") from None
        return validate(schema, bytes(body))

    async def accept(self, request: Request, schema):
        """What every API request goes through before its own checks: the key, the rate limit, the policy it may
        use, its body within limits, and the model it names -> (the validated body, the policy or None)."""
        self.authorize(request)
        self.rate_limit(request)
        policy = self.policy_for(request)
        req = await self.read(request, schema)
        self.check_model(req.model)
        return req, policy

    def check_model(self, name: str | None) -> None:
        served = self.cfg.served_model_name
        if name is not None and name != served:
            raise APIError(
                404,
                f"The model `{name}` does not exist (this server serves `{served}`).",
                param="model",
                code="model_not_found",
            )

    def check_texts(self, texts: list[str], param: str, limit: int, limit_name: str, code: str) -> None:
        if len(texts) > limit:
            raise APIError(
                400,
                f"{param}: {len(texts)} items; this server allows at most {limit} ({limit_name})",
                param=param,
                code=code,
            )
        most = self.cfg.max_message_chars
        for i, t in enumerate(texts):
            if len(t) > most:
                raise APIError(
                    400,
                    f"{param}.{i}: {len(t)} characters; this server allows at most {most} per "
                    "message (max_message_chars)",
                    param=f"{param}.{i}",
                    code="message_too_long",
                )

    async def check_prompt_tokens(self, messages: list[dict], max_tokens: int) -> None:
        n = await asyncio.to_thread(self.guard.prompt_tokens, messages)  # 1 MB of text must not stall the event loop
        if n is None:  # an upstream answers: it counts tokens with its own tokenizer and enforces its context
            return
        context, most = self.guard.context_length, self.cfg.max_prompt_tokens
        if n > most:
            raise APIError(
                400,
                f"messages: {n} prompt tokens; this server allows at most {most} (max_prompt_tokens)",
                param="messages",
                code="context_length_exceeded",
            )
        if context is not None and n + max_tokens > context:
            raise APIError(
                400,
                f"This model's maximum context length is {context} tokens. However, you requested "
                f"{n + max_tokens} tokens ({n} in the messages, {max_tokens} in the completion).",
                param="messages",
                code="context_length_exceeded",
            )

    def submit(self, kind: str, payload, log: dict):
        try:
            return self.batcher.submit(kind, payload, log, time.monotonic() + self.cfg.request_timeout_s)
        except ShuttingDown:
            raise APIError(503, "the server is shutting down", "server_error", code="shutting_down") from None
        except QueueFull as e:
            self.metrics.rejected.labels("queue_full").inc()
            raise APIError(
                429,
                f"The server is busy: {e}. Please try again shortly.",
                "requests",
                code="queue_full",
                headers=retry_after_header(self.batcher.batch_seconds),
            ) from None

    async def answer(self, job, request: Request | None):
        """The job's result; 504 at its deadline; a disconnected client (or a cancelled stream) abandons it."""
        fut = asyncio.wrap_future(job.future)
        try:
            while (remaining := job.deadline - time.monotonic()) > 0:
                done, _ = await asyncio.wait({fut}, timeout=min(POLL_S, remaining))
                if done:
                    return fut.result()
                if request is not None and await request.is_disconnected():
                    Batcher.abandon(job, "client_disconnected")
                    raise APIError(400, "the client disconnected", code="client_disconnected")
            Batcher.abandon(job, "deadline")
        except asyncio.CancelledError:
            if request is None:  # a stream whose client went away
                Batcher.abandon(job, "client_disconnected")
                raise
            # A plain request is cancelled only by uvicorn when drain_timeout_s has run out: say so, in OpenAI's shape.
            Batcher.abandon(job, "shutdown")
            raise APIError(
                503,
                "the server shut down before this request was answered (drain_timeout_s)",
                "server_error",
                code="shutting_down",
            ) from None
        except DeadlineExceeded:
            pass
        raise APIError(
            504,
            f"the guard did not answer within {self.cfg.request_timeout_s:g} s (request_timeout_s)",
            "server_error",
            code="timeout",
        )
