"""Requests of our own, written to look for failure classes: `python -m benchmarks.own_requests`.

`benchmarks/data/own_requests.jsonl` holds requests written by hand during a round of planner
work (instruction, skills in order, payload), in sets by what they probe: brick confusions,
chains joined by "and", chat and email styles, list and clause shapes, case and typos. They
were used to choose the round's rules, so they are no held-out measure (the composition
benchmark's `blind` and `holdout` splits are); they keep the failures found fixed.

A request is right when the output equals the skills' true answer and the plan has one step
per skill (a step that changed nothing may fold into the one before it in the result, as "remove
its vowels" after an acronym does). Prints the misses and writes
benchmarks/results/own_requests.json.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from composer import Composer, ComposerError
from composer.defaults.skills import SKILLS

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data" / "own_requests.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "own_requests.json"


def truth(skills: list[str], payload: str) -> str:
    for skill in skills:
        payload = SKILLS[skill].answer(payload)
    return payload


def main() -> None:
    import torch

    torch.set_num_threads(1)
    items = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    c = Composer.from_default()
    outcomes, right = [], Counter()
    for item in items:
        want = truth(item["skills"], item["payload"])
        try:
            r = c.run(item["instruction"])
            out, steps, used = r.output, len(r.plan.steps), [s.used for s in r.steps]
        except ComposerError as err:
            out, steps, used = f"{type(err).__name__}: {err}", 0, []
        ok = out == want and steps == len(item["skills"])
        right[item["set"]] += ok
        outcomes.append({**item, "ok": ok, "output": out, "expected": want, "used": used})
        if not ok:
            print(f"miss [{item['set']}] {item['instruction']!r}: want {want!r}, got {out!r} {used}")
    sets = {s: {"n": sum(1 for i in items if i["set"] == s), "right": right[s]} for s in dict.fromkeys(i["set"] for i in items)}
    print(", ".join(f"{s} {v['right']}/{v['n']}" for s, v in sets.items()), f"| all {sum(right.values())}/{len(items)}")
    RESULTS.write_text(json.dumps({"right": sum(right.values()), "items": len(items), "sets": sets,
                                   "outcomes": outcomes}, indent=1) + "\n")


if __name__ == "__main__":
    main()
