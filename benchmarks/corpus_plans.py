"""The shipped planner on the annotated request corpora: `python -m benchmarks.corpus_plans`.

Plans every request of `composer/defaults/requests/*.jsonl` with the embedded default and
counts the outcomes per corpus (`tagger_cross.plan_outcome`: right, or no plan, wrong payload,
wrong step count, wrong brick). The corpora train the payload tagger and give the cards their
wordings, so this measures the planner's rules on them (segmentation, asides, payload
delimiters), not its reach on new wordings — the composition benchmark's `blind` and `holdout`
splits measure that.

Writes benchmarks/results/corpus_plans.json (`--label first`: corpus_plans_first.json, the
planner on corpora before they were trained on).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from benchmarks.tagger_cross import plan_outcome
from composer import Composer
from composer.defaults.build import REQUESTS

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "corpus_plans.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="", help="write corpus_plans_<label>.json instead")
    results = RESULTS.with_stem(f"{RESULTS.stem}_{label}") if (label := parser.parse_args().label) else RESULTS
    c = Composer.from_default()
    out = {}
    for corpus in sorted(REQUESTS.glob("*.jsonl")):
        rows = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
        outcomes = [plan_outcome(c, row) for row in rows]
        counts = Counter(outcomes)
        chains = Counter(o for o, row in zip(outcomes, rows) if len(row["skills"]) > 1)
        out[corpus.stem] = {"requests": len(rows), "chains": sum(chains.values()), "right": counts["right"],
                            "right_chains": chains["right"], "outcomes": dict(sorted(counts.items()))}
        print(f"{corpus.stem:8s} {counts['right']:4d} of {len(rows)} right ({chains['right']} of "
              f"{sum(chains.values())} chains); {dict(sorted(counts.items()))}", flush=True)
    total = {key: sum(v[key] for v in out.values()) for key in ("requests", "chains", "right", "right_chains")}
    print(f"all      {total['right']:4d} of {total['requests']} right ({total['right_chains']} of {total['chains']} chains)")
    results.write_text(json.dumps({"corpora": out, "total": total}, indent=1) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
