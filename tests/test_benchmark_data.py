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


def test_own_requests_are_well_formed():
    """Every own request names known skills, holds its payload, has a true answer for it (table
    skills: a known key) and appears once: a bad row would stop `benchmarks.own_requests`."""
    from composer.defaults.skills import SKILLS

    rows = [json.loads(line) for line in (ROOT / "benchmarks" / "data" / "own_requests.jsonl").read_text().splitlines()
            if line.strip()]
    assert len({row["instruction"] for row in rows}) == len(rows)
    for row in rows:
        assert set(row) == {"instruction", "skills", "payload", "set"}, row
        assert row["payload"].lower() in row["instruction"].lower(), row["instruction"]
        text = row["payload"]
        for skill in row["skills"]:
            text = SKILLS[skill].answer(text)  # KeyError: not a skill, or not a key of its table
