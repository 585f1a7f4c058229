"""Upstream mode: the answer comes from another OpenAI-compatible server (vLLM, TGI, llama.cpp, a hosted API).

The guard judges the conversation before the upstream sees it and screens (and rewrites) what comes back; a
streamed answer is screened as its deltas arrive, like a local one. Every way the upstream can fail becomes an
OpenAI-shaped error for that request alone: unreachable or answering 5xx/garbage -> 502, too slow -> 504, a 4xx
about the request (context too long, say) -> the same status with the upstream's message. httpx rather than the
``openai`` client: the guard needs the raw status, its own timeouts per phase and a stream it can stop between
chunks when its client has gone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import httpx

from .config import UPSTREAM_KEY_ENV
from .protocol import APIError


@dataclass
class UpstreamAnswer:
    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def _bad_gateway(message: str, code: str = "upstream_error") -> APIError:
    return APIError(502, f"upstream: {message}", "server_error", code=code)


class Upstream:
    """A client of one upstream chat-completions endpoint, shared by the worker's threads (httpx is thread-safe)."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float, connect_timeout_s: float):
        self.base_url, self.model = base_url.rstrip("/"), model
        key = api_key if api_key is not None else os.environ.get(UPSTREAM_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout_s = timeout_s
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s))

    def complete(
        self,
        messages: list[dict],
        max_tokens: int,
        temperature: float,
        top_p: float,
        on_delta: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> UpstreamAnswer:
        """The upstream's answer; with on_delta, streamed: each content delta is handed over as it arrives, and the
        stream is dropped as soon as should_stop() says so (finish "cancelled")."""
        body = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stream": on_delta is not None,
        }
        try:
            if on_delta is None:
                resp = self.client.post(f"{self.base_url}/chat/completions", json=body)
                _check(resp)
                return _parse_answer(resp)
            with self.client.stream("POST", f"{self.base_url}/chat/completions", json=body) as resp:
                if resp.status_code != 200:
                    resp.read()
                    _check(resp)
                return _read_stream(resp.iter_lines(), on_delta, should_stop)
        except httpx.TimeoutException:
            raise APIError(
                504,
                f"upstream: no answer within {self.timeout_s:g} s (upstream_timeout_s)",
                "server_error",
                code="timeout",
            ) from None
        except httpx.HTTPError as e:
            raise _bad_gateway(f"{type(e).__name__}: {e or 'connection failed'}", "upstream_unreachable") from None

    def close(self) -> None:
        self.client.close()


def _check(resp: httpx.Response) -> None:
    """A 4xx about the request goes back to the client as it is (the upstream's message); anything else not 200 is
    the upstream's fault or ours (its key, its model name): 502."""
    if resp.status_code == 200:
        return
    try:
        message = resp.json()["error"]["message"]
    except Exception:
        message = resp.text[:200] or resp.reason_phrase
    if resp.status_code in (400, 413, 422, 429):
        raise APIError(resp.status_code, f"upstream: {message}", code="upstream_rejected")
    raise _bad_gateway(f"HTTP {resp.status_code}: {message}")


def _parse_answer(resp: httpx.Response) -> UpstreamAnswer:
    try:
        data = resp.json()
        choice = data["choices"][0]
        text = choice["message"]["content"] or ""
        usage = data.get("usage") or {}
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        return UpstreamAnswer(
            text.strip(),
            choice.get("finish_reason") or "stop",
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
        )
    except Exception as e:
        raise _bad_gateway(f"not a chat completion ({type(e).__name__}: {e})", "upstream_bad_response") from None


def _read_stream(lines: Iterator[str], on_delta, should_stop) -> UpstreamAnswer:
    parts, finish, usage, events = [], "stop", {}, 0
    for line in lines:
        if should_stop is not None and should_stop():
            return UpstreamAnswer("".join(parts).strip(), "cancelled", completion_tokens=len(parts))
        if not line.startswith("data:"):
            continue
        data, events = line[5:].strip(), events + 1
        if data == "[DONE]":
            break
        try:
            chunk = json.loads(data)
            if "error" in chunk:
                raise _bad_gateway(f"error in the stream: {chunk['error'].get('message')}")
            usage = chunk.get("usage") or usage
            choices = chunk.get("choices") or []
            delta = (choices[0].get("delta") or {}).get("content") if choices else None
            finish = (choices[0].get("finish_reason") if choices else None) or finish
        except APIError:
            raise
        except Exception as e:
            raise _bad_gateway(
                f"not a chat completion chunk ({type(e).__name__}: {e})", "upstream_bad_response"
            ) from None
        if delta:
            parts.append(delta)
            on_delta(delta)
    if not events:
        raise _bad_gateway("the answer is not an event stream (no 'data:' lines)", "upstream_bad_response")
    return UpstreamAnswer(
        "".join(parts).strip(),
        finish,
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or len(parts)),
    )
