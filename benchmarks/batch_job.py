"""Batch-job throughput on the embedded default: `run_job` in one process vs one-at-a-time
`Composer.run`, and `run_job` on Ray Data with 2 worker actors.

The job is generated (seeded): ITEMS single-step requests over the default's string skills
(uppercase, capitalize, reverse, reverse words, remove vowels, rot13, acronym), each on two
or three random lowercase words, written as a JSONL job file. Contenders:

  batched     run_job(composer=c, batch_size=B): run_batch over chunks of B items
  sequential  c.run(instruction, input) per item, on the first SEQUENTIAL items only
              (the rate is the same over any prefix; the whole set would take an hour here)
  ray         run_job(workers=2): Ray Data map_batches, 2 actors of one Composer each, on
              a local ray.init(num_cpus=2); its time includes starting the actors and each
              loading its Composer, like a real job's

Outputs of batched and sequential are compared item by item (greedy decoding: the same
answer whatever the batch), and ray's with batched. items/s and their ratios are the result;
absolute rates depend on the machine and its load (recorded in env). Every process runs
torch on one thread by default (`--threads`), as Ray gives each actor one CPU.

    python benchmarks/batch_job.py [--items 1000] [--sequential 100] [--batch-size 64] [--threads 1] [--no-ray]
Writes benchmarks/results/batch_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--sequential", type=int, default=100, help="items timed one at a time")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (Ray gives each "
                                                                   "actor one)")
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
    with tempfile.TemporaryDirectory() as tmp:
        job = load_job(generate(args.items, Path(tmp)))
        batched = run_job(job, Path(tmp) / "batched.jsonl", composer=composer, batch_size=args.batch_size,
                          progress=False)
        print(f"batched: {batched.line()}", flush=True)
        reference = outputs(Path(tmp) / "batched.jsonl")

        sample = job.items[:args.sequential]
        start = time.perf_counter()
        sequential = {item.custom_id: composer.run(item.instruction, item.input).output for item in sample}
        seconds = time.perf_counter() - start
        same = sum(sequential[i] == reference[i] for i in sequential)
        result["batched"] = {"items": batched.done + batched.failed, "failed": batched.failed,
                             "seconds": batched.seconds, "items_per_s": batched.items_per_s}
        result["sequential"] = {"items": len(sample), "seconds": round(seconds, 3),
                                "items_per_s": round(len(sample) / seconds, 3), "same_output_as_batched": same}
        result["batched_vs_sequential"] = round(batched.items_per_s / result["sequential"]["items_per_s"], 2)
        print(f"sequential: {len(sample)} items, {result['sequential']['items_per_s']} items/s, "
              f"{same}/{len(sample)} outputs equal to batched", flush=True)

        if not args.no_ray:
            import ray

            del composer  # free this process's copy: the actors load their own
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            try:
                on_ray = run_job(job, Path(tmp) / "ray.jsonl", workspace=workspace, batch_size=args.batch_size,
                                 workers=2, progress=False)
            finally:
                ray.shutdown()
            got = outputs(Path(tmp) / "ray.jsonl")
            result["ray_2_workers"] = {"items": on_ray.done + on_ray.failed, "failed": on_ray.failed,
                                       "seconds": on_ray.seconds, "items_per_s": on_ray.items_per_s,
                                       "same_output_as_batched": sum(got[i] == reference[i] for i in reference)}
            result["ray_vs_batched"] = round(on_ray.items_per_s / batched.items_per_s, 2)
            print(f"ray, 2 workers: {on_ray.line()}", flush=True)
    result["env"]["total_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "batch_job.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'batch_job.json'}")


if __name__ == "__main__":
    sys.exit(main())
