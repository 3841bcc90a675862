"""Emergent bricks: partitions of each layer's FFN neurons, skill masks, and their files.

MoEfication (Zhang et al. 2022, https://arxiv.org/abs/2110.01786) splits each FFN's I neurons
into E equal-size *experts* by balanced k-means, either over the neurons' input weight
vectors (parameter clustering: the rows of gate/up, or c_fc's columns) or over their
activation patterns on data (co-activation: neurons that fire together share an expert);
at inference only some experts run. Those experts, or per-skill selections of them, are the
emergent bricks of the seed paper (https://arxiv.org/abs/2409.02877).

An emergent brick on disk is a library folder holding

    masks.safetensors   "masks": uint8 `[L, I]`, 1 = neuron kept (L FFN layers, I neurons each)
    brick.json          a `BrickCard` of kind "emergent": title, description and the skill's
                        instructions as examples, so an instruction retrieves it like a LoRA brick
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from composer.emergent.profile import FFNLayer, TokenSample, base_module, ffn_layers
from composer.errors import ComposerError
from composer.library import CARD, BrickCard, BrickLibrary
from composer.storage import atomic_dir, write_json

MASKS = "masks.safetensors"


def balanced_kmeans(points: torch.Tensor, k: int, *, iters: int = 20, seed: int = 0) -> torch.Tensor:
    """Cluster index `[n]` of each row of `points` `[n, d]`, every cluster holding <= ceil(n / k).

    Lloyd iterations on unit-normalised rows (so distance ranks by cosine); the assignment
    step is capacity-constrained: rows in order of how clearly they prefer their nearest
    centroid (margin to the second nearest) each take their nearest cluster that is not full.
    """
    n = len(points)
    if not 1 <= k <= n:
        raise ComposerError(f"cannot split {n} neurons into {k} experts")
    x = nn.functional.normalize(points.float(), dim=1)
    generator = torch.Generator().manual_seed(seed)
    centroids = x[torch.randperm(n, generator=generator)[:k]].clone()
    assign = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = _capacity_assign(torch.cdist(x, centroids), math.ceil(n / k))
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            if (assign == c).any():
                centroids[c] = x[assign == c].mean(0)
    return assign


def _capacity_assign(dist: torch.Tensor, capacity: int) -> torch.Tensor:
    nearest = dist.sort(1).values
    margin = nearest[:, 1] - nearest[:, 0] if dist.shape[1] > 1 else nearest[:, 0]
    preferences = dist.argsort(1).tolist()
    load = [0] * dist.shape[1]
    out = [0] * len(dist)
    for row in margin.argsort(descending=True).tolist():
        cluster = next(c for c in preferences[row] if load[c] < capacity)
        out[row] = cluster
        load[cluster] += 1
    return torch.tensor(out)


def _weight_features(layer: FFNLayer, index: int, tokens: TokenSample | None) -> torch.Tensor:
    """`[I, d]`: each neuron's input weights (gate and up rows side by side; GPT-2: c_fc column)."""
    mlp = layer.mlp
    if hasattr(mlp, "gate_proj") and hasattr(mlp, "up_proj"):
        return torch.cat([base_module(mlp.gate_proj).weight, base_module(mlp.up_proj).weight], 1)
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: rows [gate; up]
        gate, up = base_module(mlp.gate_up_proj).weight.chunk(2, 0)
        return torch.cat([gate, up], 1)
    if hasattr(mlp, "c_fc"):  # transformers' Conv1D stores [d_in, d_out]
        return base_module(mlp.c_fc).weight.T
    raise ComposerError(f"{type(mlp).__name__} has no gate/up or c_fc projection to cluster on")


def _coactivation_features(layer: FFNLayer, index: int, tokens: TokenSample | None) -> torch.Tensor:
    """`[I, T]`: each neuron's activations over the profiled tokens."""
    if tokens is None:
        raise ComposerError("co-activation partitions need a profile recorded with tokens_per_example > 0")
    return tokens.activations[:, index, :].T


FEATURES: dict[str, Callable[[FFNLayer, int, TokenSample | None], torch.Tensor]] = {
    "weights": _weight_features,
    "coactivation": _coactivation_features,
}


def partition(model: nn.Module, experts: int, *, features: str = "weights", tokens: TokenSample | None = None,
              seed: int = 0) -> torch.Tensor:
    """Expert index of every neuron, `[L, I]` long, by balanced k-means per layer."""
    if features not in FEATURES:
        raise ComposerError(f"unknown partition features {features!r}; choose one of {sorted(FEATURES)}")
    with torch.no_grad():
        return torch.stack([balanced_kmeans(FEATURES[features](layer, i, tokens), experts, seed=seed + i)
                            for i, layer in enumerate(ffn_layers(model))])


def skill_masks(importance: torch.Tensor, fraction: float, assignment: torch.Tensor | None = None) -> torch.Tensor:
    """Bool `[S, L, I]`: per skill, about `fraction` of all FFN neurons, those it uses most.

    importance `[S, L, I]` is how much each skill uses each neuron (e.g. its mean contribution
    |h_i| · ||W_down[:, i]||). Units are neurons, or with an expert assignment `[L, I]` whole
    experts (importance summed per expert). Layers get unequal budgets: each skill has one
    coverage level c, and every layer keeps its heaviest units until they hold a share c of
    that layer's importance; c is bisected so that at most `fraction` of the units are kept
    (ties make it a little less). A layer whose work is spread thin thus keeps more units
    than one dominated by a few. On the default base, at 37.5 % of neurons, an equal top-k per
    layer kept 92 % of dense exact match and this rule 102 % (96 % at 25 %).
    """
    if not 0 < fraction <= 1:
        raise ComposerError(f"fraction must be in (0, 1] (got {fraction})")
    if assignment is None:
        return _coverage_keep(importance, fraction)
    index = assignment.expand_as(importance)
    mass = importance.new_zeros(*importance.shape[:-1], int(assignment.max()) + 1).scatter_add_(-1, index, importance)
    return _coverage_keep(mass, fraction).gather(-1, index)


def _coverage_keep(importance: torch.Tensor, fraction: float, steps: int = 40) -> torch.Tensor:
    """Bool like `importance` `[S, L, U]`: the per-skill coverage rule of `skill_masks`."""
    total = importance.sum(-1, keepdim=True)
    share = torch.where(total > 0, importance / total.clamp_min(1e-30), 1.0 / importance.shape[-1])
    ordered, order = share.sort(-1, descending=True)
    heavier = ordered.cumsum(-1) - ordered  # share held by the units ranked before each one
    budget = max(1, math.floor(fraction * importance[0].numel() + 1e-6))
    low, high = torch.zeros(len(share)), torch.ones(len(share)) + 1e-6
    for _ in range(steps):  # largest c whose kept count fits the budget
        mid = (low + high) / 2
        fits = (heavier < mid[:, None, None]).sum((1, 2)) <= budget
        low, high = torch.where(fits, mid, low), torch.where(fits, high, mid)
    keep = heavier < low[:, None, None]
    keep[..., 0] = True  # every layer keeps at least its heaviest unit
    return torch.zeros_like(keep).scatter_(-1, order, keep)


def check_masks(masks: torch.Tensor, model: nn.Module | None = None, *, batched: bool = False) -> torch.Tensor:
    """`masks` as bool `[L, I]` (`[B, L, I]` when `batched`), or ComposerError saying what fits.

    With `model`, L and I must be its number of FFN layers and their (common) width.
    """
    dims = 3 if batched else 2
    if masks.dim() != dims:
        raise ComposerError(f"neuron masks must be {'[rows, ' if batched else '['}layers, neurons], "
                            f"not shape {tuple(masks.shape)}")
    if masks.dtype != torch.bool and not ((masks == 0) | (masks == 1)).all():
        raise ComposerError("neuron masks must hold only 0 and 1")
    if model is not None:
        layers = ffn_layers(model)
        widths = {layer.width for layer in layers}
        if len(widths) != 1:
            raise ComposerError(f"FFN layers of unequal widths {sorted(widths)} cannot take [layers, neurons] masks")
        need = (len(layers), widths.pop())
        if tuple(masks.shape[-2:]) != need:
            raise ComposerError(f"neuron masks of shape {tuple(masks.shape)} do not fit this base: it has "
                                f"{need[0]} FFN layers of {need[1]} neurons, so masks must be [{need[0]}, {need[1]}]")
    return masks.bool()


def save_emergent(library: BrickLibrary, card: BrickCard, masks: torch.Tensor, model: nn.Module | None = None) -> Path:
    """Write an emergent brick (masks + card) atomically; with `model`, masks are checked against it."""
    if card.kind != "emergent":
        raise ComposerError(f"brick {card.id!r}: an emergent brick needs a card of kind 'emergent', not {card.kind!r}")
    masks = check_masks(masks, model)
    with atomic_dir(library.path(card.id)) as tmp:
        save_file({"masks": masks.to(torch.uint8).contiguous()}, str(tmp / MASKS))
        write_json(tmp / CARD, card.model_dump())
    return library.path(card.id)


def load_masks(folder: str | Path, model: nn.Module | None = None) -> torch.Tensor:
    """Bool `[L, I]` of an emergent brick folder; with `model`, ComposerError if they do not fit it."""
    path = Path(folder) / MASKS
    if not path.is_file():
        raise ComposerError(f"not an emergent brick: no {MASKS} in {Path(folder)}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ComposerError(f"corrupt {path}: {err}") from None
    if "masks" not in tensors:
        raise ComposerError(f"{path} holds no 'masks' tensor (found {sorted(tensors)})")
    return check_masks(tensors["masks"], model)
