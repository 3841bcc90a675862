import pytest

from composer.errors import ComposerError
from composer.index import BrickHit
from composer.modes import ModeSettings, choose as _choose

S = ModeSettings(threshold=0.45, margin=0.08, k=3, temperature=0.05)


class Recorder:
    """Stands in for the Composer's merger: records what merge mode asked for."""

    def __init__(self):
        self.calls = []

    def merged(self, weights, method):
        self.calls.append((weights, method))
        return "merge:test"


def choose(hits, mode, settings, merger=None):
    return _choose(hits, mode, settings, merger or Recorder())


def hits(*pairs):
    return [BrickHit(id=i, score=s) for i, s in pairs]


def test_auto_picks_single_when_the_top_brick_clearly_wins():
    c = choose(hits(("reverse_words", 0.95), ("reverse", 0.70)), "auto", S)
    assert (c.mode, c.mix) == ("single", {"reverse_words": 1.0})


def test_auto_mixes_close_contenders_with_softmax_weights():
    c = choose(hits(("a", 0.70), ("b", 0.66), ("c", 0.30)), "auto", S)
    assert c.mode == "mixture" and set(c.mix) == {"a", "b"}  # c is under the threshold
    assert c.mix["a"] > c.mix["b"] and abs(sum(c.mix.values()) - 1) < 1e-3
    assert "mixture of 2" in c.note


def test_below_threshold_runs_the_base_whatever_the_mode():
    for mode in ("auto", "single", "mixture"):
        c = choose(hits(("a", 0.30)), mode, S)
        assert (c.mode, c.mix) == ("base", None) and "base model alone" in c.note
    assert choose([], "auto", S).note.endswith("(the library is empty)")


def test_forced_modes_and_unknown_mode():
    both = hits(("a", 0.95), ("b", 0.60))
    assert choose(both, "mixture", S).mode == "mixture"
    assert choose(hits(("a", 0.70), ("b", 0.69)), "single", S).mix == {"a": 1.0}
    with pytest.raises(ComposerError, match="unknown mode 'blend'"):
        choose(both, "blend", S)


def test_merge_and_arrow_modes():
    both = hits(("a", 0.70), ("b", 0.66), ("c", 0.20))
    merger = Recorder()
    c = choose(both, "merge", S, merger)
    assert c.mode == "merge" and c.mix == {"merge:test": 1.0} and c.used == ["a", "b"]
    assert merger.calls == [(c.weights, "ties")]
    r = choose(both, "arrow", S)
    assert r.mode == "arrow" and r.mix.bricks == ("a", "b") and r.mix.k == 2 and r.weights is None
