"""Where the default's card wordings come from."""

from composer.defaults.skills import BRICK_SKILLS, card_examples, chain_step_wordings, wording_hash, _benchmark_hashes


def test_chain_step_wordings_are_the_pieces_of_chains_that_line_up_with_their_skills():
    upper = chain_step_wordings("uppercase", limit=1000)
    assert "in capitals" in [w.lower() for w in upper]  # a modifier no single-skill request words
    assert all(0 < len(w.split()) <= 8 for w in upper)
    assert not any(w.lower().startswith(("hello", "thanks", "regards", "ticket")) for w in upper)
    assert len(chain_step_wordings("uppercase")) <= 40


def test_no_card_example_is_a_benchmark_phrasing():
    for skill in BRICK_SKILLS:
        examples = card_examples(skill)
        assert len({e.lower() for e in examples}) == len(examples)
        assert not {wording_hash(e) for e in examples} & _benchmark_hashes()
