"""What the two knowledge-brick benchmarks share: the four table bricks, a scratch copy of
them with the base (merges write new bricks, never into the shipped library), and exact
match of one brick served by the engine."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from composer.workspace import ROOT
from composer.engine.engine import Engine
from composer.library import BrickLibrary
from composer.prompt import render

TASKS = ["capital", "antonym", "plural", "french"]


@contextmanager
def scratch_library() -> Iterator[BrickLibrary]:
    """The default base and the four knowledge bricks, copied into a temporary library."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bricks"
        for name in ["base", *TASKS]:
            shutil.copytree(ROOT / "bricks" / name, root / name)
        yield BrickLibrary(root)


def accuracy(engine: Engine, brick_id: str, items: list[tuple[str, str]], instruction: str) -> float:
    """Exact match of `brick_id` alone on (input, output) items, asked with `instruction`."""
    outputs = engine.generate([render(instruction, x) for x, _ in items], [{brick_id: 1.0}] * len(items))
    return sum(o.strip() == y for o, (_, y) in zip(outputs, items)) / len(items)
