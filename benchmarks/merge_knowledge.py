"""How much of each skill survives when the four knowledge bricks are merged into one.

Merges `capital`, `antonym`, `plural` and `french` (weight 1/4 each) with every method in
`MERGE_METHODS`, then measures exact match of the merged brick on each whole table (the
card's first instruction for each task) next to the single brick's. Writes
`benchmarks/results/merge_knowledge.json` and prints a Markdown table for README.

    python benchmarks/merge_knowledge.py
"""

from __future__ import annotations

import json

import torch
from knowledge_bricks import TASKS, accuracy, scratch_library

from composer.workspace import ROOT
from composer.defaults.skills import SKILLS
from composer.engine.engine import Engine
from composer.models import load_base
from composer.ops.merge import MERGE_METHODS, merge_bricks

WEIGHT = 1 / len(TASKS)  # an average of the four task vectors
PARAMS = {"ties": {"density": 0.5}, "dare_linear": {"density": 0.5, "seed": 0}, "dare_ties": {"density": 0.5, "seed": 0},
          "magnitude_prune": {"density": 0.5}}


def table_accuracy(engine: Engine, brick_id: str, task: str) -> float:
    """On the task's whole table, asked with its card's first instruction."""
    skill = SKILLS[task]
    return accuracy(engine, brick_id, list(skill.table.items()), skill.instructions[0])


def main() -> None:
    torch.manual_seed(0)
    with scratch_library() as library:
        for method in MERGE_METHODS:
            merge_bricks(library, [(t, WEIGHT) for t in TASKS], f"merged_{method}", method, **PARAMS.get(method, {}))
        model, tokenizer = load_base(library.root / "base", "cpu")
        engine = Engine(model, tokenizer, library, max_rank=64, batch_size=128)
        single = {t: table_accuracy(engine, t, t) for t in TASKS}
        rows = {}
        for method in MERGE_METHODS:
            acc = {t: table_accuracy(engine, f"merged_{method}", t) for t in TASKS}
            rows[method] = {"accuracy": acc, "kept": {t: acc[t] / single[t] for t in TASKS},
                            "mean_kept": sum(acc[t] / single[t] for t in TASKS) / len(TASKS)}
            print(method, rows[method]["mean_kept"], flush=True)
    out = {"tasks": TASKS, "weights": WEIGHT, "params": PARAMS, "single": single, "methods": rows}
    path = ROOT / "benchmarks" / "results" / "merge_knowledge.json"
    path.write_text(json.dumps(out, indent=2))
    print("| method | " + " | ".join(TASKS) + " | mean kept |")
    print("|---|" + "---|" * (len(TASKS) + 1))
    print("| single bricks | " + " | ".join(f"{single[t]:.0%}" for t in TASKS) + " | 100% |")
    for method, r in rows.items():
        print(f"| `{method}` | " + " | ".join(f"{r['accuracy'][t]:.0%}" for t in TASKS) + f" | {r['mean_kept']:.0%} |")


if __name__ == "__main__":
    main()
