"""One speed-up switched off and on, in the same run: `python -m benchmarks.latency_switch --switch S`.

Runs the composition split's requests through `Composer.run` in alternating passes, with the
switch off and on, each pass starting from empty memos (the embedder's and the planner's), and
reports the p50 per step of each pass and the ratio of the medians. Outputs must be the same
either way (checked). The switches:

- `memo`: the memo of query vectors (`composer.retriever.ProjectedEmbedder`, MEMO_SIZE). The
  planner and the run embed a step's text once each, so without it that text goes through the
  embedder twice.
- `one_brick`: the one-brick path of the BGMV kernel (`BatchMapping.single`: every row has the
  same brick at weight 1, two plain GEMMs), against the general padded-block `bmm`s.
- `search_ahead`: a run retrieves every step of its plans in one search (`_Batch.retrieve`),
  against one search per step when the step runs (one embedding pass each).

Each pass also counts the sentence-embedder calls (each call is one MiniLM pass per text batch).

The machine is noisy: only the ratio within one run means anything. Writes
benchmarks/results/latency_<switch>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
from pathlib import Path
from typing import Callable, Iterator

from benchmarks.composition import load, run_item
from composer import Composer, retriever
from composer import composer as composer_module
from composer.engine import batch

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _memo_off() -> tuple[type, str, object]:
    """The query memo bypassed: every text goes through the embedder."""
    return retriever.ProjectedEmbedder, "_once", lambda self, kind, texts, compute: compute(texts)


def _one_brick_off() -> tuple[type, str, object]:
    """Mappings built without `single`: the general padded-block path."""
    build = batch.BatchMapping.build
    return batch.BatchMapping, "build", classmethod(lambda cls, *a, **k: dataclasses.replace(build(*a, **k), single=None))


class _WhenRun(dict):
    """(item, depth) -> Retrieval, each step searched alone when its depth runs."""

    def __init__(self, index, plans, k: int):
        super().__init__()
        self.index, self.plans, self.k = index, plans, k

    def __missing__(self, key: tuple[int, int]):
        i, depth = key
        self[key] = self.index.search_scoped([self.plans[i].steps[depth].instruction], self.k)[0]
        return self[key]


def _search_ahead_off() -> tuple[type, str, object]:
    """Each step retrieved when it runs, one search per step."""
    return composer_module._Batch, "retrieve", lambda self, plans, k: _WhenRun(self.c.index, plans, k)


SWITCHES: dict[str, Callable[[], tuple[type, str, object]]] = {"memo": _memo_off, "one_brick": _one_brick_off,
                                                               "search_ahead": _search_ahead_off}


@contextlib.contextmanager
def _counted(calls: list[int]) -> Iterator[None]:
    """Counts SentenceTransformer.encode calls into calls[0] inside the block."""
    from sentence_transformers import SentenceTransformer

    real = SentenceTransformer.encode

    def encode(self, *args, **kwargs):
        calls[0] += 1
        return real(self, *args, **kwargs)

    SentenceTransformer.encode = encode
    try:
        yield
    finally:
        SentenceTransformer.encode = real


@contextlib.contextmanager
def _switched(name: str, on: bool) -> Iterator[None]:
    """Inside the block the speed-up `name` is on or off; the class is restored after."""
    if on:
        yield
        return
    owner, attribute, off = SWITCHES[name]()
    saved = vars(owner)[attribute]
    setattr(owner, attribute, off)
    try:
        yield
    finally:
        setattr(owner, attribute, saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switch", choices=sorted(SWITCHES), required=True)
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
    passes, outputs = [], {}
    for n in range(args.rounds):
        for on in (False, True):
            calls = [0]
            with _switched(args.switch, on), _counted(calls):
                c.index.embedder._memo = {}
                c.planner._memo.clear()
                out = [run_item(c, item) for item in items]
            outputs.setdefault(on, [o["output"] for o in out])
            assert outputs[on] == [o["output"] for o in out]
            ms = statistics.median(o["ms_per_step"] for o in out if o["ms_per_step"] is not None)
            passes.append({"round": n, "on": on, "ms_per_step_p50": round(ms, 1), "embedder_calls": calls[0]})
            print(f"round {n} {args.switch} {'on ' if on else 'off'}: p50 {ms:.1f} ms per step, "
                  f"{calls[0]} embedder calls", flush=True)
    assert outputs[False] == outputs[True], f"switching {args.switch} changed an output"
    off, on = (round(statistics.median(p["ms_per_step_p50"] for p in passes if p["on"] == v), 1)
               for v in (False, True))
    result = {"switch": args.switch, "split": args.split, "items": len(items), "threads": args.threads,
              "passes": passes, "p50_off": off, "p50_on": on, "ratio": round(on / off, 3)}
    print(f"p50 per step: {off} ms with {args.switch} off, {on} ms with it on (ratio {result['ratio']})")
    path = RESULTS / f"latency_{args.switch}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
