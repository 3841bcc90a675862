"""The composition benchmark's committed items are what its generator builds, and the generator's
own checks pass: no phrasing repeats a card example (the cards gained request wordings after
the splits were written, and ten of them had become card wordings before this test existed)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BUILD = """
import json, sys
from benchmarks.composition_data import build, wording_hashes
json.dump({"items": build(), "hashes": wording_hashes()}, sys.stdout)
"""


def test_composition_items_match_the_generator_and_repeat_no_card_example():
    out = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    built = json.loads(out.stdout)
    for split, items in built["items"].items():
        path = ROOT / "benchmarks" / "data" / f"composition_{split}.jsonl"
        committed = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        assert committed == items, f"{path.name} differs from benchmarks.composition_data: rerun it"
    # the card build keeps the phrasings off the cards by these hashes
    shipped = json.loads((ROOT / "composer" / "defaults" / "benchmark_wordings.json").read_text())["sha256"]
    assert shipped == built["hashes"], "benchmark_wordings.json is stale: rerun benchmarks.composition_data"
