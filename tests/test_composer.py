"""The façade on tiny random models of five real architectures: plan -> retrieve -> run -> trace."""

import pytest
import torch

from composer import Composer
from composer.composer import ItemError
from composer.modes import ComposerError, ModeSettings, NoBrickError
from composer.engine.batch import Route
from composer.prompt import render
from composer.library import BrickLibrary
from tests.helpers import ARCHITECTURES, add_random_brick, save_base, tiny_model


@pytest.fixture(scope="module")
def embedder_path():
    from composer.index import default_embedder_path

    return default_embedder_path()


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_any_hf_causal_lm_with_any_peft_brick(tmp_path, arch, embedder_path):
    base = tiny_model(arch)
    save_base(base, tmp_path / "base")
    library = BrickLibrary(tmp_path / "lib", create=True)
    add_random_brick(library, base, "shout", "Convert every letter to upper case.", ["Make it all caps"])
    c = Composer.from_path(tmp_path / "base", tmp_path / "lib", embedder=embedder_path, ascii_only=False)

    with pytest.raises(NoBrickError, match=r"step 2 \('copy the text'\): no brick matches.*shout 0\.\d\d"):
        c.run("Make it all caps, then copy the text: hello")
    r = c.run("Make it all caps, then make it all caps again: hello")
    assert [s.instruction for s in r.steps] == ["Make it all caps", "make it all caps again"]
    assert r.steps[0].used == ["shout"] and r.steps[0].weights == {"shout": 1.0} and r.steps[0].bricks[0].id == "shout"
    assert r.steps[1].input == r.steps[0].output and r.output == r.steps[1].output

    # the brick really changes what the model says, and run_batch agrees with run
    alone = c.run("copy the text", input="hello", mode="base")
    assert alone.steps[0].mode == "base" and alone.steps[0].used == [] and "base model alone" in alone.steps[0].note
    shouted = c.run("Make it all caps: hello").output
    assert shouted != c.run("Make it all caps: hello", mode="base").output
    batch = c.run_batch(["Make it all caps: hello", "copy the text: hello"], errors="return")
    assert batch[0].output == shouted
    assert isinstance(batch[1], ItemError) and batch[1].index == 1 and "no brick matches" in batch[1].error


@pytest.fixture(scope="module")
def llama_composer(tmp_path_factory, embedder_path):
    root = tmp_path_factory.mktemp("llama")
    base = tiny_model("llama")
    save_base(base, root / "base")
    add_random_brick(BrickLibrary(root / "lib", create=True), base, "shout", "upper case", ["Make it all caps"])
    return Composer.from_path(root / "base", root / "lib", embedder=embedder_path, max_input_chars=40)


@pytest.mark.parametrize("instruction, message", [
    ("", "empty"), ("   ", "empty"), ("Make it all caps: héllo", "non-ASCII"),
    ("Make it all caps: " + "x" * 41, "limit is 40"), ("Make it all caps", "no input found"),
])
def test_bad_input_is_a_clear_error(llama_composer, instruction, message):
    with pytest.raises(ComposerError, match=message):
        llama_composer.run(instruction)


def test_typographic_punctuation_reads_as_ascii(llama_composer):
    """Phones write ’ “ ” – where the user typed ' " -: the same request, not a non-ASCII error."""
    plan = llama_composer.plan("Make it all caps \u2013 \u201cdon\u2019t stop\u201d")
    assert plan.payload == "don't stop" and plan.instruction.isascii()
    plan = llama_composer.plan("Make it all caps \u2192 make it all caps: hi")  # an arrow typed as ->
    assert plan.payload == "hi" and plan.instruction == "Make it all caps -> make it all caps: hi"


def test_one_brick_is_prompted_with_its_cards_task_line(llama_composer):
    """A single-brick step gives the brick its card's first example (the wording it was
    trained on), as run_bricks does; task_line="step" keeps the user's words."""
    c = llama_composer
    step = c.run("make it ALL caps please: hello").steps[0]
    assert step.used == ["shout"] and step.instruction == "make it ALL caps please"
    assert step.task == "Make it all caps"
    assert step.output == c.engine.generate([render("Make it all caps", "hello")], [{"shout": 1.0}])[0].strip()
    own = Composer(c.engine, c.index, task_line="step").run("make it ALL caps please: hello").steps[0]
    assert own.task == own.instruction
    assert own.output == c.engine.generate([render(own.instruction, "hello")], [{"shout": 1.0}])[0].strip()
    assert c.run_brick("shout", "hello").steps[0].task == "Make it all caps"
    with pytest.raises(ComposerError, match="task_line must be"):
        Composer(c.engine, c.index, task_line="user")


def test_retrieve_validates(llama_composer):
    assert llama_composer.retrieve("all caps please", k=1)[0].id == "shout"
    with pytest.raises(ComposerError):
        llama_composer.retrieve("  ")


def test_brick_for_another_base_is_refused(tmp_path, embedder_path):
    base, other = tiny_model("llama", seed=0), tiny_model("llama", seed=1)
    save_base(base, tmp_path / "base")
    add_random_brick(BrickLibrary(tmp_path / "lib", create=True), other, "shout", "upper case", ["Make it all caps"])
    c = Composer.from_path(tmp_path / "base", tmp_path / "lib", embedder=embedder_path)
    with pytest.raises(ComposerError, match="made for base"):
        c.run("Make it all caps: hi")


def test_missing_base_or_library(tmp_path, embedder_path):
    with pytest.raises(ComposerError, match="not found"):
        Composer.from_path(tmp_path / "base", tmp_path / "nope", embedder=embedder_path)
    (tmp_path / "lib").mkdir()
    with pytest.raises(ComposerError, match="config.json"):
        Composer.from_path(tmp_path / "base", tmp_path / "lib", embedder=embedder_path)


def test_forced_mixture_runs_weighted_rows(tmp_path, embedder_path):
    base = tiny_model("llama")
    save_base(base, tmp_path / "base")
    library = BrickLibrary(tmp_path / "lib", create=True)
    add_random_brick(library, base, "shout", "Convert letters to upper case.", ["Make it all caps"], seed=1)
    add_random_brick(library, base, "yell", "Write everything in capital letters.", ["Write it in capitals"], seed=2)
    # every brick eligible: the trained retriever tells these two apart, the modes must still mix both
    c = Composer.from_path(tmp_path / "base", tmp_path / "lib", embedder=embedder_path,
                           settings=ModeSettings(threshold=-1.0))
    step = c.run("Make it all caps: hello", mode="mixture").steps[0]
    assert step.mode == "mixture" and set(step.used) == {"shout", "yell"} and step.task == step.instruction
    assert abs(sum(step.weights.values()) - 1) < 1e-3
    prompt = render(step.instruction, "hello")
    assert step.output == c.engine.generate([prompt], [step.weights])[0].strip()

    merged = c.run("Make it all caps: hello", mode="merge").steps[0]
    assert merged.mode == "merge" and merged.weights == step.weights and "ties merge" in merged.note
    again = c.run("Make it all caps: hello", mode="merge").steps[0]
    assert again.output == merged.output and len(c.engine.transient) == 1  # made once, reused

    routed = c.run("Make it all caps: hello", mode="arrow").steps[0]
    assert routed.mode == "arrow" and set(routed.used) == {"shout", "yell"} and routed.weights is None
    assert routed.output == c.engine.generate([prompt], [Route.arrow(["shout", "yell"], k=2)])[0].strip()
    with pytest.raises(ComposerError, match="unknown mode"):
        c.run("Make it all caps: hello", mode="blend")


def test_emergent_brick_runs_a_sparse_step_and_composes_with_lora(tmp_path, embedder_path):
    from composer.emergent.partition import save_emergent
    from composer.library import BrickCard, fingerprint

    base = tiny_model("llama")
    save_base(base, tmp_path / "base")
    library = BrickLibrary(tmp_path / "lib", create=True)
    add_random_brick(library, base, "shout", "Convert letters to upper case.", ["Make it all caps"])
    masks = torch.zeros(2, 64, dtype=torch.bool)
    masks[:, :16] = True
    save_emergent(library, BrickCard(id="emergent-count", title="Count words (emergent)", kind="emergent",
                                     description="FFN neurons that count words", examples=["Count the words"],
                                     base_fingerprint=fingerprint(base)), masks, base)
    c = Composer.from_path(tmp_path / "base", tmp_path / "lib", embedder=embedder_path)

    step = c.run("Count the words: a b c").steps[0]
    assert step.mode == "emergent" and step.emergent == "emergent-count" and step.used == ["emergent-count"]
    prompt = render("Count the words", "a b c")
    assert step.output == c.engine.generate([prompt], [None], emergent=["emergent-count"])[0].strip()
    assert c.run("Make it all caps: hi").steps[0].emergent is None  # LoRA winner keeps the dense base

    # one batch: a dense row, a sparse row, and a sparse row with a LoRA brick; each equals its row alone
    mixes, sparse = [None, None, {"shout": 1.0}], [None, "emergent-count", "emergent-count"]
    together = c.engine.generate([prompt] * 3, mixes, emergent=sparse)
    alone = [c.engine.generate([prompt], [m], emergent=[e])[0] for m, e in zip(mixes, sparse)]
    assert together == alone
    assert together[0] == c.engine.generate([prompt], [None])[0]
    with pytest.raises(ComposerError, match="not an emergent brick"):
        c.engine.generate([prompt], [None], emergent=["shout"])
