"""SVD merge: the exact weighted sum of deltas, truncated back to a chosen rank.

ΔW = Σ_i w_i · s_i · B_i A_i `[d_out, d_in]` is factored as U S Vᴴ; keeping the top k
singular triplets gives the best rank-k approximation in Frobenius norm (Eckart–Young):
B' = U_k · diag(S_k) `[d_out, k]`, A' = Vᴴ_k `[k, d_in]`. k = `svd_rank`, by default the
largest rank among the inputs (capped at min(d_out, d_in) per module). Same semantics as
peft's `svd` combination type (after kohya-ss's `svd_merge_lora`; peft merging guide:
https://huggingface.co/docs/peft/developer_guides/model_merging).

Cost: one SVD of a `[d_out, d_in]` matrix per module, done in float32.
"""

from __future__ import annotations

from typing import Sequence

import torch

from composer.formats import Adapter, LoraFactors
from composer.ops.merge.base import MergeMethod, modules_of
from composer.params import Param


def svd(adapters: Sequence[Adapter], weights: Sequence[float], svd_rank: int | None = None) -> dict[str, LoraFactors]:
    k = svd_rank or max(f.rank for adapter in adapters for f in adapter.values())
    out = {}
    for name, parts in modules_of(adapters, weights).items():
        delta = sum(w * f.delta() for f, w in parts)
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        dtype = parts[0][0].a.dtype
        out[name] = LoraFactors(a=vh[:k].to(dtype), b=(u[:, :k] * s[:k]).to(dtype))
    return out


SVD = MergeMethod(
    name="svd",
    paper="https://huggingface.co/docs/peft/developer_guides/model_merging",
    summary="weighted sum of the full deltas, truncated by SVD to svd_rank (default: largest input rank)",
    params=(Param("svd_rank", int, default=None, check=lambda k: k > 0, rule="a positive int",
                  help="rank of the merged adapter"),),
    merge=svd,
)
