"""Tiny random models of real architectures and random peft bricks, built offline in tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from composer.library import BrickCard, BrickLibrary, fingerprint

_COMMON = dict(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, eos_token_id=1, bos_token_id=None)

ARCHITECTURES = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**_COMMON)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**_COMMON)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**_COMMON)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(**{**_COMMON, "num_key_value_heads": 4})),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=259, n_embd=32, n_layer=2, n_head=4, n_positions=256,
                                               pad_token_id=0, eos_token_id=1, bos_token_id=1)),
}


def tiny_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return ARCHITECTURES[arch]().eval()


def save_base(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    ByT5Tokenizer(extra_ids=0).save_pretrained(folder)
    return folder


def add_random_brick(library: BrickLibrary, base, brick_id: str, description: str, examples: list[str],
                     r: int = 4, seed: int = 0, target_modules="all-linear") -> Path:
    """A peft LoRA with non-zero B (so it changes outputs) saved as a brick of `library`."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    peft_model = get_peft_model(base, LoraConfig(r=r, lora_alpha=2 * r, target_modules=target_modules,
                                                 init_lora_weights=False))
    folder = library.path(brick_id)
    peft_model.save_pretrained(folder)
    base = peft_model.unload()  # leave the base model as it was
    library.write_card(BrickCard(id=brick_id, title=brick_id, description=description, examples=examples,
                                 base_fingerprint=fingerprint(base)))
    return folder


def write_brick(library: BrickLibrary, card: BrickCard) -> Path:
    """A brick folder with a card and small placeholder adapter files (for index and library
    tests that never run the weights)."""
    import json

    from safetensors.torch import save_file

    def write(folder: Path) -> BrickCard:
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 1, "lora_alpha": 1,
                                                                "target_modules": ["q_proj"]}))
        save_file({"base_model.model.q_proj.lora_A.weight": torch.zeros(1, 2)}, str(folder / "adapter_model.safetensors"))
        return card

    if (library.path(card.id) / "brick.json").is_file():
        library.write_card(card)
    else:
        library.commit(card.id, write)
    return library.path(card.id)
