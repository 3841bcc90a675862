"""Batch jobs: a file of tasks in, a JSONL file of answers with traces out, resumably.

A job is a YAML file (`version`, `defaults`, `tasks`, the shape of mergekit / lm-eval task
files) or a JSONL file of `{id?, instruction, input?, mode?, ...}` lines (like OpenAI / vLLM
batch files). Loading validates it with pydantic and names the line and field of a mistake.

`run_job` writes one line per item, `{custom_id, instruction, input, output, steps, error,
ms, job}`, appended and flushed after each chunk, so a killed job loses at most the chunk in
flight. Every line carries the job's hash: a rerun skips the custom_ids already written and
refuses an output file written by a different job (unless `force`). Items run through
`Composer.run_batch(errors="return")` in chunks of `batch_size` (items of different tasks
share engine batches); a bad item becomes an error line and never stops the job. A broken
line of an input file becomes that item's error line; the other items run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from composer.errors import ComposerError
from composer.modes import check_mode

Progress = Callable[[int, int], None]  # (items written so far in this run, items to run)


class Options(BaseModel):
    """How an item runs: its step mode and sampling options (those of `Composer.run`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: str = "auto"
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=5)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: int | None = None

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: str) -> str:
        return check_mode(mode)


_OPTION_KEYS = tuple(Options.model_fields)


class TaskSpec(BaseModel):
    """One task: an instruction over its inputs (a list, a file, or none: the payload is inline)."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="no '#': custom ids are '<id>#<i>'")
    instruction: str
    inputs: list[str] | None = None
    input_file: str | None = None
    mode: str | None = None
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=5)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: str | None) -> str | None:
        return mode if mode is None else check_mode(mode)

    @model_validator(mode="after")
    def _one_source(self) -> "TaskSpec":
        if self.inputs is not None and self.input_file is not None:
            raise ValueError("give either inputs or input_file, not both")
        return self


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(1, ge=1, le=1)
    defaults: Options = Options()
    tasks: list[TaskSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "JobSpec":
        seen = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"task id {task.id!r} is used twice")
            seen.add(task.id)
        return self


class JsonlLine(Options):
    """One line of a JSONL job."""

    id: str | None = Field(None, min_length=1)
    instruction: str
    input: str | None = None


class JobItem(BaseModel):
    custom_id: str
    instruction: str
    input: str | None
    options: Options
    error: str | None = None  # a broken input-file line: written as this item's error, never run


class Job(BaseModel):
    """A loaded job: every item resolved, and the hash that ties an output file to it."""

    source: str
    items: list[JobItem]

    @property
    def hash(self) -> str:
        data = json.dumps([i.model_dump() for i in self.items], sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]


class ItemPlan(BaseModel):
    """What a dry run shows for one item: its plan and each step's brick choice, or its error."""

    custom_id: str
    steps: list[str] = []
    error: str | None = None


class JobSummary(BaseModel):
    job: str
    out: str
    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    items_per_s: float = 0.0
    planned: list[ItemPlan] | None = None  # dry runs only

    def line(self) -> str:
        if self.planned is not None:
            return (f"dry run: {len(self.planned)} item(s) to run, {self.skipped} already in {self.out}, "
                    f"{sum(p.error is not None for p in self.planned)} would fail")
        return (f"{self.done} done, {self.failed} failed, {self.skipped} skipped (already in {self.out}) "
                f"in {self.seconds:.1f} s, {self.items_per_s:.2f} items/s")


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_job`: every finished chunk is flushed; `summary` says how far it got."""

    def __init__(self, summary: JobSummary):
        super().__init__("interrupted")
        self.summary = summary


# -- loading -------------------------------------------------------------------------------
def load_job(job: str | Path | dict | JobSpec) -> Job:
    """A YAML or JSONL job file (or a dict / JobSpec, input files relative to the cwd)."""
    if isinstance(job, (dict, JobSpec)):
        spec = job if isinstance(job, JobSpec) else _validated(job, "the job", None)
        return Job(source="<spec>", items=list(_spec_items(spec, Path.cwd(), lambda loc: "the job")))
    path = Path(job)
    if not path.is_file():
        raise ComposerError(f"job file {path} not found")
    if path.suffix == ".jsonl":
        return Job(source=str(path), items=_jsonl_items(path))
    text = path.read_text(encoding="utf-8")
    try:
        data, root = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ComposerError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ComposerError(f"{path}: a job is a mapping with version, defaults and tasks")
    spec = _validated(data, str(path), root)
    return Job(source=str(path), items=list(_spec_items(spec, path.parent,
                                                        lambda loc: f"{path} line {_line(root, loc)}")))


def _validated(data: dict, name: str, root) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as err:
        raise ComposerError(_explain(err, name, lambda loc: _line(root, loc) if root is not None else None)) from None


def _explain(err: ValidationError, name: str, line_of: Callable[[tuple], int | None]) -> str:
    """One line for the first problem: where (file, line, field) and what."""
    e = err.errors()[0]
    loc = tuple(e["loc"])
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "the job"
    line = line_of(loc)
    where = f"{name} line {line}" if line else name
    if e["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        return f"{where}: unknown key {loc[-1]!r} (allowed: {', '.join(model.model_fields)})"
    if e["type"] == "missing":
        return f"{where}: {field} is missing"
    if e["type"] == "string_pattern_mismatch":
        return f"{where}: {field} {e['input']!r}: use letters, digits, '_', '.' and '-' only (no '#')"
    return f"{where}: {field}: {e['msg'].removeprefix('Value error, ')}"


def _model_at(loc: tuple) -> type[BaseModel]:
    if not loc:
        return JobSpec
    return {"defaults": Options, "tasks": TaskSpec}.get(loc[0], JobSpec) if len(loc) <= 2 else JobSpec


def _line(root, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node along `loc`."""
    node = root
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1 if node is not None else None


def _spec_items(spec: JobSpec, folder: Path, where: Callable[[tuple], str]) -> Iterator[JobItem]:
    for n, task in enumerate(spec.tasks):
        options = Options(**{**spec.defaults.model_dump(),
                             **{k: getattr(task, k) for k in _OPTION_KEYS if getattr(task, k) is not None}})
        if task.input_file is not None:
            inputs = _input_file(folder / task.input_file, f"{where(('tasks', n, 'input_file'))}: "
                                                           f"tasks[{n}].input_file")
        else:
            inputs = [(x, None) for x in (task.inputs if task.inputs is not None else [None])]
        for i, (value, error) in enumerate(inputs):
            yield JobItem(custom_id=f"{task.id}#{i}", instruction=task.instruction, input=value, options=options,
                          error=error)


def _input_file(path: Path, where: str) -> list[tuple[str | None, str | None]]:
    """(input, None) per line, or (None, error) for a broken line. `.jsonl`: {"input": ...} per
    line; anything else: one plain-text input per line. Blank lines are skipped."""
    if not path.is_file():
        raise ComposerError(f"{where}: {path} not found")
    rows = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        if path.suffix != ".jsonl":
            rows.append((text, None))
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            rows.append((None, f"{path.name} line {number}: not valid JSON ({err.msg})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("input"), str):
            rows.append((None, f'{path.name} line {number}: expected {{"input": "<text>"}}'))
        else:
            rows.append((row["input"], None))
    return rows


def _jsonl_items(path: Path) -> list[JobItem]:
    """A JSONL job: a line that is not JSON becomes that item's error; a line with an unknown
    or missing key is a mistake in the job itself and stops loading, naming the line."""
    items, seen = [], set()
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not text.strip():
            continue
        custom_id = f"{path.stem}#{number}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            items.append(JobItem(custom_id=custom_id, instruction="", input=None, options=Options(),
                                 error=f"{path.name} line {number}: not valid JSON ({err.msg})"))
            continue
        if not isinstance(row, dict):
            raise ComposerError(f"{path} line {number}: expected an object like "
                                '{"id": "...", "instruction": "...", "input": "..."}')
        try:
            line = JsonlLine.model_validate(row)
        except ValidationError as err:
            e = err.errors()[0]
            if e["type"] == "extra_forbidden":
                raise ComposerError(f"{path} line {number}: unknown key {e['loc'][0]!r} "
                                    f"(allowed: {', '.join(JsonlLine.model_fields)})") from None
            raise ComposerError(_explain(err, f"{path} line {number}", lambda loc: None)) from None
        custom_id = line.id or custom_id
        if custom_id in seen:
            raise ComposerError(f"{path} line {number}: id {custom_id!r} is used twice")
        seen.add(custom_id)
        items.append(JobItem(custom_id=custom_id, instruction=line.instruction, input=line.input,
                             options=Options(**line.model_dump(include=set(_OPTION_KEYS)))))
    if not items:
        raise ComposerError(f"{path}: the job has no lines")
    return items


# -- the output file -----------------------------------------------------------------------
def check_out(out: str | Path) -> Path:
    out = Path(out)
    if not out.parent.is_dir():
        raise ComposerError(f"the output folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise ComposerError(f"the output {out} is a folder; give a file path such as {out / 'results.jsonl'}")
    return out


def done_ids(out: Path, job: Job, force: bool, repair: bool = True) -> set[str]:
    """custom_ids already in `out`. A torn last line (a killed write) is cut off when `repair`;
    lines from another job refuse the resume unless `force`."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        if repair:
            with open(out, "r+b") as f:
                f.truncate(keep)
        data = data[:keep]
    ids, expected = set(), job.hash
    for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        try:
            row = json.loads(text)
            custom_id, job_hash = row["custom_id"], row["job"]
        except (json.JSONDecodeError, TypeError, KeyError):
            raise ComposerError(f"{out} line {number} is not a result line of a composer job; "
                                "choose another --out") from None
        if job_hash != expected and not force:
            raise ComposerError(f"{out} holds results of a different job ({job_hash}, this one is {expected}); "
                                "choose another --out, or pass --force to resume into it anyway")
        ids.add(custom_id)
    return ids


def result_line(item: JobItem, result, job_hash: str) -> dict[str, Any]:
    """The output line of one item: `result` is a Result, an ItemError or an error message."""
    from composer.composer import ItemError, Result

    line = {"custom_id": item.custom_id, "instruction": item.instruction, "input": item.input, "output": None,
            "steps": [], "error": None, "ms": 0.0, "job": job_hash}
    if isinstance(result, Result):
        line.update(output=result.output, steps=[s.model_dump() for s in result.steps],
                    ms=round(sum(s.ms for s in result.steps), 2))
    elif isinstance(result, ItemError):
        line["error"] = {"kind": result.kind, "message": result.error}
    else:
        line["error"] = {"kind": "InputError", "message": str(result)}
    return line


def run_items(composer, items: list[JobItem], job_hash: str) -> list[dict[str, Any]]:
    """Output lines for `items`: one `run_batch` per distinct option set, per-item errors kept.
    Used in-process and by each Ray Data actor."""
    lines = {i: result_line(item, item.error, job_hash) for i, item in enumerate(items) if item.error}
    groups: dict[Options, list[int]] = {}
    for i, item in enumerate(items):
        if item.error is None:
            groups.setdefault(item.options, []).append(i)
    for options, members in groups.items():
        sampling = options.model_dump(exclude={"mode"})
        results = composer.run_batch([items[i].instruction for i in members], [items[i].input for i in members],
                                     options.mode, errors="return", **sampling)
        for i, result in zip(members, results):
            lines[i] = result_line(items[i], result, job_hash)
    return [lines[i] for i in range(len(items))]


def chunks(items: list[JobItem], size: int) -> Iterator[list[JobItem]]:
    """Chunks of `size`, items with the same options kept together so engine batches stay full."""
    order = {}
    ordered = sorted(items, key=lambda it: order.setdefault(it.options, len(order)))
    for start in range(0, len(ordered), size):
        yield ordered[start:start + size]


# -- running -------------------------------------------------------------------------------
def run_job(job: str | Path | dict | JobSpec | Job, out: str | Path, *, composer=None, workspace=None,
            device: str | None = None, batch_size: int = 32, force: bool = False, dry_run: bool = False,
            progress: bool | Progress = True, workers: int | None = None) -> JobSummary:
    """Run a job into the JSONL file `out`, skipping items already there; returns the summary.

    `composer` (default: one over `workspace` on `device`; the embedded default) runs the items;
    `workers=N` runs them on Ray Data with N actors instead (see `composer.integrations.ray_jobs`).
    `dry_run` plans every item and picks its bricks without running or writing anything.
    Ctrl-C raises `JobInterrupted` after the finished chunks are flushed."""
    if batch_size < 1:
        raise ComposerError(f"batch_size must be at least 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise ComposerError(f"workers must be at least 1, got {workers}")
    job = job if isinstance(job, Job) else load_job(job)
    out = check_out(out)
    skip = done_ids(out, job, force, repair=not dry_run)
    pending = [item for item in job.items if item.custom_id not in skip]
    summary = JobSummary(job=job.hash, out=str(out), total=len(job.items), skipped=len(job.items) - len(pending))
    if composer is None and pending and (workers is None or dry_run):
        composer = (workspace or _default()).composer(device)
    if dry_run:
        summary.planned = [plan_item(composer, item) for item in pending]
        return summary
    if workers is not None:
        from composer.integrations.ray_jobs import ray_lines

        batches = ray_lines(job, pending, workspace or (composer.workspace if composer else None) or _default(),
                            workers=workers, batch_size=batch_size, device=device)
    else:
        batches = (run_items(composer, chunk, job.hash) for chunk in chunks(pending, batch_size))
    _write(batches, out, summary, len(pending), progress)
    return summary


def _default():
    from composer.workspace import Workspace

    return Workspace.default()


def _write(batches: Iterator[list[dict]], out: Path, summary: JobSummary, todo: int, progress: bool | Progress) -> None:
    """Append each batch's lines, flushed to disk before the next batch starts; on Ctrl-C the
    batch source is closed (a Ray run stops its actors) and JobInterrupted raised."""
    bar = None
    if progress is True and todo:
        from tqdm import tqdm

        bar = tqdm(total=todo, unit="item", file=sys.stderr, dynamic_ncols=True)
    start = time.perf_counter()
    try:
        with open(out, "a", encoding="utf-8") as f:
            for lines in batches:
                f.write("".join(json.dumps(line) + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
                failed = sum(line["error"] is not None for line in lines)
                summary.failed += failed
                summary.done += len(lines) - failed
                if bar is not None:
                    bar.update(len(lines))
                elif callable(progress):
                    progress(summary.done + summary.failed, todo)
    except KeyboardInterrupt:
        batches.close()
        _finish(summary, start, bar)
        raise JobInterrupted(summary) from None
    _finish(summary, start, bar)


def _finish(summary: JobSummary, start: float, bar) -> None:
    if bar is not None:
        bar.close()
    summary.seconds = round(time.perf_counter() - start, 3)
    ran = summary.done + summary.failed
    summary.items_per_s = round(ran / summary.seconds, 3) if summary.seconds > 0 else 0.0


def plan_item(composer, item: JobItem) -> ItemPlan:
    """The plan and each step's brick choice for one item, without generating anything."""
    from composer.modes import choose_step

    if item.error:
        return ItemPlan(custom_id=item.custom_id, error=item.error)
    try:
        plan = composer.plan(item.instruction, item.input, item.options.mode)
        steps = []
        for step in plan.steps:
            k = max(3, composer.settings.k)
            found = composer.index.search_scoped([step.instruction], k + composer.index.count("emergent"))[0]
            choice = choose_step(found.hits, step.mode, composer.settings, composer, composer.kind, k,
                                 found.out_of_scope)
            steps.append(f"{step.instruction!r} -> {choice.note}")
        return ItemPlan(custom_id=item.custom_id, steps=[f"input {plan.payload!r}", *steps])
    except ComposerError as err:
        return ItemPlan(custom_id=item.custom_id, error=f"{type(err).__name__}: {err}")
