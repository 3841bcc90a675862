"""Arrow routing: per token and per layer, the top-k of a row's candidate bricks by SVD prototype.

Paper: Ostapenko et al. 2024, "Towards Modular LLMs by Building and Reusing a Library of
LoRAs", https://arxiv.org/abs/2405.11157 (peft ships the same router as `ArrowConfig`).

Why: a library holds bricks trained for other tasks, none for the request at hand. Rather than
one fixed mixture per row, every token in every served layer picks, zero-shot and without a
trained router, the bricks whose update it is most aligned with.

Maths. At one module a brick adds ΔW = s · B A (A `[r, d_in]`, B `[d_out, r]`, s > 0). Its
prototype v `[d_in]` is the top right singular vector of ΔW: the unit input direction that ΔW
amplifies most, defined up to sign (s does not change it). For a token x `[d_in]` and the
row's candidates c = 1..C present at this module:

    ℓ_c(x) = |⟨v_c, x⟩|                                   (v is only defined up to sign)
    S(x)   = the k candidates of largest ℓ                 (k capped at the number present)
    g_c(x) = exp(ℓ_c / τ) / Σ_{c' ∈ S(x)} exp(ℓ_c' / τ)   for c ∈ S(x), else 0
    y      = base(x) + Σ_c g_c(x) · s_c B_c A_c x

A candidate with no module at a layer is no candidate there (a zero prototype would still
take a share of the softmax and dilute the others); a token with none present gets no delta.

Prototype without forming ΔW `[d_out, d_in]`: Aᵀ = Q R (reduced QR, Q `[d_in, r]`
orthonormal, R `[r, r]`), so ΔW = B Rᵀ Qᵀ; with the small SVD B Rᵀ = U Σ Vᵀ (`[d_out, r]`),
ΔW = U Σ (Q V)ᵀ and v = Q V[:, 0]. Exact (peft runs 15 power iterations on Aᵀ(BᵀB)A), cost
O((d_in + d_out) r²) per module, paid once when a brick is copied into a slot.

Cost per forward: the engine runs every candidate's LoRA product on every token, as peft does,
and the gates zero the unchosen ones, so an Arrow row costs about C static bricks, plus one
`[T, d_in] @ [d_in, C]` for the logits.

Here: the parameters as data (`PARAMS`), `prototype`, `gates` (all Arrow rows of a batch at
once, the engine's path, `composer.engine.layers`), and `reference`, the per-token loop over
dense ΔW that the engine is tested against.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from composer.params import Param

PAPER = "https://arxiv.org/abs/2405.11157"

K = Param("k", int, default=4, check=lambda k: k >= 1,
          rule="an int >= 1, at most the number of candidates and the engine's k_max",
          help="bricks mixed per token (top-k); when not given, min(4, number of candidates) as in the paper")
TEMPERATURE = Param("temperature", float, default=1.0, check=lambda t: math.isfinite(t) and t > 0,
                    rule="a finite float > 0",
                    help="softmax temperature over the top-k logits: small -> the best brick alone, "
                         "large -> an even mix of the k")
PARAMS: tuple[Param, ...] = (K, TEMPERATURE)


@torch.no_grad()
def prototype(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Top right singular vector `[d_in]` (float32, unit norm) of ΔW = b @ a, from a `[r, d_in]`
    and b `[d_out, r]` (see module doc). The sign is fixed (largest-magnitude entry positive) so
    a brick always gets the same vector; routing ignores it."""
    q, r = torch.linalg.qr(a.float().t())                       # Aᵀ = Q R: [d_in, m], [m, r]
    _, _, vh = torch.linalg.svd(b.float() @ r.t(), full_matrices=False)  # B Rᵀ = U Σ Vᵀ
    v = q @ vh[0]
    return v if v[v.abs().argmax()] >= 0 else -v


def gates(x: torch.Tensor, prototypes: torch.Tensor, present: torch.Tensor, rank_ok: torch.Tensor,
          inv_temperature: torch.Tensor) -> torch.Tensor:
    """Per-token gates `[R, T, C]` (dtype of x) of R Arrow rows at once.

    x `[R, T, d_in]` the rows' inputs; prototypes `[R, C, d_in]` each row's candidates' (padded
    rows arbitrary); present `[R, C]` bool, a real candidate with a module at this layer;
    rank_ok `[R, 1, K]` bool, rank j < that row's k (K = the largest k); inv_temperature
    `[R, 1, 1]` float32, 1 / τ. Top-K by |⟨v, x⟩| over the present candidates, then the ranks
    past a row's own k are masked out before its softmax: rows with different k share one
    `topk`. Logits are taken in float32 for the softmax.
    """
    logits = torch.bmm(x, prototypes.transpose(1, 2)).abs().float()   # [R, T, C]
    logits.masked_fill_(~present[:, None, :], -math.inf)
    top, index = logits.topk(rank_ok.shape[-1], dim=-1)               # [R, T, K]
    keep = rank_ok & (top > -math.inf)                                # absent candidates never win
    probs = torch.softmax((top * inv_temperature).masked_fill(~keep, -math.inf), dim=-1)
    probs = probs.masked_fill(~keep, 0.0)                             # a token with none present: 0, not NaN
    return torch.zeros_like(logits).scatter_(-1, index, probs).to(x.dtype)


def reference(x: torch.Tensor, prototypes: torch.Tensor, deltas: Sequence[torch.Tensor], k: int,
              temperature: float) -> torch.Tensor:
    """The Arrow delta `[T, d_out]` of one row, token by token, from dense updates.

    x `[T, d_in]`; prototypes `[C, d_in]` and deltas (C tensors s·B A `[d_out, d_in]`) of the
    candidates present at this layer (C >= 1); k is capped at C. Plain loops, for tests.
    """
    out = x.new_zeros(x.shape[0], deltas[0].shape[0])
    for t in range(x.shape[0]):
        logits = torch.stack([(v @ x[t]).abs() for v in prototypes])
        top = torch.topk(logits, min(k, len(deltas)))
        weights = torch.softmax(top.values / temperature, dim=0)
        for g, c in zip(weights.tolist(), top.indices.tolist()):
            out[t] += g * (deltas[c] @ x[t])
    return out
