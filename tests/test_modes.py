import math

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


def test_auto_never_blends_a_close_call_but_names_it():
    c = choose(hits(("a", 0.70), ("b", 0.66), ("c", 0.63), ("d", 0.30)), "auto", S)
    assert (c.mode, c.mix, c.used) == ("single", {"a": 1.0}, ["a"])
    assert "close call: b 0.66, c 0.63 within 0.08" in c.note and "d 0.30" not in c.note
    assert "close call" not in choose(hits(("a", 0.70), ("b", 0.60)), "auto", S).note
    assert c.runner_up.used == ["b"] and "runner-up: a (score 0.70) left the input unchanged" in c.runner_up.note
    assert choose(hits(("a", 0.70), ("b", 0.60)), "auto", S).runner_up is None


def test_a_close_call_goes_to_the_brick_whose_table_holds_the_input():
    close = hits(("reverse", 0.68), ("antonym", 0.66), ("plural", 0.64))
    c = _choose(close, "auto", S, Recorder(), frozenset({"antonym"}))
    assert c.used == ["antonym"] and c.runner_up.used == ["reverse"]  # if antonym changed nothing, reverse runs
    assert "antonym knows the input (a key of its table), reverse (0.68) does not" in c.note
    assert choose(close, "auto", S).used == ["reverse"]  # no table holds it: the top brick
    assert _choose(close, "auto", S, Recorder(), frozenset({"antonym", "reverse"})).used == ["reverse"]  # both do
    wide = hits(("reverse", 0.80), ("antonym", 0.71))  # 0.09 apart, over the margin: no close call
    assert _choose(wide, "auto", S, Recorder(), frozenset({"antonym"})).used == ["reverse"]
    assert _choose(close, "single", S, Recorder(), frozenset({"antonym"})).used == ["reverse"]  # auto only


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


def test_mixture_weights_are_the_documented_softmax_by_value():
    """softmax(score / temperature) over the eligible top-k: 0.70 vs 0.66 at temperature 0.05
    is exp(0.8) : 1 = 0.69 : 0.31. A temperature multiplied instead of divided would give
    nearly uniform weights (0.5005 : 0.4995) and fail here."""
    c = choose(hits(("a", 0.70), ("b", 0.66), ("c", 0.30)), "mixture", S)
    assert c.weights == {"a": 0.69, "b": 0.31}
    three = choose(hits(("a", 0.80), ("b", 0.75), ("c", 0.70), ("d", 0.69)), "mixture", S)
    e1, e2 = math.exp(-1), math.exp(-2)  # (0.75 - 0.80) / 0.05, (0.70 - 0.80) / 0.05
    want = {"a": 1 / (1 + e1 + e2), "b": e1 / (1 + e1 + e2), "c": e2 / (1 + e1 + e2)}  # k = 3 drops d
    assert three.weights == {k: round(v, 4) for k, v in want.items()}
    assert three.weights == {"a": 0.6652, "b": 0.2447, "c": 0.09}
    hot = choose(hits(("a", 0.70), ("b", 0.66)), "mixture", ModeSettings(temperature=1.0))
    assert hot.weights == {"a": round(1 / (1 + math.exp(-0.04)), 4), "b": round(math.exp(-0.04) / (1 + math.exp(-0.04)), 4)}


def test_shipped_auto_rule_defaults():
    """The auto rule as shipped: trust bricks from 0.43, a runner-up within 0.03 is a close call."""
    shipped = ModeSettings()
    assert (shipped.threshold, shipped.margin, shipped.k, shipped.temperature) == (0.43, 0.03, 3, 0.05)
    assert "close call" not in choose(hits(("a", 0.60), ("b", 0.565)), "auto", shipped).note  # lead 0.035
    tie = choose(hits(("a", 0.60), ("b", 0.575)), "auto", shipped)  # lead 0.025
    assert (tie.mode, tie.mix) == ("single", {"a": 1.0}) and "close call: b 0.57" in tie.note
    assert choose(hits(("a", 0.429), ("b", 0.40)), "auto", shipped).mode == "base"
    assert choose(hits(("a", 0.43), ("b", 0.10)), "auto", shipped).mode == "single"


def test_a_step_nearer_an_out_of_scope_request_than_any_brick_is_refused():
    from composer.index import OutOfScopeHit
    from composer.modes import NoBrickError, choose_step

    kind = lambda brick: "emergent" if brick.startswith("emergent-") else "customized"  # noqa: E731
    found = hits(("french", 0.74), ("emergent-copy", 0.5), ("plural", 0.3))
    german = OutOfScopeHit(text="translate it into german", score=0.81)
    with pytest.raises(NoBrickError, match=r"out-of-scope request 'translate it into german' \(0\.81\).*"
                                           r"closest: french 0\.74, emergent-copy 0\.50, plural 0\.30") as err:
        choose_step(found, "auto", S, Recorder(), kind, out_of_scope=german)
    assert [h.id for h in err.value.closest] == ["french", "emergent-copy", "plural"]
    for mode in ("single", "mixture", "sparse"):  # every lane but the base alone
        with pytest.raises(NoBrickError):
            choose_step(found, mode, S, Recorder(), kind, out_of_scope=german)
    assert choose_step(found, "base", S, Recorder(), kind, out_of_scope=german).mode == "base"
    # a brick nearer than the out-of-scope request runs; nothing above the threshold keeps its own error
    nearer = OutOfScopeHit(text="translate it into german", score=0.7)
    assert choose_step(found, "auto", S, Recorder(), kind, out_of_scope=nearer).used == ["french"]
    with pytest.raises(NoBrickError, match="no brick matches this step well enough"):
        choose_step(hits(("french", 0.4)), "auto", S, Recorder(), kind, out_of_scope=german)
