"""The Composer façade: every front end (API, CLI, UI, LangChain, HTTP) goes through it.

instruction -> planner -> Plan -> index search per step -> brick choice -> engine -> Result.
`run_batch` advances all requests step by step, so step d of every request runs in one
engine batch, each row with its own brick.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Sequence

from pydantic import BaseModel

from composer.engine.engine import Engine, load_base
from composer.errors import ComposerError
from composer.index import BrickHit, BrickIndex, load_embedder
from composer.library import BrickLibrary
from composer.modes import ModeSettings, check_mode, choose
from composer.planner import HeuristicPlanner, Mode, Plan, Planner
from composer.prompt import render
from composer.storage import atomic_dir

ROOT = Path(__file__).resolve().parents[1]


class StepResult(BaseModel):
    """What one step did: its query, what it read, what retrieval found, what ran, what came out."""

    instruction: str
    input: str
    bricks: list[BrickHit]
    mode: str
    used: list[str]
    weights: dict[str, float] | None
    emergent: str | None = None
    note: str
    output: str


class Result(BaseModel):
    instruction: str
    output: str
    plan: Plan
    steps: list[StepResult]


class Composer:
    """Plan, retrieve, run. Collaborators are passed in; `from_default` / `from_path` wire them."""

    def __init__(self, engine: Engine, index: BrickIndex, planner: Planner | None = None, *,
                 settings: ModeSettings = ModeSettings(), max_input_chars: int = 200, ascii_only: bool = True):
        self.engine, self.index = engine, index
        self.planner = planner or HeuristicPlanner()
        self.settings = settings
        self._scratch = tempfile.TemporaryDirectory(prefix="composer-merges-")  # merge-mode bricks
        self.max_input_chars, self.ascii_only = max_input_chars, ascii_only

    @classmethod
    def from_path(cls, base: str | Path, bricks: str | Path, embedder: str | None = None,
                  index: str | Path | None = None, device: str | None = None, **options) -> "Composer":
        """Any HF causal-LM folder + any library folder; the index lives in `index` (default
        `<bricks>/.index`) and is rebuilt when missing or stale."""
        library = BrickLibrary(bricks)
        model, tokenizer = load_base(base, device)
        brick_index = BrickIndex(library, index or Path(bricks) / ".index", load_embedder(embedder), embedder)
        return cls(Engine(model, tokenizer, library), brick_index.load_or_build(), **options)

    @classmethod
    def from_default(cls, device: str | None = None, **options) -> "Composer":
        """The embedded default shipped in the repository: `bricks/` and `index/`, offline."""
        bricks = ROOT / "bricks"
        if not (bricks / "base" / "config.json").is_file():
            raise ComposerError(f"the default library is missing at {bricks}; rebuild it with "
                                "`python -m composer.defaults.build`")
        return cls.from_path(bricks / "base", bricks, index=ROOT / "index", device=device, **options)

    # -- verbs ---------------------------------------------------------------------------
    def retrieve(self, query: str, k: int = 3) -> list[BrickHit]:
        if not query or not query.strip():
            raise ComposerError("the query is empty")
        return self.index.search(query, k)

    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan:
        plan = self.planner.plan(instruction, input, mode)
        self._check_text(plan.payload, "input")
        return plan

    def run(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Result:
        """Plan, retrieve and run one instruction; `mode` forces how every step combines bricks."""
        return self.run_batch([instruction], None if input is None else [input], mode)[0]

    def run_batch(self, instructions: Sequence[str], inputs: Sequence[str | None] | None = None,
                  mode: Mode = "auto") -> list[Result]:
        if isinstance(instructions, str):
            raise ComposerError("run_batch takes a list of instructions; use run() for one")
        if inputs is not None and len(inputs) != len(instructions):
            raise ComposerError(f"{len(instructions)} instructions but {len(inputs)} inputs")
        check_mode(mode)
        for text in instructions:
            self._check_text(text, "instruction")
        plans = [self.plan(t, None if inputs is None else inputs[i], mode) for i, t in enumerate(instructions)]
        current = [p.payload for p in plans]
        traces: list[list[StepResult]] = [[] for _ in plans]
        for depth in range(max(len(p.steps) for p in plans)):
            live = [i for i, p in enumerate(plans) if depth < len(p.steps)]
            queries = [plans[i].steps[depth].instruction for i in live]
            hits = self.index.search_many(queries, max(3, self.settings.k))
            sparse = [self._emergent(h) for h in hits]
            chosen = [choose([x for x in h if x.id != e and self._kind(x.id) != "emergent"] if e is None else [],
                             plans[i].steps[depth].mode, self.settings, self)
                      for h, e, i in zip(hits, sparse, live)]
            prompts = [render(q, current[i]) for q, i in zip(queries, live)]
            outputs = self.engine.generate(prompts, [c.mix for c in chosen], emergent=sparse)
            for i, q, h, c, e, out in zip(live, queries, hits, chosen, sparse, outputs):
                out = out.strip()
                note = c.note if e is None else f"emergent brick {e}: the base with that skill's FFN neurons only"
                traces[i].append(StepResult(instruction=q, input=current[i], bricks=h, mode=c.mode if e is None
                                            else "emergent", used=c.used if e is None else [e], weights=c.weights,
                                            emergent=e, note=note, output=out))
                current[i] = out
        return [Result(instruction=p.instruction, output=current[i], plan=p, steps=traces[i])
                for i, p in enumerate(plans)]

    # -- helpers -------------------------------------------------------------------------
    def _kind(self, brick_id: str) -> str:
        return self.engine.library.card(brick_id).kind

    def _emergent(self, hits: list[BrickHit]) -> str | None:
        """An emergent brick runs a step (sparse, on the base) only when it is the best hit
        and clears the threshold: a LoRA brick that wins keeps the dense base it was trained on."""
        if hits and hits[0].score >= self.settings.threshold and self._kind(hits[0].id) == "emergent":
            return hits[0].id
        return None

    def merged(self, weights: dict[str, float], method: str) -> str:
        """A transient brick merging `weights` (merge mode); made once per (bricks, method)."""
        from composer.ops.merge import get_method, merge_adapters
        from composer.ops.merge.peft_io import read_lora_folder, write_lora_folder

        key = hashlib.sha256(json.dumps([sorted(weights.items()), method,
                                         self.engine.library.fingerprint()]).encode()).hexdigest()[:16]
        brick_id = f"merge:{key}"
        folder = Path(self._scratch.name) / key
        if not folder.is_dir():
            library = self.engine.library
            folders = [read_lora_folder(library.path(b)) for b in weights]
            params = {"density": self.settings.merge_density} \
                if any(p.name == "density" for p in get_method(method).params) else {}
            merged = merge_adapters([f.modules for f in folders], list(weights.values()), method, **params)
            with atomic_dir(folder) as tmp:
                write_lora_folder(tmp, merged, folders[0].config)
            self.engine.add_transient(brick_id, folder, library.card(next(iter(weights))).base_fingerprint)
        return brick_id

    def _check_text(self, text: str, what: str) -> None:
        if len(text) > self.max_input_chars:
            raise ComposerError(f"the {what} is {len(text)} characters; the limit is {self.max_input_chars}")
        if self.ascii_only and not text.isascii():
            bad = next(c for c in text if not c.isascii())
            raise ComposerError(f"the {what} has a non-ASCII character {bad!r}; this model reads ASCII only")
