"""Close calls: the top brick alone against a blend, where two bricks nearly tie.

`python -m benchmarks.near_ties` plans every request of the annotated corpora and of the
composition benchmark's `dev` and `fresh` splits with the embedded default, and keeps each
step whose runner-up customized brick scores within the auto rule's `margin` of the top one
(both above the threshold). For each such step it draws `--inputs` fresh inputs of the
annotated skill and runs the step as `single` (the top brick) and as `mixture` (the softmax
blend auto mode used to pick there), and the annotated skill's own brick as a ceiling. An
output counts when it is exactly the skill's true output. The `blind`, `holdout` and `test`
splits are not read.

Writes benchmarks/results/near_ties.json.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from benchmarks.composition import load
from composer import Composer, ComposerError
from composer.defaults.skills import SKILLS, annotated_requests
from composer.modes import ModeSettings

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "near_ties.json"
SPLITS = ("dev", "fresh")


def requests() -> list[tuple[str, str | None, list[str]]]:
    """(instruction, input, skills) of every annotated request and dev/fresh benchmark item."""
    rows = [(r["instruction"], None, r["skills"]) for group in annotated_requests() for r in group]
    return rows + [(item["instruction"], item["input"], item["skills"]) for split in SPLITS for item in load(split)]


def close_calls(c: Composer, margin: float, threshold: float) -> list[dict]:
    """Steps of rightly counted plans whose top two customized bricks are within `margin`."""
    found = []
    for instruction, input, skills in requests():
        try:
            plan = c.plan(instruction, input)
        except ComposerError:
            continue
        if len(plan.steps) != len(skills):
            continue
        for step, want, hits in zip(plan.steps, skills, c.index.search_many([s.instruction for s in plan.steps], 8)):
            top = [h for h in hits if c.kind(h.id) != "emergent"][:2]
            if len(top) == 2 and top[1].score >= threshold and top[0].score - top[1].score < margin:
                found.append({"step": step.instruction, "want": want, "top": [(h.id, round(h.score, 3)) for h in top]})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=3, help="fresh inputs per close call")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    c, s = Composer.from_default(), ModeSettings()
    calls = close_calls(c, s.margin, s.threshold)
    rng, right = random.Random(args.seed), Counter()
    for call in calls:
        skill = SKILLS[call["want"]]
        for _ in range(args.inputs):
            _, text, truth = skill.sample(rng)
            for mode in ("single", "mixture"):
                right[mode] += c.run(call["step"], input=text, mode=mode).output == truth
            right["annotated brick"] += c.run_bricks([call["want"]], [text])[0].output == truth
            right["runs"] += 1
        right["top brick is the annotated one"] += call["top"][0][0] == call["want"]
    summary = {"close calls": len(calls), "runs": right.pop("runs", 0), "right": dict(right),
               "margin": s.margin, "calls": calls}
    RESULTS.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{len(calls)} close calls (runner-up within {s.margin}); top brick is the annotated one in "
          f"{right['top brick is the annotated one']}")
    for mode in ("single", "mixture", "annotated brick"):
        print(f"{mode:>16}: {right[mode]} of {summary['runs']} outputs exact")


if __name__ == "__main__":
    main()
