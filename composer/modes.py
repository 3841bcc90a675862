"""Step modes: how a step's retrieved bricks become the engine's per-row mix.

Each mode is a small function `(hits, settings) -> Choice` in one registry. `auto` (the
planner's default) picks `single` when the top brick clearly wins — its score beats the
runner-up by at least `margin` — and `mixture` otherwise; a step whose best brick scores
under `threshold` runs on the base alone whatever the mode, and the trace says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from composer.errors import ComposerError
from composer.index import BrickHit


@dataclass(frozen=True)
class ModeSettings:
    threshold: float = 0.45     # below: no brick is trusted, run the base alone
    margin: float = 0.08        # auto: a lead this large means one brick clearly wins
    k: int = 3                  # bricks a mixture may combine
    temperature: float = 0.05   # mixture weights: softmax(score / temperature) (LoraRetriever-style)


@dataclass(frozen=True)
class Choice:
    mode: str
    mix: dict[str, float] | None
    note: str


def _eligible(hits: list[BrickHit], s: ModeSettings) -> list[BrickHit]:
    return [h for h in hits if h.score >= s.threshold]


def single(hits: list[BrickHit], s: ModeSettings) -> Choice:
    top = hits[0]
    return Choice("single", {top.id: 1.0}, f"single brick {top.id} (score {top.score:.2f})")


def mixture(hits: list[BrickHit], s: ModeSettings) -> Choice:
    """A weighted mixture of the top-k eligible bricks, weights softmax(score / T), no merge."""
    chosen = _eligible(hits, s)[: s.k]
    exps = [math.exp((h.score - chosen[0].score) / s.temperature) for h in chosen]
    weights = {h.id: round(e / sum(exps), 4) for h, e in zip(chosen, exps)}
    shown = ", ".join(f"{b} {w:.2f}" for b, w in weights.items())
    return Choice("mixture", weights, f"mixture of {len(weights)} brick(s): {shown}")


STEP_MODES: dict[str, Callable[[list[BrickHit], ModeSettings], Choice]] = {"single": single, "mixture": mixture}


def check_mode(mode: str) -> str:
    if mode != "auto" and mode not in STEP_MODES:
        raise ComposerError(f"unknown mode {mode!r}; choose auto or one of {', '.join(STEP_MODES)}")
    return mode


def choose(hits: list[BrickHit], mode: str, s: ModeSettings) -> Choice:
    """The step's mix: base alone under the threshold, else the (resolved) mode's."""
    check_mode(mode)
    if not hits or hits[0].score < s.threshold:
        best = f"best {hits[0].id} scored {hits[0].score:.2f}" if hits else "the library is empty"
        return Choice("base", None, f"base model alone: no brick above threshold {s.threshold} ({best})")
    if mode == "auto":
        eligible = _eligible(hits, s)
        clear = len(eligible) == 1 or eligible[0].score - eligible[1].score >= s.margin
        mode = "single" if clear else "mixture"
    return STEP_MODES[mode](hits, s)
