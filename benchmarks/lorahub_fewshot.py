"""LoraHub few-shot weight search on the default bricks, against a uniform merge.

For each knowledge task (`capital`, `antonym`, `plural`, `french`), 5 examples from its
table are given; the candidates are all four knowledge bricks. The search (nevergrad, 40
evaluations, L1 0.05, seeded) finds merge weights; exact match is measured on the rest of
the table for the found weights and for uniform weights (1/4 each), both as exact `cat`
merges. Writes `benchmarks/results/lorahub_fewshot.json` and prints a Markdown table.

    python benchmarks/lorahub_fewshot.py
"""

from __future__ import annotations

import json
import random

from knowledge_bricks import TASKS, accuracy, scratch_library

from composer.workspace import ROOT
from composer.defaults.skills import SKILLS
from composer.engine.engine import Engine
from composer.models import load_base
from composer.ops.lorahub import lorahub_search
from composer.ops.merge import merge_bricks

SHOTS = 5


def main() -> None:
    rows = {}
    with scratch_library() as library:
        base, tokenizer = load_base(library.root / "base", "cpu")
        merge_bricks(library, [(t, 1 / len(TASKS)) for t in TASKS], "uniform", "cat")
        for task in TASKS:
            skill = SKILLS[task]
            items = list(skill.table.items())
            random.Random(0).shuffle(items)
            shots, held = items[:SHOTS], items[SHOTS:]
            instruction = skill.instructions[0]
            found = lorahub_search(base, tokenizer, library, TASKS, [(instruction, x, y) for x, y in shots],
                                   budget=40, seed=0, new_id=f"hub_{task}")
            rows[task] = {"weights": found.weights, "loss_before": found.loss_before, "loss_after": found.loss_after}
        engine = Engine(base, tokenizer, library, max_rank=64, batch_size=128)
        for task in TASKS:
            skill = SKILLS[task]
            items = list(skill.table.items())
            random.Random(0).shuffle(items)
            held = items[SHOTS:]
            rows[task]["lorahub"] = accuracy(engine, f"hub_{task}", held, skill.instructions[0])
            rows[task]["uniform"] = accuracy(engine, "uniform", held, skill.instructions[0])
            rows[task]["single"] = accuracy(engine, task, held, skill.instructions[0])
            print(task, rows[task], flush=True)
    path = ROOT / "benchmarks" / "results" / "lorahub_fewshot.json"
    result = {"shots": SHOTS, "candidates": TASKS, "tasks": rows}
    path.write_text(json.dumps(result, indent=2))
    print(table(result))


def table(result: dict) -> str:
    """The README table (`benchmarks/readme_tables.py` puts it there from the JSON)."""
    tasks = result["candidates"]
    lines = [f"| task | weights found ({', '.join(tasks)}) | uniform merge | LoraHub merge | single brick |",
             "|---|---|---|---|---|"]
    for task, r in result["tasks"].items():
        w = ", ".join(f"{r['weights'][t]:.2f}" for t in tasks)
        lines.append(f"| `{task}` | {w} | {r['uniform']:.0%} | {r['lorahub']:.0%} | {r['single']:.0%} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
