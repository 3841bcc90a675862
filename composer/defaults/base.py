"""The default base model: a small Llama with a byte-level tokenizer, pre-trained from scratch
on the generic skills only.

Why ReLU in the FFN: gated ReLU yields exact zeros, so FFN activations are truly sparse and
neurons specialise sharply; MoEfication-style emergent bricks (partitions of FFN neurons)
depend on that, where SiLU's small negative tail blurs the partitions.
"""

from __future__ import annotations

import random

import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

from composer.defaults.skills import GENERIC_SKILLS
from composer.ops.train import Example, TrainConfig, train

BASE_TRAIN = TrainConfig(steps=5000, batch_size=32, lr=3e-3, warmup=100, weight_decay=0.01, seed=0)


def make_tokenizer() -> ByT5Tokenizer:
    """Byte-level: every ASCII string is representable and it builds offline with no files."""
    return ByT5Tokenizer(extra_ids=0)


def make_config(tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=4, hidden_act="relu", max_position_embeddings=256,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )


def sample_generic(rng: random.Random, n: int) -> list[Example]:
    return [rng.choice(GENERIC_SKILLS).sample(rng) for _ in range(n)]


def pretrain(config: TrainConfig = BASE_TRAIN, progress: bool = True):
    """A seeded base model trained on the generic skills; returns (model, tokenizer, losses)."""
    torch.manual_seed(config.seed)
    tokenizer = make_tokenizer()
    model = LlamaForCausalLM(make_config(tokenizer))
    losses = train(model, tokenizer, sample_generic, config, desc="pre-train base", progress=progress)
    return model, tokenizer, losses
