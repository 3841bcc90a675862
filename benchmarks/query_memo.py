"""The retriever's query memo against none, in the same run.

`python -m benchmarks.query_memo --split test` runs the composition split's requests through
`Composer.run` in alternating passes, with the memo of query vectors
(`composer.retriever.ProjectedEmbedder`, MEMO_SIZE) and without it, each pass starting from
empty memos (the planner's search memo too), and reports the p50 per step of each. The planner
and the run embed a step's text once each, so without the memo that text goes through the
embedder twice. Outputs are the same either way (checked).

Writes benchmarks/results/query_memo.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.composition import load, run_item
from composer import Composer, retriever

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "query_memo.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    c = Composer.from_default()
    c.run("Reverse the words: warm up")
    items = load(args.split)
    remembered = retriever.ProjectedEmbedder._remembered
    passes, outputs = [], {}
    for n in range(args.rounds):
        for memo in (False, True):
            retriever.ProjectedEmbedder._remembered = remembered if memo else (
                lambda self, tuned, texts: self._vectors(tuned, texts))
            c.index.embedder._memo = {}
            c.planner._memo.clear()
            out = [run_item(c, item) for item in items]
            outputs.setdefault(memo, [o["output"] for o in out])
            assert outputs[memo] == [o["output"] for o in out]
            ms = statistics.median(o["ms_per_step"] for o in out if o["ms_per_step"] is not None)
            passes.append({"round": n, "memo": memo, "ms_per_step_p50": round(ms, 1)})
            print(f"round {n} memo {'on ' if memo else 'off'}: p50 {ms:.1f} ms per step", flush=True)
    retriever.ProjectedEmbedder._remembered = remembered
    assert outputs[False] == outputs[True], "the memo changed an output"
    summary = {memo: round(statistics.median(p["ms_per_step_p50"] for p in passes if p["memo"] == memo), 1)
               for memo in (False, True)}
    result = {"split": args.split, "items": len(items), "threads": args.threads, "passes": passes,
              "p50_without_memo": summary[False], "p50_with_memo": summary[True],
              "ratio": round(summary[True] / summary[False], 3)}
    print(f"p50 per step: {summary[False]} ms without the memo, {summary[True]} ms with it "
          f"(ratio {result['ratio']})")
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
