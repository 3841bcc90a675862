"""LoraHub weight search on a tiny Llama whose few-shot examples are one brick's own greedy
outputs: the search must move towards that brick, reproducibly, and refuse bad input."""

from __future__ import annotations

import copy
import string

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, LibraryError, fingerprint
from composer.ops.lorahub import lorahub_search, weighted_sum
from composer.formats import read_lora_folder
from composer.ops.train import encode_batch
from composer.prompt import render

torch.set_num_threads(1)
CANDIDATES = ["right", "noise-a", "noise-b"]


class CharTokenizer:
    """One token per printable character (0 = pad, 1 = EOS): encodes and decodes exactly."""

    pad_token_id, eos_token_id = 0, 1
    chars = string.ascii_letters + string.digits + string.punctuation + " \n"

    def encode(self, text, add_special_tokens=False):
        return [self.chars.index(c) + 2 for c in text]

    def decode(self, ids):
        return "".join(self.chars[i - 2] for i in ids)


TOKENIZER = CharTokenizer()


def greedy(model, prompt: str, steps: int = 5) -> str:
    ids = TOKENIZER.encode(prompt)
    with torch.inference_mode():
        for _ in range(steps):
            logits = model(torch.tensor([ids])).logits[0, -1]
            logits[:2] = -float("inf")  # always a character, so every output is a real string
            ids.append(int(logits.argmax()))
    return TOKENIZER.decode(ids[-steps:])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=4, vocab_size=len(CharTokenizer.chars) + 2, pad_token_id=0,
                         eos_token_id=1, bos_token_id=None, initializer_range=0.3)  # peaked logits: bricks matter
    base = LlamaForCausalLM(config).eval()
    library = BrickLibrary(tmp_path_factory.mktemp("lib"))
    for seed, brick_id in enumerate(CANDIDATES, start=1):
        torch.manual_seed(seed)
        model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                               init_lora_weights=False))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)
        model.save_pretrained(library.path(brick_id))
        library.write_card(BrickCard(id=brick_id, title=brick_id, description="random", examples=["x"],
                                     base_fingerprint=fingerprint(base)))
    with weighted_sum(base, [read_lora_folder(library.path("right")).modules], torch.ones(1)):
        examples = [("echo", text, greedy(base, render("echo", text)))
                    for text in ["abc", "hello", "xyz", "brick", "lora", "merge"]]
    return base, library, examples


def ce(base, adapters, weights, examples) -> float:
    with torch.inference_mode(), weighted_sum(base, adapters, torch.tensor(weights)):
        return base(**encode_batch(TOKENIZER, examples, "cpu")).loss.item()


def test_hooks_apply_a_brick_like_peft_and_leave_no_trace(setup):
    base, library, _ = setup
    ids = torch.tensor([TOKENIZER.encode("Task: hi\nIn: there\nOut: ")])
    before = base(ids).logits
    peft_logits = PeftModel.from_pretrained(copy.deepcopy(base), library.path("noise-a"))(ids).logits
    with weighted_sum(base, [read_lora_folder(library.path("noise-a")).modules], torch.ones(1)):
        hooked = base(ids).logits
    torch.testing.assert_close(hooked, peft_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(base(ids).logits, before)
    assert not any(m._forward_hooks for m in base.modules())


def test_search_moves_towards_the_right_brick_and_is_reproducible(setup, tmp_path):
    base, library, examples = setup
    adapters = [read_lora_folder(library.path(i)).modules for i in CANDIDATES]
    uniform = ce(base, adapters, [1 / 3] * 3, examples)
    assert ce(base, adapters, [1.0, 0.0, 0.0], examples) < uniform - 2  # the right brick is clearly right

    result = lorahub_search(base, TOKENIZER, library, CANDIDATES, examples, budget=30, seed=0)
    assert list(result.weights) == CANDIDATES and result.evaluations == 31
    assert result.loss_before == pytest.approx(uniform, abs=1e-5)
    assert result.loss_after < result.loss_before - 1.0
    assert max(result.weights, key=lambda i: abs(result.weights[i])) == "right"
    assert result.loss_after == pytest.approx(ce(base, adapters, list(result.weights.values()), examples), abs=1e-5)
    assert result.loss_after == pytest.approx(ce(base, [result.merged.modules], [1.0], examples), abs=1e-5)

    again = lorahub_search(base, TOKENIZER, library, CANDIDATES, examples, budget=30, seed=0, new_id="echo",
                           base_fingerprint=fingerprint(base))
    assert again.weights == result.weights and again.loss_after == result.loss_after
    assert again.card.source["merge"]["method"] == "cat" and again.card.source["lorahub"]["budget"] == 30
    saved = read_lora_folder(library.path("echo")).modules
    for name, f in result.merged.modules.items():
        torch.testing.assert_close(saved[name].delta(), f.delta())


def test_bad_input_is_refused_clearly(setup):
    base, library, examples = setup
    fp = fingerprint(base)

    def search(ids=CANDIDATES, ex=examples, **kw):
        return lorahub_search(base, TOKENIZER, library, ids, ex, budget=2, base_fingerprint=kw.pop("fp", fp), **kw)

    with pytest.raises(ComposerError, match="at least one .* example"):
        search(ex=[])
    with pytest.raises(ComposerError, match="at most 10 examples, got 11"):
        search(ex=(examples * 2)[:11])
    with pytest.raises(ComposerError, match="non-empty output"):
        search(ex=[("echo", "abc")])
    with pytest.raises(LibraryError, match="unknown brick 'ghost'"):
        search(ids=["right", "ghost"])
    with pytest.raises(ComposerError, match="listed twice"):
        search(ids=["right", "right"])
    with pytest.raises(ComposerError, match="at least one candidate"):
        search(ids=[])
    with pytest.raises(ComposerError, match="made for another base .*right"):
        search(fp="0" * 16)
    with pytest.raises(ComposerError, match="'right' already exists"):
        search(new_id="right")
