"""The library service under the failures users met: bad folders, two processes, pickles,
symlinks, bad inputs, leaks. Each test failed before the Workspace and passes now."""

import json
import multiprocessing as mp
import os
import shutil
import stat
import time

import pytest
import torch

import composer.composer as composer_module
from composer import Composer, ComposerError, ItemError, Workspace
from composer.library import BrickLibrary, LibraryError
from tests.helpers import add_random_brick, save_base, tiny_model


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("base")
    return save_base(tiny_model("llama"), root / "base")


def _library(root, base_dir):
    """A library with two working bricks: shout (uppercase) and mirror (reverse)."""
    library = BrickLibrary(root, create=True)
    base = tiny_model("llama")
    add_random_brick(library, base, "shout", "Convert every letter to upper case.", ["Make it all caps"], seed=1)
    add_random_brick(library, base, "mirror", "Spell the text backwards.", ["Reverse the letters"], seed=2)
    shutil.copytree(base_dir, root / "base")
    return library


def _break(root):
    """Every kind of bad folder users produced, next to the good bricks."""
    (root / "garbage").mkdir()
    (root / "garbage" / "brick.json").write_text("{ not json")
    shutil.copytree(root / "shout", root / "My_Brick")
    shutil.copytree(root / "mirror", root / "liar")  # the mirror weights under another card id
    card = json.loads((root / "liar" / "brick.json").read_text())
    (root / "liar" / "brick.json").write_text(json.dumps({**card, "id": "shout"}))
    shutil.copytree(root / "mirror", root / "pickled")
    card = json.loads((root / "pickled" / "brick.json").read_text())
    (root / "pickled" / "brick.json").write_text(json.dumps({**card, "id": "pickled"}))
    os.replace(root / "pickled" / "adapter_model.safetensors", root / "pickled" / "adapter_model.bin")
    outside = root.parent / f"{root.name}-outside"
    shutil.copytree(root / "shout", outside)
    card = json.loads((outside / "brick.json").read_text())
    (outside / "brick.json").write_text(json.dumps({**card, "id": "linked"}))
    os.symlink(outside, root / "linked")
    return outside


BROKEN = {"garbage": "corrupt brick card", "My_Brick": "invalid folder name", "liar": "holds a card for 'shout'",
          "pickled": "pickle", "linked": "symlink"}


def test_bad_folders_are_quarantined_not_fatal(tmp_path, base_dir):
    root = tmp_path / "lib"
    _library(root, base_dir)
    outside = _break(root)
    ws = Workspace(root)
    entries = {e.id: e for e in ws.list()}
    assert {i for i, e in entries.items() if e.ok} == {"shout", "mirror"}
    for name, reason in BROKEN.items():
        assert not entries[name].ok and reason in entries[name].problem, (name, entries[name].problem)

    c = ws.composer()
    assert {h.id for h in c.retrieve("Make it all caps", k=5)} == {"shout", "mirror"}
    shout = c.run("Make it all caps: hello")
    assert shout.steps[0].used == ["shout"]
    assert shout.output == Composer(c.engine, c.index).run("Make it all caps: hello").output
    with pytest.raises(LibraryError, match="holds a card for 'shout'"):
        ws.library.card("liar")  # never served under the card's id

    problems = ws.doctor()
    assert {p.name for p in problems} == set(BROKEN)
    ws.remove("garbage")  # a broken folder with a valid name can be removed directly
    assert "garbage" not in {e.id for e in ws.list()}
    assert {p.name for p in ws.doctor(fix=True)} == set(BROKEN) - {"garbage"}
    assert ws.doctor() == [] and sorted(e.id for e in ws.list()) == ["mirror", "shout"]
    assert (outside / "adapter_model.safetensors").is_file()  # a symlink's target is never touched
    assert sorted(e.id for e in Workspace(root).list()) == ["mirror", "shout"]  # removed stays removed


def test_pickle_weights_never_reach_a_loader(tmp_path, base_dir, monkeypatch):
    root = tmp_path / "lib"
    _library(root, base_dir)
    _break(root)
    (tmp_path / "data.jsonl").write_text('{"input": "ab", "output": "AB"}\n' * 4)

    def refuse(*a, **k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(LibraryError, match="pickle"):
        Workspace(root).update("pickled", tmp_path / "data.jsonl", steps=1, progress=False)


def _hold_a_write(root, started, release):
    library = BrickLibrary(root)
    with library.locked():
        (root / ".inflight.123.tmp").mkdir()  # what a writer's atomic_dir makes mid-write
        started.set()
        release.wait(30)


def test_opening_a_library_never_deletes_another_writers_temp_folder(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    ctx = mp.get_context("fork")
    started, release = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_hold_a_write, args=(root, started, release))
    writer.start()
    assert started.wait(30)
    BrickLibrary(root)  # recovery would delete the in-flight folder: it must wait its turn
    assert (root / ".inflight.123.tmp").is_dir()
    with pytest.raises(LibraryError, match="locked by another writer"):
        with BrickLibrary(root).locked(timeout=0.2):
            pass
    release.set()
    writer.join(30)
    BrickLibrary(root)  # the writer is gone: now its leftover is cleaned
    assert not (root / ".inflight.123.tmp").exists()


@pytest.fixture(scope="module")
def composer_for_inputs(tmp_path_factory, base_dir):
    root = tmp_path_factory.mktemp("inputs") / "lib"
    _library(root, base_dir)
    return Workspace(root).composer()


@pytest.mark.parametrize("instruction, input, message", [
    ("Make it all caps", "hello\nworld", "line break"),
    ("Make it all caps", "hel\x00lo", "control character"),
    ("Make it all caps: hel\x07lo", None, "control character"),
    ("Make it all caps", "x" * 198, "over the model's 256 positions"),
])
def test_bad_inputs_are_refused_clearly(composer_for_inputs, instruction, input, message):
    with pytest.raises(ComposerError, match=message):
        composer_for_inputs.run(instruction, input=input)


def test_run_batch_names_the_bad_item_or_returns_errors(composer_for_inputs):
    c = composer_for_inputs
    assert c.run_batch([]) == []
    good, bad = "Make it all caps: hello", "Make it all caps: he\x00llo"
    with pytest.raises(ComposerError, match=r"^item 1: the instruction has a control character"):
        c.run_batch([good, bad])
    out = c.run_batch([good, bad, good], errors="return")
    assert isinstance(out[1], ItemError) and out[1].index == 1 and "control character" in out[1].error
    assert out[0].output == out[2].output == c.run(good).output


def test_streaming_yields_each_step_then_the_result(composer_for_inputs):
    events = list(composer_for_inputs.stream("Make it all caps, then reverse the letters: hello"))
    assert [type(e).__name__ for e in events] == ["StepResult", "StepResult", "Result"]
    assert events[-1].steps == events[:2] and events[1].input == events[0].output


def test_merge_mode_keeps_a_bounded_number_of_transient_bricks(composer_for_inputs, monkeypatch):
    c = composer_for_inputs
    monkeypatch.setattr(composer_module, "MAX_MERGES", 2)
    ids = [c.merged({"shout": w, "mirror": 1 - w}, "linear") for w in (0.2, 0.4, 0.6)]
    assert c.merges == ids[1:] and len(os.listdir(c._scratch.name)) == 2
    assert c.engine.transient == ids[1:]
    assert c.merged({"shout": 0.6, "mirror": 0.4}, "linear") == ids[2]  # reused, not rebuilt


def test_every_written_file_gets_the_same_mode(tmp_path, base_dir):
    root = tmp_path / "lib"
    _library(root, base_dir)
    ws = Workspace(root)
    ws.merge([("shout", 0.5), ("mirror", 0.5)], "both", "linear")
    umask = os.umask(0)
    os.umask(umask)
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in (root / "both").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_warm_calls_do_not_rehash_the_library(composer_for_inputs, monkeypatch):
    c = composer_for_inputs
    c.retrieve("Make it all caps")
    reads = []
    real = type(c.library.root).read_bytes
    monkeypatch.setattr(type(c.library.root), "read_bytes", lambda self: reads.append(self) or real(self))
    start = time.perf_counter()
    c.retrieve("Make it all caps")
    c.run("Make it all caps: hi")
    assert reads == [] and time.perf_counter() - start < 30


def test_settings_can_change_for_one_call(composer_for_inputs):
    from dataclasses import replace

    from composer import NoBrickError

    c = composer_for_inputs
    strict = replace(c.settings, threshold=1.01)
    with pytest.raises(NoBrickError, match="threshold 1.01"):
        c.run("Make it all caps: hello", settings=strict)
    assert c.run("Make it all caps: hello").steps[0].used == ["shout"]  # the composer's own settings stand
