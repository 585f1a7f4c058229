"""Dynamic batching: concurrent requests queue up and one worker thread runs them through the guard in batches.

Model calls are not thread-safe, and a batch of k requests costs far less than k single forwards on a CPU, so a
single worker owns the guard: it takes the first queued job, waits up to ``wait_s`` for more (at most
``max_batch_size``), and answers them with one ``Guard.chat`` call per sampling setting. Callers get a
``concurrent.futures.Future``; a job whose caller has gone (cancelled future) is skipped. ``close()`` lets the
worker finish everything already queued, so shutting down never drops an accepted request.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

_STOP = object()


class ShuttingDown(Exception):
    """The server is shutting down and takes no new jobs."""


@dataclass
class Job:
    kind: str  # "chat" or "moderate"
    payload: Any  # chat: (messages, max_tokens, temperature, top_p); moderate: list of texts
    log: dict = field(default_factory=dict)  # what the JSONL log records about the request
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, guard, max_batch_size: int = 8, wait_s: float = 0.01, log_path: str | None = None):
        self.guard, self.max_batch_size, self.wait_s, self.log_path = guard, max(1, max_batch_size), wait_s, log_path
        self.queue: queue.Queue = queue.Queue()
        self.batch_sizes: collections.Counter = collections.Counter()  # chat batch size -> how many ran
        self._closed = False
        self._lock = threading.Lock()  # orders submit() against close(): nothing slips in behind the stop marker
        self._thread = threading.Thread(target=self._run, name="guard-worker", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def submit(self, kind: str, payload: Any, log: dict | None = None) -> Future:
        job = Job(kind, payload, log or {})
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            self.queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs, finish the queued ones, and stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.queue.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is _STOP:
                return
            batch, deadline = [first], time.monotonic() + self.wait_s
            while len(batch) < self.max_batch_size:
                try:
                    job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True  # FIFO: every job queued before close() is already in hand
                    break
                batch.append(job)
            # A caller that disconnected while queued cancelled its future: skip its work.
            self._process([j for j in batch if j.future.set_running_or_notify_cancel()])

    def _process(self, jobs: list[Job]) -> None:
        groups: dict[tuple, list[Job]] = collections.defaultdict(list)
        for j in jobs:
            groups[("chat", j.payload[2], j.payload[3]) if j.kind == "chat" else ("moderate",)].append(j)
        for key, group in groups.items():
            self._run_group(key, group)

    def _call(self, key: tuple, group: list[Job]) -> list:
        if key[0] == "moderate":
            results = self.guard.moderate([t for j in group for t in j.payload])
            out, k = [], 0
            for j in group:  # split the flat results back per request
                out.append(results[k : k + len(j.payload)])
                k += len(j.payload)
            return out
        self.batch_sizes[len(group)] += 1
        return self.guard.chat([j.payload[0] for j in group], [j.payload[1] for j in group], key[1], key[2])

    def _run_group(self, key: tuple, group: list[Job]) -> None:
        try:
            results = self._call(key, group)
        except Exception as e:
            if len(group) > 1:  # one bad request must not fail its batch-mates: retry each alone
                for j in group:
                    self._run_group(key, [j])
            else:
                group[0].future.set_exception(e)
            return
        for j, r in zip(group, results):
            j.future.set_result(r)
        if self.log_path:
            self._log(group, results)

    def _log(self, group: list[Job], results: list) -> None:
        import dataclasses

        from ..runs import append_jsonl

        now = time.perf_counter()
        rows = []
        for j, r in zip(group, results):
            out = dataclasses.asdict(r) if dataclasses.is_dataclass(r) else {"results": r}
            rows.append({**j.log, "time": time.time(), "seconds": round(now - j.queued_at, 4),
                         "batch_size": len(group), **out})
        append_jsonl(self.log_path, rows)

    @property
    def max_batch_seen(self) -> int:
        return max(self.batch_sizes, default=0)
