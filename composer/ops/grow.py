"""Grow and update: train a LoRA brick from a user's JSONL data, measure it, store it.

Data: one JSON object per line, `{"input": ..., "output": ...}` and optionally
`"instruction"` (else one of the card's examples is used, so the brick learns to answer
whatever wording the planner hands it). A seeded fifth of the rows (at least one) is held
out; the card records exact match on it with the brick and with the base alone.
Updating continues from the active version's weights and stores the result as a new version.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, Metrics, fingerprint
from composer.ops.train import Example, Progress, TrainConfig, add_lora, exact_match, train

MAX_ROWS = 100_000


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


def _fit(model, tokenizer, rows, examples, config: TrainConfig, desc: str, progress: bool | Progress):
    train_set, held_out = split(rows, examples, config.seed)
    losses = train(model, tokenizer, _sampler(train_set, examples), config, desc=desc, progress=progress)
    em = exact_match(model, tokenizer, held_out)
    with model.disable_adapter():
        base_em = exact_match(model, tokenizer, held_out)
    metrics = Metrics(exact_match=em, base_exact_match=base_em, samples=len(held_out),
                      eval=f"{len(held_out)} held-out rows of {len(rows)}")
    return losses, metrics


def grow(library: BrickLibrary, base_path: Path, brick_id: str, data: str | Path, description: str,
         examples: list[str], title: str | None = None, config: TrainConfig = TrainConfig(),
         rank: int = 16, alpha: int = 32, progress: bool | Progress = True) -> BrickCard:
    """Train a new brick on `data` and register it (the index refreshes on next use)."""
    from composer.models import load_base

    if not description.strip() or not examples:
        raise ComposerError("a new brick needs a description and at least one example instruction")
    rows = read_jsonl(data)
    if (library.path(brick_id) / "brick.json").is_file():
        raise ComposerError(f"brick {brick_id!r} already exists; use update to train a new version")
    base, tokenizer = load_base(base_path, "cpu")
    base_fp = fingerprint(base)
    model = add_lora(base, rank, alpha)
    losses, metrics = _fit(model, tokenizer, rows, examples, config, f"grow {brick_id}", progress)

    def write(folder: Path) -> BrickCard:
        model.save_pretrained(folder)
        shutil.copyfile(data, folder / "data.jsonl")
        return BrickCard(id=brick_id, title=title or brick_id.replace("_", " ").title(), description=description,
                         examples=examples, base_fingerprint=base_fp, base_architecture=type(base).__name__,
                         metrics=metrics, source={"trained_by": "composer.ops.grow", "steps": len(losses),
                                                  "rank": rank, "alpha": alpha, "seed": config.seed})

    return library.commit(brick_id, write)


def update(library: BrickLibrary, base_path: Path, brick_id: str, data: str | Path,
           config: TrainConfig = TrainConfig(), progress: bool | Progress = True) -> BrickCard:
    """Continue training the active version on new data; the result becomes a new version."""
    from peft import PeftModel

    from composer.models import load_base

    card = library.card(brick_id)
    rows = read_jsonl(data)
    base, tokenizer = load_base(base_path, "cpu")
    if fingerprint(base) != card.base_fingerprint:
        raise ComposerError(f"brick {brick_id!r} was made for another base ({card.base_fingerprint})")
    model = PeftModel.from_pretrained(base, str(library.path(brick_id)), is_trainable=True)
    losses, metrics = _fit(model, tokenizer, rows, card.examples, config, f"update {brick_id}", progress)

    def write(folder: Path) -> BrickCard:
        model.save_pretrained(folder)
        shutil.copyfile(data, folder / "data.jsonl")
        source = {**card.source, "updated_by": "composer.ops.grow", "update_steps": len(losses),
                  "previous_version": card.version}
        return card.model_copy(update={"metrics": metrics, "source": source})

    return library.commit(brick_id, write, new_version=True)
