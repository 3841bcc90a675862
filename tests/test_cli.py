"""The CLI as a user runs it: a real subprocess, one clear line on user error, no traceback."""

import json
import subprocess
import sys

import pytest

from tests.helpers import add_random_brick, save_base, tiny_model
from composer.library import BrickLibrary


def composer(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "composer.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    base = tiny_model("llama")
    save_base(base, root / "lib" / "base")
    add_random_brick(BrickLibrary(root / "lib", create=True), base, "shout", "upper case", ["Make it all caps"])
    return root / "lib"


def test_run_json_and_text(library):
    out = composer("--bricks", str(library), "run", "Make it all caps, then copy it", "--input", "hi", "--json")
    assert out.returncode == 2 and "no brick matches" in out.stderr and "'copy it'" in out.stderr
    out = composer("--bricks", str(library), "run", "Make it all caps", "--input", "hi", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [s["used"] for s in result["steps"]] == [["shout"]]
    text = composer("--bricks", str(library), "run", "Make it all caps: hi")
    assert text.returncode == 0 and "answer:" in text.stdout and "shout" in text.stdout


def test_bricks_list_and_index_build(library):
    listed = composer("--bricks", str(library), "bricks", "list")
    assert listed.returncode == 0 and listed.stdout.split()[0] == "shout"
    built = composer("--bricks", str(library), "index", "build")
    assert built.returncode == 0 and "indexed 2 texts of 1 bricks" in built.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "   "], "error: the instruction is empty"),
    (["run", "Make it all caps: é"], "non-ASCII"),
    (["run", "Make it all caps"], "no input found"),
])
def test_user_errors_are_one_line(library, args, message):
    out = composer("--bricks", str(library), *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_library_is_one_line(tmp_path):
    out = composer("--bricks", str(tmp_path / "nope"), "bricks", "list")
    assert out.returncode == 2 and out.stderr.startswith("error: brick library not found")
