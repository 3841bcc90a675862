"""README's result tables equal what their scripts render from the committed JSON."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_match_the_committed_results():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    readme = (ROOT / "README.md").read_text()
    assert "<!-- table: lorahub_fewshot -->" in readme and "<!-- table: composition -->" in readme


def test_brick_payload_runs_on_another_payload_set_get_a_table_of_their_own():
    from benchmarks.brick_payloads import table

    def run(n, exact):
        return {"uppercase": {"lower": {"n": n, "exact": exact, "misses": []}}, "payloads": n}

    one = table({"before": run(10, 0.9), "after": run(10, 1.0)})
    assert one.splitlines()[0] == "| brick | case | inputs | before | after |" and "| 10 | 90.0% | 100.0% |" in one
    two = table({"before": run(10, 0.9), "round 2": run(20, 0.95)})
    first, second = two.split("\n\nOn 20 unique payloads:\n\n")
    assert first.startswith("On 10 unique payloads:") and "| before |" in first and "round 2" not in first
    assert "| 20 | 95.0% |" in second and "before" not in second
