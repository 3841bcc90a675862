"""Tiny random models of every FFN family the emergent bricks support, built offline.

Helpers reach the tests through the `tiny` fixture (no imports from conftest, which other
test folders may shadow).
"""

from __future__ import annotations

import os

import pytest
import torch
from transformers import (ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

TOKENIZER = ByT5Tokenizer(extra_ids=0)
IDS = dict(vocab_size=len(TOKENIZER), pad_token_id=TOKENIZER.pad_token_id, eos_token_id=TOKENIZER.eos_token_id,
           bos_token_id=None)
SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=256, hidden_act="relu")
ARCHS = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SIZE, num_key_value_heads=2, **IDS)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SIZE, num_key_value_heads=2, **IDS)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(**SIZE, num_key_value_heads=4, **IDS)),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=256, **IDS)),
}
WIDTH = {"llama": 64, "qwen2": 64, "phi3": 64, "gpt2": 128}  # GPT-2's FFN is 4 · n_embd
EXAMPLES = [("Copy the text", "brick composer", "brick composer"), ("Count the words", "a b c", "3"),
            ("Give the first word", "hello there", "hello"), ("Echo it", "x", "x"),
            ("Count the words", "one two", "2"), ("First word only", "tea pot", "tea")]
LABELS = [0, 1, 2, 0, 1, 2]
SKILLS = ("copy", "count", "first")


def make(arch: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    return ARCHS[arch]().eval()


class Tiny:
    tokenizer, archs, width = TOKENIZER, ARCHS, WIDTH
    examples, labels, skills = EXAMPLES, LABELS, SKILLS
    make = staticmethod(make)


@pytest.fixture
def tiny() -> type[Tiny]:
    return Tiny
