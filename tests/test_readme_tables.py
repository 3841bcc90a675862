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
