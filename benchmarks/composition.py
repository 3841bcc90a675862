"""Composition quality on freshly worded instructions: `python -m benchmarks.composition --split test`.

Runs every item of benchmarks/data/composition_<split>.jsonl (made by
`benchmarks.composition_data`) through the embedded default exactly as a user would
(`Composer.run`, mode auto, greedy) and scores:

- retrieval top-1 / top-3: per step, the brick the step used is the skill's brick / the
  skill's brick is among the step's three hits (a failed plan or a missing step misses);
- single-step exact and chain exact: the output equals the skills' true answer;
- per class: payload style (colon, quotes, input, inline), skill, chain length, joiner,
  case-changing chains and the "hard" ones (3 steps, comma lists, case-changing);
- latency: wall time of each run divided by its steps, p50 and p90 (warm, CPU).

Prints a table and writes benchmarks/results/composition_<split>[_<label>].json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.composition_data import SPLITS
from composer import Composer, ComposerError

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def load(split: str) -> list[dict]:
    path = DATA / f"composition_{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run python -m benchmarks.composition_data")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_item(c: Composer, item: dict) -> dict:
    """One item's outcome: output, per-step retrieval hits, error, ms per step."""
    start = time.perf_counter()
    try:
        r = c.run(item["instruction"], input=item["input"])
    except ComposerError as err:
        return {"id": item["id"], "ok": False, "output": None, "error": f"{type(err).__name__}: {err}",
                "top1": [False] * len(item["skills"]), "top3": [False] * len(item["skills"]), "ms_per_step": None,
                "steps": []}
    ms = (time.perf_counter() - start) * 1000
    top1, top3 = [], []
    for n, skill in enumerate(item["skills"]):
        step = r.steps[n] if n < len(r.steps) else None
        top1.append(step is not None and step.used[:1] == [skill])
        top3.append(step is not None and skill in [b.id for b in step.bricks[:3]])
    return {"id": item["id"], "ok": r.output == item["expected"] and len(r.steps) == len(item["skills"]),
            "output": r.output, "error": None, "top1": top1, "top3": top3,
            "ms_per_step": round(ms / max(1, len(r.steps)), 2),
            "steps": [[s.instruction, s.used, s.output] for s in r.steps]}


def _share(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def score(items: list[dict], outcomes: list[dict]) -> dict:
    by_class: dict[str, list[bool]] = defaultdict(list)
    singles, chains, top1, top3 = [], [], [], []
    for item, out in zip(items, outcomes):
        (singles if item["kind"] == "single" else chains).append(out["ok"])
        top1 += out["top1"]
        top3 += out["top3"]
        for cls in item["classes"]:
            by_class[f"{item['kind']}/{cls}"].append(out["ok"])
        if item["style"] == "inline":
            by_class["inline (single and chains)"].append(out["ok"])
    ms = [o["ms_per_step"] for o in outcomes if o["ms_per_step"] is not None]
    return {
        "items": len(items), "single": len(singles), "chains": len(chains),
        "retrieval_top1": _share(top1), "retrieval_top3": _share(top3),
        "single_exact": _share(singles), "chain_exact": _share(chains),
        "two_step_exact": _share(by_class.get("chain/2-step", [])),
        "hard_chain_exact": _share(by_class.get("chain/hard", [])),
        "inline_exact": _share(by_class.get("inline (single and chains)", [])),
        "ms_per_step_p50": round(statistics.median(ms), 1) if ms else None,
        "ms_per_step_p90": round(statistics.quantiles(ms, n=10)[-1], 1) if len(ms) >= 10 else None,
        "classes": {k: {"n": len(v), "exact": _share(v)} for k, v in sorted(by_class.items())},
    }


def split_table(summary: dict) -> str:
    """One run's scores, printed by `main` (README's table is `table`)."""
    rows = [("retrieval top-1", "retrieval_top1"), ("retrieval top-3", "retrieval_top3"),
            ("single-step exact", "single_exact"), ("chain exact (all)", "chain_exact"),
            ("two-step chains exact", "two_step_exact"), ("3-step / comma / case-changing chains exact",
                                                           "hard_chain_exact"),
            ("inline-payload requests exact", "inline_exact")]
    lines = [f"| {name} | {summary[key]:.3f} |" for name, key in rows]
    lines.append(f"| p50 / p90 ms per step | {summary['ms_per_step_p50']} / {summary['ms_per_step_p90']} |")
    return "\n".join(lines)


def table(result: dict | None = None) -> str:
    """README's "Composition quality" table (`benchmarks/readme_tables.py` puts it there; it
    reads every split's JSON itself, `result` is unused): the test split before (label
    `before`) and after, then the splits written blind, each as first measured (label `first`)
    and now: `fresh` (tuned on after its first run), `blind` (never read), `holdout`
    (never read; first run at the end of its round, then once more after one more change) and
    `unseen` (never read; run on the code before and after the round it was written in)."""
    runs = [(label, RESULTS / f"composition_{name}.json") for label, name in
            (("test before", "test_before"), ("test", "test"), ("fresh, first run", "fresh_first"),
             ("fresh, tuned on", "fresh"), ("blind, first run", "blind_first"), ("blind", "blind"),
             ("holdout, first run", "holdout_first"), ("holdout", "holdout"),
             ("unseen, before this round", "unseen_before"), ("unseen", "unseen"))]
    runs = [(label, json.loads(path.read_text())["summary"]) for label, path in runs if path.is_file()]
    rows = [("retrieval top-1", "retrieval_top1", ">= 0.97"), ("retrieval top-3", "retrieval_top3", ">= 0.995"),
            ("single-step exact", "single_exact", ">= 0.95"), ("two-step chains exact", "two_step_exact", ">= 0.92"),
            ("3-step / comma / case-changing chains exact", "hard_chain_exact", ">= 0.85"),
            ("inline-payload requests exact", "inline_exact", ">= 0.90"),
            ("all chains exact", "chain_exact", ""), ("p50 ms per step (warm, CPU)", "ms_per_step_p50", "<= 150")]
    lines = ["| measure | " + " | ".join(label for label, _ in runs) + " | target |",
             "|---|" + "---|" * len(runs) + "---|"]
    for name, key, target in rows:
        cells = [f"{summary[key]:.3f}" if isinstance(summary[key], float) and key != "ms_per_step_p50"
                 else str(summary[key]) for _, summary in runs]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {target} |")
    sizes = sorted({(summary["single"], summary["chains"]) for _, summary in runs})
    lines.append("\nRequests per split: " + ", ".join(f"{a} single-step and {b} chains" for a, b in sizes)
                 + " (benchmarks/data/composition_<split>.jsonl).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--label", default="", help="suffix of the result file (e.g. 'before')")
    parser.add_argument("--show-failures", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--readme", action="store_true", help="print README's table (every split) from saved results")
    args = parser.parse_args()
    if args.readme:
        print(table())
        return
    items = load(args.split)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    c = Composer.from_default()
    c.run("Reverse the words: warm up")  # load every lazily built part before timing
    outcomes = [run_item(c, item) for item in items]
    summary = score(items, outcomes)
    print(split_table(summary))
    for name, cls in summary["classes"].items():
        print(f"  {name:40s} n={cls['n']:3d} exact={cls['exact']:.3f}")
    if args.show_failures:
        for item, out in zip(items, outcomes):
            if not out["ok"]:
                print(f"FAIL {item['id']} {item['instruction']!r} input={item['input']!r} want={item['expected']!r} "
                      f"got={out['output']!r} {out['error'] or out['steps']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"composition_{args.split}{'_' + args.label if args.label else ''}.json"
    path.write_text(json.dumps({"split": args.split, "summary": summary, "outcomes": outcomes}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
