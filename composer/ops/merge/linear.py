"""Task arithmetic, and the general sparsify → elect sign → combine method it is one case of.

Task arithmetic (Ilharco et al., https://arxiv.org/abs/2212.04089) adds weighted task
vectors: τ = Σ_i c_i τ_i. The general method (mergekit's "generalized task arithmetic")
first sparsifies each τ_i, optionally elects one sign per entry and keeps only the entries
that agree with it (averaging over the agreeing ones), then combines:

    τ_i' = prune(τ_i)                                    (magnitude top-k, or random + 1/p)
    σ    = sign(Σ_i τ_i')  or  sign(Σ_i sign(τ_i'))      ("total" / "frequency")
    m_i  = [sign(τ_i') == σ]
    τ    = Σ_i c_i τ_i'                                   (no election)
         = Σ_i m_i c_i τ_i' / max(1, Σ_i m_i)             (with election)

`linear`, `ties`, `dare_linear`, `dare_ties` and `magnitude_prune` are configured instances
of `task_arithmetic`; for LoRA they apply it to the A's and to the B's separately
(`base.factorwise`), exactly as peft's `add_weighted_adapter` does. Note that σ is elected
on the pruned, *unweighted* tensors, as in peft.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Sequence

import torch

from composer.formats import Adapter, LoraFactors
from composer.ops.merge.base import MergeMethod, factorwise

Sparsify = Literal["none", "magnitude", "random"]
Election = Literal["none", "total", "frequency"]


def magnitude_mask(t: torch.Tensor, density: float) -> torch.Tensor:
    """1 at the int(density · numel) entries of largest |t|, 0 elsewhere (same shape as t)."""
    flat = t.abs().reshape(-1)
    mask = torch.zeros_like(flat)
    mask[torch.topk(flat, k=int(density * flat.numel())).indices] = 1.0
    return mask.view_as(t)


def task_arithmetic(stack: torch.Tensor, coef: torch.Tensor, *, sparsify: Sparsify = "none", density: float = 1.0,
                    elect: Election = "none", generator: torch.Generator | None = None) -> torch.Tensor:
    """Merge n task tensors `stack [n, ...]` with coefficients `coef [n]` into one `[...]`.

    `magnitude` keeps each tensor's top-k entries by |value|; `random` keeps each entry with
    probability `density` and divides survivors by `density` (DARE), so E[τ_i'] = τ_i.
    density >= 1 prunes nothing. The random mask draws from `generator`.
    """
    if sparsify != "none" and density < 1.0:
        if sparsify == "magnitude":
            stack = torch.stack([t * magnitude_mask(t, density) for t in stack])
        else:
            keep = torch.bernoulli(torch.full_like(stack, density), generator=generator)
            stack = stack * keep / density
    weighted = stack * coef.to(stack).view(-1, *([1] * (stack.dim() - 1)))
    if elect == "none":
        return weighted.sum(0)
    votes = stack.sum(0) if elect == "total" else stack.sign().sum(0)
    agree = stack.sign() == torch.where(votes >= 0, 1.0, -1.0)
    return (weighted * agree).sum(0) / agree.sum(0).clamp(min=1)


def generalized(adapters: Sequence[Adapter], weights: Sequence[float], *, name: str, sparsify: Sparsify,
                elect: bool, density: float = 1.0, majority_sign_method: Election = "total",
                seed: int = 0) -> dict[str, LoraFactors]:
    """`task_arithmetic` applied factor-wise to LoRA adapters, electing signs by the user's
    `majority_sign_method` when `elect`. One seeded generator serves every module, in name
    order (A then B), so a random merge is reproducible from its seed."""
    generator = torch.Generator().manual_seed(seed)
    combine = partial(task_arithmetic, sparsify=sparsify, density=density,
                      elect=majority_sign_method if elect else "none", generator=generator)
    return factorwise(adapters, weights, name, combine)


LINEAR = MergeMethod(
    name="linear",
    paper="https://arxiv.org/abs/2212.04089",
    summary="weighted sum of the A's and of the B's (peft 'linear'); all ranks equal; cheap but approximate",
    params=(),
    merge=partial(generalized, name="linear", sparsify="none", elect=False),
)
