"""Chat: one instruction in, the steps streamed as collapsible messages, then the answer.

Requests with the composer's own retrieval settings go through one shared `Batcher`, so
chats from several browser tabs that arrive together run as one engine batch. Other k /
threshold values need a `Composer` built with those settings and the same planner
(`Workspace.composer(settings=)`: the façade has no per-request retrieval settings); at most
`MAX_TUNED` such composers are kept.
Every failure becomes a chat message: a message that is not a task gets the list of what
the library can do, never a traceback.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Iterator

from composer import ComposerError, Result, StepResult
from composer.batching import Batcher

log = logging.getLogger(__name__)
MODES = ["auto", "single", "mixture", "merge", "arrow", "sparse", "base"]
MAX_TUNED = 2  # composers kept for non-default k / threshold (each holds its own copy of the base)
MAX_K = 8  # the k slider's range; Gradio refuses values outside a control's range
EXAMPLES = [
    ["Uppercase: big cat", ""],
    ["Reverse the words, then uppercase: hello big world", ""],
    ["Give the capital of the country, then make an acronym: united kingdom", ""],
    ["Translate to French", "cat"],
    ["Classify the sentiment: the staff were rude", ""],
    ["Give the plural", "goose"],
]


class Runner:
    """Runs chat requests and yields each `StepResult` as it finishes, then the `Result`."""

    def __init__(self, composer, device: str | None = None, window_ms: float = 20):
        self.composer, self.device = composer, device
        self.batcher = Batcher(composer, window_ms=window_ms)
        self._tuned: OrderedDict[tuple[int, float], object] = OrderedDict()
        self._lock = threading.Lock()

    def events(self, instruction: str, input: str | None = None, mode: str = "auto", k: int | None = None,
               threshold: float | None = None, **sampling) -> Iterator[StepResult | Result]:
        settings = self.composer.settings
        k = settings.k if k is None else int(k)
        threshold = settings.threshold if threshold is None else float(threshold)
        if (k, threshold) == (settings.k, settings.threshold):
            return self._batched(instruction, input, mode, **sampling)
        return self._tuned_composer(k, threshold).stream(instruction, input, mode, **sampling)

    def _batched(self, instruction, input, mode, **sampling) -> Iterator[StepResult | Result]:
        events: queue.Queue = queue.Queue()
        future = self.batcher.submit(instruction, input, mode, on_step=lambda _, step: events.put(step), **sampling)
        future.add_done_callback(lambda _: events.put(None))
        while (event := events.get()) is not None:
            yield event
        yield future.result()  # raises the request's error

    def _tuned_composer(self, k: int, threshold: float):
        with self._lock:
            key = (k, threshold)
            if key not in self._tuned:
                settings = replace(self.composer.settings, k=k, threshold=threshold)
                self._tuned[key] = self.composer.workspace.composer(self.device, settings=settings,
                                                                    planner=self.composer.planner)
                while len(self._tuned) > MAX_TUNED:
                    self._tuned.popitem(last=False)
            self._tuned.move_to_end(key)
            return self._tuned[key]


def _code(text: str) -> str:
    """Inline code that survives backticks in user text."""
    return "`" + text.replace("`", "'") + "`" if text else "*(empty)*"


def step_message(n: int, step: StepResult) -> dict:
    """A collapsible chat message: the step's query, hits, mode, weights, input -> output, time."""
    hits = " · ".join(f"{_code(h.id)} {h.score:.2f}" for h in step.bricks) or "none"
    weights = ", ".join(f"{b} {w:.2f}" for b, w in step.weights.items()) if step.weights else "decided per token" \
        if step.mode == "arrow" else "none"
    used = ", ".join(step.used) or "base model"
    lines = [f"**Sub-instruction:** {_code(step.instruction)}",
             f"**Retrieved:** {hits}",
             f"**Mode:** {step.mode} · **weights:** {weights}",
             f"**Why:** {step.note}",
             f"**Prompted with:** {_code(step.task or step.instruction)}",
             f"**Input → output:** {_code(step.input)} → {_code(step.output)}",
             f"**Time:** {step.ms:.0f} ms · {step.prompt_tokens} prompt + {step.output_tokens} output tokens"]
    return {"role": "assistant", "content": "\n\n".join(lines),
            "metadata": {"title": f"Step {n}: {step.instruction} → {used} ({step.mode})", "status": "done",
                         "duration": round(step.ms / 1000, 3)}}


def capabilities(workspace) -> str:
    """What the library can do, as a short markdown list (the reply to a message that is no task)."""
    skills, emergent = [], []
    for entry in workspace.list():
        if not entry.ok:
            continue
        card = entry.card
        if card.kind == "emergent":
            emergent.append(card.title.replace(" (emergent neurons)", ""))
        else:
            skills.append(f"- **{card.title}** — {card.description} *e.g.* {_code(card.examples[0] + ': ...')}")
    text = "\n".join(skills) or "- (the library has no customized bricks yet: grow one in the Grow tab)"
    if emergent:
        text += f"\n\nThe base model's own skills (emergent bricks): {', '.join(emergent)}."
    return text


def error_reply(err: Exception, workspace) -> str:
    """A clear chat reply for a failed request; a non-task gets the library's skills."""
    kind = getattr(err, "kind", type(err).__name__)
    if kind == "PlanError" and "no input found" in str(err) or kind == "NoBrickError":
        why = ("I could not find a task and its text in that message." if kind == "PlanError" else
               f"No brick matches that well enough ({err}).")
        return (f"{why} Give an instruction and the text to work on, after a colon or in the input box, "
                f"e.g. `Uppercase: big cat`. Here is what the library can do:\n\n{capabilities(workspace)}")
    if isinstance(err, ComposerError):
        return f"⚠️ {err}"
    log.exception("chat request failed", exc_info=err)
    return f"⚠️ internal error ({type(err).__name__}: {err}); the app is still serving, try again."


def sampling_options(decoding: str, temperature: float, top_p: float, seed) -> dict:
    """Greedy ignores temperature/top-p; sampling passes them with the seed (blank = random)."""
    if decoding == "greedy":
        return {"temperature": 0.0}
    try:
        seed = None if seed in (None, "") else int(seed)
    except (TypeError, ValueError):
        raise ComposerError(f"seed must be a whole number, got {seed!r}") from None
    return {"temperature": float(temperature), "top_p": float(top_p), "seed": seed}


def user_message(instruction: str, input: str | None) -> dict:
    text = instruction if not input else f"{instruction}\n\n*input:* {_code(input)}"
    return {"role": "user", "content": text}


def respond(runner: Runner, history: list, instruction: str, input: str, mode: str, k, threshold,
            decoding: str, temperature: float, top_p: float, seed) -> Iterator[list]:
    """The chat event: yields the growing history (steps as they finish, then the answer)."""
    history = list(history or [])
    instruction, input = (instruction or "").strip(), (input or "").strip() or None
    if not instruction:
        yield history + [{"role": "assistant", "content": "Type an instruction, e.g. `Uppercase: big cat`."}]
        return
    history.append(user_message(instruction, input))
    pending = {"role": "assistant", "content": "planning, retrieving bricks…",
               "metadata": {"title": "Working", "status": "pending"}}
    steps: list[dict] = []
    yield history + [pending]
    try:
        options = sampling_options(decoding, temperature, top_p, seed)
        for event in runner.events(instruction, input, mode, k, threshold, **options):
            if isinstance(event, StepResult):
                steps.append(step_message(len(steps) + 1, event))
                yield history + steps + [pending]
            else:
                yield history + steps + [{"role": "assistant", "content": event.output or "(empty output)"}]
    except Exception as err:  # every failure is a chat message; the app keeps serving
        yield history + steps + [{"role": "assistant", "content": error_reply(err, runner.composer.workspace)}]
