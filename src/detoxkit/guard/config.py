"""Config of the guard (`detoxkit serve`): which pieces run, their thresholds, and the server's limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..config import Default, DeviceArgs, SeedArgs, arg, with_defaults
from ..errors import DetoxkitError

BLOCK_MESSAGE = "I can't help with that request."
API_KEY_ENV = "DETOXKIT_API_KEY"


@dataclass
@with_defaults(seed=Default(0, "random seed of sampled answers (requests with temperature > 0)"))
class GuardConfig(SeedArgs, DeviceArgs):
    """detoxkit serve: the guard (judge -> safe decoding -> screen -> rewrite) behind an OpenAI-compatible server.

    Each request's last user message goes to the adversarial judge; a prompt it scores at or above the threshold
    gets block_message. Otherwise the model answers, with Adversarial Contrastive Decoding when safe/adversarial
    prompts are given (plain decoding otherwise); the screener scores the answer, and a flagged answer is rewritten
    by the SRO rewriter (and withheld if the rewrite is flagged too). Any piece can be "off". Endpoints:
    POST /v1/chat/completions (stream or not), POST /v1/moderations, GET /v1/models, GET /healthz. Concurrent
    requests are batched into one forward by a single worker thread (max_batch_size, batch_wait_ms).
    """

    model: str = arg(
        "smollm2-135m-instruct",
        "the answering model: builtin name, local folder (e.g. one fine-tuned "
        "with `detoxkit attribute train`) or hub id",
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
    max_new_tokens: int = arg(128, "answer length when a request gives no max_tokens")
    max_tokens_limit: int = arg(512, "requests asking for more tokens than this get a 400")
    log_path: Optional[str] = arg(None, "append every request (messages, answer, trace) to this JSONL file")
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
        ):
            if getattr(self, name) < 1:
                raise DetoxkitError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("request_timeout_s", "body_timeout_s", "stall_timeout_s", "drain_timeout_s"):
            if not getattr(self, name) > 0:
                raise DetoxkitError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise DetoxkitError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.api_key is not None and not self.api_key.strip():
            raise DetoxkitError("api_key is empty: give a key, or leave it unset (null) to serve without one")


def resolve_api_key(cfg: GuardConfig) -> str | None:
    """The bearer key clients must send: the config's, else ${API_KEY_ENV}; an empty one is an error, not "none"."""
    if cfg.api_key is not None:
        return cfg.api_key
    key = os.environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        raise DetoxkitError(f"${API_KEY_ENV} is set but empty: give a key, or unset it to serve without one")
    return key
