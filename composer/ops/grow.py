"""Grow and update: train a LoRA brick from a user's JSONL data, measure it, store it.

Data: one JSON object per line, `{"input": ..., "output": ...}` and optionally
`"instruction"` (else one of the card's examples is used, so the brick learns to answer
whatever wording the planner hands it). A seeded fifth of the rows (at least one) is held
out; the card records exact match on it with the brick and with the base alone, both in the
library's prompt format, so the base-alone figure is what the base would really do. When the
training rows allow (80 or more), a tenth of them (at most 16) is kept aside as a dev set:
checked every tenth of the run, the best checkpoint is the one saved, also when `max_minutes`
stops training early. Steps, learning rate, rank and target modules default by base size
(`plan_for`); the estimate of time per step is printed before training starts, and the card
records everything used. Updating continues from the active version's weights and stores the
result as a new version.
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import sys
import time
from pathlib import Path

from tqdm import tqdm

from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, Metrics, fingerprint
from composer.models import max_positions
from composer.ops.train import (BestCheckpoint, BrickPlan, Example, Progress, TrainConfig, add_lora, exact_match,
                                plan_for, seconds_per_step, train)
from composer.prompt import PromptFormat, library_format, prompt_format

MAX_ROWS = 100_000
MIN_DEV = 8  # fewer dev rows pick checkpoints by noise (4 rows chose step 30 of 100 on SmolLM2): keep the last


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows with string `input` and `output` (and optional `instruction`); errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise ComposerError(f"training data not found: {path}")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ComposerError(f"{path}:{n}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("input", "output")):
            raise ComposerError(f"{path}:{n}: each line needs string fields \"input\" and \"output\"")
        if "instruction" in row and not isinstance(row["instruction"], str):
            raise ComposerError(f"{path}:{n}: \"instruction\" must be a string")
        rows.append(row)
        if len(rows) > MAX_ROWS:
            raise ComposerError(f"{path}: more than {MAX_ROWS} rows")
    if not rows:
        raise ComposerError(f"{path}: no training rows")
    return rows


def split(rows: list[dict], examples: list[str], seed: int) -> tuple[list[Example], list[Example]]:
    """(train, held out) examples; instruction-less rows borrow the card's examples in turn."""
    triples = [(r.get("instruction") or examples[i % len(examples)], r["input"], r["output"])
               for i, r in enumerate(rows)]
    random.Random(seed).shuffle(triples)
    held = max(1, len(triples) // 5) if len(triples) > 1 else 0
    return triples[held:] or triples, triples[:held] or triples


def _sampler(train_set: list[Example], examples: list[str]):
    def sample(rng: random.Random, n: int) -> list[Example]:
        batch = []
        for _ in range(n):
            instruction, x, y = rng.choice(train_set)
            batch.append((rng.choice(examples) if rng.random() < 0.3 else instruction, x, y))
        return batch

    return sample


@dataclasses.dataclass(frozen=True)
class Budget:
    """What the user asked for; None = the base-size default (`plan_for`)."""

    steps: int | None = None
    lr: float | None = None
    rank: int | None = None
    seed: int = 0
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ComposerError(f"steps must be at least 1, got {self.steps}")
        if self.lr is not None and not self.lr > 0:
            raise ComposerError(f"lr must be positive, got {self.lr}")
        if self.rank is not None and not 1 <= self.rank <= 256:
            raise ComposerError(f"rank must be between 1 and 256, got {self.rank}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ComposerError(f"max_minutes must be positive, got {self.max_minutes}")

    def plan(self, model) -> BrickPlan:
        plan = plan_for(model)
        return dataclasses.replace(plan, steps=self.steps or plan.steps, lr=self.lr or plan.lr,
                                   rank=self.rank or plan.rank)


def _check_lengths(rows: list[Example], tokenizer, fmt: PromptFormat, limit: int | None) -> None:
    """Every training row fits the base's positions (prompt, answer and its end token)."""
    if limit is None:
        return
    for instruction, x, y in rows:
        size = len(tokenizer.encode(fmt.render(instruction, x) + y, add_special_tokens=False)) + 1
        if size > limit:
            raise ComposerError(f"training row with input {x[:40]!r}: {size} tokens in the {fmt.name} prompt "
                                f"format, but the base model takes at most {limit}")


def _fit(model, tokenizer, rows, examples, plan: BrickPlan, budget: Budget, fmt: PromptFormat, desc: str,
         progress: bool | Progress) -> tuple[list[float], Metrics, dict]:
    """Train on a split of `rows`, keep the best dev checkpoint, measure on the held-out rows."""
    start = time.monotonic()
    deadline = start + 60 * budget.max_minutes if budget.max_minutes else None
    train_set, held_out = split(rows, examples, budget.seed)
    dev = train_set[:min(16, len(train_set) // 10)] if len(train_set) >= 10 * MIN_DEV else []
    train_set = train_set[len(dev):]
    _check_lengths(train_set + held_out + dev, tokenizer, fmt, max_positions(model.config))
    config = TrainConfig(steps=plan.steps, batch_size=plan.batch_size, lr=plan.lr,
                         warmup=min(30, plan.steps // 5 + 1), seed=budget.seed)
    per_step = seconds_per_step(model, tokenizer, random.Random(budget.seed).choices(train_set, k=plan.batch_size),
                                fmt)
    if progress is True:
        limit = f", stopping after {budget.max_minutes:g} min" if deadline else ""
        tqdm.write(f"{desc}: {plan.steps} steps of {plan.batch_size} rows, about {per_step:.1f} s per step here, "
                   f"so about {plan.steps * per_step / 60:.1f} min{limit} (LoRA rank {plan.rank} on "
                   f"{plan.targets if isinstance(plan.targets, str) else ', '.join(plan.targets)}, lr {plan.lr:g})",
                   file=sys.stderr)
    best = BestCheckpoint(model, lambda: exact_match(model, tokenizer, dev, fmt=fmt)) if dev else None
    losses = train(model, tokenizer, _sampler(train_set, examples), config, desc=desc, progress=progress,
                   done=best, check_every=max(1, plan.steps // 10), fmt=fmt, deadline=deadline)
    record = {"steps": len(losses), "planned_steps": plan.steps, "lr": plan.lr, "rank": plan.rank,
              "targets": plan.targets, "batch_size": plan.batch_size, "checkpointing": plan.checkpointing,
              "seed": budget.seed, "seconds_per_step": round(per_step, 3), "stopped_early": len(losses) < plan.steps}
    if best is not None:
        best()
        score, check = best.restore()
        record["best_checkpoint"] = {"dev_exact_match": score, "dev_rows": len(dev), "check": check,
                                     "checks": best.calls}
    em = exact_match(model, tokenizer, held_out, fmt=fmt)
    with model.disable_adapter():
        base_em = exact_match(model, tokenizer, held_out, fmt=fmt)
    record["seconds"] = round(time.monotonic() - start, 1)
    metrics = Metrics(exact_match=em, base_exact_match=base_em, samples=len(held_out),
                      eval=f"{len(held_out)} held-out rows of {len(rows)}, {fmt.name} prompt format")
    return losses, metrics, record


def _format(library: BrickLibrary, tokenizer, asked: str | None) -> PromptFormat:
    """The format to train in: the one asked for, else the library's (the base's default for
    a new library: chat when its tokenizer has a chat template)."""
    return prompt_format(asked, tokenizer) if asked else library_format(library, tokenizer)


def grow(library: BrickLibrary, base_path: Path, brick_id: str, data: str | Path, description: str,
         examples: list[str], title: str | None = None, budget: Budget = Budget(),
         prompt_format: str | None = None, progress: bool | Progress = True) -> BrickCard:
    """Train a new brick on `data` and register it (the index refreshes on next use)."""
    from composer.models import load_base

    if not description.strip() or not examples:
        raise ComposerError("a new brick needs a description and at least one example instruction")
    rows = read_jsonl(data)
    if (library.path(brick_id) / "brick.json").is_file():
        raise ComposerError(f"brick {brick_id!r} already exists; use update to train a new version")
    base, tokenizer = load_base(base_path, "cpu")
    fmt = _format(library, tokenizer, prompt_format)
    base_fp = fingerprint(base)
    plan = budget.plan(base)
    model = add_lora(base, plan.rank, 2 * plan.rank, plan.targets, plan.checkpointing)
    losses, metrics, record = _fit(model, tokenizer, rows, examples, plan, budget, fmt, f"grow {brick_id}", progress)

    def write(folder: Path) -> BrickCard:
        model.save_pretrained(folder)
        shutil.copyfile(data, folder / "data.jsonl")
        return BrickCard(id=brick_id, title=title or brick_id.replace("_", " ").title(), description=description,
                         examples=examples, base_fingerprint=base_fp, base_architecture=type(base).__name__,
                         prompt_format=fmt.name, metrics=metrics,
                         source={"trained_by": "composer.ops.grow", "alpha": 2 * plan.rank, **record})

    return library.commit(brick_id, write)


def update(library: BrickLibrary, base_path: Path, brick_id: str, data: str | Path, budget: Budget = Budget(),
           progress: bool | Progress = True) -> BrickCard:
    """Continue training the active version on new data; the result becomes a new version."""
    from peft import PeftModel

    from composer.models import load_base

    card = library.card(brick_id)
    rows = read_jsonl(data)
    base, tokenizer = load_base(base_path, "cpu")
    if fingerprint(base) != card.base_fingerprint:
        raise ComposerError(f"brick {brick_id!r} was made for another base ({card.base_fingerprint})")
    fmt = prompt_format(card.prompt_format, tokenizer)
    plan = budget.plan(base)
    model = PeftModel.from_pretrained(base, str(library.path(brick_id)), is_trainable=True)
    adapter = model.peft_config["default"]  # the brick's own shape, whatever the defaults say
    targets = sorted(adapter.target_modules) if isinstance(adapter.target_modules, set) else adapter.target_modules
    plan = dataclasses.replace(plan, rank=adapter.r, targets=targets)
    losses, metrics, record = _fit(model, tokenizer, rows, card.examples, plan, budget, fmt,
                                   f"update {brick_id}", progress)

    def write(folder: Path) -> BrickCard:
        model.save_pretrained(folder)
        shutil.copyfile(data, folder / "data.jsonl")
        source = {**card.source, "updated_by": "composer.ops.grow", "update": record,
                  "previous_version": card.version}
        return card.model_copy(update={"metrics": metrics, "source": source})

    return library.commit(brick_id, write, new_version=True)
