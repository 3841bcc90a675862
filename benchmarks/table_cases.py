"""Knowledge bricks on every key of their table in every case: `python -m benchmarks.table_cases`.

Runs each brick that ships its table (data.jsonl) on all of its keys in lower, Title, UPPER
and rAnDoM case, through `Composer.run_bricks` as a step runs it, twice in the same run: asked
the key as the user wrote it, and as the table spells it (`Composer.as_table_spells`, the
shipped behaviour). Counts exact outputs per brick and case and lists the misses.

Writes benchmarks/results/table_cases.json.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from composer import Composer

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "table_cases.json"
BATCH = 64


def random_case(text: str, rng: random.Random) -> str:
    return "".join(ch.upper() if rng.random() < 0.5 else ch.lower() for ch in text)


def cases(seed: int = 0) -> dict:
    rng = random.Random(seed)
    return {"lower": str.lower, "title": str.title, "upper": str.upper, "random": lambda t: random_case(t, rng)}


def score(c: Composer, brick_id: str, rows: list[dict]) -> dict:
    """Exact outputs per case: {case: {"n", "exact", "misses": [(input, output, truth)]}}."""
    out = {}
    for case, recase in cases().items():
        xs, truth = [recase(r["input"]) for r in rows], [r["output"] for r in rows]
        got: list[str] = []
        for i in range(0, len(xs), BATCH):
            chunk = xs[i:i + BATCH]
            got += [r.output.strip() for r in c.run_bricks([brick_id] * len(chunk), chunk)]
        misses = [(x, g, y) for x, g, y in zip(xs, got, truth) if g != y]
        out[case] = {"n": len(xs), "exact": round(1 - len(misses) / len(xs), 4), "misses": misses}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    import torch

    torch.set_num_threads(parser.parse_args().threads)
    c = Composer.from_default()
    library = c.engine.library
    tables = {b: [json.loads(line) for line in (library.root / b / "data.jsonl").read_text().splitlines()
                  if line.strip()] for b in sorted(library.known_inputs())}
    spelled = Composer.as_table_spells
    result = {}
    for asked in ("as written", "as the table spells it"):
        if asked == "as written":
            Composer.as_table_spells = lambda self, used, text: text
        try:
            result[asked] = {b: score(c, b, rows) for b, rows in tables.items()}
        finally:
            Composer.as_table_spells = spelled
        for b, per_case in result[asked].items():
            print(f"{asked}: {b}: " + ", ".join(f"{k} {v['n'] - len(v['misses'])}/{v['n']}" for k, v in per_case.items()))
    misses = {asked: sum(len(v["misses"]) for per in r.values() for v in per.values()) for asked, r in result.items()}
    checks = sum(v["n"] for per in result["as written"].values() for v in per.values())
    print(f"misses in {checks} key x case checks: {misses}")
    RESULTS.write_text(json.dumps({"checks": checks, "misses": misses, "runs": result}, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
