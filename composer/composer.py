"""The Composer façade: every front end (API, CLI, UI, LangChain, HTTP, batch jobs) goes through it.

instruction -> planner -> Plan -> index search per step -> brick choice -> engine -> Result.
`run_batch` advances all requests step by step, so step d of every request runs in one
engine batch, each row with its own brick. A step picks among customized bricks; emergent
bricks have their own lane (see `choose_step`).
"""

from __future__ import annotations

import hashlib
import json
import queue
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Literal, Mapping, Sequence

from pydantic import BaseModel, Field

from composer.engine.engine import Engine
from composer.errors import ComposerError
from composer.index import BrickHit, BrickIndex, Retrieval
from composer.modes import Choice, ModeSettings, check_mode, choose_step
from composer.planner import HeuristicPlanner, Mode, Plan, Planner
from composer.tagger import PayloadTagger
from composer.prompt import PromptFormat, prompt_format, resolve_format
from composer.storage import atomic_dir
from composer.text import check_text

MAX_MERGES = 8  # transient merge-mode bricks kept at once (least recently used dropped)


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
    task: str = Field("", description="the task line the bricks were prompted with (see Composer.task)")
    output: str
    ms: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0


class Result(BaseModel):
    instruction: str
    output: str
    plan: Plan
    steps: list[StepResult]


class ItemError(BaseModel):
    """`run_batch(..., errors="return")` puts one of these where a bad item's Result would be."""

    index: int
    instruction: str
    error: str
    kind: str


@dataclass(frozen=True)
class Sampling:
    """Generation options for one call; temperature 0 means greedy (as in OpenAI's API)."""

    max_new_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ComposerError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 5 or self.temperature != self.temperature:
            raise ComposerError(f"temperature must be between 0 and 5, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ComposerError(f"top_p must be in (0, 1], got {self.top_p}")

    def engine_options(self) -> dict:
        sample = self.temperature > 0
        return {"max_new_tokens": self.max_new_tokens, "do_sample": sample, "seed": self.seed,
                "temperature": self.temperature if sample else 1.0, "top_p": self.top_p if sample else 1.0}


StepCallback = Callable[[int, StepResult], None]  # (item index, the step just finished)


def index_planner(index: BrickIndex, **options) -> HeuristicPlanner:
    """The heuristic planner guided by `index`: it reads a request's structure with the index's
    untuned scores (`ProjectedEmbedder.encode_untuned`), and with the payload tagger of its embedder."""
    return HeuristicPlanner(partial(index.search_many, tuned=False), index.library,
                            tagger=PayloadTagger.load(index.embedder), **options)


class Composer:
    """Plan, retrieve, run. Collaborators are passed in; `from_default` / `from_path` wire them."""

    def __init__(self, engine: Engine, index: BrickIndex, planner: Planner | None = None, *,
                 settings: ModeSettings = ModeSettings(), max_input_chars: int = 200, ascii_only: bool = True,
                 task_line: Literal["card", "step"] = "card", workspace=None):
        if task_line not in ("card", "step"):
            raise ComposerError(f"task_line must be 'card' or 'step', got {task_line!r}")
        self.engine, self.index = engine, index
        self.task_line = task_line
        self.planner = planner or index_planner(index, aside_score=settings.threshold)
        self.settings = settings
        self.workspace = workspace
        self.max_input_chars, self.ascii_only = max_input_chars, ascii_only
        self._scratch = tempfile.TemporaryDirectory(prefix="composer-merges-")  # merge-mode bricks
        self._merges: OrderedDict[str, str] = OrderedDict()
        self._format: tuple[tuple, PromptFormat] | None = None  # (library generation, format)
        self._lock = threading.RLock()  # one request batch at a time; the engine is shared

    @classmethod
    def from_path(cls, base: str | Path, bricks: str | Path, embedder: str | None = None,
                  index: str | Path | None = None, device: str | None = None, **options) -> "Composer":
        """Any HF causal-LM folder + any library folder; the index lives in `index` (default
        `<bricks>/.index`) and is rebuilt when missing or stale."""
        from composer.workspace import Workspace

        return Workspace(bricks, base=base, index=index, embedder=embedder).composer(device, **options)

    @classmethod
    def from_default(cls, device: str | None = None, **options) -> "Composer":
        """The embedded default shipped in the repository: `bricks/` and `index/`, offline."""
        from composer.workspace import Workspace

        return Workspace.default().composer(device, **options)

    @property
    def library(self):
        return self.engine.library

    @property
    def prompt(self) -> PromptFormat:
        """The prompt format of the library's bricks (the base's default for an empty one):
        every step renders in it, so a brick runs in the format it was trained in. Resolved
        again only when the library's generation moves: listing its bricks stats every card
        folder, 200 ms a run at 10,000 bricks."""
        generation = self.library.generation()
        if self._format is None or self._format[0] != generation:
            name = resolve_format(self.library.prompt_format, bool(self.library.ids()), self.engine.tokenizer)
            self._format = (generation, prompt_format(name, self.engine.tokenizer))
        return self._format[1]

    # -- verbs ---------------------------------------------------------------------------
    def retrieve(self, query: str, k: int = 3) -> list[BrickHit]:
        if not isinstance(query, str) or not query.strip():
            raise ComposerError("the query is empty")
        return self.index.search(query, k)

    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan:
        instruction = check_text(instruction, "instruction", self.max_input_chars, self.ascii_only, newlines=True)
        if input is not None:
            input = check_text(input, "input", self.max_input_chars, self.ascii_only)
        plan = self.planner.plan(instruction, input, mode)
        check_text(plan.payload, "input", self.max_input_chars, self.ascii_only)
        return plan

    def run(self, instruction: str, input: str | None = None, mode: Mode = "auto", **sampling) -> Result:
        """Plan, retrieve and run one instruction; `mode` forces how every step combines bricks.
        Sampling options: max_new_tokens, temperature (0 = greedy), top_p, seed."""
        return self.run_batch([instruction], None if input is None else [input], mode, **sampling)[0]

    def stream(self, instruction: str, input: str | None = None, mode: Mode = "auto",
               **sampling) -> Iterator[StepResult | Result]:
        """Yield each StepResult as its step finishes, then the Result (errors raise here)."""
        events: queue.Queue = queue.Queue()

        def work() -> None:
            try:
                events.put(self.run(instruction, input, mode, on_step=lambda _, step: events.put(step), **sampling))
            except BaseException as err:  # handed to the consumer's thread
                events.put(err)

        threading.Thread(target=work, daemon=True, name="composer-stream").start()
        while True:
            event = events.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, Result):
                return

    def run_brick(self, brick_id: str, text: str, **sampling) -> Result:
        """Run one brick on the whole `text`, no planning or retrieval (the server's
        `model="<brick id>"`, as vLLM serves a LoRA adapter by name)."""
        return self.run_bricks([brick_id], [text], **sampling)[0]

    def run_bricks(self, brick_ids: Sequence[str], texts: Sequence[str], *, errors: Literal["raise", "return"] = "raise",
                   on_step: StepCallback | None = None, **sampling) -> list[Result | ItemError]:
        """`run_brick` for many rows in one engine batch, each row with its own brick. The task
        line of a row's prompt is its card's first example instruction; an emergent brick runs
        as its neuron mask on the base."""
        from composer.planner import Step

        if isinstance(texts, str) or len(brick_ids) != len(texts):
            raise ComposerError("run_bricks takes two lists of the same length: brick ids and texts")
        batch = _Batch(self, list(texts), None, "single", errors, on_step, Sampling(**sampling).engine_options())
        rows = []
        for i, (brick_id, text) in enumerate(zip(brick_ids, texts)):
            try:
                text = check_text(text, "input", self.max_input_chars, self.ascii_only)
                card = self.engine.library.card(brick_id)
                sparse = card.kind == "emergent"
                asked, note = self.ask([brick_id], text, f"brick {brick_id} asked for directly")
                choice = Choice("emergent" if sparse else "single", None if sparse else {brick_id: 1.0}, [brick_id],
                                None if sparse else {brick_id: 1.0}, note, [BrickHit(id=brick_id, score=1.0)],
                                brick_id if sparse else None)
                prompt = self.prompt.render(card.examples[0], asked)
                batch.check_length(prompt, 0)
                rows.append((i, card.examples[0], choice, prompt, card.examples[0]))
            except ComposerError as err:
                batch.fail(i, err)
        with self._lock:
            outs = batch.generate(rows)
        results: dict[int, Result | ItemError] = dict(batch.failed)
        for (i, query, choice, prompt, task), (out, ms, tokens) in zip(rows, outs):
            if out is None:
                continue
            step = batch.step(query, texts[i], choice, out, ms, tokens, task)
            plan = Plan(instruction=texts[i], payload=texts[i], planner="direct", note=choice.note,
                        steps=[Step(instruction=query, mode="sparse" if choice.emergent else "single")])
            results[i] = Result(instruction=texts[i], output=step.output, plan=plan, steps=[step])
            if on_step is not None:
                on_step(i, step)
        return [results[i] for i in range(len(texts))]

    def run_batch(self, instructions: Sequence[str], inputs: Sequence[str | None] | None = None,
                  mode: Mode = "auto", *, errors: Literal["raise", "return"] = "raise",
                  on_step: StepCallback | None = None, settings: ModeSettings | None = None,
                  **sampling) -> list[Result | ItemError]:
        """Run many instructions, step d of all of them in one engine batch.

        errors="raise": the first bad item raises, its message starting "item <i>:".
        errors="return": a bad item becomes an `ItemError` in its place; the others run.
        `on_step(i, step)` is called as each item's step finishes (streaming front ends).
        `settings` (k, threshold, margins...) override the composer's for this call only."""
        if isinstance(instructions, str):
            raise ComposerError("run_batch takes a list of instructions; use run() for one")
        if inputs is not None and len(inputs) != len(instructions):
            raise ComposerError(f"{len(instructions)} instructions but {len(inputs)} inputs")
        if errors not in ("raise", "return"):
            raise ComposerError(f"errors must be 'raise' or 'return', got {errors!r}")
        check_mode(mode)
        options = Sampling(**sampling).engine_options()
        if not instructions:
            return []
        with self._lock:
            return _Batch(self, list(instructions), inputs, mode, errors, on_step, options, settings).run()

    def pin(self, brick_id: str) -> None:
        """Keep a brick resident in the engine's slots (a replica that serves it often)."""
        self.engine.pin(brick_id)

    def unpin(self, brick_id: str) -> None:
        self.engine.unpin(brick_id)

    @property
    def pinned(self) -> frozenset[str]:
        return self.engine.slots.pinned

    # -- helpers used by a batch -----------------------------------------------------------
    def task(self, choice: Choice, query: str) -> str:
        """The task line a step's prompt carries. One customized brick alone gets its card's
        first example, the wording it was trained on (as in `run_bricks`): the step's own words
        chose the brick and may confuse it ("In which city is the government" -> "boka"). A
        blend of bricks, an emergent mask, or `task_line="step"` keep the step's words."""
        if self.task_line == "card" and choice.mode == "single" and len(choice.used) == 1:
            return self.library.card(choice.used[0]).examples[0]
        return query

    def kind(self, brick_id: str) -> str:
        return self.engine.library.card(brick_id).kind

    def knows(self, text: str) -> frozenset[str]:
        """The bricks whose table holds `text` as an input, in any case."""
        key = text.lower()
        return frozenset(b for b, keys in self.engine.library.known_inputs().items() if key in keys)

    def as_table_spells(self, used: list[str], text: str) -> str:
        """`text` as the table of the one brick in `used` spells it ("Mouse" -> "mouse"), else
        `text`: a knowledge brick learned its keys as written, and is asked them so."""
        spelled = self.engine.library.known_inputs().get(used[0], {}) if len(used) == 1 else {}
        return spelled.get(text.lower()) or text

    def ask(self, used: list[str], text: str, note: str) -> tuple[str, str]:
        """(what a step running `used` is asked, its note): `text` as a table spells it, and
        the note saying so when that differs from what the user wrote."""
        asked = self.as_table_spells(used, text)
        return asked, note if asked == text else f"{note}; asked {asked!r}, as its table spells it"

    def merged(self, weights: dict[str, float], method: str) -> str:
        """A transient brick merging `weights` (merge mode); made once per (bricks, method),
        at most MAX_MERGES kept (least recently used dropped, files and slot freed)."""
        from composer.formats import read_lora_folder, write_lora_folder
        from composer.ops.merge import get_method, merge_adapters

        library = self.engine.library
        key = hashlib.sha256(json.dumps([sorted((b, w, library.digest(b)) for b, w in weights.items()),
                                         method]).encode()).hexdigest()[:16]
        brick_id = f"merge:{key}"
        if key in self._merges:
            self._merges.move_to_end(key)
            return brick_id
        folders = [read_lora_folder(library.path(b)) for b in weights]
        params = {"density": self.settings.merge_density} \
            if any(p.name == "density" for p in get_method(method).params) else {}
        merged = merge_adapters([f.modules for f in folders], list(weights.values()), method, **params)
        folder = Path(self._scratch.name) / key
        with atomic_dir(folder) as tmp:
            write_lora_folder(tmp, merged, folders[0].config)
        self.engine.add_transient(brick_id, folder, library.card(next(iter(weights))).base_fingerprint)
        self._merges[key] = brick_id
        while len(self._merges) > MAX_MERGES:
            old_key, old_id = self._merges.popitem(last=False)
            self.engine.drop_transient(old_id)
            shutil.rmtree(Path(self._scratch.name) / old_key, ignore_errors=True)
        return brick_id

    @property
    def merges(self) -> list[str]:
        """Transient merge bricks currently kept."""
        return list(self._merges.values())


class _Batch:
    """One `run_batch` call: plans, then one engine batch per depth; failures per item."""

    def __init__(self, composer: Composer, instructions: list[str], inputs, mode: str, errors: str,
                 on_step: StepCallback | None, options: dict, settings: ModeSettings | None = None):
        self.c, self.instructions, self.inputs, self.mode = composer, instructions, inputs, mode
        self.settings = settings or composer.settings
        self.errors, self.on_step, self.options = errors, on_step, options
        self.failed: dict[int, ItemError] = {}

    def fail(self, i: int, err: ComposerError) -> None:
        if self.errors == "raise":
            if len(self.instructions) > 1:
                err.args = (f"item {i}: {err}",)
            raise err
        self.failed[i] = ItemError(index=i, instruction=str(self.instructions[i]), error=str(err),
                                   kind=type(err).__name__)

    def run(self) -> list[Result | ItemError]:
        c = self.c
        plans: dict[int, Plan] = {}
        for i, text in enumerate(self.instructions):
            try:
                plans[i] = c.plan(text, None if self.inputs is None else self.inputs[i], self.mode)
            except ComposerError as err:
                self.fail(i, err)
        current = {i: p.payload for i, p in plans.items()}
        traces: dict[int, list[StepResult]] = {i: [] for i in plans}
        k = max(3, self.settings.k)
        found = self.retrieve(plans, k + c.index.count("emergent"))
        depth = 0
        while live := [i for i, p in plans.items() if i not in self.failed and depth < len(p.steps)]:
            queries = [plans[i].steps[depth].instruction for i in live]
            rows = []
            for i, q, f in zip(live, queries, [found[i, depth] for i in live]):
                try:
                    # a close call goes to a brick whose table holds the user's payload (not an earlier
                    # brick's output: "negative", a sentiment label, is also an antonym key)
                    choice = choose_step(f.hits, plans[i].steps[depth].mode, self.settings, c, c.kind, k, f.out_of_scope,
                                         c.knows(current[i]) if depth == 0 else frozenset())
                    task = c.task(choice, q)
                    asked, note = c.ask(choice.used, current[i], choice.note)
                    choice = replace(choice, note=note)
                    prompt = c.prompt.render(task, asked)
                    self.check_length(prompt, depth)
                    rows.append((i, q, choice, prompt, task))
                except ComposerError as err:
                    err.args = (f"step {depth + 1} ({q!r}): {err}",)
                    self.fail(i, err)
            outs = self.generate(rows)
            for n, row, out in self.runner_ups(rows, outs, current):
                rows[n], outs[n] = row, out
            for (i, q, choice, prompt, task), (out, ms, tokens) in zip(rows, outs):
                if out is None:
                    continue
                step = self.step(q, current[i], choice, out, ms, tokens, task)
                traces[i].append(step)
                current[i] = step.output
                if self.on_step is not None:
                    self.on_step(i, step)
            depth += 1
        return [self.failed[i] if i in self.failed else self.result(plans[i], current[i], traces[i])
                for i in range(len(self.instructions))]

    def retrieve(self, plans: dict[int, Plan], k: int) -> Mapping[tuple[int, int], Retrieval]:
        """Every step of every plan, by (item, depth), retrieved in one search: one embedding pass
        for the batch, not one per depth."""
        steps = [(i, d) for i, p in plans.items() for d in range(len(p.steps))]
        if not steps:
            return {}
        return dict(zip(steps, self.c.index.search_scoped([plans[i].steps[d].instruction for i, d in steps], k)))

    @staticmethod
    def result(plan: Plan, output: str, trace: list[StepResult]) -> Result:
        """A modifier step (`Step.modifier`) that changed nothing was done by the step before
        ("initials of it | in caps": initials are capitals already): it is folded into that
        step's note, so the result's steps are the ones that did something."""
        steps: list[StepResult] = []
        for spec, step in zip(plan.steps, trace):
            if steps and spec.modifier and step.output == step.input:
                note = f"{steps[-1].note}; then {step.instruction!r} ({', '.join(step.used)}) changed nothing: already so"
                steps[-1] = steps[-1].model_copy(update={"note": note.lstrip("; "), "ms": steps[-1].ms + step.ms})
            else:
                steps.append(step)
        return Result(instruction=plan.instruction, output=output, plan=plan, steps=steps)

    def runner_ups(self, rows: list, outs: list, current: dict[int, str]) -> Iterator[tuple[int, tuple, tuple]]:
        """(index, row, out) for each close call whose top brick left its input unchanged and
        whose runner-up (`Choice.runner_up`, run in one more batch) changed it."""
        redo = [n for n, (row, out) in enumerate(zip(rows, outs))
                if out[0] is not None and row[2].runner_up is not None and out[0].strip() == current[row[0]]]
        again = []
        for n in redo:
            i, q, choice, _, _ = rows[n]
            alt = replace(choice.runner_up, hits=choice.hits)
            task = self.c.task(alt, q)
            again.append((i, q, alt, self.c.prompt.render(task, self.c.as_table_spells(alt.used, current[i])), task))
        for n, row, out in zip(redo, again, self.generate(again)):
            if out[0] is not None and out[0].strip() != current[row[0]]:
                yield n, row, out

    def step(self, query: str, input: str, choice: Choice, out: str, ms: float, prompt_tokens: int,
             task: str) -> StepResult:
        """The trace of one finished step (output tokens count the closing EOS)."""
        return StepResult(instruction=query, input=input, bricks=choice.hits, mode=choice.mode, used=choice.used,
                          weights=choice.weights, emergent=choice.emergent, note=choice.note, task=task,
                          output=out.strip(),
                          ms=ms, prompt_tokens=prompt_tokens, output_tokens=self.c.engine.prompt_tokens(out) + 1)

    def check_length(self, prompt: str, depth: int) -> None:
        """prompt tokens + max new tokens must fit the base model's positions."""
        engine = self.c.engine
        limit = engine.max_positions
        new = self.options["max_new_tokens"] or engine.max_new_tokens
        if limit is not None and (n := engine.prompt_tokens(prompt)) + new > limit:
            raise ComposerError(f"step {depth + 1}'s prompt is {n} tokens and up to {new} may be generated, "
                                f"over the model's {limit} positions: shorten the input by at least "
                                f"{n + new - limit} characters or lower max_new_tokens")

    def generate(self, rows: list[tuple[int, str, Choice, str, str]]) -> list[tuple[str | None, float, int]]:
        """(output, ms per row, prompt tokens) per row; with errors="return" a row the engine refuses is
        retried alone, so one bad brick fails its own item only."""
        import time

        if not rows:
            return []
        engine = self.c.engine
        start = time.perf_counter()
        try:
            outs = engine.generate([r[3] for r in rows], [r[2].mix for r in rows],
                                   emergent=[r[2].emergent for r in rows], **self.options)
        except ComposerError as err:
            if len(rows) == 1:
                self.fail(rows[0][0], err)
                return [(None, 0.0, 0)]
            if self.errors == "raise":
                raise
            return [out for row in rows for out in self.generate([row])]
        ms = (time.perf_counter() - start) * 1000 / len(rows)
        return [(out, round(ms, 2), engine.prompt_tokens(r[3])) for out, r in zip(outs, rows)]
