"""Masked FFN inference: exact with everything on, composes with peft LoRA, routes per token."""

from __future__ import annotations

import copy

import pytest
import torch

from composer.emergent.partition import partition
from composer.emergent.profile import record
from composer.emergent.sparse import SparseFFN, train_router
from composer.generation import generate, left_pad
from composer.errors import ComposerError

PROMPTS = ["Task: Copy the text\nIn: brick\nOut: ", "hi", "Task: Count the words\nIn: a b c\nOut: "]


def logits(model, tokenizer, prompts=PROMPTS):
    ids, mask = left_pad(tokenizer, prompts, torch.device("cpu"))
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


@pytest.mark.parametrize("arch", ["llama", "phi3", "gpt2"])
def test_all_neurons_on_equals_dense_exactly(tiny, arch):
    model = tiny.make(arch)
    dense = logits(model, tiny.tokenizer)
    ones = torch.ones(2, tiny.width[arch], dtype=torch.bool)
    with SparseFFN(model, ones):
        assert torch.equal(logits(model, tiny.tokenizer), dense)
    with SparseFFN(model, ones.expand(3, 2, -1)):  # one mask per row
        assert torch.equal(logits(model, tiny.tokenizer), dense)
    assert torch.equal(logits(model, tiny.tokenizer), dense)  # hooks gone on exit


def test_all_partitions_on_through_a_router_equals_dense_exactly(tiny):
    model = tiny.make()
    profile = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, tokens_per_example=4)
    router = train_router(profile.tokens, partition(model, 4), steps=5)
    dense = logits(model, tiny.tokenizer)
    with SparseFFN(model, router=router, k=4) as sparse:
        assert sparse.active_fraction == 1.0
        assert torch.equal(logits(model, tiny.tokenizer), dense)
    with SparseFFN(model, router=router, k=1) as sparse:
        assert sparse.active_fraction == 0.25
        assert not torch.equal(logits(model, tiny.tokenizer), dense)
        generate(model, tiny.tokenizer, PROMPTS, max_new_tokens=3)  # per-token masks under the KV cache
    with pytest.raises(ComposerError, match="k in 1..4"):
        SparseFFN(model, router=router, k=5)


def test_zero_masks_remove_the_ffn(tiny):
    model = tiny.make()
    cut = copy.deepcopy(model)
    for layer in cut.model.layers:
        layer.mlp.down_proj.weight.data.zero_()
    with SparseFFN(model, torch.zeros(2, 64, dtype=torch.bool)):
        assert torch.allclose(logits(model, tiny.tokenizer), logits(cut, tiny.tokenizer), atol=1e-6)


def test_per_row_masks_act_on_their_row_only(tiny):
    model = tiny.make()
    dense = logits(model, tiny.tokenizer)
    with SparseFFN(model, torch.zeros(2, 64, dtype=torch.bool)):
        off = logits(model, tiny.tokenizer)
    rows = torch.stack([torch.ones(2, 64), torch.zeros(2, 64), torch.ones(2, 64)]).bool()
    with SparseFFN(model, rows) as sparse:
        mixed = logits(model, tiny.tokenizer)
        assert torch.equal(mixed[0], dense[0]) and torch.equal(mixed[2], dense[2])
        assert torch.allclose(mixed[1], off[1], atol=1e-6)
        with pytest.raises(ComposerError, match="3 per-row masks for a batch of 2"):
            logits(model, tiny.tokenizer, PROMPTS[:2])
        assert sparse.active_fraction == pytest.approx(2 / 3)


def test_masks_compose_with_a_peft_lora_on_the_down_projection(tiny):
    """The hook sits on peft's outer lora.Linear, so the mask also gates the LoRA branch:
    with every neuron off, a LoRA on down_proj alone changes nothing."""
    from peft import LoraConfig, get_peft_model

    base = tiny.make()
    with SparseFFN(base, torch.zeros(2, 64, dtype=torch.bool)):
        base_off = logits(base, tiny.tokenizer)
    torch.manual_seed(1)
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, target_modules=["down_proj"], init_lora_weights=False))
    dense = logits(model, tiny.tokenizer)
    assert not torch.allclose(dense, logits(base, tiny.tokenizer), atol=1e-4)  # the LoRA does something
    with SparseFFN(model, torch.ones(2, 64, dtype=torch.bool)):
        assert torch.equal(logits(model, tiny.tokenizer), dense)
    with SparseFFN(model, torch.zeros(2, 64, dtype=torch.bool)):
        assert torch.allclose(logits(model, tiny.tokenizer), base_off, atol=1e-6)
    half = torch.rand(2, 64) < 0.5
    with SparseFFN(model, half):
        masked = logits(model, tiny.tokenizer)
    with model.disable_adapter(), SparseFFN(model, half):
        assert not torch.allclose(masked, logits(model, tiny.tokenizer), atol=1e-4)


def test_masks_that_do_not_fit_are_refused(tiny):
    with pytest.raises(ComposerError, match=r"must be \[2, 128\]"):
        SparseFFN(tiny.make("gpt2"), torch.ones(2, 64, dtype=torch.bool))
