"""The default's knowledge tables stay valid data: sizes, characters, no key written twice."""

import pytest

from composer.defaults import tables


def test_shipped_tables_are_valid():
    tables.check_tables()


def test_a_bad_entry_is_named(monkeypatch):
    monkeypatch.setitem(tables.CAPITAL_CITIES, "atlantis", "Poseidonia")  # capital letter: not allowed
    with pytest.raises(ValueError, match="CAPITALS.*Poseidonia"):
        tables.check_tables()


def test_opposites_go_both_ways_and_a_word_with_two_keeps_its_own():
    pairs = tables.both_ways({"hot": "cold", "heavy": "light", "light": "dark"})
    assert pairs == {"hot": "cold", "cold": "hot", "heavy": "light", "light": "dark", "dark": "light"}
    shipped = tables.ANTONYM_PAIRS
    assert shipped["cold"] == "hot" and shipped["small"] == "big" and shipped["light"] == "dark"
    assert all(shipped[k] == v for k, v in tables.ANTONYMS.items())  # the written pairs stand
