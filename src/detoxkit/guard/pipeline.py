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

import contextlib
import copy
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import DetoxkitError
from .config import GuardConfig, is_off
from .protocol import APIError
from .streaming import HeldBackStream, join_text, screen_streams, token_text

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


def conversation_prompt(messages: Sequence[dict], max_turns: int = 1, refusal: str | None = None) -> str:
    """What the judge and the screener look at: the newest `max_turns` user turns, oldest first, one per line.

    A turn the guard already refused (the assistant's reply that follows it is `refusal`) and everything before it
    are left out: that request was dealt with, and must not block the benign one that comes after it. Joining the
    turns lets the judge see a harmful request split over several of them."""
    turns: list[str] = []
    for k in range(len(messages) - 1, -1, -1):
        m = messages[k]
        if m["role"] == "assistant" and refusal is not None and m["content"].strip() == refusal.strip() and turns:
            break
        if m["role"] == "user":
            turns.append(m["content"])
            if len(turns) == max_turns:
                break
    if not turns:
        raise DetoxkitError("a chat request needs at least one user message")
    return "\n".join(reversed(turns))


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
        upstream=None,
        categorizer=None,
        policies=None,
    ):
        """model/tokenizer: the answering model, or None with `upstream` (a :class:`~.upstream.Upstream`).
        categorizer: texts -> [{category: score}] (:class:`~detoxkit.scorers.categories.CategoryScorer`); policies:
        name -> :class:`~.policy.Policy`, applied to requests that name one (or config.policy)."""
        import torch

        from ..acd.decode import as_soft_prompt

        self.model, self.tokenizer, self.upstream = model, tokenizer, upstream
        self.config = config or GuardConfig()
        self.judge, self.screener, self.rewriter = judge, screener, rewriter
        self.categorizer, self.policies = categorizer, dict(policies or {})
        if self.policies and categorizer is None:
            raise DetoxkitError("policies need a category head (categories) to score prompts and answers")
        if upstream is not None and (safe_prompt is not None or adv_prompt is not None):
            raise DetoxkitError("ACD needs the answering model's logits: it runs only in local mode, not upstream")
        self.safe_prompt = as_soft_prompt(model, tokenizer, safe_prompt)
        self.adv_prompt = as_soft_prompt(model, tokenizer, adv_prompt)
        if self.adv_prompt is not None and self.safe_prompt is None:
            raise DetoxkitError("acd_adv_prompt needs an acd_safe_prompt to contrast with")
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._stage_lock = threading.Lock()  # upstream answers are screened from several threads
        self._counter = None
        if upstream is None:
            model.eval()
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            # The server counts prompt tokens in its request threads while the worker decodes: on its own copy.
            self._counter, self._counter_lock = copy.deepcopy(tokenizer), threading.Lock()

    @classmethod
    def from_config(cls, cfg: GuardConfig | str | Path) -> "Guard":
        """Load every piece a config names (a GuardConfig, a guard YAML or a bundle folder); pieces naming the model
        share its weights."""
        from ..acd.decode import read_prompt_option
        from ..lm.adapters import check_adapter, is_adapter
        from ..lm.load import load_model_and_tokenizer

        if not isinstance(cfg, GuardConfig):
            from .bundle import load_guard_config

            cfg = load_guard_config(cfg)
        # Prompt files and adapter folders are read first: a bad one fails before the model loads.
        for piece in (cfg.judge, cfg.rewriter):
            if isinstance(piece, str) and not is_off(piece) and is_adapter(piece):
                check_adapter(piece)
        safe = None if is_off(cfg.acd_safe_prompt) else read_prompt_option(cfg.acd_safe_prompt)
        adv = None if is_off(cfg.acd_adv_prompt) else read_prompt_option(cfg.acd_adv_prompt)
        policies = None
        if cfg.policy_file is not None:  # read (and the tenants checked) before any model loads
            from .policy import load_policies, resolve_tenants

            policies = load_policies(cfg.policy_file)
            resolve_tenants(cfg.tenants, policies, cfg.policy, cfg.policy_choices)
        upstream = None
        if cfg.upstream is not None:
            from .upstream import Upstream

            upstream = Upstream(
                cfg.upstream,
                cfg.upstream_model,
                cfg.upstream_api_key,
                cfg.upstream_timeout_s,
                cfg.upstream_connect_timeout_s,
            )
        model = tok = None
        if upstream is None or cfg.model in (cfg.judge, cfg.rewriter):  # upstream: only a piece that names it
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
        categorizer = None
        if not is_off(cfg.categories):
            from ..scorers.categories import CategoryScorer

            categorizer = CategoryScorer(None if cfg.categories == "builtin" else cfg.categories)
            for p in (policies or {}).values():
                if unknown := p.categories() - set(categorizer.categories):
                    raise DetoxkitError(
                        f"{p.source}: policy {p.name!r} names {sorted(unknown)}, which the category head does not "
                        f"score (it scores {', '.join(categorizer.categories)})"
                    )
        return cls(model, tok, cfg, judge, screener, rewriter, safe, adv, upstream, categorizer, policies)

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
        """The answering model's context window in tokens (None if its config does not say, or it is upstream)."""
        if self.upstream is not None:
            return None
        return getattr(self.model.config, "max_position_embeddings", None)

    def prompt_tokens(self, messages: Sequence[dict]) -> int | None:
        """Tokens of a conversation as the model sees it (chat template included); None upstream (the upstream
        counts and enforces its own). Thread-safe: the server calls it to refuse an oversized prompt early."""
        if self._counter is None:
            return None
        with self._counter_lock:
            text = self._render(messages, self._counter)
            return len(self._counter(text, add_special_tokens=False)["input_ids"])

    def _steps(self, mode: str, messages_batch, limits, sampling, should_stop):
        """The batch's decoding, one (k,) tensor of next tokens per step (−1 where a row has finished)."""
        if mode == "plain":
            from ..lm.batch import pad_id
            from ..lm.generate import CausalStepper, decode_loop, stop_ids

            prompts = [self.tokenizer(self._render(m), add_special_tokens=False)["input_ids"] for m in messages_batch]
            pad = pad_id(self.tokenizer)
            stops = stop_ids(self.model, self.tokenizer)
            stepper = CausalStepper(self.model, prompts, pad)
            return decode_loop(stepper, max(limits), stops, sampling, pad, limits=limits, should_stop=should_stop)
        from ..acd.decode import Contrast, decode_steps

        contrast = Contrast(self.config.acd_alpha, window=self.config.acd_window or None)
        prompts = [acd_prompt(m) for m in messages_batch]
        return decode_steps(
            self.model,
            self.tokenizer,
            prompts,
            self.safe_prompt,
            self.adv_prompt,
            contrast,
            max(limits),
            sampling,
            should_stop=should_stop,
        )

    def _run_steps(self, todo: list["_Turn"], steps_for, stops: set[int], should_stop) -> list[list[int]]:
        """Collect each row's tokens; streamed rows are screened every stream_screen_every tokens on the way and
        sent what passed (all of it, at once, when there is no screener). Stops once every row is done."""
        import torch

        rows: list[list[int]] = [[] for _ in todo]
        ended = [False] * len(todo)
        streams = [t.stream for t in todo]

        def halt() -> bool:
            gone = should_stop is not None and should_stop()
            return gone or all(e or (s is not None and s.stopped) for e, s in zip(ended, streams))

        with torch.no_grad():
            for n, nxt in enumerate(steps_for(halt), 1):
                for i, tok in enumerate(nxt.tolist()):
                    if tok < 0 or ended[i]:
                        continue
                    rows[i].append(tok)
                    ended[i] = tok in stops or len(rows[i]) >= todo[i].limit
                    if streams[i] is not None and not streams[i].stopped and tok not in stops:
                        streams[i].parts.append(tok)
                if any(s is not None for s in streams):
                    self._check_streams(todo, streams, n)
        return rows

    def _decode_upstream(self, todo: list["_Turn"], temperature: float, top_p: float, should_stop) -> None:
        """Every request to the upstream at once (one thread each); a streamed answer is screened as it arrives."""
        from concurrent.futures import ThreadPoolExecutor

        def one(t: _Turn):
            gone = (lambda: t.cut_short) if should_stop is None else (lambda: t.cut_short or should_stop())
            on_delta = None if t.stream is None else (lambda delta: self._upstream_delta(t, delta))
            try:
                return self.upstream.complete(t.messages, t.limit, temperature, top_p, on_delta, gone)
            except APIError as e:
                return e

        with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="guard-upstream") as pool:
            answers = list(pool.map(one, todo))
        for t, a in zip(todo, answers):
            if isinstance(a, APIError):
                t.error, t.trace["decode"] = a, {"decision": "upstream", "error": a.message}
                continue
            t.text = t.stream.render(t.stream.parts) if t.cut_short else a.text
            t.finish = "content_filter" if t.cut_short else a.finish_reason
            t.prompt_tokens, t.completion_tokens = a.prompt_tokens, a.completion_tokens
            t.trace["decode"] = {
                "decision": "upstream",
                "tokens": a.completion_tokens,
                "finish_reason": a.finish_reason,
            }

    def _upstream_delta(self, t: "_Turn", delta: str) -> None:
        if t.stream.stopped:
            return
        t.stream.parts.append(delta)
        with self._stage_lock:  # the screener is one model, shared by every upstream thread
            self._check_streams([t], [t.stream], len(t.stream.parts))

    def _stream_check_due(self, n: int) -> bool:
        """The first check as soon as one part has cleared the held-back window (time to first token), then every
        stream_screen_every parts."""
        window, every = self.config.stream_window, self.config.stream_screen_every
        return n > window and (n - window - 1) % every == 0

    def _check_streams(self, todo, streams, n: int) -> None:
        if self.screener is None:  # nothing to wait for: send each token's text as it comes
            for s in streams:
                if s is not None and (text := s.releasable(0)):
                    s.release(text)
        elif self._stream_check_due(n):
            live = [(s, t.prompt) for s, t in zip(streams, todo) if s is not None]
            screen_streams(
                [s for s, _ in live],
                [p for _, p in live],
                self.screener,
                self.screener_threshold,
                self.config.stream_window,
            )

    # ------------------------------------------------------------------------------------------------ API

    def chat(
        self,
        messages_batch: Sequence[Sequence[dict]],
        max_tokens: int | Sequence[int] | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        should_stop: Callable[[], bool] | None = None,
        streams: Sequence[Callable[[str], None] | None] | None = None,
        policies: Sequence[str | None] | None = None,
    ) -> list[ChatResult]:
        """Answer a batch of conversations ({"role", "content"} dicts); temperature below 1e-5 is greedy.

        max_tokens: one limit for all, one per conversation, or None (config.max_new_tokens).
        should_stop: asked between decoding steps; True ends decoding early (the server's callers have all gone).
        streams: per conversation, None or a function called (in this thread) with each piece of the answer as it
        clears the screener (see :mod:`detoxkit.guard.streaming`); the pieces add up to the result's text.
        policies: per conversation, the name of the policy to apply (None: config.policy, if any).
        """
        n, cfg = len(messages_batch), self.config
        if max_tokens is None or isinstance(max_tokens, int):
            limits = [max_tokens or cfg.max_new_tokens] * n
        else:
            limits = list(max_tokens)
        turns = [
            _Turn(list(m), conversation_prompt(m, cfg.max_turns, cfg.block_message), lim, {"batch_size": n})
            for m, lim in zip(messages_batch, limits)
        ]
        render = token_text(self.tokenizer) if self.upstream is None else join_text
        for t, emit, name in zip(turns, streams or [None] * n, policies or [None] * n):
            t.stream = None if emit is None else HeldBackStream(emit, render)
            t.policy = self.policy_named(name)
        with self._local_stage():
            self._judge(turns)  # 1. a blocked request is never decoded
        todo = [t for t in turns if t.text is None]
        self._decode(turns, todo, 0.0 if temperature < GREEDY_BELOW else temperature, top_p, should_stop)
        todo = [t for t in todo if t.error is None]  # an upstream that failed fails its request alone
        with self._local_stage():
            flagged = self._screen(turns, [t for t in todo if not t.cut_short])  # 3. screen the answers
            self._rewrite(flagged + [t for t in todo if t.cut_short])  # 4. rewrite the flagged; withhold the rest
        for t in turns:
            if t.stream is not None and t.error is None:
                self._finish_stream(t)
        return [t.error or self._result(t) for t in turns]

    def _local_stage(self):
        """Upstream mode runs several batches at once (one waits for the upstream while the next is judged): the
        local models (judge, screener, rewriter) take one batch at a time. Local mode has one batch in flight."""
        return self._stage_lock if self.upstream is not None else contextlib.nullcontext()

    def _result(self, t: "_Turn") -> ChatResult:
        if t.prompt_tokens is None:  # upstream: 0 for a request it never saw
            t.prompt_tokens = self.prompt_tokens(t.messages) or 0
        return ChatResult(t.text, t.finish, t.prompt_tokens, t.completion_tokens, t.trace)

    def _judge(self, turns: list["_Turn"]) -> None:
        if self.judge is None:
            for t in turns:
                t.trace["judge"] = {"decision": "off"}
            return self._prompt_policy(turns)
        t0, thr = time.perf_counter(), self.judge_threshold
        scores = self.judge.predict_proba([t.prompt for t in turns])
        late = self._past_deadline(t0, self.config.judge_deadline_ms)
        for t, p in zip(turns, scores):
            t.trace["judge"] = {"decision": "block" if p >= thr else "allow", "score": p, "threshold": thr}
            if late:
                self._late(t.trace["judge"], p >= thr)
            if t.trace["judge"]["decision"] in ("block", "timeout_blocked"):
                t.text, t.finish = self.config.block_message, "content_filter"
        self._prompt_policy(turns)
        self._timing(turns, "judge", t0)

    def _decode(self, turns, todo, temperature: float, top_p: float, should_stop) -> None:
        """2. The allowed requests in one batch (ACD when there is a safe prompt, else plain decoding), or each sent
        to the upstream."""
        from ..lm.generate import GREEDY, Sampling, split_stop, stop_ids

        mode = "upstream" if self.upstream is not None else "acd" if self.safe_prompt is not None else "plain"
        for t in turns:
            t.trace["decode"] = {"decision": "skipped"}
        if not todo:
            return
        t0 = time.perf_counter()
        if mode == "upstream":
            self._decode_upstream(todo, temperature, top_p, should_stop)
            return self._timing(todo, "decode", t0)
        sampling = Sampling(True, temperature, top_p, generator=self.generator) if temperature > 0 else GREEDY
        stops = stop_ids(self.model, self.tokenizer)
        messages, limits = [t.messages for t in todo], [t.limit for t in todo]
        ids = self._run_steps(
            todo, lambda halt: self._steps(mode, messages, limits, sampling, halt), stops, should_stop
        )
        for t, row in zip(todo, ids):
            if t.cut_short:  # the screener stopped this stream: its answer is what was decoded up to the flag
                row = t.stream.parts
            cut, t.finish = split_stop(row, stops, t.limit)
            t.text, t.completion_tokens = self.tokenizer.decode(cut, skip_special_tokens=True).strip(), len(cut)
            t.trace["decode"] = {"decision": mode, "tokens": t.completion_tokens, "finish_reason": t.finish}
            if mode == "acd":
                t.trace["decode"].update(alpha=self.config.acd_alpha, contrast=self.adv_prompt is not None)
        self._timing(todo, "decode", t0)

    def _screen(self, turns, todo) -> list["_Turn"]:
        """The screener's score of every decoded answer, then the answer policies; returns the flagged turns."""
        flagged = self._screen_scorer(turns, todo)
        return self._answer_policy(todo, flagged) if self.policies else flagged

    def _screen_scorer(self, turns, todo) -> list["_Turn"]:
        """The screener's score of every decoded answer; returns the flagged turns."""
        unscreened = self.screener is None or not todo
        name, thr = getattr(self.screener, "name", "screener"), self.screener_threshold
        for t in turns:
            t.trace["screen"] = {"decision": "off" if self.screener is None else "skipped"}
            t.trace["rewrite"] = {"decision": "off" if unscreened and self.rewriter is None else "skipped"}
            if t.cut_short:  # decided while streaming: its time is that of the checks it took part in
                seconds = round(t.stream.screen_seconds, 4)
                t.trace["screen"] = {
                    "decision": "flag",
                    "scorer": name,
                    "threshold": thr,
                    "while_streaming": True,
                    "batch_seconds": seconds,
                }
        if unscreened:
            return []
        t0 = time.perf_counter()
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

    def policy_named(self, name: str | None):
        """The Policy called `name` (None: config.policy, or no policy)."""
        name = name if name is not None else self.config.policy
        if name is None:
            return None
        if name not in self.policies:
            raise DetoxkitError(f"unknown policy {name!r} (known: {', '.join(self.policies) or 'none'})")
        return self.policies[name]

    def _prompt_policy(self, turns: list["_Turn"]) -> None:
        """Judge stage, after the judge: each request's policy on its prompt's category scores (a block blocks it;
        a rewrite sends its answer to the rewriter). The judge's trace gets the policy's scores and decision."""
        live = [t for t in turns if t.policy is not None]
        if not live:
            return
        for t, scores in zip(live, self.categorizer([t.prompt for t in live])):
            d = t.trace["judge"]["policy"] = t.policy.decide("prompt", scores)
            if d["fired"]:
                t.trace["judge"].setdefault("category", next(iter(d["fired"])))
            if d["action"] == "block" and t.text is None:
                t.trace["judge"]["decision"] = "block"
                t.text, t.finish = self.config.block_message, "content_filter"
            t.rewrite_answer = d["action"] == "rewrite"

    def _answer_policy(self, todo: list["_Turn"], flagged: list["_Turn"]) -> list["_Turn"]:
        """Screen stage, after the screener: each answer's policy on its category scores. block: withheld (the part
        of a stream already sent stays); rewrite (or a prompt rule's rewrite): flagged for the rewriter."""
        live = [t for t in todo if t.policy is not None and t.trace["screen"].get("decision") != "timeout_blocked"]
        if not live:
            return flagged
        out = list(flagged)
        for t, scores in zip(live, self.categorizer([t.text for t in live])):
            d = t.trace["screen"]["policy"] = t.policy.decide("answer", scores)
            t.withhold = d["action"] == "block"
            if (t.withhold or d["action"] == "rewrite" or t.rewrite_answer) and t not in out:
                t.trace["screen"].update(decision="flag", category=next(iter(d["fired"]), "prompt_policy"))
                out.append(t)
        return out

    def _rescreen(self, turns: list["_Turn"], candidates: list[str]) -> list[float]:
        """Rewrites' scores: the screener's (0 without one), 1.0 where the request's answer policy still blocks or
        rewrites the rewrite."""
        if self.screener is not None:
            after = self.screener(candidates, [t.prompt for t in turns])
        else:
            after = [0.0] * len(turns)
        live = [k for k, t in enumerate(turns) if t.policy is not None]
        if live:
            scores = self.categorizer([candidates[k] for k in live])
            for k, sc in zip(live, scores):
                if turns[k].policy.decide("answer", sc)["action"] in ("block", "rewrite"):
                    after[k] = 1.0
        return after

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
        """A flagged answer is rewritten and screened again; what is still flagged is withheld. Of a streamed answer
        only the part not yet sent is rewritten (stream_on_flag rewrite) or withheld (stop): the client keeps what
        it was sent, which the screener had passed."""
        if not flagged:
            return
        t0, thr = time.perf_counter(), self.screener_threshold
        sent = [t.stream.released if t.stream is not None else "" for t in flagged]
        todo = [
            (t, s)
            for t, s in zip(flagged, sent)
            if self.rewriter is not None
            and not t.withhold
            and (t.stream is None or self.config.stream_on_flag == "rewrite")
        ]
        done: dict[int, tuple] = {}
        if todo:
            news = self.rewriter.rewrite([_unsent(t.text, s) for t, s in todo])
            candidates = [f"{s} {new}" if s and new else s + new for (_, s), new in zip(todo, news)]
            after = self._rescreen([t for t, _ in todo], candidates)
            done = {id(t): rewritten for (t, _), *rewritten in zip(todo, news, candidates, after)}
        for t, s in zip(flagged, sent):
            new, candidate, score = done.get(id(t), (None, None, None))
            if new is not None and score < thr:
                t.trace["rewrite"] = {"decision": "rewritten", "score_after": score, "original": t.text}
                t.text = candidate
            else:
                t.trace["rewrite"] = {
                    "decision": "withheld" if new is None else "withheld_after_rewrite",
                    **({} if score is None else {"score_after": score, "rewrite": new}),
                }
                t.text, t.finish = s or self.config.block_message, "content_filter"
        if self.rewriter is not None:
            self._timing(flagged, "rewrite", t0)

    def _finish_stream(self, t: "_Turn") -> None:
        """Send a streamed answer's last piece (it has passed every stage); its text is what the client holds."""
        s, cfg = t.stream, self.config
        s.release(t.text)
        t.text = s.released
        t.trace["stream"] = {
            "window": cfg.stream_window,
            "every": cfg.stream_screen_every,
            "checks": s.checks,
            "screen_seconds": round(s.screen_seconds, 4),
        }
        if s.stopped:
            t.trace["stream"].update(stopped_at_token=s.flagged_at, on_flag=cfg.stream_on_flag)

    @staticmethod
    def _timing(turns: list["_Turn"], stage: str, t0: float) -> None:
        """The stage's wall time for the whole batch (shared by every request in it)."""
        dt = round(time.perf_counter() - t0, 4)
        for t in turns:
            t.trace[stage]["batch_seconds"] = dt

    def moderate(self, texts: Sequence[str], policies: Sequence[str | None] | None = None) -> list[dict]:
        """OpenAI moderation results: every OpenAI category (from the category head; 0 and unflagged where it scores
        none, listed under detoxkit.unscored), with the screener's score and the judge's P(problematic) beside them.
        A text's policy (its name in `policies`, else config.policy) decides which categories are flagged: those
        its prompt rules act on (block, rewrite, log); without one, the head's own thresholds."""
        with self._local_stage():
            return self._moderate(list(texts), policies)

    def _moderate(self, texts: list[str], policies: Sequence[str | None] | None) -> list[dict]:
        from .policy import OPENAI_CATEGORIES, openai_moderation

        scores: dict[str, tuple[list[float], float]] = {}
        if self.screener is not None:
            scores[getattr(self.screener, "name", "screener")] = (self.screener(texts), self.screener_threshold)
        if self.judge is not None:
            scores["harmful_request"] = (self.judge.predict_proba(texts), self.judge_threshold)
        by_category = self.categorizer(texts) if self.categorizer is not None else [{} for _ in texts]
        results = []
        for k, found in enumerate(by_category):
            policy = self.policy_named(policies[k] if policies else None)
            if policy is not None:
                decision = policy.decide("prompt", found)
                fired = set(decision["fired"])
            else:
                decision, thr = None, getattr(self.categorizer, "thresholds", {})
                fired = {c for c, v in found.items() if v >= thr.get(c, 0.5)}
            cats, cat_scores, unscored = openai_moderation(found, fired)
            extra = {name: (s[k], s[k] >= thr) for name, (s, thr) in scores.items()}
            results.append(
                {
                    "flagged": any(cats.values()) or any(f for _, f in extra.values()),
                    "categories": {**cats, **{name: f for name, (_, f) in extra.items()}},
                    "category_scores": {**cat_scores, **{name: v for name, (v, _) in extra.items()}},
                    "category_applied_input_types": {
                        key: [] if key in unscored else ["text"] for key in OPENAI_CATEGORIES
                    },
                    "detoxkit": {
                        "category_scores": {c: round(v, 4) for c, v in found.items()},
                        "unscored": unscored,
                        "policy": decision,
                    },
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
    stream: HeldBackStream | None = None  # a streamed request: what its client has been sent
    prompt_tokens: int | None = None  # counted by the upstream, or (None) by the local tokenizer at the end
    error: Exception | None = None  # the upstream failed this request: it is answered with this error
    policy: Any = None  # the request's Policy (detoxkit.guard.policy), or None
    rewrite_answer: bool = False  # its prompt policy asks for the answer to be rewritten
    withhold: bool = False  # its answer policy blocks the answer: withheld, not rewritten

    @property
    def cut_short(self) -> bool:
        """The screener stopped this streamed answer partway."""
        return self.stream is not None and self.stream.stopped


def _unsent(text: str, sent: str) -> str:
    """The part of an answer its client has not been sent."""
    return text[len(sent) :].strip() if text.startswith(sent) else text
