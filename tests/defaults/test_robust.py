"""Case-robust training inputs: real English words, with a held-out tenth for the cards' numbers."""

import random

from composer.defaults.robust import (BAR, PHRASE_CHARS, PHRASE_WORDS, case_sampler, chained_set, english_phrase,
                                      english_set, english_words, rule_set, rule_words, stop_sets)
from composer.defaults.tables import regular_plural
from composer.defaults.skills import CASES, SKILLS, recase


def test_english_words_are_split_into_disjoint_train_and_held_out_parts():
    train, held_out = set(english_words(False)), set(english_words(True))
    assert not train & held_out
    assert len(train) > 15_000 and 0.08 < len(held_out) / (len(train) + len(held_out)) < 0.12
    assert all(w.isalpha() and w.islower() and 2 <= len(w) <= 10 for w in train | held_out)


def test_evaluation_phrases_use_held_out_words_only_and_the_skill_changes_them():
    held_out = set(english_words(True))
    phrases = english_set(SKILLS["reverse_words"], 200, "test")
    for instruction, x, y in phrases:
        words = x.lower().split()
        assert set(words) <= held_out | {"a", "i"} and 1 <= len(words) <= PHRASE_WORDS and len(x) <= PHRASE_CHARS
        assert y == " ".join(reversed(x.split())) and y != x
    with_one_letter = [x for _, x, _ in phrases if {"a", "i"} & set(x.lower().split())]
    assert 0.15 < len(with_one_letter) / len(phrases) < 0.35  # "i love you": words of one letter, a quarter of phrases


def test_training_inputs_mix_english_phrases_and_random_letters_with_true_outputs():
    skill = SKILLS["remove_vowels"]
    batch = case_sampler(skill, ["Reverse it"])(random.Random(0), 400)
    train = set(english_words(False))
    english = [x for _, x, _ in batch if all(w in train | {"a", "i"} for w in x.lower().split())]
    assert 0.3 < len(english) / len(batch) < 0.8
    assert all(y == skill.answer(x) for _, x, y in batch)
    assert english_phrase(random.Random(1)) == english_phrase(random.Random(1))  # seeded


def test_chained_inputs_are_other_string_bricks_outputs_in_the_case_they_gave():
    """What an earlier step hands a brick: another string brick's true output on 1-3 English
    words, in the case that brick gave it (capitals from `uppercase`, no vowels from
    `remove_vowels`, Title from `capitalize`), never the brick's own output."""
    skill = SKILLS["reverse_words"]
    items = chained_set(skill, 200, "test")
    assert all(y == skill.answer(x) != x and len(x.split()) <= 3 for _, x, y in items)
    inputs = [x for _, x, _ in items]
    assert any(x.isupper() for x in inputs) and any(x.istitle() and not x.isupper() for x in inputs)
    assert any(not set(x.lower()) & set("aeiou") for x in inputs)
    assert len(set(inputs)) > 150 and chained_set(skill, 20, "eval") == chained_set(skill, 20, "eval")


def test_a_table_brick_stops_only_when_it_knows_its_whole_table_in_every_case():
    skill = SKILLS["capital"]
    sets = stop_sets(skill)
    assert set(sets) == set(CASES) and all(bar == 1.0 for _, bar in sets.values())
    for case, (items, _) in sets.items():  # every key once, in the case, with its true answer
        assert sorted(x.lower() for _, x, _ in items) == sorted(skill.table)
        assert all(x == recase(x, case, random.Random(0)) for _, x, _ in items) or case == "random"
        assert all(y == skill.answer(x) for _, x, y in items)


def test_a_string_brick_stops_on_samples_per_case_and_real_words_at_the_bar():
    sets = stop_sets(SKILLS["reverse"])
    assert set(sets) == {*CASES, "doubled", "english", "chained"}
    assert all(len(items) == 32 and bar == BAR < 1.0 for items, bar in sets.values())


def test_regular_plurals_follow_the_spelling_rules_and_leave_irregular_endings_to_the_table():
    assert [regular_plural(w) for w in ("bottle", "coach", "mesh", "gearbox", "moss", "galaxy", "donkey")] == [
        "bottles", "coaches", "meshes", "gearboxes", "mosses", "galaxies", "donkeys"]
    assert [regular_plural(w) for w in ("leaf", "knife", "potato", "cactus", "crisis", "woman", "tickets")] == [None] * 7


def test_a_table_brick_with_a_rule_trains_on_words_off_its_table_and_is_scored_on_held_out_ones():
    skill = SKILLS["plural"]
    train, held_out = set(rule_words("plural", False)), set(rule_words("plural", True))
    assert len(train) > 5_000 and len(held_out) > 500 and not train & held_out and not (train | held_out) & set(skill.table)
    batch = case_sampler(skill, ["Reverse it"])(random.Random(0), 400)
    ruled = [(x, y) for _, x, y in batch if x.lower() not in skill.table]
    assert 0.4 < len(ruled) / len(batch) < 0.6 and {x.lower() for x, _ in ruled} <= train
    assert all(y == regular_plural(x.lower()) for x, y in ruled)
    assert all(y == skill.answer(x) for _, x, y in batch if x.lower() in skill.table)
    assert {x.lower() for _, x, _ in rule_set(skill, 100, "eval", held_out=True)} <= held_out
    items, bar = stop_sets(skill)["rule"]
    assert bar == BAR and {x.lower() for _, x, _ in items} <= train
