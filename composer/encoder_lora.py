"""LoRA on the shared sentence embedder, kept as plain factors: the payload tagger and the
brick retriever each fine-tune the embedder for their own job and must never change the copy
the other (and the index) reads. Training returns `lora.<module>.a` / `.b` arrays (B already
scaled), saved as safetensors; at load time `adapted` makes a copy of the embedder's
transformer that shares every tensor except the adapted linear maps."""

from __future__ import annotations

import numpy as np


def with_lora(model, rank: int, targets: tuple[str, ...], dropout: float = 0.0):
    """`model` (a transformer, changed in place: pass a copy) with trainable LoRA (alpha = 2 *
    rank) on `targets`, wrapped by peft; the wrapper's forward and the model's are the same."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout,
                                            target_modules=list(targets)))


def factors(peft_model) -> dict[str, np.ndarray]:
    """The trained LoRA of a `peft_copy` as `lora.<module>.a` / `.b` arrays, B times its scaling."""
    out = {}
    for name, module in peft_model.base_model.model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            out[f"lora.{name}.a"] = module.lora_A["default"].weight.detach().numpy().copy()
            out[f"lora.{name}.b"] = (module.lora_B["default"].weight.detach() * module.scaling["default"]).numpy()
    return out


def adapted(model, weights: dict[str, np.ndarray], root=None):
    """A copy of `model` sharing every tensor except the LoRA-adapted linear maps, whose weights
    become W + B A; in eval mode. The factors' module names are relative to `root`, a submodule
    of `model` (default: `model` itself)."""
    import copy

    import torch

    prefix = next(f"{n}." if n else "" for n, m in model.named_modules() if m is (root if root is not None else model))
    shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    copied = copy.deepcopy(model, shared)
    for name, module in copied.named_modules():
        key = f"lora.{name.removeprefix(prefix)}"
        if name.startswith(prefix) and f"{key}.a" in weights:
            delta = torch.from_numpy(weights[f"{key}.b"] @ weights[f"{key}.a"])
            module.weight = torch.nn.Parameter(module.weight.detach() + delta.to(module.weight.dtype),
                                               requires_grad=False)
    return copied.eval()
