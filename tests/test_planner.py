import pytest

from composer.planner import HeuristicPlanner, PlanError, split_payload, split_steps

planner = HeuristicPlanner()


def steps(text, **kw):
    plan = planner.plan(text, **kw)
    return plan.payload, [s.instruction for s in plan.steps]


@pytest.mark.parametrize("text, payload, expected", [
    ("Reverse the words, then uppercase: hello big world", "hello big world", ["Reverse the words", "uppercase"]),
    ("First reverse it, then make it uppercase. After that remove the vowels: \"good day\"", "good day",
     ["reverse it", "make it uppercase", "remove the vowels"]),
    ("1. reverse 2. uppercase 3) acronym input=big red dog", "big red dog", ["reverse", "uppercase", "acronym"]),
    ("Uppercase \"hello world\"; reverse it afterwards", "hello world", ["Uppercase", "reverse it"]),
    ("Give the capital and then uppercase it: france", "france", ["Give the capital", "uppercase it"]),
    ("translate to french. then reverse: cat", "cat", ["translate to french", "reverse"]),
    ("make it plural, next capitalize it, finally reverse: goose", "goose", ["make it plural", "capitalize it", "reverse"]),
    ("Remove the vowels; afterwards reverse the words input='red fox'", "red fox", ["Remove the vowels", "reverse the words"]),
])
def test_splits_steps_and_finds_payload(text, payload, expected):
    assert steps(text) == (payload, expected)


def test_separate_input_is_the_payload():
    plan = planner.plan("reverse, then uppercase", input="ab")
    assert plan.payload == "ab"
    assert [s.instruction for s in plan.steps] == ["reverse", "uppercase"]


def test_separate_input_wins_over_colon():
    assert steps("Reverse it", input="hello") == ("hello", ["Reverse it"])


def test_deterministic():
    text = "reverse the words then uppercase: a b c"
    assert planner.plan(text) == planner.plan(text)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_instruction(bad):
    with pytest.raises(PlanError, match="empty"):
        planner.plan(bad)


def test_missing_payload_is_explained():
    with pytest.raises(PlanError, match="no input found"):
        planner.plan("reverse the words")


def test_helpers():
    assert split_payload("uppercase 'big cat'") == ("uppercase", "big cat")
    assert split_steps("a then b; c. d") == ["a", "b", "c", "d"]
