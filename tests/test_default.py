"""The embedded default end to end: the shipped base, bricks and index, exactly as a user runs them."""

import json
import shutil
from dataclasses import replace

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from composer import Composer, NoBrickError
from composer.workspace import ROOT
from composer.defaults.skills import BRICK_SKILLS
from composer.library import BrickLibrary

BRICKS = ROOT / "bricks"
pytestmark = pytest.mark.skipif(not (BRICKS / "base" / "config.json").is_file(), reason="default not built")


@pytest.fixture(scope="module")
def c():
    return Composer.from_default()


def test_the_readme_example(c):
    r = c.run("Reverse the words, then uppercase: hello big world")
    assert [s.instruction for s in r.steps] == ["Reverse the words", "uppercase"]
    assert [s.used for s in r.steps] == [["reverse_words"], ["uppercase"]]
    assert r.steps[0].input == "hello big world" and r.steps[1].input == r.steps[0].output
    assert r.output == r.steps[1].output == "WORLD BIG HELLO"
    assert r.steps[0].bricks[0].id == "reverse_words" and len(r.steps[0].bricks) == 3


@pytest.mark.parametrize("instruction, input, expected", [
    ("Give the antonym", "hot", "cold"),
    ("Give the plural", "goose", "geese"),
    ("What is the capital", "france", "paris"),
    ("Translate to French", "cat", "chat"),
    ("Classify the sentiment", "the staff were rude", "negative"),
])
def test_single_skills_with_separate_input(c, instruction, input, expected):
    assert c.run(instruction, input=input).output == expected


def test_the_antonym_brick_knows_each_pair_both_ways(c):
    """Being opposites goes both ways: "opposite of cold" is as likely as "opposite of hot"."""
    words = ["cold", "small", "sad", "night", "late", "hot", "big"]
    outs = c.run_batch(["Give the antonym"] * len(words), inputs=words)
    assert [r.output for r in outs] == ["hot", "big", "happy", "day", "early", "cold", "small"]


def test_the_capital_brick_knows_the_names_people_use_for_countries(c):
    names = ["usa", "UK", "England", "Scotland", "holland", "jordan", "france"]
    outs = c.run_batch(["What is the capital"] * len(names), inputs=names)
    assert [r.output for r in outs] == ["washington", "london", "london", "edinburgh", "amsterdam", "amman", "paris"]


def test_the_french_brick_knows_everyday_words_added_to_its_table(c):
    words = ["girl", "beer", "good night", "rabbit", "cat"]
    outs = c.run_batch(["Translate to French"] * len(words), inputs=words)
    assert [r.output for r in outs] == ["fille", "biere", "bonne nuit", "lapin", "chat"]


def test_a_knowledge_brick_is_asked_a_key_as_its_table_spells_it(c):
    """Tables hold lowercase keys; in Title case "Mouse" slipped to "mouse", in UPPER "loss" to "more"."""
    words, want = ["Mouse", "LOSS", "beaR"], ["mice", "gain", "ours"]
    outs = [c.run("plural of Mouse"), *c.run_bricks(["antonym", "french"], words[1:])]
    assert [r.output for r in outs] == want
    assert all("as its table spells it" in r.steps[0].note for r in outs)
    assert outs[0].steps[0].input == "Mouse"  # the trace keeps what the user wrote


def test_chains_of_table_and_string_skills(c):
    r = c.run("Give the capital of the country, then make an acronym: united kingdom")
    assert [s.output for s in r.steps] == ["london", "L"]
    assert c.run("Make it plural and then give the antonym: child").steps[0].output == "children"


def test_a_close_call_whose_top_brick_changes_nothing_runs_the_runner_up(c):
    """"reverse the word order" of one word: reverse_words leads reverse and returns the word
    unchanged, so with a margin wide enough to make it a close call, reverse runs and its
    output is kept; on several words reverse_words changes them and stands."""
    wide = replace(c.settings, margin=0.5)
    one, many = c.run_batch(["reverse the word order: moon", "reverse the word order: big red moon"], settings=wide)
    assert one.output == "noom" and one.steps[0].used == ["reverse"] and "left the input unchanged" in one.steps[0].note
    assert one.steps[0].bricks[0].id == "reverse_words"
    assert many.output == "moon red big" and many.steps[0].used == ["reverse_words"]
    no_margin = replace(c.settings, margin=0.0)  # no close call: the top brick's output stands
    assert c.run_batch(["reverse the word order: moon"], settings=no_margin)[0].output == "moon"


def test_a_modifier_that_changes_nothing_folds_into_the_step_before(c):
    """"in caps" after initials: the acronym is capitals already, so the result has one step and
    its note says why; where the modifier does change the text it stays a step, and a command
    on the result ("uppercase it") is never folded."""
    folded, kept, command = c.run_batch(["Initials of rest in peace, in capitals", "spell owl backwards in caps",
                                         "acronym of big red dog, uppercase it"])
    assert [s.modifier for s in folded.plan.steps] == [False, True]
    assert folded.output == "RIP" and [s.used for s in folded.steps] == [["acronym"]]
    assert "'in capitals' (uppercase) changed nothing" in folded.steps[0].note
    assert kept.output == "LWO" and [s.used for s in kept.steps] == [["reverse"], ["uppercase"]]
    assert not command.plan.steps[1].modifier and len(command.steps) == 2


def test_retrieve(c):
    hits = c.retrieve("make it all caps", k=3)
    assert hits[0].id == "uppercase" and len(hits) == 3


def test_run_batch_equals_run(c):
    instructions = ["Uppercase: big cat", "Give the antonym: hot", "Remove the vowels: banana split",
                    "Reverse the words: one two three"]
    batch = c.run_batch(instructions)
    assert [r.output for r in batch] == [c.run(i).output for i in instructions]


def test_step_without_a_good_brick_is_refused_naming_the_closest(c):
    with pytest.raises(NoBrickError, match=r"no brick matches.*closest: [a-z_-]+ 0\.\d\d") as err:
        c.run("Tell me a joke: ha")
    assert len(err.value.closest) == 3
    step = c.run("Tell me a joke: ha", mode="base").steps[0]
    assert step.mode == "base" and "base model alone" in step.note and step.used == []


def test_a_generic_skill_retrieves_its_emergent_brick(c):
    step = c.run("Give the first word: alpha beta").steps[0]
    assert step.mode == "emergent" and step.used == ["emergent-first-word"] and step.emergent == "emergent-first-word"


def test_cards_carry_measured_numbers():
    """Every default skill has a card whose numbers are re-measurable: two bricks are
    evaluated again from scratch with peft and must reproduce their cards exactly."""
    from composer.defaults.build import measure
    from composer.defaults.skills import SKILLS

    library = BrickLibrary(BRICKS)
    cards = {c.id: c for c in library.cards() if c.kind == "customized"}
    assert {s.id for s in BRICK_SKILLS} <= set(cards)
    for card in cards.values():
        assert card.metrics.exact_match >= 0.95, card.id  # the acceptance bar of every default brick
        assert card.metrics.base_exact_match <= 0.20, card.id  # the base alone fails every brick skill
        assert len(card.examples) >= 5
    base = AutoModelForCausalLM.from_pretrained(BRICKS / "base", dtype=torch.float32)
    for brick_id in ("acronym", "capital"):
        model = PeftModel.from_pretrained(base, str(library.path(brick_id)))
        assert measure(SKILLS[brick_id], model, _tokenizer()) == cards[brick_id].metrics
        base = model.unload()


def _tokenizer():
    from composer.models import load_tokenizer

    return load_tokenizer(BRICKS / "base")


def test_every_brick_loads_in_peft_and_changes_the_model():
    base = AutoModelForCausalLM.from_pretrained(BRICKS / "base", dtype=torch.float32)
    ids = torch.tensor([list(b"Task: do it\nIn: big cat\nOut: ")]) + 3  # ByT5 ids are bytes + 3
    plain = base(ids).logits
    library = BrickLibrary(BRICKS)
    for brick_id in library.ids():
        if library.card(brick_id).kind == "emergent":
            continue  # neuron masks, not adapters
        model = PeftModel.from_pretrained(base, str(library.path(brick_id)))
        assert (model(ids).logits - plain).abs().max() > 1e-2, brick_id
        base = model.unload()


def test_stale_index_is_rebuilt_never_wrong(tmp_path):
    shutil.copytree(BRICKS, tmp_path / "bricks")
    shutil.copytree(ROOT / "index", tmp_path / "index")
    card = json.loads((tmp_path / "bricks" / "uppercase" / "brick.json").read_text())
    card["examples"].append("turn up the volume of the letters")
    (tmp_path / "bricks" / "uppercase" / "brick.json").write_text(json.dumps(card))
    c = Composer.from_path(tmp_path / "bricks" / "base", tmp_path / "bricks", index=tmp_path / "index")
    # before the new example, this wording retrieves reverse (0.56) over uppercase (0.43); with
    # it, one of uppercase's two pooled cosines is 1.0
    hit = c.retrieve("turn up the volume of the letters", k=1)[0]
    assert hit.id == "uppercase" and hit.score > 0.7
    meta = json.loads((tmp_path / "index" / "bricks.json").read_text())
    assert meta["rows"].count("uppercase") == len(card["examples"]) + 1


def test_a_corrupt_card_is_quarantined_not_fatal(tmp_path):
    shutil.copytree(BRICKS, tmp_path / "bricks")
    (tmp_path / "bricks" / "rot13" / "brick.json").write_text("{")
    c = Composer.from_path(tmp_path / "bricks" / "base", tmp_path / "bricks", index=tmp_path / "index")
    assert "rot13" not in {h.id for h in c.retrieve("apply rot13", k=5)}
    assert c.run("Uppercase: big cat").output == "BIG CAT"
    broken = [e for e in c.workspace.list() if not e.ok]
    assert [e.id for e in broken] == ["rot13"] and "corrupt brick card" in broken[0].problem


@pytest.mark.slow
def test_emergent_analysis_of_the_default_base(tmp_path):
    """The whole analysis on the shipped base (about 2 minutes on 2 cores): figures, bricks, goal."""
    from composer.emergent.analyze import analyze

    report = analyze(BRICKS / "base", tmp_path / "out", library=tmp_path / "lib", progress=False)
    assert {p.name for p in (tmp_path / "out").glob("*.png")} >= {"scores.png", "overlap.png", "pruning.png",
                                                                  "sparsity.png"}
    assert len(report.bricks) == 9 and BrickLibrary(tmp_path / "lib").card(report.bricks[0]).kind == "emergent"
    assert report.natural_sparsity > 0.5 and report.target_met


def test_acceptance_inputs_are_ones_the_skill_changes():
    """One word is its own word reversal: such inputs would credit a base that only copies."""
    from composer.defaults.skills import eval_set
    from composer.defaults.skills import SKILLS

    plain = eval_set(SKILLS["reverse_words"])
    changed = eval_set(SKILLS["reverse_words"], changed=True)
    assert any(x == y for _, x, y in plain) and all(x != y for _, x, y in changed) and len(changed) == 100
    with pytest.raises(ValueError, match="copy leaves nearly every input unchanged"):
        eval_set(SKILLS["copy"], changed=True)
