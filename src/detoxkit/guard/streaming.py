"""Streaming that never leaks: an answer's text leaves the guard only after the screener has passed it.

While a batch decodes, every ``every`` tokens the screener scores, for each streamed row, two texts in one call:
the text so far (T) and the text the client would then hold (R: T less its last ``window`` tokens). R is released
only when both pass; when T is flagged the row stops there, so the flagged span (which lies beyond what was
released, or R would have been flagged) is never sent. The held-back window gives the screener context past the
release point: a span that reads as toxic only once its next words arrive is still unsent when it does.

Released text is always a prefix of the final answer (as the unstreamed answer is cut and stripped): candidates that are not, such as a multi-byte character split across tokens, wait for the next check.
With nothing flagged the client ends up with exactly the unstreamed text. See ``Guard.chat(streams=...)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

Emit = Callable[[str], None]


def join_text(parts: list[str]) -> str:
    """The text of an upstream stream's deltas, as its unstreamed answer shows it."""
    return "".join(parts).lstrip()


@dataclass
class HeldBackStream:
    """One streamed answer: its parts (token ids of a local model, text deltas of an upstream), how they read as
    text (`render`), what the client has been sent, and whether the screener stopped it."""

    emit: Emit
    render: Callable[[list], str] = join_text
    parts: list = field(default_factory=list)
    released: str = ""
    flagged_at: int | None = None  # parts decoded when the screener flagged the text so far
    checks: int = 0
    screen_seconds: float = 0.0  # time of the screener calls this stream took part in (shared with its batch)

    @property
    def stopped(self) -> bool:
        return self.flagged_at is not None

    def release(self, text: str) -> None:
        """Send the part of `text` the client does not have yet; `text` must extend what was released."""
        if len(text) > len(self.released) and text.startswith(self.released):
            self.emit(text[len(self.released) :])
            self.released = text

    def releasable(self, window: int) -> str | None:
        """The text that may go out once the text so far passes: all but the last `window` parts, without trailing
        white space (the final answer is stripped) or a split character; None when it adds nothing new."""
        keep = max(0, len(self.parts) - window)
        text = self.render(self.parts[:keep]).rstrip().rstrip("\ufffd")
        if len(text) <= len(self.released) or not text.startswith(self.released):
            return None
        return text if self.render(self.parts).startswith(text) else None


def token_text(tokenizer) -> Callable[[list[int]], str]:
    """How a local model's token ids read as its unstreamed answer (special tokens dropped, leading space stripped)."""
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True).lstrip()


def screen_streams(streams: list[HeldBackStream], prompts: list[str], screener, threshold: float, window: int):
    """One check of the live streams: release what passed, stop the streams whose text so far is flagged."""
    live = [(s, p) for s, p in zip(streams, prompts) if not s.stopped and s.parts]
    texts, owners = [], []
    for s, p in live:
        s.checks += 1
        texts.append(s.render(s.parts))
        owners.append((s, p, None))
        cand = s.releasable(window)
        if cand is not None:
            texts.append(cand)
            owners.append((s, p, cand))
    if not texts:
        return
    t0 = time.perf_counter()
    scores = screener(texts, [p for _, p, _ in owners])
    for s, _ in live:
        s.screen_seconds += time.perf_counter() - t0
    for (s, _, cand), x in zip(owners, scores):
        if cand is None and x >= threshold:
            s.flagged_at = len(s.parts)
    for (s, _, cand), x in zip(owners, scores):
        if cand is not None and not s.stopped and x < threshold:
            s.release(cand)
