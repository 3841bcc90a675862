"""Tiny random causal LMs of five architectures and random peft LoRA bricks for them.

Every brick is written by peft itself (`get_peft_model` + `save_pretrained`, B non-zero),
so the engine is tested on the very files peft reads and writes. Helpers reach the tests
through the `kit` fixture (no imports from conftest, which other test folders may shadow).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch
from transformers import (ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from composer.library import BrickCard, BrickLibrary, fingerprint

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class IdTokenizer(ByT5Tokenizer):
    """Decodes to the token ids themselves, so generations compare token for token."""

    def batch_decode(self, sequences, **_):
        return [" ".join(map(str, s.tolist())) for s in sequences]


TOKENIZER = ByT5Tokenizer(extra_ids=0)
ID_TOKENIZER = IdTokenizer(extra_ids=0)
VOCAB = len(TOKENIZER)
IDS = dict(vocab_size=VOCAB, pad_token_id=TOKENIZER.pad_token_id, eos_token_id=TOKENIZER.eos_token_id,
           bos_token_id=None)
SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=128)
ARCHS = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SIZE, num_key_value_heads=2, **IDS)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SIZE, num_key_value_heads=2, **IDS)),
    "mistral": lambda: MistralForCausalLM(MistralConfig(**SIZE, num_key_value_heads=2, **IDS)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(**SIZE, num_key_value_heads=4, **IDS)),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **IDS)),
}
PROMPTS = ["add 2 and 3:", "hi", "reverse abc ->", "x", "upper: brick composer", "12+30="]


def make_base(arch: str = "llama", seed: int = 0):
    torch.manual_seed(seed)
    return ARCHS[arch]().eval()


def save_brick(base, library: BrickLibrary, brick_id: str, *, r: int = 4, alpha: float = 8, seed: int = 1,
               targets="all-linear", fp: str | None = None, **lora) -> None:
    """A random peft LoRA of `base` (B non-zero) saved as brick `brick_id`, plus its card."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, init_lora_weights=False, **lora)
    peft_model = get_peft_model(copy.deepcopy(base), config)
    with torch.no_grad():  # peft's random B is tiny; make every delta clearly visible
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(library.path(brick_id))
    library.write_card(BrickCard(id=brick_id, title=brick_id, description="test brick", examples=["x"],
                                 base_fingerprint=fp or fingerprint(base)))


def batch(prompts=PROMPTS):
    """(input_ids, attention_mask) of left-padded prompts."""
    from composer.generation import left_pad

    return left_pad(TOKENIZER, prompts, torch.device("cpu"))


class Kit:
    tokenizer, id_tokenizer, archs, prompts = TOKENIZER, ID_TOKENIZER, ARCHS, PROMPTS
    make_base, save_brick, batch = staticmethod(make_base), staticmethod(save_brick), staticmethod(batch)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and steadily when the CPU is shared; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit


@pytest.fixture
def library(tmp_path) -> BrickLibrary:
    return BrickLibrary(tmp_path)
