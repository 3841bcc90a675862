"""README tables come from the committed result JSON, so README numbers cannot drift from them.

A table sits in README between `<!-- table: NAME -->` and `<!-- /table -->`; NAME is a
benchmark script (or an example's script, `examples/*/NAME.py`) whose `table(result)` renders
`benchmarks/results/NAME.json`.

    python benchmarks/readme_tables.py          # rewrite the tables in README.md
    python benchmarks/readme_tables.py --check  # exit 1 when README differs from the JSON
"""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"
BLOCK = re.compile(r"(<!-- table: (\w+) -->\n)(.*?)(<!-- /table -->)", re.S)


def render(text: str) -> str:
    """README text with every marked table regenerated from its JSON."""
    # a script by its name, and the repository root for the package imports it makes as `-m benchmarks.NAME`
    sys.path[:0] = [str(HERE), str(HERE.parent), *sorted({str(p.parent) for p in (HERE.parent / "examples").glob("*/*.py")})]

    def fill(m: re.Match) -> str:
        path = HERE / "results" / f"{m.group(2)}.json"  # none: the script reads several files itself
        result = json.loads(path.read_text()) if path.is_file() else None
        return f"{m.group(1)}{importlib.import_module(m.group(2)).table(result)}\n{m.group(4)}"

    return BLOCK.sub(fill, text)


def main() -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        if new != text:
            print("README tables differ from benchmarks/results: run python benchmarks/readme_tables.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
