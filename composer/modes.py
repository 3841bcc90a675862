"""Step modes: how a step's retrieved bricks become the engine's per-row mix.

Each mode is a small function `(hits, settings, merger) -> Choice` in one registry. `auto`
(the planner's default) runs the top brick alone; when the runner-up is within `margin` the
trace calls it a close call and names it, and if the top brick returns its input unchanged the
runner-up runs instead and its output is kept when it changes the input: a step asks for a
change, and "reverse it" on one word reads as `reverse_words` as readily as `reverse` (one
word's word order is itself). In a close call a brick whose table holds the request's
payload (`BrickLibrary.known_inputs`; the first step's input, not an earlier brick's output)
runs before a top brick whose table does not: "give me the flip side of win" reads `reverse`
0.68 against `antonym` 0.66, and "win" is a key of the antonym table. It never blends on its
own: on the near-tied steps of the request corpora (`benchmarks/near_ties.py`) the top brick
alone was right far more often than a blend of the tied skills, which is mostly neither
("HEL", "friendses"). A step whose best brick scores under `threshold` runs on the base
alone whatever the mode, and the trace says so.

- single: the top brick.
- mixture (LoraRetriever, arXiv 2402.09997): the top-k eligible bricks as one weighted row,
  weights softmax(score / temperature); nothing is merged.
- merge: the same weights, but the bricks are merged into one transient brick first
  (`merge_method`, default TIES) — one LoRA per row instead of k.
- arrow (arXiv 2405.11157): every eligible brick is a candidate and each token, in each
  layer, picks its top `arrow_k` by the bricks' SVD prototypes.

Emergent bricks (FFN neuron masks of the base's own skills) have their own lane
(`choose_step`): a step picks among customized bricks; the best emergent brick runs the step
(sparse, on the base) only when the request asks for it (`sparse`) or when no customized
brick qualifies — none clears the threshold, or the emergent brick leads the best one by at
least `emergent_margin` (a near-exact match to the base's own skill against a weak one). When neither lane has a brick above the threshold the step is
refused with `NoBrickError`, naming the closest bricks, instead of returning the base model's
guess; `base` runs the base model alone on purpose. A step nearer to one of the library's
out-of-scope requests (`LibraryMeta.out_of_scope`) than to every brick is refused the same
way, however well a brick scores: "translate it into german" scores 0.74 on a French brick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from composer.engine.batch import Route
from composer.errors import ComposerError
from composer.index import BrickHit, OutOfScopeHit


@dataclass(frozen=True)
class ModeSettings:
    threshold: float = 0.43     # below: no brick is trusted (scores pool two cosines: index.POOL)
    margin: float = 0.03        # auto: a runner-up closer than this makes the step a close call in the trace
    k: int = 3                  # bricks a mixture may combine
    temperature: float = 0.05   # mixture weights: softmax(score / temperature) (LoraRetriever-style)
    merge_method: str = "ties"  # merge mode: any of composer.ops.merge.MERGE_METHODS
    merge_density: float = 0.5  # for the methods that sparsify (ties, dare_*, magnitude_prune)
    arrow_k: int = 2            # arrow mode: bricks each token routes to
    arrow_temperature: float = 1.0
    emergent_margin: float = 0.15  # an emergent brick must lead the best customized one by this much


class Merger(Protocol):
    def merged(self, weights: dict[str, float], method: str) -> str:
        """Id of a transient brick that merges `weights` with `method` (made once, reused)."""


class NoBrickError(ComposerError):
    """No brick in the library matches a step well enough; `closest` holds the best hits."""

    def __init__(self, message: str, closest: list[BrickHit] | None = None):
        super().__init__(message)
        self.closest = closest or []


@dataclass(frozen=True)
class Choice:
    mode: str
    mix: dict[str, float] | Route | None
    used: list[str]
    weights: dict[str, float] | None  # None: decided per token (arrow) or no brick (base)
    note: str
    hits: list[BrickHit] = field(default_factory=list)  # the lane's hits, shown in the trace
    emergent: str | None = None  # the emergent brick whose neuron mask the row runs under
    runner_up: "Choice | None" = None  # auto: what runs instead if this leaves its input unchanged


def _eligible(hits: list[BrickHit], s: ModeSettings) -> list[BrickHit]:
    return [h for h in hits if h.score >= s.threshold]


def _softmax_weights(hits: list[BrickHit], s: ModeSettings) -> dict[str, float]:
    chosen = _eligible(hits, s)[: s.k]
    exps = [math.exp((h.score - chosen[0].score) / s.temperature) for h in chosen]
    return {h.id: round(e / sum(exps), 4) for h, e in zip(chosen, exps)}


def _shown(weights: dict[str, float]) -> str:
    return ", ".join(f"{b} {w:.2f}" for b, w in weights.items())


def single(hits: list[BrickHit], s: ModeSettings, merger: Merger) -> Choice:
    top = hits[0]
    return Choice("single", {top.id: 1.0}, [top.id], {top.id: 1.0}, f"single brick {top.id} (score {top.score:.2f})")


def mixture(hits: list[BrickHit], s: ModeSettings, merger: Merger) -> Choice:
    weights = _softmax_weights(hits, s)
    return Choice("mixture", weights, list(weights), weights,
                  f"mixture of {len(weights)} brick(s): {_shown(weights)}")


def merge(hits: list[BrickHit], s: ModeSettings, merger: Merger) -> Choice:
    weights = _softmax_weights(hits, s)
    merged = merger.merged(weights, s.merge_method)
    return Choice("merge", {merged: 1.0}, list(weights), weights,
                  f"{s.merge_method} merge of {len(weights)} brick(s): {_shown(weights)}")


def arrow(hits: list[BrickHit], s: ModeSettings, merger: Merger) -> Choice:
    candidates = [h.id for h in _eligible(hits, s)]
    k = min(s.arrow_k, len(candidates))
    return Choice("arrow", Route.arrow(candidates, k=k, temperature=s.arrow_temperature), candidates, None,
                  f"arrow routing: each token picks {k} of {', '.join(candidates)}")


STEP_MODES: dict[str, Callable[[list[BrickHit], ModeSettings, Merger], Choice]] = {
    "single": single, "mixture": mixture, "merge": merge, "arrow": arrow}


LANES = ("auto", "sparse", "base")  # modes decided by choose_step, not by a STEP_MODES function


def check_mode(mode: str) -> str:
    if mode not in LANES and mode not in STEP_MODES:
        raise ComposerError(f"unknown mode {mode!r}; choose one of {', '.join([*LANES[:1], *STEP_MODES, *LANES[1:]])}")
    return mode


def _shown_hits(hits: list[BrickHit]) -> str:
    return ", ".join(f"{h.id} {h.score:.2f}" for h in hits[:3]) or "the library is empty"


def choose_step(hits: list[BrickHit], mode: str, s: ModeSettings, merger: Merger,
                kind: Callable[[str], str], k: int = 3, out_of_scope: OutOfScopeHit | None = None,
                knows: frozenset[str] = frozenset()) -> Choice:
    """A step's choice with emergent bricks in their own lane (rule in the module docstring);
    `knows`: the bricks whose table holds the step's input (auto's close calls)."""
    check_mode(mode)
    custom = [h for h in hits if kind(h.id) != "emergent"][:k]
    emergent = [h for h in hits if kind(h.id) == "emergent"][:k]
    if mode == "base":
        return Choice("base", None, [], None, "base model alone (asked for)", hits=custom)
    ranked = sorted(hits, key=lambda h: -h.score)
    if out_of_scope is not None and ranked and s.threshold <= ranked[0].score < out_of_scope.score:
        raise NoBrickError(f"this step reads as something no brick of the library does: it is nearer to the "
                           f"out-of-scope request {out_of_scope.text!r} ({out_of_scope.score:.2f}) than to any "
                           f"brick (closest: {_shown_hits(ranked)}); reword it, or use mode 'base' to run the "
                           "base model alone", ranked[:3])
    if mode == "sparse":
        if not emergent:
            raise NoBrickError("sparse mode needs an emergent brick and the library has none", hits[:3])
        top = emergent[0]
        return Choice("emergent", None, [top.id], None, f"emergent brick {top.id} (score {top.score:.2f}, asked "
                      "for sparse): the base with that skill's FFN neurons only", hits=emergent, emergent=top.id)
    lead = emergent[0].score - (custom[0].score if custom else -1.0) if emergent else -1.0
    if custom and custom[0].score >= s.threshold and lead < s.emergent_margin:
        return replace(choose(custom, mode, s, merger, knows), hits=custom)
    if emergent and emergent[0].score >= s.threshold:
        top = emergent[0]
        return Choice("emergent", None, [top.id], None, f"emergent brick {top.id} (score {top.score:.2f}): no "
                      f"customized brick above {s.threshold} within {s.emergent_margin} of it; the base with "
                      "that skill's FFN neurons only",
                      hits=emergent, emergent=top.id)
    raise NoBrickError(f"no brick matches this step well enough (threshold {s.threshold}; closest: "
                       f"{_shown_hits(ranked)}); reword it, or use mode 'base' to run the base model alone",
                       ranked[:3])


def choose(hits: list[BrickHit], mode: str, s: ModeSettings, merger: Merger,
           knows: frozenset[str] = frozenset()) -> Choice:
    """The step's mix: base alone under the threshold, else the (resolved) mode's."""
    check_mode(mode)
    if not hits or hits[0].score < s.threshold:
        best = f"best {hits[0].id} scored {hits[0].score:.2f}" if hits else "the library is empty"
        return Choice("base", None, [], None, f"base model alone: no brick above threshold {s.threshold} ({best})")
    if mode == "auto":
        return _auto(hits, s, merger, knows)
    return STEP_MODES[mode](hits, s, merger)


def _auto(hits: list[BrickHit], s: ModeSettings, merger: Merger, knows: frozenset[str] = frozenset()) -> Choice:
    known = next((h for h in _eligible(hits, s)[1:] if hits[0].score - h.score < s.margin and h.id in knows), None)
    if known is not None and hits[0].id not in knows:  # the close call's brick that knows the input runs first
        choice = _auto([known, *(h for h in hits if h is not known)], s, merger)
        return replace(choice, note=f"{choice.note}; {known.id} knows the input (a key of its table), "
                                    f"{hits[0].id} ({hits[0].score:.2f}) does not")
    choice = single(hits, s, merger)
    close = [h for h in _eligible(hits, s)[1:] if hits[0].score - h.score < s.margin]
    if not close:
        return choice
    alt = close[0]
    runner_up = Choice("single", {alt.id: 1.0}, [alt.id], {alt.id: 1.0},
                       f"single brick {alt.id} (score {alt.score:.2f}), the close call's runner-up: "
                       f"{hits[0].id} (score {hits[0].score:.2f}) left the input unchanged")
    return replace(choice, runner_up=runner_up,
                   note=f"{choice.note}; a close call: {_shown_hits(close)} within {s.margin} of it "
                        "(auto never blends; reword the step or ask for mode 'mixture')")
