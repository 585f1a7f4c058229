"""Dynamic batching: concurrent requests queue up and one worker thread runs them through the guard in batches.

Model calls are not thread-safe, and a batch of k requests costs far less than k single forwards on a CPU, so a
single worker owns the guard: it takes the first queued job, waits up to ``wait_s`` for more (at most
``max_batch_size``), and answers them with one ``Guard.chat`` call per sampling setting. Callers get a
``concurrent.futures.Future``. ``close()`` lets the worker finish everything already queued, so shutting down never
drops an accepted request.

The worker must outlive every fault of the work it runs: an exception in scoring or decoding fails only the
request that caused it (a batch that fails is retried one request at a time), a failed log write never fails a
request (see :class:`~detoxkit.guard.requestlog.RequestLog`), and anything else is caught at the top of the loop,
counted and reported by :meth:`Batcher.health`. Work for a caller that has gone (disconnected, or past its
deadline) is dropped before it runs, and a batch in progress stops decoding once none of its callers is waiting.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

_STOP = object()


class ShuttingDown(Exception):
    """The server is shutting down and takes no new jobs."""


class QueueFull(Exception):
    """max_queue jobs are already waiting for the worker."""


class DeadlineExceeded(Exception):
    """The job's deadline passed before the worker could start it."""


@dataclass
class Job:
    kind: str  # "chat" or "moderate"
    payload: Any  # chat: (messages, max_tokens, temperature, top_p, stream emit or None[, policy name]);
    # moderate: list of texts, or (list of texts, policy name)
    log: dict = field(default_factory=dict)  # what the JSONL log records about the request
    deadline: float | None = None  # time.monotonic() after which nobody waits for the answer
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)
    abandoned: str | None = None  # why the caller stopped waiting ("client_disconnected", "deadline")

    def unwanted(self, now: float) -> bool:
        return self.abandoned is not None or (self.deadline is not None and now > self.deadline)


class Batcher:
    def __init__(
        self,
        guard,
        max_batch_size: int = 8,
        wait_s: float = 0.01,
        log=None,
        stall_timeout_s: float = 120.0,
        max_queue: int = 0,
        on_batch=None,
        concurrency: int = 1,
    ):
        """log: a RequestLog (or None); stall_timeout_s: health() says "stuck" after this long without progress;
        max_queue: jobs that may wait for the worker (0: any number); on_batch(size): called per chat batch;
        concurrency: batches in flight at once (more than 1 only for a guard whose answers come from an upstream
        server: the next batch is judged while the last one waits for the upstream; the guard serialises its own
        model stages)."""
        self.guard, self.max_batch_size, self.wait_s, self.log = guard, max(1, max_batch_size), wait_s, log
        self.stall_timeout_s, self.max_queue, self.on_batch = stall_timeout_s, max_queue, on_batch
        self.batch_seconds = 0.0  # moving average of a batch's time: how long a queued job waits per batch ahead
        self.queue: queue.Queue = queue.Queue()
        self.batch_sizes: collections.Counter = collections.Counter()  # chat batch size -> how many ran
        self.counts: collections.Counter = collections.Counter()  # answered, failed, cancelled, worker_errors
        self.last_error: str | None = None
        self._active = 0  # batches being worked on
        self._slots = threading.Semaphore(concurrency) if concurrency > 1 else None
        self.concurrency = max(1, concurrency)
        self._progress_at = time.monotonic()  # last sign of life: a batch taken or finished, a decoding step
        self._closed = False
        self._lock = threading.Lock()  # orders submit() against close(): nothing slips in behind the stop marker
        self._thread = threading.Thread(target=self._run, name="guard-worker", daemon=True)

    def start(self) -> "Batcher":
        self._thread.start()
        return self

    def submit(self, kind: str, payload: Any, log: dict | None = None, deadline: float | None = None) -> Job:
        job = Job(kind, payload, log or {}, deadline)
        with self._lock:
            if self._closed:
                raise ShuttingDown("the server is shutting down")
            if self.max_queue and self.queue.qsize() >= self.max_queue:
                raise QueueFull(f"{self.queue.qsize()} requests are waiting (max_queue {self.max_queue})")
            self.queue.put(job)
        return job

    @staticmethod
    def abandon(job: Job, reason: str) -> None:
        """The caller stopped waiting: a queued job is skipped, a running one stops as soon as its batch allows."""
        if job.abandoned is None:
            job.abandoned = reason
        job.future.cancel()  # succeeds only while queued

    def close(self, timeout: float | None = None) -> bool:
        """Stop taking jobs, finish the queued ones, and stop the worker; False if it was still busy at `timeout`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self.queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def health(self) -> dict:
        """{"healthy": bool, "reason": str | None, ...counters}: unhealthy when the worker is dead or stuck."""
        queued, idle_for = self.queue.qsize(), time.monotonic() - self._progress_at
        reason = None
        if not self._thread.is_alive() and not self._closed:
            reason = "the batching worker thread has stopped"
        elif (self._active or queued) and idle_for > self.stall_timeout_s:
            reason = f"the batching worker has made no progress for {idle_for:.0f} s with work waiting"
        return {
            "healthy": reason is None,
            "reason": reason,
            "queued": queued,
            "busy": self._active > 0,
            "seconds_since_progress": round(idle_for, 1),
            "batches": sum(self.batch_sizes.values()),
            "max_batch_size_seen": self.max_batch_seen,
            **{k: self.counts[k] for k in ("answered", "failed", "cancelled", "worker_errors")},
            "last_error": self.last_error,
            "log": None if self.log is None else self.log.stats(),
        }

    # ------------------------------------------------------------------------------------------------ the worker

    def _run(self) -> None:
        while True:
            batch, stopping = self._next_batch()
            if batch and self._slots is None:
                self._handle(batch)
            elif batch:
                self._slots.acquire()  # at most `concurrency` batches in flight; the rest wait in the queue
                threading.Thread(target=self._handle_then_release, args=(batch,), daemon=True).start()
            if stopping:
                for _ in range(self.concurrency if self._slots is not None else 0):
                    self._slots.acquire()  # every batch in flight has finished
                return

    def _handle_then_release(self, batch: list[Job]) -> None:
        try:
            self._handle(batch)
        finally:
            self._slots.release()

    def _handle(self, batch: list[Job]) -> None:
        started = self._progress_at = time.monotonic()
        with self._lock:
            self._active += 1
        try:
            self._process(batch)
        except BaseException as e:  # the worker is the server's only one: it must go on
            self._note_error("worker", e)
            # SystemExit and the like must not reach the event loop that awaits the future
            err = e if isinstance(e, Exception) else RuntimeError(f"{type(e).__name__}: {e}")
            for j in batch:
                with contextlib.suppress(InvalidStateError):
                    j.future.set_exception(err)
        finally:
            with self._lock:
                self._active -= 1
            self._progress_at = time.monotonic()
            self.batch_seconds += 0.2 * (self._progress_at - started - self.batch_seconds)

    def _next_batch(self) -> tuple[list[Job], bool]:
        first = self.queue.get()
        if first is _STOP:
            return [], True
        batch, deadline = [first], time.monotonic() + self.wait_s
        while len(batch) < self.max_batch_size:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True  # FIFO: every job queued before close() is already in hand
            batch.append(job)
        return batch, False

    def _process(self, jobs: list[Job]) -> None:
        live, now = [], time.monotonic()
        for j in jobs:
            if j.unwanted(now):
                j.abandoned = j.abandoned or "deadline"
                with contextlib.suppress(InvalidStateError):  # the caller may cancel it at this very moment
                    j.future.set_exception(DeadlineExceeded("the request's deadline passed while it was queued"))
            if j.future.done() or not j.future.set_running_or_notify_cancel():
                self._log_cancelled(j)  # its caller has gone: skip the work
            else:
                live.append(j)
        groups: dict[tuple, list[Job]] = collections.defaultdict(list)
        for j in live:
            groups[("chat", j.payload[2], j.payload[3]) if j.kind == "chat" else ("moderate",)].append(j)
        for key, group in groups.items():
            self._run_group(key, group)

    def _call(self, key: tuple, group: list[Job]) -> list:
        if key[0] == "moderate":
            asked = [j.payload if isinstance(j.payload, tuple) else (j.payload, None) for j in group]
            names = [p for texts, p in asked for _ in texts]
            texts = [t for texts, _ in asked for t in texts]
            results = self.guard.moderate(texts, names) if any(names) else self.guard.moderate(texts)
            out, k = [], 0
            for texts, _ in asked:  # split the flat results back per request
                out.append(results[k : k + len(texts)])
                k += len(texts)
            return out

        def should_stop() -> bool:  # called between decoding steps: a sign of life, and a way out
            self._progress_at = now = time.monotonic()
            return all(j.unwanted(now) for j in group)

        self.batch_sizes[len(group)] += 1
        if self.on_batch is not None:
            self.on_batch(len(group))
        streams = [j.payload[4] for j in group]
        policies = [j.payload[5] if len(j.payload) > 5 else None for j in group]
        return self.guard.chat(
            [j.payload[0] for j in group],
            [j.payload[1] for j in group],
            key[1],
            key[2],
            should_stop=should_stop,
            streams=streams if any(streams) else None,
            **({"policies": policies} if any(policies) else {}),
        )

    def _run_group(self, key: tuple, group: list[Job]) -> None:
        try:
            results = self._call(key, group)
        except Exception as e:
            if len(group) > 1:  # one bad request must not fail its batch-mates: retry each alone
                for j in group:
                    self._run_group(key, [j])
            else:
                self._note_error("failed", e)
                group[0].future.set_exception(e)
                self._write_log(group, [{"status": "failed", "error": f"{type(e).__name__}: {e}"}])
            return
        for j, r in zip(group, results):  # answers first: the log must never hold them back
            if isinstance(r, Exception):  # a request the guard could not answer (its upstream failed)
                j.future.set_exception(r)
            else:
                j.future.set_result(r)
        rows = []
        for j, r in zip(group, results):
            if isinstance(r, Exception):
                self.counts["failed"] += 1
                rows.append({"status": "failed", "error": f"{type(r).__name__}: {r}"})
                continue
            out = dataclasses.asdict(r) if dataclasses.is_dataclass(r) else {"results": r}
            status = "answered" if j.abandoned is None else "cancelled"
            self.counts[status] += 1
            rows.append({"status": status, **({"reason": j.abandoned} if j.abandoned else {}), **out})
        self._write_log(group, rows)

    def _log_cancelled(self, job: Job) -> None:
        self.counts["cancelled"] += 1
        self._write_log([job], [{"status": "cancelled", "reason": job.abandoned or "client_disconnected"}])

    def _write_log(self, group: list[Job], outcomes: list[dict]) -> None:
        if self.log is None:
            return
        now = time.perf_counter()
        self.log.write(
            [
                {**j.log, "time": time.time(), "seconds": round(now - j.queued_at, 4), "batch_size": len(group), **o}
                for j, o in zip(group, outcomes)
            ]
        )

    def _note_error(self, kind: str, e: BaseException) -> None:
        self.counts["worker_errors" if kind == "worker" else kind] += 1
        self.last_error = f"{type(e).__name__}: {e}"[:500]

    @property
    def max_batch_seen(self) -> int:
        return max(self.batch_sizes, default=0)
