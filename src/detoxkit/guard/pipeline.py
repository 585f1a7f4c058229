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
        if temperature < GREEDY_BELOW:
            temperature = 0.0
        n = len(messages_batch)
        if max_tokens is None or isinstance(max_tokens, int):
            limits = [max_tokens or self.config.max_new_tokens] * n
        else:
            limits = list(max_tokens)
        prompts = [last_user_message(m) for m in messages_batch]
        traces: list[dict] = [{"batch_size": n} for _ in range(n)]
        texts: list[str | None] = [None] * n
        finish = ["stop"] * n
        completion_tokens = [0] * n

        # 1. Judge the prompt: a blocked request is never decoded.
        t0 = time.perf_counter()
        if self.judge is None:
            for tr in traces:
                tr["judge"] = {"decision": "off"}
        else:
            thr = self.judge_threshold
            for i, p in enumerate(self.judge.predict_proba(prompts)):
                traces[i]["judge"] = {"decision": "block" if p >= thr else "allow", "score": p, "threshold": thr}
                if p >= thr:
                    texts[i], finish[i] = self.config.block_message, "content_filter"
            self._timing(traces, "judge", t0)

        # 2. Decode the allowed requests in one batch.
        todo = [i for i in range(n) if texts[i] is None]
        mode = "acd" if self.safe_prompt is not None else "plain"
        t0 = time.perf_counter()
        if todo:
            from ..lm.generate import GREEDY, Sampling, split_stop, stop_ids

            decode = self._decode_acd if mode == "acd" else self._decode_plain
            sampling = Sampling(True, temperature, top_p, generator=self.generator) if temperature > 0 else GREEDY
            ids = decode([messages_batch[i] for i in todo], [limits[i] for i in todo], sampling, should_stop)
            stops = stop_ids(self.model, self.tokenizer)
            for i, row in zip(todo, ids):
                cut, finish[i] = split_stop(row, stops, limits[i])
                texts[i] = self.tokenizer.decode(cut, skip_special_tokens=True).strip()
                completion_tokens[i] = len(cut)
        for i in range(n):
            traces[i]["decode"] = (
                {"decision": mode, "tokens": completion_tokens[i], "finish_reason": finish[i]}
                if i in todo
                else {"decision": "skipped"}
            )
            if mode == "acd" and i in todo:
                traces[i]["decode"].update(alpha=self.config.acd_alpha, contrast=self.adv_prompt is not None)
        if todo:
            self._timing([traces[i] for i in todo], "decode", t0)

        # 3. Screen the answers, 4. rewrite the flagged ones (a rewrite the screener still flags is withheld).
        self._screen_and_rewrite(todo, prompts, texts, finish, traces)
        prompt_tokens = [
            len(self.tokenizer(self._render(m), add_special_tokens=False)["input_ids"]) for m in messages_batch
        ]
        return [ChatResult(texts[i], finish[i], prompt_tokens[i], completion_tokens[i], traces[i]) for i in range(n)]

    def _screen_and_rewrite(self, todo, prompts, texts, finish, traces) -> None:
        if self.screener is None or not todo:
            for i in range(len(traces)):
                traces[i]["screen"] = {"decision": "off" if self.screener is None else "skipped"}
                traces[i]["rewrite"] = {"decision": "off" if self.rewriter is None else "skipped"}
            return
        thr = self.screener_threshold
        t0 = time.perf_counter()
        scores = self.screener([texts[i] for i in todo], [prompts[i] for i in todo])
        flagged = []
        for i in range(len(traces)):
            traces[i]["screen"] = {"decision": "skipped"}
            traces[i]["rewrite"] = {"decision": "skipped"}
        for i, s in zip(todo, scores):
            traces[i]["screen"] = {
                "decision": "flag" if s >= thr else "pass",
                "scorer": getattr(self.screener, "name", "screener"),
                "score": s,
                "threshold": thr,
            }
            traces[i]["rewrite"] = {"decision": "not_needed"}
            if s >= thr:
                flagged.append(i)
        self._timing([traces[i] for i in todo], "screen", t0)
        if not flagged:
            return
        t0 = time.perf_counter()
        if self.rewriter is None:
            rewrites, after = [None] * len(flagged), [None] * len(flagged)
        else:
            rewrites = self.rewriter.rewrite([texts[i] for i in flagged])
            after = self.screener(rewrites, [prompts[i] for i in flagged])
        for i, new, s in zip(flagged, rewrites, after):
            if new is not None and s < thr:
                traces[i]["rewrite"] = {"decision": "rewritten", "score_after": s, "original": texts[i]}
                texts[i] = new
            else:
                traces[i]["rewrite"] = {
                    "decision": "withheld" if new is None else "withheld_after_rewrite",
                    **({} if s is None else {"score_after": s, "rewrite": new}),
                }
                texts[i], finish[i] = self.config.block_message, "content_filter"
        if self.rewriter is not None:
            self._timing([traces[i] for i in flagged], "rewrite", t0)

    @staticmethod
    def _timing(traces: list[dict], stage: str, t0: float) -> None:
        """The stage's wall time for the whole batch (shared by every request in it)."""
        dt = round(time.perf_counter() - t0, 4)
        for tr in traces:
            tr[stage]["batch_seconds"] = dt

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
