"""HTTP serving under load: request batching vs one request at a time, on the embedded default.

Two live servers on 127.0.0.1 share one loaded Composer (one engine):

  batched         `create_app(..., window_ms=10, max_batch=32)`: requests arriving together
                  run as one engine batch, each row with its own brick
  one_at_a_time   `create_app(..., window_ms=0, max_batch=1)`: the same server, one request
                  per engine call (what a server without batching does)

Clients are threads with the official `openai` client; at concurrency c, c of them send the
requests back to back. Every request names a brick (`model="<brick id>"`), cycling over the
12 customized bricks, so each batch mixes bricks. Greedy decoding: both servers must return
identical answers, checked before any number is written. Reported per (server,
concurrency): throughput (requests/s), p50 / p99 latency (ms) and the mean engine batch; and
the batched / one-at-a-time throughput ratio per concurrency (ratios are the result: the
absolute times depend on the machine and its load, which is recorded).

    python benchmarks/serve_load.py [--requests 64] [--concurrency 1 8 32]
Writes benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402

from composer import Composer  # noqa: E402
from composer.integrations.server import create_app  # noqa: E402

INPUTS = {"uppercase": "big cat", "capitalize": "hello world", "reverse": "hello", "reverse_words": "one two three",
          "remove_vowels": "banana split", "rot13": "hello", "acronym": "portable network graphics",
          "capital": "France", "antonym": "hot", "plural": "goose", "french": "cat", "sentiment": "I love this movie"}
SERVERS = {"batched": {"window_ms": 10, "max_batch": 32}, "one_at_a_time": {"window_ms": 0, "max_batch": 1}}


def start(app) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1"


def load(url: str, requests: list[tuple[str, str]], concurrency: int) -> tuple[list[str], list[float], float]:
    """(answers in request order, latency ms per request, wall seconds) at `concurrency` clients."""
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)

    def ask(pair: tuple[str, str]) -> tuple[str, float]:
        t = time.perf_counter()
        out = client.chat.completions.create(model=pair[0], messages=[{"role": "user", "content": pair[1]}])
        return out.choices[0].message.content, (time.perf_counter() - t) * 1000

    start_t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        done = list(pool.map(ask, requests))
    return [a for a, _ in done], [ms for _, ms in done], time.perf_counter() - start_t


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64, help="requests per (server, concurrency)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = parser.parse_args()

    t0 = time.perf_counter()
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.machine(),
           "cores": os.cpu_count(), "load_avg_start": os.getloadavg()[0], "requests": args.requests,
           "bricks": len(INPUTS)}
    composer = Composer.from_default()
    apps = {name: create_app(composer, **opts) for name, opts in SERVERS.items()}
    servers = {name: start(app) for name, app in apps.items()}
    pairs = list(INPUTS.items())
    load(servers["batched"][1], pairs, len(pairs))  # warm-up: every brick in a slot, every code path run

    rows, ratios = [], {}
    for c in args.concurrency:
        requests = [pairs[i % len(pairs)] for i in range(args.requests)]
        answers = {}
        for name in SERVERS:  # same requests, one server after the other
            batches = len(apps[name].state.batcher.batches)
            answers[name], ms, wall = load(servers[name][1], requests, c)
            sizes = apps[name].state.batcher.batches[batches:]
            rows.append({"server": name, "concurrency": c, "requests": len(requests), "seconds": round(wall, 2),
                         "throughput_rps": round(len(requests) / wall, 3), "p50_ms": round(percentile(ms, 50)),
                         "p99_ms": round(percentile(ms, 99)), "mean_batch": round(statistics.mean(sizes), 2)})
            print(rows[-1], flush=True)
        if answers["batched"] != answers["one_at_a_time"]:
            raise SystemExit(f"answers differ at concurrency {c}: batching changed an output")
        by = {r["server"]: r for r in rows if r["concurrency"] == c}
        ratios[str(c)] = round(by["batched"]["throughput_rps"] / by["one_at_a_time"]["throughput_rps"], 2)
    for server, _ in servers.values():
        server.should_exit = True
    env.update(load_avg_end=os.getloadavg()[0], total_s=round(time.perf_counter() - t0, 1))
    result = {"env": env, "answers_match": True, "results": rows, "throughput_ratio_batched_vs_one": ratios}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"throughput_ratio_batched_vs_one": ratios}), f"-> {args.out}")


if __name__ == "__main__":
    main()
