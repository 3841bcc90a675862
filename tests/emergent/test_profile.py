"""Finding FFNs and recording their neurons on every supported architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from composer.emergent.profile import ffn_layers, record
from composer.errors import ComposerError


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi3", "gpt2"])
def test_finds_every_ffn_in_layer_order(tiny, arch):
    layers = ffn_layers(tiny.make(arch))
    assert [layer.width for layer in layers] == [tiny.width[arch]] * 2
    assert layers[0].name.endswith("0.mlp") and layers[1].name.endswith("1.mlp")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_profile_shapes_and_batch_invariance(tiny, arch):
    """Mean |h| over prompt tokens ignores padding: batch size 1 and 6 give the same profile."""
    model = tiny.make(arch)
    one = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, batch_size=1)
    six = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, batch_size=6,
                 tokens_per_example=3)
    assert one.activations.shape == (6, 2, tiny.width[arch])
    assert torch.allclose(one.activations, six.activations, atol=1e-5)
    assert six.tokens.activations.shape == (18, 2, tiny.width[arch])
    assert six.tokens.inputs.shape == (18, 2, 32)
    assert one.mean_by_skill().shape == (3, 2, tiny.width[arch])


def test_profile_reads_the_down_projection_input(tiny):
    """For Llama, h = relu(gate(x)) * up(x), computed here by hand from the MLP input."""
    model = tiny.make("llama")
    mlp = model.model.layers[1].mlp
    seen = {}
    handle = mlp.register_forward_pre_hook(lambda m, args: seen.update(x=args[0]))
    profile = record(model, tiny.tokenizer, tiny.examples[:1], [0], tiny.skills)
    handle.remove()
    h = torch.relu(mlp.gate_proj(seen["x"])) * mlp.up_proj(seen["x"])
    assert torch.allclose(profile.activations[0, 1], h.abs().mean((0, 1)), atol=1e-6)


def test_peft_wrapped_base_keeps_its_ffns(tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny.make("llama"), LoraConfig(r=2, target_modules=["down_proj", "up_proj"]))
    layers = ffn_layers(model)
    assert len(layers) == 2 and all(layer.width == 64 for layer in layers)
    assert all(hasattr(layer.down, "base_layer") for layer in layers)  # the outer LoRA module is hooked


def test_base_without_ffn_is_a_clear_error(tiny):
    class NoFFN(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))

    with pytest.raises(ComposerError, match="no recognisable FFN"):
        ffn_layers(NoFFN())


def test_labels_must_match_examples(tiny):
    with pytest.raises(ComposerError, match="one label per example"):
        record(tiny.make(), tiny.tokenizer, tiny.examples, tiny.labels[:2], tiny.skills)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_answers_extend_the_profile_and_output_norms_fit(tiny, arch):
    from composer.emergent.profile import output_norms

    model = tiny.make(arch)
    prompt = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, tokens_per_example=100)
    full = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, answers=True, tokens_per_example=100)
    answer_tokens = sum(len(y.encode()) + 1 for _, _, y in tiny.examples)  # bytes + EOS
    assert len(full.tokens.activations) - len(prompt.tokens.activations) == answer_tokens
    assert not torch.allclose(full.activations, prompt.activations)
    norms = output_norms(model)
    layer = model.transformer.h[1].mlp.c_proj if arch == "gpt2" else model.model.layers[1].mlp.down_proj
    column = layer.weight[5] if arch == "gpt2" else layer.weight[:, 5]  # neuron 5's output weights
    assert norms.shape == (2, tiny.width[arch]) and torch.isclose(norms[1, 5], column.norm())
