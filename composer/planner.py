"""Planner: instruction (+ optional payload) -> Plan, an ordered list of steps.

Step 1 reads the payload; every later step reads the previous step's output. The heuristic
planner is deterministic and explains itself in `Plan.explain`:

1. The payload: `input=`, else after `input=...`, a colon or in quotes; else, with a search
   function, written inline ("capital of Japan", "Spell paris backwards"): every span of the
   first step is scored as a payload — retrieval of what is left of the sentence, a bonus when
   the span is a known input of the brick it retrieves (a table key), a cost for instruction
   words inside it and for content words left outside it — and the best span wins.
2. Steps: split on sequencing cues ("then", "and then", "after that", "next", "finally", ";",
   sentence ends, numbered lists); then, with a search function, on commas and "and" when —
   and only when — every piece retrieves a brick with at least `split_score` (retrieval-guided
   segmentation: "remove the vowels and reverse it" splits, "uppercase salt and pepper" does not).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Callable, Literal, Protocol

from pydantic import BaseModel, Field

from composer.errors import ComposerError


class PlanError(ComposerError):
    """The instruction cannot be turned into a plan; the message says why."""


Mode = Literal["auto", "single", "mixture", "merge", "arrow", "sparse", "base"]


class Step(BaseModel):
    instruction: str = Field(description="the sub-instruction, also the retrieval query")
    mode: Mode = Field("auto", description="how the step's bricks combine; auto = decided from retrieval scores")


class Plan(BaseModel):
    instruction: str
    payload: str
    steps: list[Step] = Field(min_length=1)
    explain: list[str] = Field(default_factory=list, description="how the payload was found and why steps split")
    planner: str = Field("heuristic", description="which planner made it (e.g. heuristic, llm, llm->heuristic)")
    note: str = Field("", description="why the planner did what it did (e.g. why an LLM plan was refused)")


class Planner(Protocol):
    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan: ...


Search = Callable[[list[str], int], list[list]]  # BrickIndex.search_many: queries, k -> hits per query

_INPUT_EQ = re.compile(r"""\binput\s*=\s*(?:"([^"]*)"|'([^']*)'|(.+))\s*$""", re.I | re.S)
_QUOTED = re.compile(r""""([^"]+)"|“([^”]+)”|'([^']+)'(?![a-z])""")
_NUMBERED = re.compile(r"(?:^|\s)\(?\d+[.)]\s+")
_CUES = re.compile(
    r"\s*(?:;|\n+|(?<=[a-z0-9\"'])[.!?](?:\s+|$)|,?\s*\b(?:and\s+then|after\s+that|afterwards|then|next|finally)\b,?)\s*",
    re.I)
_FILLER = re.compile(r"^(?:(?:and|first|firstly|please|now|lastly|also)\b[,]?\s*)+", re.I)
_WEAK = re.compile(r"\s*,\s*|\s+and\s+", re.I)  # separators a step may split on, if retrieval agrees
_WORD = re.compile(r"[a-z0-9']+")
# Words that join an instruction to its payload or pad a request: never a payload's first or
# last word (unless the span is a known input), never a cost when left outside the payload.
_GLUE = frozenset("""a an the of in into to for from on at by with as through using via around is are be was
    it its this that these those me you your please can could would will do does did how what what's whats which
    who where when word words text phrase string term noun name say tell give get make put write turn then and or
    so just now here there one""".split())
_TRAILING = frozenset("of in into to for from on at by with as through using via the a an and please".split())
PAYLOAD_COST, REST_COST = 0.1, 0.15  # per card word inside a payload, per other content word left outside
MAX_SPAN = 6      # longest inline payload, in words
CANDIDATES = 10   # inline payload spans whose remainders are retrieved (best by the cheap score)


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def split_payload(instruction: str) -> tuple[str, str | None, str]:
    """(the instruction without its payload, the payload or None, how it was found)."""
    if m := _INPUT_EQ.search(instruction):
        payload = next(g for g in m.groups() if g is not None)
        return instruction[: m.start()].rstrip(" ,;:"), payload.strip(), "payload after input="
    if ":" in instruction:
        head, _, tail = instruction.partition(":")
        if tail.strip():
            return head, _strip_quotes(tail), "payload after the colon"
    if m := _QUOTED.search(instruction):
        payload = next(g for g in m.groups() if g is not None)
        return (instruction[: m.start()] + instruction[m.end():]).strip(" ,;"), payload.strip(), \
            "payload in quotes"
    return instruction, None, ""


def _clean(piece: str) -> str:
    return _FILLER.sub("", piece.strip(" ,.;:?!")).strip(" ,.;:?!")


def split_steps(text: str) -> list[str]:
    """Sub-instructions in order, split on numbered lists and sequencing cues."""
    parts = _NUMBERED.split(text) if len(_NUMBERED.findall(text)) >= 2 else [text]
    return [piece for part in parts for piece in map(_clean, _CUES.split(part)) if piece]


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class HeuristicPlanner:
    """Rule-based and deterministic: the same instruction (and library) always gives the same plan.

    Without `search` it splits on sequencing cues only and needs a delimited payload; with
    `search` (BrickIndex.search_many) and `library` it also segments on commas and "and" and
    finds inline payloads, guided by retrieval.
    """

    def __init__(self, search: Search | None = None, library=None, split_score: float = 0.45,
                 payload_score: float = 0.35):
        self.search, self.library = search, library
        self.split_score, self.payload_score = split_score, payload_score
        self._generation = None
        self._vocabulary: frozenset[str] = frozenset()
        self._keys: dict[str, frozenset[str]] = {}

    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan:
        if not instruction or not instruction.strip():
            raise PlanError("the instruction is empty")
        text, payload, explain = instruction.strip(), input, []
        if payload is not None:
            explain.append("payload passed separately")
        else:
            text, payload, how = split_payload(text)
            if how:
                explain.append(how)
        segments = split_steps(text)
        if not segments:
            raise PlanError(f"no step found in {instruction!r}")
        if payload is None and self.search:  # before splitting on "and": a payload may hold one
            segments[0], payload = self._inline_payload(segments[0], explain)
        steps = [s for segment in segments for s in (self._segment(segment, explain) if self.search else [segment])]
        if payload is None:
            raise PlanError("no input found: put it after a colon, in quotes, or pass input=..."
                            + (" (no part of the first step reads as one)" if self.search else ""))
        return Plan(instruction=instruction, payload=payload, explain=explain,
                    steps=[Step(instruction=s, mode=mode) for s in steps])

    # -- retrieval-guided segmentation ---------------------------------------------------
    def _best(self, queries: list[str]) -> list[tuple[str, float]]:
        """(top brick, its score) per query; ("", 0) when nothing is indexed."""
        hits = self.search(queries, 1) if queries else []
        return [(h[0].id, h[0].score) if h else ("", 0.0) for h in hits]

    def _segment(self, segment: str, explain: list[str]) -> list[str]:
        """`segment` whole, or split at commas / "and" where every piece retrieves confidently;
        among such splits the one with the most pieces, then the best mean score."""
        seps = list(_WEAK.finditer(segment))[:4]
        if not seps:
            return [segment]
        options = []
        for cut in itertools.product((False, True), repeat=len(seps)):
            if not any(cut):
                continue
            pieces, start = [], 0
            for sep, on in zip(seps, cut):
                if on:
                    pieces.append(_clean(segment[start:sep.start()]))
                    start = sep.end()
            pieces.append(_clean(segment[start:]))
            if all(set(_words(p)) - _GLUE for p in pieces):
                options.append(pieces)
        queries = sorted({p for pieces in options for p in pieces})
        scores = dict(zip(queries, self._best(queries)))
        good = [(len(p), sum(scores[q][1] for q in p) / len(p), p) for p in options
                if all(scores[q][1] >= self.split_score for q in p)]
        if not good:
            return [segment]
        _, _, pieces = max(good, key=lambda g: (g[0], g[1]))
        explain.append(f"split {segment!r} at commas/'and': " + ", ".join(
            f"{q!r} -> {scores[q][0]} {scores[q][1]:.2f}" for q in pieces) + f" (each >= {self.split_score})")
        return pieces

    # -- inline payloads ---------------------------------------------------------------
    def _library_facts(self) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
        """Instruction vocabulary (every word of every card) and known inputs per brick (the
        `input` of its data.jsonl rows), re-read when the library changes."""
        if self.library is None:
            return frozenset(), {}
        generation = self.library.generation()
        if generation != self._generation:
            vocabulary, keys = set(), {}
            for card in self.library.cards():
                for text in card.text_for_index():
                    vocabulary.update(_words(text))
                data = self.library.path(card.id) / "data.jsonl"
                if data.is_file():
                    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
                    keys[card.id] = frozenset(str(r.get("input", "")).lower() for r in rows if isinstance(r, dict))
            self._vocabulary, self._keys, self._generation = frozenset(vocabulary - _GLUE), keys, generation
        return self._vocabulary, self._keys

    def _inline_payload(self, step: str, explain: list[str]) -> tuple[str, str | None]:
        """(the step without its payload, the payload) for the best-scoring span, or (step, None)."""
        tokens = step.split()
        bare = [t.strip("\"'.,;:?!()").lower() for t in tokens]
        vocabulary, keys = self._library_facts()
        known = set().union(*keys.values()) if keys else set()
        candidates = []
        for i in range(len(tokens)):
            for j in range(i + 1, min(len(tokens), i + MAX_SPAN) + 1):
                if (i, j) == (0, len(tokens)):
                    continue
                span = " ".join(bare[i:j])
                is_key = span in known
                if not is_key and (bare[i] in _GLUE or bare[j - 1] in _GLUE or not span.strip()):
                    continue
                left, right = tokens[:i], tokens[j:]
                while left and left[-1].strip(",.;:?!").lower() in _TRAILING and not right:
                    left = left[:-1]  # "capital of" -> "capital"
                it = "it" + tokens[j - 1][len(tokens[j - 1].rstrip(",;")):]  # keep a comma that ends the span
                rest = " ".join(left + ([it] if right and left else []) + right).strip(" ,.;:?!")
                if not set(_words(rest)) - _GLUE:
                    continue
                cost = PAYLOAD_COST * sum(w in vocabulary for w in _words(" ".join(bare[i:j]))) + \
                    REST_COST * sum(w not in vocabulary and w not in _GLUE for w in _words(rest))
                payload = " ".join(t.strip("\"'.,;:?!()") for t in tokens[i:j])
                candidates.append(((0.3 if is_key else 0.0) - cost, j - i, -i, rest, payload, cost))
        candidates = sorted(candidates, reverse=True)[:CANDIDATES]  # the cheap score picks what to retrieve
        if not candidates:
            return step, None
        queries = list(dict.fromkeys([step, *(c[3] for c in candidates)]))
        best = dict(zip(queries, self._best(queries)))
        scored = []
        for _, length, neg_i, rest, payload, cost in candidates:
            brick, score = best[rest]
            fits = payload.lower() in keys.get(brick, ())  # a table brick's known input
            total = score - cost + (0.2 if fits else 0.0) - (0.3 if brick in keys and not fits else 0.0)
            scored.append((round(total, 4), score, length, neg_i, rest, payload, brick))
        total, score, _, _, rest, payload, brick = max(scored)
        if score < self.payload_score:
            return step, None
        if best[step][1] >= score and payload.lower() not in keys.get(brick, ()):
            explain.append(f"no payload inside {step!r}: as a whole it retrieves {best[step][0]} "
                           f"{best[step][1]:.2f}, no worse than without {payload!r}")
            return step, None
        why = f"; {payload.lower()!r} is a known input of {brick}" if payload.lower() in keys.get(brick, ()) else ""
        explain.append(f"payload {payload!r} found inline in {step!r}: the rest, {rest!r}, retrieves {brick} "
                       f"{score:.2f}{why}")
        return rest, payload
