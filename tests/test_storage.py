import json

import pytest

from composer.storage import atomic_dir, write_json, write_text


def test_write_text_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "f.txt"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_write_json_round_trips(tmp_path):
    write_json(tmp_path / "x.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2]}


def test_atomic_dir_keeps_old_folder_on_failure(tmp_path):
    target = tmp_path / "brick"
    with atomic_dir(target) as tmp:
        (tmp / "f").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text("half")
            raise RuntimeError("killed")
    assert (target / "f").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["brick"]


def test_atomic_dir_replaces(tmp_path):
    target = tmp_path / "brick"
    for v in ("v1", "v2"):
        with atomic_dir(target) as tmp:
            (tmp / "f").write_text(v)
    assert (target / "f").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["brick"]


def test_recover_restores_a_swap_cut_between_its_renames(tmp_path):
    from composer.storage import recover

    (tmp_path / ".brick.abc.old").mkdir()
    (tmp_path / ".brick.abc.old" / "f").write_text("v1")
    (tmp_path / ".brick.def.tmp").mkdir()
    (tmp_path / ".card.json.123.tmp").write_text("half")
    (tmp_path / "kept").mkdir()
    (tmp_path / ".kept.xyz.old").mkdir()
    recover(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brick", "kept"]
    assert (tmp_path / "brick" / "f").read_text() == "v1"
