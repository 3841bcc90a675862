"""Case-robust training inputs: real English words, with a held-out tenth for the cards' numbers."""

import random

from composer.defaults.robust import (BAR, PHRASE_CHARS, PHRASE_WORDS, case_sampler, english_phrase, english_set,
                                      english_words, stop_sets)
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


def test_a_table_brick_stops_only_when_it_knows_its_whole_table_in_every_case():
    skill = SKILLS["capital"]
    sets, bar = stop_sets(skill)
    assert bar == 1.0 and set(sets) == set(CASES)
    for case, items in sets.items():  # every key once, in the case, with its true answer
        assert sorted(x.lower() for _, x, _ in items) == sorted(skill.table)
        assert all(x == recase(x, case, random.Random(0)) for _, x, _ in items) or case == "random"
        assert all(y == skill.answer(x) for _, x, y in items)


def test_a_string_brick_stops_on_samples_per_case_and_real_words_at_the_bar():
    sets, bar = stop_sets(SKILLS["reverse"])
    assert bar == BAR < 1.0 and set(sets) == {*CASES, "doubled", "english"}
    assert all(len(items) == 32 for items in sets.values())
