"""Recording FFN neuron activations: the raw material of every emergent-brick analysis.

A transformer FFN maps a token's hidden state x `[H]` to `down(h)`, where h `[I]` is the
vector of its I intermediate *neurons*:

    Llama / Qwen2 / Mistral   h = act(gate(x)) * up(x)       (Phi-3: gate, up = gate_up_proj(x))
    GPT-2                     h = act(c_fc(x))

In both families h is exactly the input of the down projection (`mlp.down_proj` or
`mlp.c_proj`), so a forward pre-hook on that module reads every neuron of every architecture,
and another one there can switch neurons off (`sparse.py`). Hooking the *outer*
module also keeps working when peft or the engine wraps the down projection in a LoRA layer
(`down_proj.base_layer` is the original): the hook sees the whole FFN input of that layer.

`record` runs rendered prompts through the model and keeps, per example, the mean |h_i| over
its prompt tokens (the seed paper's per-instance activation, used for functionality scores),
or with `answers=True` over prompt + answer + EOS, teacher-forced (what generation actually
runs through, used to pick the neurons a skill needs), plus optionally a random sample of
single tokens (FFN input x and neurons h) for co-activation clustering and router training.
`output_norms` gives ||W_down[:, i]||: a neuron's contribution to the FFN output is
|h_i| · ||W_down[:, i]||, so that product ranks neurons by what they add to the residual.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from composer.errors import ComposerError
from composer.prompt import render

Example = tuple[str, str, str]  # (instruction, input, output)
_DOWN = re.compile(r"(?:^|\.)mlp\.(down_proj|c_proj)$")


@dataclass(frozen=True)
class FFNLayer:
    """One FFN block: its module path, the MLP and down projection modules and its width I."""

    name: str
    mlp: nn.Module
    down: nn.Module
    width: int


def _in_features(module: nn.Module) -> int:
    """Input width of a down projection: nn.Linear / peft / engine wrappers carry `in_features`,
    transformers' Conv1D (GPT-2) stores its weight `[d_in, d_out]`."""
    if isinstance(getattr(module, "in_features", None), int):
        return module.in_features
    return int(base_module(module).weight.shape[0])


def ffn_layers(model: nn.Module) -> list[FFNLayer]:
    """Every FFN of `model`, in layer order; ComposerError when none is recognisable."""
    layers = []
    for name, module in model.named_modules():
        if _DOWN.search(name):
            mlp_name = name.rsplit(".", 1)[0]
            layers.append(FFNLayer(mlp_name, model.get_submodule(mlp_name), module, _in_features(module)))
    if not layers:
        raise ComposerError(
            f"{type(model).__name__} has no recognisable FFN: emergent bricks need `mlp.down_proj` "
            "(Llama, Qwen2, Mistral, Phi-3) or `mlp.c_proj` (GPT-2) modules")
    return layers


@dataclass(frozen=True)
class TokenSample:
    """Single tokens drawn from the profiled prompts: FFN inputs x `[T, L, H]`, neurons h `[T, L, I]`."""

    inputs: torch.Tensor
    activations: torch.Tensor


@dataclass(frozen=True)
class Profile:
    """Per-example mean |h| over prompt tokens `[N, L, I]`, each example's skill index `[N]`
    into `skills`, and optionally a token sample."""

    activations: torch.Tensor
    labels: torch.Tensor
    skills: tuple[str, ...]
    tokens: TokenSample | None = None

    def mean_by_skill(self) -> torch.Tensor:
        """Mean activation of each skill's examples `[S, L, I]`: how much a skill uses a neuron."""
        return torch.stack([self.activations[self.labels == s].mean(0) for s in range(len(self.skills))])


def _right_pad(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def _keep(into: dict[int, torch.Tensor], index: int):
    def hook(module, args):
        into[index] = args[0]
    return hook


@torch.no_grad()  # not inference_mode: a router trains on what this returns
def record(model: nn.Module, tokenizer, examples: Sequence[Example], labels: Sequence[int], skills: Sequence[str],
           *, answers: bool = False, batch_size: int = 64, tokens_per_example: int = 0, seed: int = 0) -> Profile:
    """Profile `examples` on `model`: the prompt only, or with `answers` prompt + answer + EOS.

    labels[i] indexes `skills`. With `tokens_per_example` > 0 that many profiled tokens per
    example (uniformly, without replacement) also land in `Profile.tokens`.
    """
    if len(examples) != len(labels) or not examples:
        raise ComposerError(f"need one label per example and at least one example "
                            f"(got {len(examples)} examples, {len(labels)} labels)")
    layers = ffn_layers(model)
    device = next(model.parameters()).device
    rng = random.Random(seed)
    hs: dict[int, torch.Tensor] = {}  # layer -> neurons h [B, T, I] of the current batch
    xs: dict[int, torch.Tensor] = {}  # layer -> FFN input x [B, T, H] of the current batch
    handles = [layer.down.register_forward_pre_hook(_keep(hs, i)) for i, layer in enumerate(layers)]
    if tokens_per_example:
        handles += [layer.mlp.register_forward_pre_hook(_keep(xs, i)) for i, layer in enumerate(layers)]
    means, token_x, token_h = [], [], []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            ids, mask = _right_pad(tokenizer, [render(i, x) + (y + tokenizer.eos_token if answers else "")
                                               for i, x, y in chunk])
            ids, mask = ids.to(device), mask.to(device)
            model(input_ids=ids, attention_mask=mask)
            weight = (mask / mask.sum(1, keepdim=True)).float()[..., None]  # [B, T, 1]
            means.append(torch.stack([(hs[i].float().abs() * weight).sum(1) for i in range(len(layers))], 1).cpu())
            if tokens_per_example:
                picks = [(b, t) for b, n in enumerate(mask.sum(1).tolist())
                         for t in rng.sample(range(n), min(n, tokens_per_example))]
                b, t = torch.tensor(picks).T
                token_h.append(torch.stack([hs[i][b, t].float() for i in range(len(layers))], 1).cpu())
                token_x.append(torch.stack([xs[i][b, t].float() for i in range(len(layers))], 1).cpu())
    finally:
        for handle in handles:
            handle.remove()
    sample = TokenSample(torch.cat(token_x), torch.cat(token_h)) if tokens_per_example else None
    return Profile(torch.cat(means), torch.as_tensor(list(labels), dtype=torch.long), tuple(skills), sample)


def base_module(module: nn.Module) -> nn.Module:
    """The module under any LoRA wrapper (peft, the engine): both keep the original as base_layer."""
    return base_module(module.base_layer) if hasattr(module, "base_layer") else module


@torch.no_grad()
def output_norms(model: nn.Module) -> torch.Tensor:
    """||W_down[:, i]|| of every neuron, `[L, I]`: the size of what one unit of h_i adds to the output."""
    norms = []
    for layer in ffn_layers(model):
        down = base_module(layer.down)
        weight = down.weight.float()  # nn.Linear [H, I]; transformers' Conv1D [I, H]
        norms.append(weight.norm(dim=1) if isinstance(down, Conv1D) else weight.norm(dim=0))
    return torch.stack(norms)
