"""String bricks on the payloads people actually wrote, in every case a chain can hand them.

`python -m benchmarks.brick_payloads [--bricks DIR] [--only uppercase,capitalize] [--label NAME]`
runs each string brick of a library on the unique payloads of the annotated request corpora
(`composer/defaults/requests/`: "save the bees", "caution wet floor", 1,291 phrases for the
string skills) in lower, Title and UPPER case, through `Composer.run_bricks` as a step runs it,
and counts exact outputs. Only inputs the skill changes count (an unchanged input says nothing
about a brick). No brick trains on these payloads (the build and `composer.defaults.robust`
draw random letters and the embedder's vocabulary), so this measures a brick against what
users type; choosing between two versions of a brick here, not on a benchmark split, keeps the
splits held out.

Writes `benchmarks/results/brick_payloads.json`, one entry per `--label` (default: the
folder's name), so versions of the same bricks compare in one file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from composer import Composer
from composer.defaults.skills import SKILLS, annotated_requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "brick_payloads.json"
CASES = {"lower": str.lower, "title": str.title, "upper": str.upper}
BATCH = 64


def payloads() -> list[str]:
    """Unique lower-cased payloads of every corpus request whose first skill is a string skill."""
    seen: dict[str, None] = {}
    for rows in annotated_requests():
        for row in rows:
            if SKILLS[row["skills"][0]].table is None:
                seen.setdefault(row["payload"].lower())
    return list(seen)


def score(c: Composer, brick_id: str, texts: list[str]) -> dict:
    """Exact outputs of one brick per case, with its failures (input, output, truth)."""
    skill, out = SKILLS[brick_id], {}
    for case, recase in CASES.items():
        # surrounding whitespace ignored, as the build's exact match does: the truth of "i love
        # pizza" without vowels opens with a space no step output keeps
        rows = [(x, y.strip()) for x in map(recase, texts) if (y := skill.answer(x)) != x]
        got: list[str] = []
        for i in tqdm(range(0, len(rows), BATCH), desc=f"{brick_id} {case}", leave=False):
            chunk = [x for x, _ in rows[i:i + BATCH]]
            got += [r.output.strip() for r in c.run_bricks([brick_id] * len(chunk), chunk)]
        misses = [(x, g, y) for (x, y), g in zip(rows, got) if g != y]
        out[case] = {"n": len(rows), "exact": round(1 - len(misses) / len(rows), 4) if rows else None, "misses": misses}
    return out


def table(result: dict) -> str:
    """README's tables: exact match per brick and case (inputs the skill changes), one column per
    run label in the order the runs were made; "-" where a run left a brick out. Runs on another
    payload set (the corpora grow) get a table of their own, so a column compares like with like."""
    rounds: dict[int, list[str]] = {}
    for label in result:
        rounds.setdefault(result[label]["payloads"], []).append(label)
    if len(rounds) == 1:
        return _round_table(result, *rounds.values())
    return "\n\n".join(f"On {n:,} unique payloads:\n\n{_round_table(result, labels)}" for n, labels in rounds.items())


def _round_table(result: dict, labels: list[str]) -> str:
    bricks = list(dict.fromkeys(b for label in labels for b in result[label] if b != "payloads"))
    lines = ["| brick | case | inputs | " + " | ".join(labels) + " |", "|---|---|---|" + "---|" * len(labels)]
    for b in bricks:
        first = next(result[label][b] for label in labels if b in result[label])
        for case, r in first.items():
            if r["n"]:
                cells = [f"{result[label][b][case]['exact']:.1%}" if b in result[label] else "-" for label in labels]
                lines.append(f"| `{b}` | {case} | {r['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bricks", type=Path, default=ROOT / "bricks", help="a library holding the string bricks")
    parser.add_argument("--only", default="", help="comma-separated brick ids (default: every string skill)")
    parser.add_argument("--label", default=None, help="name of this run in the results file")
    parser.add_argument("--limit", type=int, default=None, help="first N payloads only (a quick look)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    ids = [i for i in args.only.split(",") if i] or [s for s, skill in SKILLS.items()
                                                     if skill.table is None and (args.bricks / s).is_dir()]
    texts = payloads()[: args.limit]
    default = args.bricks.resolve() == (ROOT / "bricks").resolve()
    c = Composer.from_default() if default else Composer.from_path(args.bricks / "base", args.bricks)
    label = args.label or args.bricks.resolve().name
    run = {b: score(c, b, texts) for b in ids}
    for b, cases in run.items():
        print(f"{label} {b}: " + ", ".join(f"{case} {r['exact']:.1%} of {r['n']}" for case, r in cases.items() if r["n"]))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results.setdefault(label, {}).update(run)
    results[label]["payloads"] = len(texts)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
