"""Loading a Hugging Face causal LM and its tokenizer, offline: the one place that does it,
below the engine, training and the front ends alike."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.library import LibraryError


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_tokenizer(path: Path):
    """The tokenizer class the folder's `tokenizer_config.json` names, else AutoTokenizer.

    transformers 5 lets some model types (qwen2, mistral) override the saved class: a
    byte-level tokenizer beside a Qwen2 config silently loads as an empty Qwen2 tokenizer.
    """
    import transformers

    config = Path(path) / "tokenizer_config.json"
    name = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    cls = getattr(transformers, name, None) if name else None
    return (cls or AutoTokenizer).from_pretrained(path)


def max_positions(config) -> int | None:
    """The longest sequence (prompt + generated tokens) a model was built for, from its config."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_base(path: str | Path, device: str | None = None):
    """(model, tokenizer) from a Hugging Face folder, loaded offline, in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise LibraryError(f"no base model at {path}: config.json is missing")
    dev = pick_device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev).eval()
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as err:
        raise LibraryError(f"cannot load base model at {path}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
