"""The default's knowledge tables stay valid data: sizes, characters, no key written twice."""

import pytest

from composer.defaults import tables


def test_shipped_tables_are_valid():
    tables.check_tables()


def test_a_bad_entry_is_named(monkeypatch):
    monkeypatch.setitem(tables.CAPITALS, "atlantis", "Poseidonia")  # capital letter: not allowed
    with pytest.raises(ValueError, match="CAPITALS.*Poseidonia"):
        tables.check_tables()
