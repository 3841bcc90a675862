"""The Bricks tab's views on a small library with a broken folder (no model needed)."""

import pytest

from composer import ComposerError, Workspace
from ui import bricks as view


def test_a_broken_brick_is_listed_with_its_reason_and_cards_need_a_pick(tmp_path):
    ws = Workspace(tmp_path / "lib", create=True)
    (tmp_path / "lib" / "oops").mkdir()
    (tmp_path / "lib" / "oops" / "brick.json").write_text("{not json")
    [row] = view.table(ws)
    assert row[:2] == ["oops", "BROKEN"] and row[-1]
    assert view.brick_ids(ws) == []
    assert view.card_view(ws, None) == ("Pick a brick to see its card.", [])
    with pytest.raises(ComposerError, match="pick a brick first"):
        view.rollback(ws, None, None)
