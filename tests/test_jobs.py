"""Batch jobs: job files, clear errors, per-item error lines, resume, Ctrl-C, the CLI."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from composer import ComposerError, Workspace
from composer.jobs import JobInterrupted, load_job, run_job

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "jobs"


def lines(path: Path) -> list[dict]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def composer():
    return Workspace.default().composer("cpu")


# -- loading: every mistake names its file, line and field, before any model loads ----------
@pytest.mark.parametrize("text, message", [
    ("version: 1\ntasks:\n  - id: a\n    instruction: Uppercase\n    inpts: [x]\n",
     "job.yaml line 5: unknown key 'inpts' (allowed: id, instruction, inputs, input_file"),
    ("version: 1\ntasks:\n  - id: a\n    inputs: [x]\n", "job.yaml line 3: tasks[0].instruction is missing"),
    ("version: 1\ndefaults: {mode: fast}\ntasks:\n  - {id: a, instruction: x}\n",
     "job.yaml line 2: defaults.mode: unknown mode 'fast'"),
    ("version: 1\ntasks:\n  - {id: a, instruction: x, input_file: nope.jsonl}\n",
     "job.yaml line 3: tasks[0].input_file: "),
    ("version: 1\ntasks:\n  - {id: a, instruction: x}\n  - {id: a, instruction: y}\n", "task id 'a' is used twice"),
    ("version: 1\ntasks:\n  - {id: 'a#1', instruction: x}\n", "tasks[0].id 'a#1': use letters"),
    ("version: 1\ntasks:\n  - {id: a, instruction: x, temperature: 9}\n", "tasks[0].temperature: "),
    ("version: 1\ntasks: [\n", "job.yaml line 3: not valid YAML"),
    ("version: 2\ntasks:\n  - {id: a, instruction: x}\n", "job.yaml line 1: version: "),
    ("- just a list\n", "a job is a mapping with version, defaults and tasks"),
])
def test_bad_job_files_name_line_and_field(tmp_path, text, message):
    with pytest.raises(ComposerError) as err:
        load_job(write(tmp_path / "job.yaml", text))
    assert message in str(err.value)


def test_bad_jsonl_jobs(tmp_path):
    with pytest.raises(ComposerError, match=r"jobs.jsonl line 2: unknown key 'inptu' \(allowed: "):
        load_job(jsonl(tmp_path / "jobs.jsonl", [{"instruction": "x"}, {"instruction": "x", "inptu": "y"}]))
    with pytest.raises(ComposerError, match="jobs.jsonl line 1: instruction is missing"):
        load_job(jsonl(tmp_path / "jobs.jsonl", [{"input": "x"}]))
    with pytest.raises(ComposerError, match="id 'a' is used twice"):
        load_job(jsonl(tmp_path / "jobs.jsonl", [{"id": "a", "instruction": "x"}, {"id": "a", "instruction": "y"}]))
    with pytest.raises(ComposerError, match="job file .*missing.yaml not found"):
        load_job(tmp_path / "missing.yaml")


def test_examples_resolve_items_and_options():
    job = load_job(EXAMPLES / "shout.yaml")
    assert [i.custom_id for i in job.items] == ["shout-capitals#0", "shout-capitals#1", "shout-capitals#2",
                                                "titles#0", "titles#1", "words#0", "words#1", "plural#0"]
    assert job.items[3].input == "the old man and the sea" and job.items[5].input == "hello big world"
    assert job.items[-1].input is None and all(i.options.max_new_tokens == 48 for i in job.items)
    ids = [i.custom_id for i in load_job(EXAMPLES / "requests.jsonl").items]
    assert ids == ["up-1", "fr-1", "ant-1", "requests#4"]  # no id: <file stem>#<line>
    assert load_job(EXAMPLES / "shout.yaml").hash == job.hash  # stable: it ties an output file to its job


def test_python_dict_jobs():
    job = load_job({"version": 1, "tasks": [{"id": "up", "instruction": "Uppercase", "inputs": ["big cat", "x"]}]})
    assert [(i.custom_id, i.input) for i in job.items] == [("up#0", "big cat"), ("up#1", "x")]
    with pytest.raises(ComposerError, match=r"^the job: tasks is missing$"):
        load_job({"version": 1})


def test_output_checks_come_before_any_model(tmp_path):
    with pytest.raises(ComposerError, match="the output folder .*missing does not exist"):
        run_job(EXAMPLES / "shout.yaml", tmp_path / "missing" / "out.jsonl")
    with pytest.raises(ComposerError, match="is a folder"):
        run_job(EXAMPLES / "shout.yaml", tmp_path)
    write(tmp_path / "other.jsonl", '{"something": 1}\n')
    with pytest.raises(ComposerError, match="line 1 is not a result line of a composer job"):
        run_job(EXAMPLES / "shout.yaml", tmp_path / "other.jsonl")


# -- running on the embedded default -----------------------------------------------------------
@pytest.mark.slow
def test_example_job_runs_and_resumes(composer, tmp_path):
    out = tmp_path / "results.jsonl"
    summary = run_job(EXAMPLES / "shout.yaml", out, composer=composer, batch_size=8, progress=False)
    assert (summary.done, summary.failed, summary.skipped, summary.total) == (8, 0, 0, 8)
    rows = {r["custom_id"]: r for r in lines(out)}
    assert {k: r["output"] for k, r in rows.items()} == {
        "shout-capitals#0": "PARIS", "shout-capitals#1": "TOKYO", "shout-capitals#2": "ROME",
        "titles#0": "The Old Man And The Sea", "titles#1": "War And Peace",
        "words#0": "WORLD BIG HELLO", "words#1": "BLUE GREEN RED", "plural#0": "geese"}
    row = rows["words#0"]
    assert list(row) == ["custom_id", "instruction", "input", "output", "steps", "error", "ms", "job"]
    assert [s["used"] for s in row["steps"]] == [["reverse_words"], ["uppercase"]]
    assert row["error"] is None and row["ms"] > 0 and row["job"] == summary.job

    before = out.read_bytes()
    again = run_job(EXAMPLES / "shout.yaml", out, composer=composer, progress=False)
    assert (again.done, again.skipped) == (0, 8) and out.read_bytes() == before

    # a killed run: six whole lines and a torn seventh; the rerun cuts the tear and finishes
    out.write_bytes(b"".join(before.splitlines(keepends=True)[:6]) + before.splitlines()[6][:25])
    resumed = run_job(EXAMPLES / "shout.yaml", out, composer=composer, batch_size=8, progress=False)
    assert (resumed.done, resumed.skipped) == (2, 6)
    assert sorted(r["custom_id"] for r in lines(out)) == sorted(rows)


@pytest.mark.slow
def test_bad_items_become_error_lines(composer, tmp_path):
    write(tmp_path / "words.jsonl", '{"input": "big cat"}\n{"input": "broken\n\n{"text": "no input key"}\n'
                                    '{"input": "red fox"}\n')
    job = write(tmp_path / "job.yaml", "version: 1\ntasks:\n"
                "  - {id: up, instruction: Uppercase, input_file: words.jsonl}\n"
                "  - {id: accents, instruction: Uppercase, inputs: [caf\u00e9]}\n")
    summary = run_job(job, tmp_path / "out.jsonl", composer=composer, progress=False)
    assert (summary.done, summary.failed) == (2, 3)
    rows = {r["custom_id"]: r for r in lines(tmp_path / "out.jsonl")}
    assert rows["up#0"]["output"] == "BIG CAT" and rows["up#3"]["output"] == "RED FOX"
    assert rows["up#1"]["error"]["message"].startswith("words.jsonl line 2: not valid JSON")
    assert rows["up#2"]["error"]["message"] == 'words.jsonl line 4: expected {"input": "<text>"}'
    assert rows["accents#0"]["error"] == {"kind": "ComposerError",
                                          "message": "the input has a non-ASCII character '\u00e9'; "
                                                     "this model reads ASCII only"}
    assert rows["up#1"]["output"] is None and rows["up#1"]["steps"] == []


@pytest.mark.slow
def test_other_job_refused_unless_forced_and_dry_run(composer, tmp_path):
    out = tmp_path / "out.jsonl"
    first = jsonl(tmp_path / "first.jsonl", [{"id": "a", "instruction": "Give the plural", "input": "goose"}])
    second = jsonl(tmp_path / "second.jsonl", [{"id": "a", "instruction": "Give the plural", "input": "goose"},
                                               {"id": "b", "instruction": "Give the antonym", "input": "hot"}])
    run_job(first, out, composer=composer, progress=False)
    with pytest.raises(ComposerError, match="holds results of a different job .*pass --force"):
        run_job(second, out, composer=composer, progress=False)
    plan = run_job(second, out, composer=composer, force=True, dry_run=True)
    assert plan.skipped == 1 and [p.custom_id for p in plan.planned] == ["b"] and len(lines(out)) == 1
    assert plan.planned[0].steps[0] == "input 'hot'"  # a card's own example retrieves its brick at >= 0.9
    assert re.fullmatch(r"'Give the antonym' -> single brick antonym \(score (0\.9\d|1\.00)\)", plan.planned[0].steps[1])
    forced = run_job(second, out, composer=composer, force=True, progress=False)
    assert (forced.done, forced.skipped) == (1, 1)
    assert [r["output"] for r in lines(out)] == ["geese", "cold"]


@pytest.mark.slow
def test_interrupt_keeps_finished_chunks(composer, tmp_path):
    job = jsonl(tmp_path / "job.jsonl", [{"instruction": "Uppercase", "input": w} for w in ["ab", "cd", "ef", "gh"]])
    out = tmp_path / "out.jsonl"

    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(JobInterrupted) as err:
        run_job(job, out, composer=composer, batch_size=2, progress=stop)
    assert err.value.summary.done == 2 and len(lines(out)) == 2
    rest = run_job(job, out, composer=composer, batch_size=2, progress=False)
    assert (rest.done, rest.skipped) == (2, 2)
    assert [r["output"] for r in lines(out)] == ["AB", "CD", "EF", "GH"]


# -- the CLI -----------------------------------------------------------------------------------
def _sigint_default() -> None:
    """A CLI started from a shell's background job inherits SIGINT ignored: give it Ctrl-C back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "composer.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            preexec_fn=_sigint_default, **kwargs)


@pytest.mark.parametrize("args, message", [
    (["batch", str(EXAMPLES / "shout.yaml"), "--out", "/nonexistent-folder/out.jsonl"],
     "error: the output folder /nonexistent-folder does not exist"),
    (["batch", str(EXAMPLES / "shout.yaml"), "--out", "x.jsonl", "--workers", "2"], "error: --workers needs --ray"),
    (["batch", "missing.yaml", "--out", "x.jsonl"], "error: job file missing.yaml not found"),
])
def test_cli_user_errors_are_one_line(tmp_path, args, message):
    proc = cli(*args, cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.strip().startswith(message), err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_cli_ctrl_c_stops_cleanly_and_resumes(composer, tmp_path):
    words = ["ab", "cd", "ef", "gh", "ij", "kl"] * 20  # long enough that Ctrl-C lands mid-job
    job = jsonl(tmp_path / "job.jsonl", [{"instruction": "Uppercase", "input": w} for w in words])
    out = tmp_path / "out.jsonl"
    proc = cli("batch", str(job), "--out", str(out), "--batch-size", "1")
    deadline = time.monotonic() + 240
    while not (out.exists() and out.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted: " in err and "rerun to resume" in err and "Traceback" not in err
    kept = lines(out)  # every line whole
    assert 1 <= len(kept) < len(words)
    rest = run_job(job, out, composer=composer, batch_size=6, progress=False)
    assert (rest.done, rest.failed, rest.skipped) == (len(words) - len(kept), 0, len(kept))
    assert sorted(r["output"] for r in lines(out)) == sorted(w.upper() for w in words)
