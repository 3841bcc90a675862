"""The payload tagger on requests it never saw: `python -m benchmarks.tagger_cross --held voice`.

Leaves one request corpus (`composer/defaults/requests/<held>.jsonl`) out, trains the tagger
on the others exactly as `build --stage tagger` does, and plans every request of the held-out
corpus with the embedded default's planner and that tagger. A plan is right when its payload is
the annotated one and each step's top customized brick is the annotated skill. Counts are
given at each `--confidence` (the planner's TAG_CONFIDENCE: the tagger alone finds the payload
when its best span in the whole request is at least this probable; above 1 it never does).
The cards' request wordings do include the held-out corpus, so retrieval there is not held out:
the counts compare taggers and planner settings, not the planner's reach on new wordings (the
composition benchmark's `blind` and `holdout` splits measure that).

Writes benchmarks/results/tagger_cross.json (one entry per held-out corpus).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from composer import Composer, ComposerError, planner, tagger
from composer.defaults.build import REQUESTS, request_examples

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "tagger_cross.json"


def plan_outcome(c: Composer, row: dict) -> str:
    """'right', or what went wrong first: 'no plan', 'payload', 'steps' (count) or 'brick'."""
    try:
        plan = c.planner.plan(row["instruction"])
    except ComposerError:
        return "no plan"
    if plan.payload != row["payload"]:
        return "payload"
    hits = c.index.search_many([s.instruction for s in plan.steps], 5)
    ids = [next((h.id for h in found if not h.id.startswith("emergent-")), "") for found in hits]
    return "right" if ids == row["skills"] else "steps" if len(ids) != len(row["skills"]) else "brick"


def held_out(c: Composer, held: str, confidences: list[float]) -> dict:
    base = c.index.embedder.base
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in REQUESTS.glob("*.jsonl"):
            if corpus.stem != held:
                shutil.copy(corpus, Path(tmp) / corpus.name)
        start = time.time()
        weights, _ = tagger.train(base, request_examples(Path(tmp)))
        seconds = round(time.time() - start)
    c.planner.tagger = tagger.PayloadTagger(base, weights)
    rows = [json.loads(line) for line in (REQUESTS / f"{held}.jsonl").read_text().splitlines() if line.strip()]
    shipped, out = planner.TAG_CONFIDENCE, {"requests": len(rows), "train_seconds": seconds, "by_confidence": {}}
    try:
        for confidence in confidences:
            planner.TAG_CONFIDENCE = confidence
            counts = Counter(plan_outcome(c, row) for row in rows)
            out["by_confidence"][str(confidence)] = dict(counts)
            print(f"{held}: confidence {confidence}: {counts['right']} of {len(rows)} plans right {dict(counts)}",
                  flush=True)
    finally:
        planner.TAG_CONFIDENCE = shipped
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", action="append", required=True, help="corpus left out (repeatable): chat, terse, ...")
    parser.add_argument("--confidence", type=float, action="append", help="TAG_CONFIDENCE values (default: shipped)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    c = Composer.from_default()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for held in args.held:
        results[held] = held_out(c, held, args.confidence or [planner.TAG_CONFIDENCE])
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
