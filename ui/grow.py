"""Grow tab: train a new brick from an uploaded JSONL in a background thread.

One job at a time (training takes the CPU the chat also needs); the UI polls the job for a
live progress bar while the chat keeps serving. The upload is size-checked here as well as
by Gradio's `max_file_size`, and read by `Workspace.train` as JSON data only; the brick id is
validated there like everywhere else. The index refreshes when training ends, so the next chat
request can retrieve the new brick.
"""

from __future__ import annotations

import html
import os
import threading
import time
from dataclasses import dataclass, field

from composer import ComposerError

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_STEPS = 3000


@dataclass
class Job:
    brick_id: str
    total: int
    step: int = 0
    loss: float | None = None
    card: object = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)

    def progress_html(self) -> str:
        """A progress bar with step, loss and elapsed time."""
        loss = "" if self.loss is None else f", loss {self.loss:.3f}"
        phase = "measuring and registering" if self.step >= self.total and not self.done.is_set() else "training"
        return (f'<div id="grow-progress"><progress value="{self.step}" max="{self.total}" style="width:100%">'
                f"</progress><br>{phase} <b>{html.escape(self.brick_id)}</b>: step {self.step}/{self.total}"
                f"{loss} · {time.monotonic() - self.started:.0f} s</div>")

    def summary(self) -> str:
        if self.error:
            return f"⚠️ {self.error}"
        card, m = self.card, self.card.metrics
        return (f"✅ trained **{card.id}** v{card.version} in {time.monotonic() - self.started:.0f} s: exact match "
                f"**{m.exact_match:.0%}** (base alone {m.base_exact_match:.0%}) on {m.eval}. "
                f"It is in the index now: try it in the chat, e.g. `{card.examples[0]}: ...`")


class Trainer:
    """Runs `Workspace.train` in a background thread, one job at a time."""

    def __init__(self, workspace, max_bytes: int = MAX_UPLOAD_BYTES):
        self.workspace, self.max_bytes = workspace, max_bytes
        self.job: Job | None = None
        self._lock = threading.Lock()

    def start(self, data_path: str | None, brick_id: str, description: str, examples: str, steps) -> Job:
        """Check the request and start training; errors name the problem."""
        if not data_path:
            raise ComposerError("upload a JSONL file of {\"input\": ..., \"output\": ...} rows first")
        if os.path.getsize(data_path) > self.max_bytes:
            raise ComposerError(f"the training data is over the upload limit of {self.max_bytes:,} bytes")
        brick_id, description = (brick_id or "").strip(), (description or "").strip()
        example_list = [line.strip() for line in (examples or "").splitlines() if line.strip()]
        if not brick_id or not description or not example_list:
            raise ComposerError("a new brick needs an id, a description and at least one example instruction")
        steps = int(steps)
        if not 1 <= steps <= MAX_STEPS:
            raise ComposerError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
        with self._lock:
            if self.job is not None and not self.job.done.is_set():
                raise ComposerError(f"brick {self.job.brick_id!r} is training; wait until it is done")
            job = self.job = Job(brick_id, steps)

        def progress(step: int, total: int, loss: float) -> None:
            job.step, job.total, job.loss = step, total, loss

        def work() -> None:
            try:
                job.card = self.workspace.train(brick_id, data_path, description, example_list, steps=steps,
                                                progress=progress)
            except Exception as err:  # shown in the Grow tab; the app keeps serving
                job.error = str(err) if isinstance(err, ComposerError) else f"{type(err).__name__}: {err}"
            finally:
                job.done.set()

        threading.Thread(target=work, daemon=True, name=f"grow-{brick_id}").start()
        return job
