"""Config of the guard (`detoxkit serve`): which pieces run, their thresholds, and the server's limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional

from ..config import Default, DeviceArgs, SeedArgs, arg, with_defaults
from ..errors import DetoxkitError

BLOCK_MESSAGE = "I can't help with that request."
API_KEY_ENV = "DETOXKIT_API_KEY"
UPSTREAM_KEY_ENV = "DETOXKIT_UPSTREAM_API_KEY"


@dataclass
@with_defaults(seed=Default(0, "random seed of sampled answers (requests with temperature > 0)"))
class GuardConfig(SeedArgs, DeviceArgs):
    """detoxkit serve: the guard (judge -> safe decoding -> screen -> rewrite) behind an OpenAI-compatible server.

    Each request's newest user turns (max_turns) go to the adversarial judge; a conversation it scores at or above
    the threshold gets block_message. Otherwise the model answers, with Adversarial Contrastive Decoding when
    safe/adversarial prompts are given (plain decoding otherwise); the screener scores the answer, and a flagged
    answer is rewritten by the SRO rewriter (and withheld if the rewrite is flagged too). Any piece can be "off".
    A streamed answer is screened while it decodes and sent only as far as the screener has passed it (stream_*
    fields): the client never receives a span the screener flags. Endpoints:
    POST /v1/chat/completions (stream or not), POST /v1/moderations, GET /v1/models, GET /healthz. Concurrent
    requests are batched into one forward by a single worker thread (max_batch_size, batch_wait_ms). Operations:
    GET /metrics (Prometheus, no key needed), a bounded queue (max_queue), per-key rate limits (rate_limit_rpm),
    judge/screener deadlines (judge_deadline_ms, screen_deadline_ms, on_stage_timeout) and JSON request logs.

    --config takes a guard YAML or a guard bundle folder (its guard.yaml, paths inside the folder). With no --config,
    no --model and no --upstream, the builtin bundle (src/detoxkit/guards/smollm2-135m) is served when it has been
    built; flags override the fields it sets.
    """

    model: str = arg(
        "smollm2-135m-instruct",
        "the answering model: builtin name, local folder (e.g. one fine-tuned "
        "with `detoxkit attribute train`) or hub id; unused when upstream is set",
    )
    upstream: Optional[str] = arg(
        None,
        "answer with another OpenAI-compatible server instead of a local model, e.g. http://127.0.0.1:8080/v1 "
        "(vLLM, TGI, llama.cpp, a hosted API): the judge screens the conversation first, the screener and rewriter "
        "what comes back. ACD needs the model's logits, so it runs only in local mode (acd_safe_prompt must be off)",
    )
    upstream_model: Optional[str] = arg(None, "the model name sent to the upstream (required with upstream)")
    upstream_api_key: Optional[str] = arg(None, f"bearer key for the upstream (default: ${UPSTREAM_KEY_ENV} if set)")
    upstream_timeout_s: float = arg(60.0, "an upstream silent for this long (per read) gives the request a 504")
    upstream_connect_timeout_s: float = arg(5.0, "an upstream not accepting a connection within this gives a 502")
    upstream_concurrency: int = arg(
        1,
        "upstream mode: batches in flight at once, so the next batch is judged while the last awaits the upstream. "
        "Raise it when the upstream runs on other hardware; with the upstream on the guard's own CPU, 4 made "
        "latency worse than 1 (benchmarks/results/guard.json)",
    )
    served_model_name: str = arg("detoxkit-guard", "the model id clients send and /v1/models lists")
    judge: str = arg(
        "off",
        "prompt judge: an adversarial run folder or checkpoint (`detoxkit adversarial run`), any "
        "causal LM used zero-shot, or off",
    )
    judge_threshold: Optional[float] = arg(
        None, "block prompts the judge scores at or above this (None: the threshold saved with the judge)"
    )
    acd_safe_prompt: str = arg(
        "off",
        "ACD safeguarding prompt: a tuned .safetensors (`detoxkit acd tune`), a text "
        "used as a hard system prompt, or off (plain decoding)",
    )
    acd_adv_prompt: str = arg("off", "ACD adversarial prompt (.safetensors or text); off: the safe prompt alone")
    acd_alpha: float = arg(0.5, "ACD contrast strength α")
    acd_window: int = arg(0, "contrast only the first N tokens, then the safe branch alone (0: every token)")
    screener: str = arg("toxicity", "answer screener: a detoxkit scorer name (toxicity, harm, profanity, ...) or off")
    screener_threshold: Optional[float] = arg(
        None, "an answer scoring at or above this is flagged (None: the scorer's own threshold)"
    )
    rewriter: str = arg(
        "off",
        "rewriter of flagged answers: an SRO rewriter folder (`detoxkit sro train`), any causal "
        "LM (prompted zero-shot), or off (a flagged answer is withheld)",
    )
    rewrite_max_new_tokens: int = arg(64, "length limit of a rewrite")
    block_message: str = arg(BLOCK_MESSAGE, "the answer when the judge blocks a prompt or a flagged answer is withheld")
    max_turns: int = arg(
        3,
        "user turns the judge and the screener see: the newest ones, joined, back to (not including) the last "
        "one the guard refused; 1 = the newest user message alone. More turns catch a request split over turns",
    )
    stream_window: int = arg(
        4, "streaming: tokens held back behind the screened text, unsent, so a span the screener flags is never sent"
    )
    stream_screen_every: int = arg(
        4,
        "streaming: the screener checks the text so far every this many tokens, the first time as soon as one token "
        "has cleared the held-back window",
    )
    stream_on_flag: Literal["stop", "rewrite"] = arg(
        "rewrite",
        "streaming: when the screener flags an answer partway, stop it there, or rewrite the part not yet sent "
        "(with the rewriter; without one, stop)",
    )
    categories: str = arg(
        "off",
        "category head (harmful_request, harassment, hate, ...) scoring prompts and answers for policies and "
        "/v1/moderations' OpenAI categories: builtin (the packaged head), a .safetensors path, or off",
    )
    policy_file: Optional[str] = arg(
        None, "YAML of named policies: per-category thresholds and actions for prompts and answers (needs categories)"
    )
    policy: Optional[str] = arg(None, "the policy of requests whose key names none (None: no policy)")
    tenants: dict = arg(
        {},
        "API key -> policy name, or -> {policy: NAME, may_choose: [NAMES]}; every key listed here is accepted "
        "besides api_key. A request picks one of its key's may_choose policies with the X-Detoxkit-Policy header",
    )
    policy_choices: list[str] = arg(
        [], "policies a request whose key is not a tenant may pick with the X-Detoxkit-Policy header"
    )
    max_new_tokens: int = arg(128, "answer length when a request gives no max_tokens")
    max_tokens_limit: int = arg(512, "requests asking for more tokens than this get a 400")
    log_path: Optional[str] = arg(None, "append every request (messages, answer, trace) to this JSONL file")
    json_logs: bool = arg(
        False, "log one JSON line per request (id, endpoint, status, latency, stage decisions, hashed key id)"
    )
    json_log_path: Optional[str] = arg(None, "where json_logs go: this file (appended), or stderr when unset")
    host: str = arg("127.0.0.1", "address to bind (loopback by default; 0.0.0.0 exposes the server)")
    port: int = arg(8000, "port to bind")
    api_key: Optional[str] = arg(None, f"bearer key clients must send (default: ${API_KEY_ENV} if set, else none)")
    max_request_bytes: int = arg(1_000_000, "larger request bodies get a 413")
    max_prompt_tokens: int = arg(
        4096,
        "a conversation longer than this in tokens (chat template included) gets a "
        "400; prompt + max_tokens must also fit the model's context",
    )
    max_messages: int = arg(64, "a chat request with more messages gets a 400")
    max_message_chars: int = arg(32_000, "a message (or moderation input) longer than this in characters gets a 400")
    max_moderation_inputs: int = arg(128, "a moderation request with more inputs gets a 400")
    request_timeout_s: float = arg(
        120.0, "a request not answered within this many seconds gets a 504 and its work is dropped"
    )
    body_timeout_s: float = arg(30.0, "a client that takes longer than this to send its body gets a 408")
    stall_timeout_s: float = arg(
        120.0, "/healthz reports unhealthy (503) when the worker has work but has shown no progress for this long"
    )
    drain_timeout_s: float = arg(
        30.0, "on SIGTERM, requests in flight get this long to finish before the process exits anyway"
    )
    max_batch_size: int = arg(8, "requests decoded together in one batch (1: no dynamic batching)")
    batch_wait_ms: float = arg(10.0, "how long the worker waits for more requests after the first one of a batch")
    max_queue: int = arg(
        256,
        "requests waiting for the batching worker; one more gets a 429 with Retry-After (0: no limit)",
    )
    rate_limit_rpm: int = arg(
        0,
        "chat and moderation requests a minute per API key (per client address when no api_key is set), "
        "bursts of up to that many; one more gets a 429 with Retry-After (0: no limit)",
    )
    judge_deadline_ms: float = arg(
        0.0,
        "a batch the judge takes longer than this on is decided by on_stage_timeout (0: no deadline). The "
        "judge is not interrupted mid-forward (it cannot be on a CPU): the deadline is checked when it returns",
    )
    screen_deadline_ms: float = arg(
        0.0,
        "a batch the screener takes longer than this on is decided by on_stage_timeout (0: no deadline); "
        "checked when the screener returns, as for judge_deadline_ms",
    )
    on_stage_timeout: Literal["open", "closed"] = arg(
        "closed",
        "a stage past its deadline: closed blocks the batch's requests (content_filter, trace decision "
        "timeout_blocked); open lets them through (timeout_allowed), except those the late verdict blocks or flags",
    )

    def __post_init__(self):
        for name in (
            "max_new_tokens",
            "max_tokens_limit",
            "max_request_bytes",
            "max_prompt_tokens",
            "max_messages",
            "max_message_chars",
            "max_moderation_inputs",
            "max_batch_size",
            "rewrite_max_new_tokens",
            "max_turns",
            "stream_screen_every",
            "upstream_concurrency",
        ):
            if getattr(self, name) < 1:
                raise DetoxkitError(f"{name} must be at least 1, got {getattr(self, name)}")
        self._check_upstream()
        for name in (
            "request_timeout_s",
            "body_timeout_s",
            "stall_timeout_s",
            "drain_timeout_s",
            "upstream_timeout_s",
            "upstream_connect_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise DetoxkitError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.stream_window < 0:
            raise DetoxkitError(f"stream_window must be >= 0, got {self.stream_window}")
        if self.batch_wait_ms < 0:
            raise DetoxkitError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        for name in ("max_queue", "rate_limit_rpm", "judge_deadline_ms", "screen_deadline_ms"):
            if not getattr(self, name) >= 0:
                raise DetoxkitError(f"{name} must be >= 0 (0: off), got {getattr(self, name)}")
        if self.on_stage_timeout not in ("open", "closed"):
            raise DetoxkitError(f"on_stage_timeout must be open or closed, got {self.on_stage_timeout!r}")
        if self.json_log_path is not None and not self.json_logs:
            raise DetoxkitError("json_log_path is set but json_logs is off: turn json_logs on, or unset the path")
        if self.policy_file is not None and is_off(self.categories):
            raise DetoxkitError("policy_file needs a category head: set categories (e.g. builtin)")
        if self.policy_file is None and (self.policy or self.tenants or self.policy_choices):
            raise DetoxkitError("policy, tenants and policy_choices name policies: set policy_file too")
        if self.api_key is not None and not self.api_key.strip():
            raise DetoxkitError("api_key is empty: give a key, or leave it unset (null) to serve without one")

    def _check_upstream(self) -> None:
        if self.upstream is None:
            return
        if not self.upstream.startswith(("http://", "https://")):
            raise DetoxkitError(f"upstream must be an http:// or https:// URL ending in /v1, got {self.upstream!r}")
        if not self.upstream_model:
            raise DetoxkitError("upstream_model is required with upstream: the model name the upstream serves")
        if not is_off(self.acd_safe_prompt) or not is_off(self.acd_adv_prompt):
            raise DetoxkitError(
                "acd_safe_prompt/acd_adv_prompt: ACD contrasts the answering model's logits, which an upstream "
                "server does not expose; it runs only in local mode. Set both off to use upstream"
            )


def is_off(value) -> bool:
    """ "off" (also YAML's unquoted off, read as false) or None; "" is not off: it is ACD's null prompt."""
    return value is None or str(value).strip().lower() in ("off", "false", "none")


def resolve_api_key(cfg: GuardConfig) -> str | None:
    """The bearer key clients must send: the config's, else ${API_KEY_ENV}; an empty one is an error, not "none"."""
    if cfg.api_key is not None:
        return cfg.api_key
    key = os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise DetoxkitError(f"${API_KEY_ENV} is set but empty: give a key, or unset it to serve without one")
    return key
