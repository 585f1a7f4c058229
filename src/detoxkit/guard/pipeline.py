"""The guard pipeline: judge the prompt, decode (ACD or plain), screen the answer, rewrite it if flagged.

Every stage is an object passed to :class:`Guard` (or built from a :class:`GuardConfig` by ``Guard.from_config``),
so tests and users can swap any of them:

- judge: ``predict_proba(prompts) -> list[float]`` (P(problematic)), e.g. ``detoxkit.adversarial.Judge``;
- screener: ``screener(texts, prompts) -> list[float]`` with a ``name``, e.g. ``detoxkit.scorers.get_scorer(...)``;
- rewriter: ``rewrite(texts) -> list[str]``, e.g. ``detoxkit.sro.Rewriter``;
- safe_prompt / adv_prompt: ACD's soft (or hard) system prompts; None decodes plainly with the chat template.

``Guard.chat`` takes a batch of chat-message lists and runs each stage once for the whole batch (one batched
forward per stage); it is not thread-safe, so the server gives it to one worker thread.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DetoxkitError
from .config import GuardConfig

# Temperatures below this are greedy (vLLM's rule): dividing logits by a subnormal number overflows to NaN.
GREEDY_BELOW = 1e-5


@dataclass
class ChatResult:
    """One request's answer and what every stage decided (``trace``, JSON-able)."""

    text: str
    finish_reason: str  # "stop", "length", or "content_filter" (blocked or withheld)
    prompt_tokens: int
    completion_tokens: int
    trace: dict = field(default_factory=dict)


def is_off(value) -> bool:
    """ "off" (also YAML's unquoted off, read as false) or None; "" is not off: it is ACD's null prompt."""
    return value is None or str(value).strip().lower() in ("off", "false", "none")


def last_user_message(messages: Sequence[dict]) -> str:
    """The text the judge and the screener look at: the newest user turn (the request being made now)."""
    for m in reversed(messages):
        if m["role"] == "user":
            return m["content"]
    raise DetoxkitError("a chat request needs at least one user message")


def acd_prompt(messages: Sequence[dict]) -> str:
    """ACD's soft prompts own the system slot, so a conversation becomes one user turn and system turns are dropped."""
    turns = [m for m in messages if m["role"] != "system"]
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in turns)


class Guard:
    """Judge -> decode -> screen -> rewrite, batched. ``Guard.from_config("configs/guard.yaml").chat([[msg]])``."""

    def __init__(
        self,
        model,
        tokenizer,
        config: GuardConfig | None = None,
        judge=None,
        screener=None,
        rewriter=None,
        safe_prompt=None,
        adv_prompt=None,
    ):
        import torch

        from ..acd.decode import as_soft_prompt

        self.model, self.tokenizer = model, tokenizer
        self.config = config or GuardConfig()
        self.judge, self.screener, self.rewriter = judge, screener, rewriter
        self.safe_prompt = as_soft_prompt(model, tokenizer, safe_prompt)
        self.adv_prompt = as_soft_prompt(model, tokenizer, adv_prompt)
        if self.adv_prompt is not None and self.safe_prompt is None:
            raise DetoxkitError("acd_adv_prompt needs an acd_safe_prompt to contrast with")
        self.generator = torch.Generator().manual_seed(self.config.seed)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # The server counts prompt tokens in its request threads while the worker decodes: on a copy of its own.
        self._counter, self._counter_lock = copy.deepcopy(tokenizer), threading.Lock()

    @classmethod
    def from_config(cls, cfg: GuardConfig | str | Path) -> "Guard":
        """Load every piece a config names (a GuardConfig or a YAML path); pieces naming the model share its weights."""
        from ..acd.decode import read_prompt_option
        from ..lm.load import load_model_and_tokenizer

        if not isinstance(cfg, GuardConfig):
            from ..config import load_yaml

            cfg = GuardConfig(**load_yaml(cfg, GuardConfig))
        # Prompt files are read first: a bad one fails before the model loads.
        safe = None if is_off(cfg.acd_safe_prompt) else read_prompt_option(cfg.acd_safe_prompt)
        adv = None if is_off(cfg.acd_adv_prompt) else read_prompt_option(cfg.acd_adv_prompt)
        model, tok = load_model_and_tokenizer(cfg.model, cfg.dtype, cfg.device)
        judge = screener = rewriter = None
        if not is_off(cfg.judge):
            from ..adversarial import Judge

            # A zero-shot judge on the answering model itself needs no second copy of the weights.
            judge = (
                Judge(model, tok, {"base_model": cfg.model})
                if cfg.judge == cfg.model
                else Judge.from_pretrained(cfg.judge, cfg.dtype, cfg.device)
            )
        if not is_off(cfg.screener):
            from ..scorers import get_scorer

            screener = get_scorer(cfg.screener)
        if not is_off(cfg.rewriter):
            from ..sro import Rewriter

            rewriter = (
                Rewriter(model, tok, max_new_tokens=cfg.rewrite_max_new_tokens, name=cfg.model)
                if cfg.rewriter == cfg.model
                else Rewriter.from_pretrained(cfg.rewriter, cfg.device, cfg.rewrite_max_new_tokens, cfg.dtype)
            )
        return cls(model, tok, cfg, judge, screener, rewriter, safe, adv)

    # ------------------------------------------------------------------------------------------------ stages

    @property
    def judge_threshold(self) -> float:
        if self.config.judge_threshold is not None:
            return self.config.judge_threshold
        return float(getattr(self.judge, "threshold", 0.5))

    @property
    def screener_threshold(self) -> float:
        if self.config.screener_threshold is not None:
            return self.config.screener_threshold
        return float(getattr(self.screener, "threshold", 0.5))

    def _render(self, messages: Sequence[dict], tokenizer=None) -> str:
        from ..lm.chat import render_messages

        return render_messages(tokenizer or self.tokenizer, messages)

    @property
    def context_length(self) -> int | None:
        """The answering model's context window in tokens (None if its config does not say)."""
        return getattr(self.model.config, "max_position_embeddings", None)

    def prompt_tokens(self, messages: Sequence[dict]) -> int:
        """Tokens of a conversation as the model sees it (chat template included). Thread-safe: the server calls
        it to refuse an oversized prompt before it reaches the worker."""
        with self._counter_lock:
            text = self._render(messages, self._counter)
            return len(self._counter(text, add_special_tokens=False)["input_ids"])

    def _decode_plain(self, messages_batch, limits, sampling, should_stop) -> list[list[int]]:
        from ..lm.generate import generate_ids

        prompts = [self.tokenizer(self._render(m), add_special_tokens=False)["input_ids"] for m in messages_batch]
        return generate_ids(
            self.model,
            self.tokenizer,
            prompts,
            max(limits),
            sampling,
            batch_size=len(prompts),
            limits=limits,
            should_stop=should_stop,
        )

    def _decode_acd(self, messages_batch, limits, sampling, should_stop) -> list[list[int]]:
        from ..acd.decode import Contrast, decode_steps
        from ..lm.generate import collect

        contrast = Contrast(self.config.acd_alpha, window=self.config.acd_window or None)
        return collect(
            decode_steps(
                self.model,
                self.tokenizer,
                [acd_prompt(m) for m in messages_batch],
                self.safe_prompt,
                self.adv_prompt,
                contrast,
                max(limits),
                sampling,
                should_stop=should_stop,
            ),
            len(messages_batch),
        )

    # ------------------------------------------------------------------------------------------------ API

    def chat(
        self,
        messages_batch: Sequence[Sequence[dict]],
        max_tokens: int | Sequence[int] | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[ChatResult]:
        """Answer a batch of conversations ({"role", "content"} dicts); temperature below 1e-5 is greedy.

        max_tokens: one limit for all, one per conversation, or None (config.max_new_tokens).
        should_stop: asked between decoding steps; True ends decoding early (the server's callers have all gone).
        """
        n = len(messages_batch)
        if max_tokens is None or isinstance(max_tokens, int):
            limits = [max_tokens or self.config.max_new_tokens] * n
        else:
            limits = list(max_tokens)
        turns = [_Turn(list(m), last_user_message(m), lim, {"batch_size": n}) for m, lim in zip(messages_batch, limits)]
        self._judge(turns)  # 1. a blocked request is never decoded
        todo = [t for t in turns if t.text is None]
        self._decode(turns, todo, 0.0 if temperature < GREEDY_BELOW else temperature, top_p, should_stop)
        flagged = self._screen(turns, todo)  # 3. screen the answers
        self._rewrite(flagged)  # 4. rewrite the flagged ones; a rewrite the screener still flags is withheld
        return [
            ChatResult(
                t.text,
                t.finish,
                len(self.tokenizer(self._render(t.messages), add_special_tokens=False)["input_ids"]),
                t.completion_tokens,
                t.trace,
            )
            for t in turns
        ]

    def _judge(self, turns: list["_Turn"]) -> None:
        if self.judge is None:
            for t in turns:
                t.trace["judge"] = {"decision": "off"}
            return
        t0, thr = time.perf_counter(), self.judge_threshold
        scores = self.judge.predict_proba([t.prompt for t in turns])
        late = self._past_deadline(t0, self.config.judge_deadline_ms)
        for t, p in zip(turns, scores):
            t.trace["judge"] = {"decision": "block" if p >= thr else "allow", "score": p, "threshold": thr}
            if late:
                self._late(t.trace["judge"], p >= thr)
            if t.trace["judge"]["decision"] in ("block", "timeout_blocked"):
                t.text, t.finish = self.config.block_message, "content_filter"
        self._timing(turns, "judge", t0)

    def _decode(self, turns, todo, temperature: float, top_p: float, should_stop) -> None:
        """2. The allowed requests in one batch (ACD when there is a safe prompt, else plain decoding)."""
        from ..lm.generate import GREEDY, Sampling, split_stop, stop_ids

        mode = "acd" if self.safe_prompt is not None else "plain"
        for t in turns:
            t.trace["decode"] = {"decision": "skipped"}
        if not todo:
            return
        t0 = time.perf_counter()
        decode = self._decode_acd if mode == "acd" else self._decode_plain
        sampling = Sampling(True, temperature, top_p, generator=self.generator) if temperature > 0 else GREEDY
        ids = decode([t.messages for t in todo], [t.limit for t in todo], sampling, should_stop)
        stops = stop_ids(self.model, self.tokenizer)
        for t, row in zip(todo, ids):
            cut, t.finish = split_stop(row, stops, t.limit)
            t.text, t.completion_tokens = self.tokenizer.decode(cut, skip_special_tokens=True).strip(), len(cut)
            t.trace["decode"] = {"decision": mode, "tokens": t.completion_tokens, "finish_reason": t.finish}
            if mode == "acd":
                t.trace["decode"].update(alpha=self.config.acd_alpha, contrast=self.adv_prompt is not None)
        self._timing(todo, "decode", t0)

    def _screen(self, turns, todo) -> list["_Turn"]:
        """The screener's score of every decoded answer; returns the flagged turns."""
        unscreened = self.screener is None or not todo
        for t in turns:
            t.trace["screen"] = {"decision": "off" if self.screener is None else "skipped"}
            t.trace["rewrite"] = {"decision": "off" if unscreened and self.rewriter is None else "skipped"}
        if unscreened:
            return []
        t0, thr = time.perf_counter(), self.screener_threshold
        name = getattr(self.screener, "name", "screener")
        flagged = []
        scores = self.screener([t.text for t in todo], [t.prompt for t in todo])
        late = self._past_deadline(t0, self.config.screen_deadline_ms)
        for t, s in zip(todo, scores):
            t.trace["screen"] = {
                "decision": "flag" if s >= thr else "pass",
                "scorer": name,
                "score": s,
                "threshold": thr,
            }
            t.trace["rewrite"] = {"decision": "not_needed"}
            if late and self._late(t.trace["screen"], s >= thr) == "timeout_blocked":
                t.trace["rewrite"] = {"decision": "skipped"}
                t.text, t.finish = self.config.block_message, "content_filter"  # withheld, not rewritten
            elif s >= thr:
                flagged.append(t)
        self._timing(todo, "screen", t0)
        return flagged

    @staticmethod
    def _past_deadline(t0: float, deadline_ms: float) -> bool:
        """Whether a stage that started at t0 has overrun its deadline (0: none). Checked once the stage returns:
        a forward cannot be interrupted, so a deadline bounds what the stage decides, not how long it runs."""
        return deadline_ms > 0 and (time.perf_counter() - t0) * 1000 > deadline_ms

    def _late(self, stage_trace: dict, flagged: bool) -> str:
        """Apply on_stage_timeout to one request of a batch that overran its stage's deadline: closed blocks it;
        open lets it through unless the (late, but known) verdict blocks or flags it. Returns the decision."""
        if self.config.on_stage_timeout == "closed":
            stage_trace["decision"] = "timeout_blocked"
        elif not flagged:
            stage_trace["decision"] = "timeout_allowed"
        stage_trace["deadline_exceeded"] = True
        return stage_trace["decision"]

    def _rewrite(self, flagged: list["_Turn"]) -> None:
        if not flagged:
            return
        t0, thr = time.perf_counter(), self.screener_threshold
        if self.rewriter is None:
            rewrites, after = [None] * len(flagged), [None] * len(flagged)
        else:
            rewrites = self.rewriter.rewrite([t.text for t in flagged])
            after = self.screener(rewrites, [t.prompt for t in flagged])
        for t, new, s in zip(flagged, rewrites, after):
            if new is not None and s < thr:
                t.trace["rewrite"] = {"decision": "rewritten", "score_after": s, "original": t.text}
                t.text = new
            else:
                t.trace["rewrite"] = {
                    "decision": "withheld" if new is None else "withheld_after_rewrite",
                    **({} if s is None else {"score_after": s, "rewrite": new}),
                }
                t.text, t.finish = self.config.block_message, "content_filter"
        if self.rewriter is not None:
            self._timing(flagged, "rewrite", t0)

    @staticmethod
    def _timing(turns: list["_Turn"], stage: str, t0: float) -> None:
        """The stage's wall time for the whole batch (shared by every request in it)."""
        dt = round(time.perf_counter() - t0, 4)
        for t in turns:
            t.trace[stage]["batch_seconds"] = dt

    def moderate(self, texts: Sequence[str]) -> list[dict]:
        """OpenAI moderation results: the screener's score of each text and the judge's P(problematic)."""
        texts = list(texts)
        scores: dict[str, tuple[list[float], float]] = {}
        if self.screener is not None:
            scores[getattr(self.screener, "name", "screener")] = (self.screener(texts), self.screener_threshold)
        if self.judge is not None:
            scores["harmful_request"] = (self.judge.predict_proba(texts), self.judge_threshold)
        results = []
        for k in range(len(texts)):
            cats = {name: s[k] >= thr for name, (s, thr) in scores.items()}
            results.append(
                {
                    "flagged": any(cats.values()),
                    "categories": cats,
                    "category_scores": {name: s[k] for name, (s, _) in scores.items()},
                }
            )
        return results


@dataclass
class _Turn:
    """One request on its way through the stages: what each stage needs and decides, in one place."""

    messages: list[dict]
    prompt: str  # what the judge and the screener look at
    limit: int
    trace: dict
    text: str | None = None  # None until the judge blocks it or the model answers
    finish: str = "stop"
    completion_tokens: int = 0
