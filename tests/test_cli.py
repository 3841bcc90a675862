"""The CLI as a user runs it: a real subprocess, one clear line on user error, no traceback."""

import json
import shutil
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


def test_every_bricks_command_through_the_cli(library, tmp_path):
    """show, add, merge, train, update, rollback, remove, list: each command's report is true."""
    lib = tmp_path / "lib"
    shutil.copytree(library, lib, ignore=shutil.ignore_patterns(".index"))
    args = ["--bricks", str(lib)]
    shown = composer(*args, "bricks", "show", "shout")
    assert shown.returncode == 0 and json.loads(shown.stdout.split("versions:")[0])["id"] == "shout"
    assert "versions: [1]" in shown.stdout

    base = tiny_model("llama")
    adapter = tmp_path / "adapter"
    add_random_brick(BrickLibrary(tmp_path / "scratch", create=True), base, "x", "x", ["x"], seed=7)
    shutil.copytree(tmp_path / "scratch" / "x", adapter)
    (adapter / "brick.json").unlink()
    added = composer(*args, "bricks", "add", str(adapter), "--id", "mirror", "--description", "Spell it backwards",
                     "--example", "Reverse the letters")
    assert added.returncode == 0 and "added mirror (v1)" in added.stdout, added.stderr
    merged = composer(*args, "bricks", "merge", "shout:0.5", "mirror:0.5", "--into", "both")
    assert merged.returncode == 0 and "merged shout, mirror into both (linear)" in merged.stdout, merged.stderr
    assert BrickLibrary(lib).card("both").source["merge"]["sources"][1]["id"] == "mirror"

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"input": w, "output": w.upper()}) + "\n" for w in ["ab", "cd", "ef", "gh"]))
    trained = composer(*args, "bricks", "train", "--id", "tiny", "--data", str(data), "--description", "Caps",
                       "--example", "caps please", "--steps", "4")
    assert trained.returncode == 0 and trained.stdout.startswith("trained tiny v1: exact match"), trained.stderr
    updated = composer(*args, "bricks", "update", "tiny", "--data", str(data), "--steps", "3")
    assert updated.returncode == 0 and "updated tiny to v2" in updated.stdout, updated.stderr
    assert BrickLibrary(lib).versions("tiny") == [1, 2] and BrickLibrary(lib).card("tiny").version == 2
    rolled = composer(*args, "bricks", "rollback", "tiny")
    assert rolled.returncode == 0 and "tiny is at v1" in rolled.stdout
    assert BrickLibrary(lib).card("tiny").version == 1
    removed = composer(*args, "bricks", "remove", "both")
    assert removed.returncode == 0 and "removed both" in removed.stdout
    listed = composer(*args, "bricks", "list").stdout.split()
    assert "both" not in listed and {"shout", "mirror", "tiny"} <= set(listed)
    missing = composer(*args, "bricks", "rollback", "ghost")
    assert missing.returncode == 2 and missing.stderr.startswith("error: unknown brick 'ghost'")


def test_doctor_lists_and_fixes_broken_folders(library, tmp_path):
    lib = tmp_path / "lib"
    shutil.copytree(library, lib, ignore=shutil.ignore_patterns(".index"))
    (lib / "Bad_Name").mkdir()
    (lib / "junk").mkdir()
    (lib / "junk" / "brick.json").write_text("[]")
    listed = composer("--bricks", str(lib), "bricks", "list")
    assert listed.returncode == 0 and "Bad_Name         BROKEN" in listed.stdout and "junk             BROKEN" in listed.stdout
    doctor = composer("--bricks", str(lib), "bricks", "doctor")
    assert doctor.returncode == 0 and "2 problem(s)" in doctor.stdout and "invalid folder name" in doctor.stdout
    fixed = composer("--bricks", str(lib), "bricks", "doctor", "--fix")
    assert fixed.returncode == 0 and "2 problem(s) fixed" in fixed.stdout
    assert sorted(p.name for p in lib.iterdir() if not p.name.startswith(".")) == ["base", "shout"]


def test_run_modes_and_an_explicit_base(library, tmp_path):
    other_base = tmp_path / "copy-of-base"
    shutil.copytree(library / "base", other_base)
    args = ["--bricks", str(library), "--base", str(other_base), "run", "Make it all caps: hi", "--json"]
    single = json.loads(composer(*args, "--mode", "single").stdout)
    base = json.loads(composer(*args, "--mode", "base").stdout)
    assert single["steps"][0]["used"] == ["shout"] and base["steps"][0]["used"] == []
    assert single["output"] != base["output"]  # the brick changes what the model says
    bad = composer(*args, "--mode", "loud")
    assert bad.returncode == 2 and "unknown mode 'loud'" in bad.stderr


def test_bad_text_is_refused_before_any_model_loads(tmp_path):
    lib = tmp_path / "lib"
    (lib / "base").mkdir(parents=True)
    (lib / "base" / "config.json").write_text("{not a model")  # loading it would fail differently
    for text, message in [("Uppercase: a\x07b", "control character"), ("Uppercase: é", "non-ASCII")]:
        out = composer("--bricks", str(lib), "run", text)
        assert out.returncode == 2 and message in out.stderr, out.stderr


def test_analyze_through_the_cli(library, tmp_path):
    out = composer("--bricks", str(library), "analyze", "--out", str(tmp_path / "figures"), "--profile-per-skill", "4",
                   "--eval-per-skill", "2", timeout=600)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in (tmp_path / "figures").glob("*.png")} >= {"scores.png", "overlap.png"}


def test_out_of_scope_requests_through_the_cli(library):
    lib = ["--bricks", str(library), "bricks", "out-of-scope"]
    added = composer(*lib, "--add", "translate it into german", "--add", "tell me a joke")
    assert added.returncode == 0 and added.stdout.splitlines() == ["translate it into german", "tell me a joke"]
    assert BrickLibrary(library).out_of_scope == ["translate it into german", "tell me a joke"]
    bad = composer(*lib, "--remove", "write a poem")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: not an out-of-scope request of this library: " \
                                                         "'write a poem'"
    left = composer(*lib, "--remove", "tell me a joke")
    assert left.stdout.splitlines() == ["translate it into german"]
    assert composer(*lib, "--clear").stdout.strip() == "no out-of-scope requests" and BrickLibrary(library).out_of_scope == []
