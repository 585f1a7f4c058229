"""Streaming that never leaks: an answer's text leaves the guard only after the screener has passed it.

While a batch decodes, every ``every`` tokens the screener scores, for each streamed row, two texts in one call:
the text so far (T) and the text the client would then hold (R: T less its last ``window`` tokens). R is released
only when both pass; when T is flagged the row stops there, so the flagged span (which lies beyond what was
released, or R would have been flagged) is never sent. The held-back window gives the screener context past the
release point: a span that reads as toxic only once its next words arrive is still unsent when it does.

Released text is always a prefix of the final answer (``tokenizer.decode(ids).strip()``, as the unstreamed answer
is cut): candidates that are not, such as a multi-byte character split across tokens, wait for the next check.
With nothing flagged the client ends up with exactly the unstreamed text. See ``Guard.chat(streams=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

Emit = Callable[[str], None]


@dataclass
class HeldBackStream:
    """One streamed row: its tokens, what the client has been sent, and whether the screener stopped it."""

    emit: Emit
    ids: list[int] = field(default_factory=list)
    released: str = ""
    flagged_at: int | None = None  # tokens decoded when the screener flagged the text so far
    checks: int = 0

    @property
    def stopped(self) -> bool:
        return self.flagged_at is not None

    def release(self, text: str) -> None:
        """Send the part of `text` the client does not have yet; `text` must extend what was released."""
        if len(text) > len(self.released) and text.startswith(self.released):
            self.emit(text[len(self.released) :])
            self.released = text


def visible(tokenizer, ids: list[int]) -> str:
    """The text of `ids` as the unstreamed answer shows it (special tokens dropped, leading space stripped)."""
    return tokenizer.decode(ids, skip_special_tokens=True).lstrip()


def releasable(tokenizer, ids: list[int], window: int, released: str) -> str | None:
    """The text that may go out once ``ids`` passes: all but the last `window` tokens, without trailing white space
    (the final answer is stripped) or a split character; None when it adds nothing to what was released."""
    keep = max(0, len(ids) - window)
    text = visible(tokenizer, ids[:keep]).rstrip().rstrip("\ufffd")
    if len(text) <= len(released) or not text.startswith(released):
        return None
    full = visible(tokenizer, ids)
    return text if full.startswith(text) else None


def screen_streams(streams: list[HeldBackStream], prompts: list[str], screener, threshold: float, tokenizer, window):
    """One check of the live rows: release what passed, stop the rows whose text so far is flagged."""
    live = [(s, p) for s, p in zip(streams, prompts) if not s.stopped and s.ids]
    texts, owners = [], []
    for s, p in live:
        s.checks += 1
        texts.append(visible(tokenizer, s.ids))
        owners.append((s, p, None))
        cand = releasable(tokenizer, s.ids, window, s.released)
        if cand is not None:
            texts.append(cand)
            owners.append((s, p, cand))
    if not texts:
        return
    scores = screener(texts, [p for _, p, _ in owners])
    flagged = {id(s) for (s, _, cand), x in zip(owners, scores) if cand is None and x >= threshold}
    for s, _, _ in owners:
        if id(s) in flagged and s.flagged_at is None:
            s.flagged_at = len(s.ids)
    for (s, _, cand), x in zip(owners, scores):
        if cand is not None and not s.stopped and x < threshold:
            s.release(cand)
