"""Operating the guard server: Prometheus metrics, per-key rate limits, and one JSON log line per request.

- :class:`GuardMetrics` owns a per-app ``CollectorRegistry`` (several apps in one process never collide) and is
  what ``GET /metrics`` serves: requests by endpoint and status, end-to-end latency, stage decisions and latencies
  (read from each answer's trace), batch sizes, the queue's depth, stage deadlines and 429 rejections.
- :class:`TokenBucket`: ``rate_limit_rpm`` requests a minute per key, refilled continuously, bursts of up to that.
- :func:`request_logger`: the ``detoxkit.guard.requests`` logger with a handler writing :class:`JsonFormatter` lines.
- :class:`OpsMiddleware`: a pure ASGI middleware that times each request, reads its status as it is sent (a stream
  is timed to its last byte) and then records the metrics and the log line. Handlers add what they know (request
  id, trace, key id) to the dict at ``scope[OPS]``.

API keys never reach a metric or a log: only :func:`key_id`, a truncated SHA-256 of the key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import threading
import time
import uuid
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import Headers

OPS = "detoxkit.ops"  # the ASGI scope key of a request's ops record
ENDPOINTS = ("/v1/chat/completions", "/v1/moderations", "/v1/models", "/healthz", "/metrics")
STAGES = ("judge", "decode", "screen", "rewrite")
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
REQUEST_LOGGER = "detoxkit.guard.requests"


def key_id(token: str | None) -> str | None:
    """A stable, non-reversible id of an API key for logs and rate limits (never the key itself)."""
    if not token:
        return None
    return "key-" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def bearer(headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class GuardMetrics:
    def __init__(self, queue_depth: Callable[[], float] | None = None):
        self.registry = r = CollectorRegistry()
        p = "detoxkit_guard_"
        self.requests = Counter(
            p + "requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            p + "request_seconds", "end-to-end request latency", ["endpoint"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.decisions = Counter(
            p + "decisions",
            "stage decisions per request (category: the trace's category, or the screener's scorer)",
            ["stage", "decision", "category"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            p + "stage_seconds",
            "a stage's time on the batch a request was in (the trace's batch_seconds), one sample per request",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            p + "batch_size", "requests per chat batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r
        )
        self.queue_depth = Gauge(p + "queue_depth", "requests waiting for the batching worker", registry=r)
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        self.stage_timeouts = Counter(
            p + "stage_timeouts",
            "requests whose stage overran its deadline, by what on_stage_timeout made of them",
            ["stage", "outcome"],
            registry=r,
        )
        self.rejected = Counter(p + "rejected", "429s by reason (queue_full, rate_limited)", ["reason"], registry=r)

    def observe_trace(self, trace: dict) -> None:
        for stage in STAGES:
            t = trace.get(stage)
            if not isinstance(t, dict):
                continue
            category = str(t.get("category", t.get("scorer", "")))
            self.decisions.labels(stage, str(t.get("decision")), category).inc()
            if "batch_seconds" in t:
                self.stage_seconds.labels(stage).observe(t["batch_seconds"])
            if t.get("deadline_exceeded"):
                blocked = t.get("decision") in ("timeout_blocked", "block", "flag")
                self.stage_timeouts.labels(stage, "blocked" if blocked else "allowed").inc()


class TokenBucket:
    """Per-key token buckets: `per_minute` requests a minute, refilled continuously, bursts of up to `per_minute`.

    ``take(key)`` spends a token and returns 0.0, or returns the seconds until one is there (and spends nothing).
    Full buckets are forgotten once more than ``max_keys`` keys are tracked, so memory stays bounded."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.capacity, self.rate, self.clock, self.max_keys = float(per_minute), per_minute / 60.0, clock, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._forget_full(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        for k, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self.rate >= self.capacity:
                del self._buckets[k]


def retry_after_header(seconds: float) -> dict:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the record's ``fields`` dict merged in."""

    def format(self, record: logging.LogRecord) -> str:
        row = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(row, ensure_ascii=False, default=str)


def request_logger(path: str | None) -> tuple[logging.Logger, logging.Handler]:
    """The request logger with a JSON handler on `path` (appended) or stderr; remove the handler when done."""
    handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # JSON lines stay JSON: not repeated by handlers of the root logger
    logger.addHandler(handler)
    return logger, handler


class OpsMiddleware:
    """Times every HTTP request and records its metrics and (when `log` is set) its JSON log line."""

    def __init__(self, app, metrics: GuardMetrics, log: Callable[[], logging.Logger | None]):
        self.app, self.metrics, self.log = app, metrics, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]  # no response at all: the server error handler's 500
        ops = scope[OPS] = {}

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:  # answered as a 500 by the server error handler outside this middleware
            ops.setdefault("error", "server_error")
            raise
        finally:
            self._record(scope, ops, status[0], time.perf_counter() - t0)

    def _record(self, scope, ops: dict, status: int, seconds: float) -> None:
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        m = self.metrics
        m.requests.labels(endpoint, str(status)).inc()
        m.latency.labels(endpoint).observe(seconds)
        trace = ops.get("trace") or {}
        m.observe_trace(trace)
        logger = self.log()
        if logger is None:
            return
        fields = {
            "request_id": ops.get("id") or f"req-{uuid.uuid4().hex}",
            "endpoint": endpoint,
            "method": scope.get("method"),
            "status": status,
            "latency_s": round(seconds, 4),
            "key_id": key_id(bearer(Headers(scope=scope))),
            "decisions": {s: t.get("decision") for s, t in trace.items() if isinstance(t, dict)},
        }
        if "error" in ops:
            fields["error"] = ops["error"]
        logger.info("request", extra={"fields": fields})
