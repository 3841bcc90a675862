"""Batch-job throughput on the embedded default: `run_job` in one process vs one-at-a-time
`Composer.run`, and `run_job` on Ray Data with 2 worker actors.

The job is generated (seeded): ITEMS single-step requests over the default's string skills
(uppercase, capitalize, reverse, reverse words, remove vowels, rot13, acronym), each on two
or three random lowercase words, written as a JSONL job file. Contenders:

  batched     run_job(composer=c, batch_size=B): run_batch over chunks of B items
  sequential  c.run(instruction, input) per item, on the first SEQUENTIAL items only
              (the rate is the same over any prefix, and the prefix keeps the run short)
  ray         run_job(workers=2): Ray Data map_batches, 2 actors of one Composer each, on
              a local ray.init(num_cpus=2); its time includes starting the actors and each
              loading its Composer, like a real job's

Outputs of batched and sequential are compared item by item (greedy decoding: the same
answer whatever the batch), and ray's with batched. items/s and their ratios are the result;
absolute rates depend on the machine and its load (recorded in env), so the contenders run
interleaved, `--rounds` times, and the medians are compared. Every process runs
torch on one thread by default (`--threads`), as Ray gives each actor one CPU.

    python benchmarks/batch_job.py [--items 1000] [--sequential 100] [--batch-size 64] [--threads 1]
                                   [--rounds 3] [--no-ray]
Writes benchmarks/results/batch_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from composer import Workspace
from composer.jobs import load_job, run_job

RESULTS = Path(__file__).resolve().parent / "results"
INSTRUCTIONS = ["Uppercase", "Capitalize every word", "Reverse it", "Reverse the words", "Remove the vowels",
                "Apply rot13", "Make an acronym"]


def generate(n: int, folder: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path = folder / "generated.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))
                     for _ in range(rng.randint(2, 3))]
            f.write(json.dumps({"id": f"item-{i}", "instruction": rng.choice(INSTRUCTIONS),
                                "input": " ".join(words)}) + "\n")
    return path


def outputs(path: Path) -> dict[str, str | None]:
    return {row["custom_id"]: row["output"] for row in map(json.loads, open(path))}


def _rate(items: int, seconds: float, **extra) -> dict:
    return {"items": items, "seconds": round(seconds, 3), "items_per_s": round(items / seconds, 3), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=100, help="items timed one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (Ray gives each "
                                                                   "actor one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    result = {"env": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                      "torch_threads": torch.get_num_threads(), "load_avg_at_start": os.getloadavg(),
                      "items": args.items, "batch_size": args.batch_size}}
    workspace = Workspace.default()
    composer = workspace.composer("cpu")
    contenders = ["batched", "sequential"] + ([] if args.no_ray else ["ray_2_workers"])
    rounds: dict[str, list[dict]] = {name: [] for name in contenders}
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    with tempfile.TemporaryDirectory() as tmp:
        job = load_job(generate(args.items, Path(tmp)))
        for n in range(args.rounds):  # interleaved: load from other jobs on the machine hits all alike
            folder = Path(tmp) / f"round{n}"
            folder.mkdir()
            batched = run_job(job, folder / "batched.jsonl", composer=composer, batch_size=args.batch_size,
                              progress=False)
            reference = outputs(folder / "batched.jsonl")
            rounds["batched"].append(_rate(batched.done + batched.failed, batched.seconds, failed=batched.failed))

            start = time.perf_counter()
            sequential = {item.custom_id: composer.run(item.instruction, item.input).output
                          for item in job.items[:args.sequential]}
            rounds["sequential"].append(_rate(len(sequential), time.perf_counter() - start,
                                              same_output_as_batched=sum(v == reference[k] for k, v in sequential.items())))
            if not args.no_ray:
                on_ray = run_job(job, folder / "ray.jsonl", workspace=workspace, batch_size=args.batch_size,
                                 workers=2, progress=False)
                got = outputs(folder / "ray.jsonl")
                rounds["ray_2_workers"].append(_rate(on_ray.done + on_ray.failed, on_ray.seconds,
                                                     failed=on_ray.failed,
                                                     same_output_as_batched=sum(got[k] == v for k, v in reference.items())))
            print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]['items_per_s']} items/s" for k, v in rounds.items()),
                  flush=True)
    if not args.no_ray:
        ray.shutdown()
    for name in contenders:
        result[name] = {"median_items_per_s": statistics.median(r["items_per_s"] for r in rounds[name]),
                        "rounds": rounds[name]}
    rate = {name: result[name]["median_items_per_s"] for name in contenders}
    result["batched_vs_sequential"] = round(rate["batched"] / rate["sequential"], 2)
    if not args.no_ray:
        result["ray_vs_batched"] = round(rate["ray_2_workers"] / rate["batched"], 2)
        result["ray_vs_sequential"] = round(rate["ray_2_workers"] / rate["sequential"], 2)
    result["env"]["total_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_job.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'batch_job.json'}")


def table(result: dict) -> str:
    """The README table (`benchmarks/readme_tables.py` puts it there from the JSON)."""
    rows = [("one at a time, `Composer.run` per item (first {n} items)", "sequential"),
            ("`run_job`, one process", "batched"),
            ("`run_job` on Ray Data, 2 workers (time includes starting both actors)", "ray_2_workers")]
    base = result["sequential"]["median_items_per_s"]
    lines = ["| how | items/s (median of rounds) | vs one at a time |", "|---|---|---|"]
    for label, key in rows:
        if key in result:
            rate = result[key]["median_items_per_s"]
            label = label.format(n=result[key]["rounds"][0]["items"])
            lines.append(f"| {label} | {rate:.1f} | ×{rate / base:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
