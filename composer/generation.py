"""Batched generation over rendered prompts: greedy by default, or sampling.

Prompts are left-padded so every row's next token sits in the last column and each row keeps
its position in the batch for the whole decode (the engine's per-row brick mapping relies on
that); decoding stops per row at EOS or a chat template's end-of-turn token (`stop_ids`) and
for the batch at `max_new_tokens`. Sampling draws
from softmax(logits / temperature) restricted to the smallest top-p nucleus (no top-k cut);
a `seed` makes it reproducible without touching the caller's global RNG.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

from composer.prompt import stop_ids


def sampling_options(do_sample: bool, temperature: float, top_p: float) -> dict:
    """HF `generate` keywords for greedy or temperature / top-p sampling, checked."""
    if not do_sample:
        return {"do_sample": False}
    if not (temperature > 0 and temperature == temperature):
        raise ValueError(f"temperature must be > 0 (got {temperature}); use do_sample=False for greedy")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (got {top_p})")
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """A block whose RNG starts at `seed`, the outer RNG state restored after (no-op for None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@torch.inference_mode()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 48, batch_size: int = 64,
             adapter_names: Sequence[str] | None = None, *, do_sample: bool = False, temperature: float = 1.0,
             top_p: float = 1.0, seed: int | None = None) -> list[str]:
    """Completions of `prompts`, in order. `adapter_names` (peft) picks a brick per row."""
    device = next(model.parameters()).device
    options = sampling_options(do_sample, temperature, top_p)
    outputs: list[str] = []
    stops = stop_ids(tokenizer)
    with seeded(seed, device):
        for start in range(0, len(prompts), batch_size):
            ids, mask = left_pad(tokenizer, prompts[start:start + batch_size], device)
            extra = {}
            if adapter_names is not None:
                extra["adapter_names"] = list(adapter_names[start:start + batch_size])
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=stops,
                                 **options, **extra)
            outputs += tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    return outputs


def left_pad(tokenizer, prompts: Sequence[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) `[rows, width]`, each prompt right-aligned, no special tokens."""
    chunk = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    width = max(map(len, chunk))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(c)) + c for c in chunk], device=device)
    mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in chunk], device=device)
    return ids, mask
