"""Two retrieval choices measured against the alternative in the same run.

`python -m benchmarks.retrieval_choices` uses the embedded default's cards and, as queries,
the annotated corpora's single-skill wordings that no card holds (`out_of_scope.in_domain`)
plus the 50 requests no brick does (`benchmarks/data/out_of_scope_eval.txt`):

- **pooling**: a brick scored by its best cosine (POOL 1, threshold 0.45, as before) against
  the mean of its best two (POOL 2 with the shipped threshold). Each step is decided as
  `Composer.run` decides it (`out_of_scope.decide`: auto mode, the out-of-scope list).
- **seed averaging** (`--seeds`, about five minutes): the retriever's map trained from one seed
  against the average of four (`retriever.SEEDS`). Per query, the brick ranked first by
  maps from different seeds: how many queries two single maps disagree on, and two
  averages of four disjoint seeds; and how often the first brick is right.

Writes benchmarks/results/retrieval_choices.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np

import composer.index
from benchmarks.out_of_scope import EVAL, decide, in_domain
from composer import Composer, retriever
from composer.defaults.build import text_lines
from composer.index import BrickIndex

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "retrieval_choices.json"
BEFORE = {"pool": 1, "threshold": 0.45}


def pooling(c: Composer, steps: list[tuple[str, str]], ood: list[str]) -> dict:
    shipped = {"pool": composer.index.POOL, "threshold": c.settings.threshold}
    out = {}
    for name, choice in (("best cosine", BEFORE), ("shipped", shipped)):
        composer.index.POOL = choice["pool"]
        c.settings = dataclasses.replace(c.settings, threshold=choice["threshold"])
        used = decide(c, [s for s, _ in steps], use_list=True)
        out[name] = {**choice, "in_domain_right": sum(u == skill for u, (_, skill) in zip(used, steps)),
                     "in_domain_refused": sum(u is None for u in used),
                     "out_of_scope_refused": sum(u is None for u in decide(c, ood, use_list=True))}
        print(f"{name:12s} pool {choice['pool']}, threshold {choice['threshold']}: in-domain right "
              f"{out[name]['in_domain_right']} of {len(steps)}, refused {out[name]['in_domain_refused']}; "
              f"out-of-scope refused {out[name]['out_of_scope_refused']} of {len(ood)}", flush=True)
    composer.index.POOL = shipped["pool"]
    return out


def seed_averaging(c: Composer, steps: list[tuple[str, str]]) -> dict:
    base = c.index.embedder.base
    x, y = retriever.embed_pairs(base, retriever.training_texts(c.library))
    maps = [fit[:2] for fit in retriever._fit(x, y, list(range(2 * retriever.SEEDS)), retriever.RANK, retriever.STEPS,
                                              retriever.LR, retriever.TEMPERATURE, retriever.IDENTITY_PULL,
                                              retriever.PER_BRICK)]
    vocabulary = retriever.vocabulary(c.library)

    def first(group: list[tuple[np.ndarray, np.ndarray]]) -> list[str]:
        embedder = retriever.ProjectedEmbedder(base, *retriever.average(group), vocabulary)
        with tempfile.TemporaryDirectory() as folder:
            index = BrickIndex(c.library, folder, embedder, "map").build()
            return [hits[0].id for hits in index.search_many([s for s, _ in steps], 1)]

    def right(ranked: list[str]) -> float:
        return round(sum(r == skill for r, (_, skill) in zip(ranked, steps)) / len(steps), 4)

    singles = [first([m]) for m in maps]
    groups = [first(maps[:retriever.SEEDS]), first(maps[retriever.SEEDS:])]
    apart = [sum(p != q for p, q in zip(singles[0], other)) for other in singles[1:]]
    out = {"queries": len(steps), "single_seed_disagreements_vs_seed0": apart,
           "averages_disagreements": sum(p != q for p, q in zip(*groups)),
           "single_seed_right": [right(r) for r in singles], "average_right": [right(r) for r in groups]}
    print(f"single maps: seed 0 and seeds 1-{len(maps) - 1} disagree on {apart} of {len(steps)}; "
          f"two averages of {retriever.SEEDS} disagree on {out['averages_disagreements']}", flush=True)
    print(f"first brick right: single maps {out['single_seed_right']}, averages {out['average_right']}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", action="store_true", help="also compare single-seed and averaged maps (slow)")
    args = parser.parse_args()
    c = Composer.from_default()
    steps, ood = in_domain(c.library), text_lines(EVAL)
    out = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    out["pooling"] = pooling(c, steps, ood)
    if args.seeds:
        out["seed_averaging"] = seed_averaging(c, steps)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
