"""Request batching for servers: requests that arrive together run as one engine batch.

Front ends that serve many users (the HTTP server, the Gradio UI) submit each request here
instead of calling `Composer.run` from their own threads. One worker thread gathers
requests for `window_ms`, groups those with the same mode and sampling options, and runs each
group through `Composer.run_batch(errors="return")` — so every row keeps its own bricks, one
bad request fails alone, and the batched engine is what serves concurrent users. The queue
is bounded: when it is full, `submit` raises `Overloaded` at once (back-pressure, HTTP 503).
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from composer.composer import Composer, ItemError, Result, StepCallback
from composer.errors import ComposerError


class Overloaded(ComposerError):
    """The request queue is full; try again later."""


class RequestFailed(ComposerError):
    """A request the composer refused; `kind` names the error class (e.g. NoBrickError)."""

    def __init__(self, item: ItemError):
        super().__init__(item.error)
        self.kind = item.kind


@dataclass
class _Request:
    instruction: str
    input: str | None
    mode: str
    sampling: dict
    on_step: StepCallback | None
    brick: str | None = None  # run this brick on `instruction` directly (Composer.run_bricks)
    future: Future = field(default_factory=Future)

    def key(self) -> tuple:
        return self.brick is None, self.mode, tuple(sorted(self.sampling.items()))


class Batcher:
    """`submit(...)` -> Future[Result]; a worker runs gathered requests as engine batches."""

    def __init__(self, composer: Composer, *, window_ms: float = 10, max_batch: int = 32, max_queue: int = 256):
        self.composer, self.window, self.max_batch = composer, window_ms / 1000, max_batch
        self._queue: queue.Queue[_Request] = queue.Queue(maxsize=max_queue)
        self.batches: list[int] = []  # size of every engine batch run (for tests and benchmarks)
        self._worker = threading.Thread(target=self._loop, daemon=True, name="composer-batcher")
        self._worker.start()

    def submit(self, instruction: str, input: str | None = None, mode: str = "auto", *,
               on_step: StepCallback | None = None, brick: str | None = None, **sampling) -> Future:
        """Queue one request; the Future holds its Result or raises its error (RequestFailed).
        With `brick`, that brick runs on `instruction` as is (no plan, no retrieval)."""
        request = _Request(instruction, input, mode, sampling, on_step, brick)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise Overloaded(f"the server is busy ({self._queue.maxsize} requests queued); try again") from None
        return request.future

    def run(self, instruction: str, input: str | None = None, mode: str = "auto", *, timeout: float | None = None,
            **kwargs) -> Result:
        """Submit and wait (raises TimeoutError after `timeout` seconds)."""
        return self.submit(instruction, input, mode, **kwargs).result(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            gathered, deadline = [first], time.monotonic() + self.window
            while len(gathered) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    gathered.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            groups: dict[tuple, list[_Request]] = {}
            for request in gathered:
                groups.setdefault(request.key(), []).append(request)
            for group in groups.values():
                self._run(group)

    def _run(self, group: list[_Request]) -> None:
        group = [r for r in group if r.future.set_running_or_notify_cancel()]
        if not group:
            return

        def on_step(i: int, step) -> None:
            if group[i].on_step is not None:
                group[i].on_step(0, step)

        first = group[0]
        try:
            if first.brick is not None:
                results = self.composer.run_bricks([r.brick for r in group], [r.instruction for r in group],
                                                   errors="return", on_step=on_step, **first.sampling)
            else:
                results = self.composer.run_batch([r.instruction for r in group], [r.input for r in group],
                                                  first.mode, errors="return", on_step=on_step, **first.sampling)
        except Exception as err:  # a whole-call failure (e.g. bad options) fails each request alike
            for r in group:
                r.future.set_exception(err)
            return
        self.batches.append(len(group))
        for r, result in zip(group, results):
            if isinstance(result, ItemError):
                r.future.set_exception(RequestFailed(result))
            else:
                r.future.set_result(result)
