"""Concatenation: the exact weighted sum of LoRA deltas, at the cost of rank Σ r_i.

Stacking factors block-wise gives B' A' = [B_1 … B_n] [c_1 A_1; …; c_n A_n] = Σ_i c_i B_i A_i
with c_i = w_i · s_i, i.e. exactly the weighted sum of the adapters' ΔW (no cross terms,
unlike `linear`). The merged rank at a module is the sum of the ranks of the adapters that
have it. Same semantics as peft's `cat` combination type (LoRA: Hu et al.,
https://arxiv.org/abs/2106.09685; peft merging guide:
https://huggingface.co/docs/peft/developer_guides/model_merging).

Shapes: A_i `[r_i, d_in]` → A' `[Σ r_i, d_in]`; B_i `[d_out, r_i]` → B' `[d_out, Σ r_i]`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from composer.formats import Adapter, LoraFactors
from composer.ops.merge.base import MergeMethod, modules_of


def cat(adapters: Sequence[Adapter], weights: Sequence[float]) -> dict[str, LoraFactors]:
    out = {}
    for name, parts in modules_of(adapters, weights).items():
        dtype = parts[0][0].a.dtype
        a = torch.cat([(w * f.scale) * f.a.float() for f, w in parts])
        b = torch.cat([f.b.float() for f, _ in parts], dim=1)
        out[name] = LoraFactors(a=a.to(dtype), b=b.to(dtype))
    return out


CAT = MergeMethod(
    name="cat",
    paper="https://huggingface.co/docs/peft/developer_guides/model_merging",
    summary="concatenate the factors: exact weighted sum of the deltas, rank = sum of ranks",
    params=(),
    merge=cat,
)
