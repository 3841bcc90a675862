"""The default base model: a small Llama with a byte-level tokenizer, pre-trained from scratch
on the generic skills only.

Why ReLU in the FFN: gated ReLU yields exact zeros, so FFN activations are truly sparse and
neurons specialise sharply; MoEfication-style emergent bricks (partitions of FFN neurons)
depend on that, where SiLU's small negative tail blurs the partitions.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

from composer.defaults.skills import GENERIC_SKILLS, Word, pseudo_word, random_word
from composer.ops.train import Example, TrainConfig, train


@dataclass(frozen=True)
class Phase:
    """One stage of the pre-training curriculum: which words the inputs are made of."""

    name: str
    word: Word
    config: TrainConfig


PHASES = (
    # Word-like strings first: the format, the skills and a first copying circuit.
    Phase("pseudo-words", pseudo_word, TrainConfig(steps=5000, batch_size=32, lr=3e-3, warmup=100,
                                                   weight_decay=0.01, seed=0)),
    # Then uniform random letters, where only exact copying by content works.
    Phase("random-letters", random_word, TrainConfig(steps=3000, batch_size=32, lr=2e-3, warmup=50,
                                                     weight_decay=0.01, seed=1)),
    # The copying circuit forms late (loss 1.0 -> 0.7 over the last third of phase two, cut short
    # by the decay): a second, longer pass at the same peak rate lets it finish.
    Phase("random-letters-long", random_word, TrainConfig(steps=7000, batch_size=32, lr=2e-3, warmup=100,
                                                          weight_decay=0.01, seed=2)),
)


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


def sampler(word: Word):
    def sample(rng: random.Random, n: int) -> list[Example]:
        return [rng.choice(GENERIC_SKILLS).sample(rng, word) for _ in range(n)]

    return sample


def load_or_init(path: Path | None):
    """(model, tokenizer): a saved base to continue from, or a fresh seeded one."""
    if path is not None:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), make_tokenizer()
    torch.manual_seed(PHASES[0].config.seed)
    tokenizer = make_tokenizer()
    return LlamaForCausalLM(make_config(tokenizer)), tokenizer


def run_phase(model, tokenizer, phase: Phase, progress: bool = True) -> list[float]:
    return train(model, tokenizer, sampler(phase.word), phase.config, desc=f"pre-train base: {phase.name}",
                 progress=progress)
