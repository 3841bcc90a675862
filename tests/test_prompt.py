"""Prompt formats on the tiny test architectures: chat bricks train, measure and run in chat,
plain ones in plain, and a library never serves a brick in a format it was not trained in."""

import json

import pytest

from composer.errors import ComposerError
from composer.library import BrickLibrary, LibraryError
from composer.models import load_base
from composer.ops.grow import Budget, grow
from composer.prompt import ChatFormat, PlainFormat, default_format, prompt_format, resolve_format, stop_ids
from tests.helpers import ARCHITECTURES, save_base, tiny_model

# A ChatML-like template in plain text (the byte-level test tokenizer has no role tokens);
# the assistant turn ends with EOS, as most instruct templates end it with their end-of-turn token.
CHAT = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
ROWS = [{"input": w, "output": w + w} for w in ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st"]]


def chat_base(arch: str, folder):
    """A tiny base whose saved tokenizer carries a chat template."""
    save_base(tiny_model(arch), folder)
    _, tokenizer = load_base(folder, "cpu")
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(folder)
    return folder


def write_rows(path, rows=ROWS):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plain_and_chat_render_and_end_answers(tmp_path):
    _, tokenizer = load_base(chat_base("llama", tmp_path / "base"), "cpu")
    assert tokenizer.chat_template == CHAT  # survived save and load
    chat, plain = prompt_format("chat", tokenizer), prompt_format("plain", tokenizer)
    assert chat.render(" Double it ", "ab ") == "<user>Double it\n\nab\n<assistant>"
    assert plain.render("Double it", "ab") == "Task: Double it\nIn: ab\nOut: "
    assert chat.answer_end == plain.answer_end == tokenizer.eos_token_id  # the template closes a turn with EOS
    assert stop_ids(tokenizer) == [tokenizer.eos_token_id]
    assert default_format(tokenizer) == "chat"
    tokenizer.chat_template = None
    assert default_format(tokenizer) == "plain"
    with pytest.raises(ComposerError, match="no chat template"):
        ChatFormat(tokenizer)
    with pytest.raises(ComposerError, match="unknown prompt format 'alpaca'"):
        prompt_format("alpaca", tokenizer)


def test_a_library_without_a_record_is_plain_once_it_has_bricks():
    assert resolve_format(None, True, None) == "plain"  # libraries made before formats existed
    assert resolve_format("chat", True, None) == "chat"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_a_chat_brick_trains_measures_and_runs_in_chat(arch, tmp_path):
    from peft import PeftModel

    from composer import Composer
    from composer.generation import generate
    from composer.index import default_embedder_path

    chat_base(arch, tmp_path / "lib" / "base")
    library = BrickLibrary(tmp_path / "lib")
    card = grow(library, library.base_path, "double", write_rows(tmp_path / "d.jsonl"), "Write the text twice",
                ["Say it twice"], budget=Budget(steps=10, lr=1e-2, rank=4), progress=False)
    assert card.prompt_format == "chat" and library.prompt_format == "chat"  # the base's default, recorded
    assert "chat prompt format" in card.metrics.eval

    c = Composer.from_path(library.base_path, library.root, embedder=default_embedder_path())
    assert isinstance(c.prompt, ChatFormat)
    step = c.run_brick("double", "ab").steps[0]
    base, tokenizer = load_base(library.base_path, "cpu")
    prompt = ChatFormat(tokenizer).render("Say it twice", "ab")
    assert step.prompt_tokens == len(tokenizer.encode(prompt, add_special_tokens=False))
    peft_model = PeftModel.from_pretrained(base, str(library.path("double"))).eval()
    assert step.output == generate(peft_model, tokenizer, [prompt])[0].strip()


def test_plain_is_chosen_explicitly_and_other_formats_are_refused(tmp_path):
    chat_base("llama", tmp_path / "lib" / "base")
    library = BrickLibrary(tmp_path / "lib")
    card = grow(library, library.base_path, "double", write_rows(tmp_path / "d.jsonl"), "Write the text twice",
                ["Say it twice"], budget=Budget(steps=5, lr=1e-2, rank=4), prompt_format="plain", progress=False)
    assert card.prompt_format == "plain" and library.prompt_format == "plain"
    with pytest.raises(LibraryError, match="trained in the chat prompt format, but this library's bricks use plain"):
        grow(library, library.base_path, "again", write_rows(tmp_path / "d.jsonl"), "Write the text twice",
             ["Say it twice"], budget=Budget(steps=5, lr=1e-2, rank=4), prompt_format="chat", progress=False)
    assert library.ids() == ["double"]


def test_a_brick_copied_in_from_another_format_is_quarantined(tmp_path):
    chat_base("llama", tmp_path / "lib" / "base")
    library = BrickLibrary(tmp_path / "lib")
    grow(library, library.base_path, "double", write_rows(tmp_path / "d.jsonl"), "Write the text twice",
         ["Say it twice"], budget=Budget(steps=5, lr=1e-2, rank=4), progress=False)
    card_path = library.path("double") / "brick.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "prompt_format": "plain"}))  # as if trained elsewhere in plain
    entry = next(e for e in library.entries() if e.id == "double")
    assert not entry.ok and "trained in the plain prompt format" in entry.problem
    with pytest.raises(LibraryError, match="never runs in a format it was not trained in"):
        library.card("double")


def test_plain_format_object_matches_the_template(tmp_path):
    _, tokenizer = load_base(save_base(tiny_model("gpt2"), tmp_path / "base"), "cpu")
    assert isinstance(prompt_format(default_format(tokenizer), tokenizer), PlainFormat)


def test_an_imported_adapter_takes_the_library_format_unless_told(tmp_path):
    from composer.workspace import Workspace
    from tests.helpers import add_random_brick

    chat_base("llama", tmp_path / "lib" / "base")
    base, _ = load_base(tmp_path / "lib" / "base", "cpu")
    folder = add_random_brick(BrickLibrary(tmp_path / "outside", create=True), base, "shout", "caps", ["Shout it"])
    (folder / "brick.json").unlink()  # a plain peft folder, as users have them
    ws = Workspace(tmp_path / "lib")
    grow(ws.library, ws.library.base_path, "double", write_rows(tmp_path / "d.jsonl"), "Write the text twice",
         ["Say it twice"], budget=Budget(steps=2, rank=4), progress=False)
    with pytest.raises(LibraryError, match="trained in the plain prompt format, but this library's bricks use chat"):
        ws.add(folder, brick_id="caps", description="Upper case", examples=["Shout it"], prompt_format="plain")
    assert ws.library.ids() == ["double"]
    card = ws.add(folder, brick_id="caps", description="Upper case", examples=["Shout it"])
    assert card.prompt_format == "chat" and ws.library.ids() == ["caps", "double"]
