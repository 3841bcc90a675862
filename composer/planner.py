"""Planner: instruction (+ optional payload) -> Plan, an ordered list of steps.

Step 1 reads the payload; every later step reads the previous step's output. The heuristic
planner is deterministic: it finds the payload (after `input=`, after a colon, or in
quotes), then splits what is left on sequencing cues ("then", "and then", "after that",
"afterwards", "next", "finally", "first ... then ...", ";", sentence ends, numbered lists).
"""

from __future__ import annotations

import re
from typing import Literal, Protocol

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
    planner: str = Field("heuristic", description="which planner made it (e.g. heuristic, llm, llm->heuristic)")
    note: str = Field("", description="why the planner did what it did (e.g. why an LLM plan was refused)")


class Planner(Protocol):
    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan: ...


_INPUT_EQ = re.compile(r"""\binput\s*=\s*(?:"([^"]*)"|'([^']*)'|(.+))\s*$""", re.I | re.S)
_QUOTED = re.compile(r""""([^"]+)"|“([^”]+)”|'([^']+)'(?![a-z])""")
_NUMBERED = re.compile(r"(?:^|\s)\(?\d+[.)]\s+")
_CUES = re.compile(
    r"\s*(?:;|\n+|(?<=[a-z0-9\"'])[.!?](?:\s+|$)|,?\s*\b(?:and\s+then|after\s+that|afterwards|then|next|finally)\b,?)\s*",
    re.I)
_FILLER = re.compile(r"^(?:(?:and|first|firstly|please|now|lastly|also)\b[,]?\s*)+", re.I)


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1].strip()
    return text


def split_payload(instruction: str) -> tuple[str, str | None]:
    """(the instruction without its payload, the payload or None)."""
    if m := _INPUT_EQ.search(instruction):
        payload = next(g for g in m.groups() if g is not None)
        return instruction[: m.start()].rstrip(" ,;:"), payload.strip()
    if ":" in instruction:
        head, _, tail = instruction.partition(":")
        if tail.strip():
            return head, _strip_quotes(tail)
    if m := _QUOTED.search(instruction):
        payload = next(g for g in m.groups() if g is not None)
        return (instruction[: m.start()] + instruction[m.end():]).strip(" ,;"), payload.strip()
    return instruction, None


def split_steps(text: str) -> list[str]:
    """Sub-instructions in order, split on numbered lists and sequencing cues."""
    parts = _NUMBERED.split(text) if len(_NUMBERED.findall(text)) >= 2 else [text]
    steps = []
    for part in parts:
        for piece in _CUES.split(part):
            piece = _FILLER.sub("", piece.strip(" ,.;:")).strip(" ,.;:")
            if piece:
                steps.append(piece)
    return steps


class HeuristicPlanner:
    """Rule-based and deterministic: the same instruction always gives the same plan."""

    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan:
        if not instruction or not instruction.strip():
            raise PlanError("the instruction is empty")
        text, payload = instruction.strip(), input
        if payload is None:
            text, payload = split_payload(text)
            if payload is None:
                raise PlanError("no input found: put it after a colon, in quotes, or pass input=...")
        steps = split_steps(text)
        if not steps:
            raise PlanError(f"no step found in {instruction!r}")
        return Plan(instruction=instruction, payload=payload,
                    steps=[Step(instruction=s, mode=mode) for s in steps])

