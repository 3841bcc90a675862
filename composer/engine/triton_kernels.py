"""Fused Triton LoRA kernels: one shrink and one expand launch per served layer.

Same semantics as the torch kernels of `composer.engine.layers` (`reference` is the spec):
for batch row i with pairs {slot s_j: weight w_j} (static weights, or Arrow gates per token),

    y_i += Σ_j w_j · (x_i lora_a[s_j]ᵀ) lora_b[s_j]         at each slot's rank for this layer

in two launches (the shape of Punica's / vLLM's shrink-expand, arXiv 2310.18547):

* shrink, over the slot-sorted pairs (SGMV order): program (segment g, block of BLOCK_M
  pair-tokens, K split) reads its slot's A once for BLOCK_M tokens, `h = w · x Aᵀ` in fp32
  `[P·T, R]`; masked past the slot's rank (`BrickLinear.rank_table`), so a rank-16 brick in a
  rank-64 buffer reads 16 rows of A. A decode step with few tokens per slot splits d_in over
  SPLIT_K programs (fp32 atomics into a zeroed h) so more than a handful of SMs share it.
* expand, over the batch rows that have pairs: program (row, token block, d_out block) adds
  Σ_j h_j B_j of that row's pairs (a mixture or an Arrow row's candidates) in registers and
  writes y once: no atomics on y, one rounding, rows without bricks never touched.

All per-batch indexing is in `FusedTables`, built once by `BatchMapping.build` on the device;
a forward does no per-layer Python beyond computing launch grids. Arrow gates come from the
same torch code as the other kernels (`layers.token_weights`), fed as per-token weights.

Each kernel is built twice from one Python function: compiled (`triton.jit`) for CUDA tensors,
and Triton's interpreter (`InterpretedFunction`, numpy) for CPU tensors, which is how the
tests check the kernels' logic without a GPU. So the kernels use Triton builtins only
(`tl.full`, not the jit'd `tl.zeros` / `tl.sum`, which only an interpreter started by
`TRITON_INTERPRET=1` can call). The interpreter's `tl.dot` mishandles bf16
operands, so there operands are upcast to fp32 (`UPCAST`); on a GPU bf16 / fp16 operands go
to the tensor cores with fp32 accumulation, and fp32 runs IEEE (no TF32). Not yet measured on
a GPU: block sizes are starting points, not tuned.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the package works without triton; `usable` says so
    triton = tl = None


def usable(device: torch.device | str) -> bool:
    """The Triton kernels can run on `device`: triton imports and the device is CUDA (compiled)
    or the CPU (interpreted: slow, for tests and dry runs)."""
    return triton is not None and torch.device(device).type in _KERNELS


@dataclass(frozen=True, eq=False)
class FusedTables:
    """The Triton kernels' view of one `BatchMapping`, int32 on the device, built once.

    segments  [G, 3]  (slot, first pair, end pair) of each run of one slot in pair order
    rows      [Rw]    batch rows that have at least one pair, ascending
    row_pairs [Rw, W] the pair indices of each of those rows (W = most pairs of one row), -1 = none
    pair_slot [P]     slot of each pair
    pair_row  [P]     batch row of each pair
    """

    segments: torch.Tensor
    rows: torch.Tensor
    row_pairs: torch.Tensor
    pair_slot: torch.Tensor
    pair_row: torch.Tensor
    longest: int  # L, pairs in the longest segment (the shrink grid's second axis)

    @classmethod
    def build(cls, n_rows: int, pairs: list[tuple[int, int, float, int]], segments, *,
              device: torch.device | str) -> "FusedTables":
        """From `BatchMapping.build`'s slot-sorted pairs (slot, row, weight, gate) and segments."""
        of_row: list[list[int]] = [[] for _ in range(n_rows)]
        for p, (_, row, _, _) in enumerate(pairs):
            of_row[row].append(p)
        rows = [i for i, ps in enumerate(of_row) if ps]
        width = max((len(of_row[i]) for i in rows), default=1)
        table = [of_row[i] + [-1] * (width - len(of_row[i])) for i in rows]

        def ints(values, shape) -> torch.Tensor:
            return torch.tensor(values, dtype=torch.int32).view(shape).to(device)

        return cls(
            segments=ints([[s.slot, s.start, s.stop] for s in segments], (-1, 3)),
            rows=ints(rows, (-1,)),
            row_pairs=ints(table, (-1, width)),
            pair_slot=ints([p[0] for p in pairs], (-1,)),
            pair_row=ints([p[1] for p in pairs], (-1,)),
            longest=max((s.stop - s.start for s in segments), default=0),
        )


def _shrink(x_ptr, a_ptr, w_ptr, h_ptr, seg_ptr, pair_row_ptr, rank_ptr,
            T, D_IN, K_PER_SPLIT, sx_row, sx_t, sx_k, sa_slot, sa_r, sa_k, sw_p, sw_t,
            HAS_W: tl.constexpr, ATOMIC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_R: tl.constexpr,
            BLOCK_K: tl.constexpr, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """h[m, :] (+)= w[m] · x[row(m), t(m)] A[slot]ᵀ for the pair-tokens m of one segment block."""
    g = tl.program_id(0)
    slot = tl.load(seg_ptr + g * 3)
    stop = tl.load(seg_ptr + g * 3 + 2) * T
    m0 = tl.load(seg_ptr + g * 3 + 1) * T + tl.program_id(1) * BLOCK_M
    if m0 < stop:
        m = m0 + tl.arange(0, BLOCK_M)
        valid = m < stop
        p = m // T
        t = m % T
        row = tl.load(pair_row_ptr + p, mask=valid, other=0).to(tl.int64)
        rank = tl.load(rank_ptr + slot)
        r = tl.arange(0, BLOCK_R)
        x_rows = x_ptr + row * sx_row + t * sx_t                              # [BLOCK_M]
        a_rows = a_ptr + slot.to(tl.int64) * sa_slot + r * sa_r               # [BLOCK_R]
        k_start = tl.program_id(2) * K_PER_SPLIT
        k_stop = tl.minimum(k_start + K_PER_SPLIT, D_IN)
        acc = tl.full((BLOCK_M, BLOCK_R), 0.0, tl.float32)
        if rank > 0:
            for k0 in range(k_start, k_stop, BLOCK_K):
                k = k0 + tl.arange(0, BLOCK_K)
                kv = k < k_stop
                xk = tl.load(x_rows[:, None] + k[None, :] * sx_k, mask=valid[:, None] & kv[None, :], other=0.0)
                ak = tl.load(a_rows[None, :] + k[:, None] * sa_k, mask=kv[:, None] & (r[None, :] < rank),
                             other=0.0)                                       # [BLOCK_K, BLOCK_R]
                if UPCAST:  # (inlined: an interpreted kernel cannot call a jit'd helper)
                    acc += tl.dot(xk.to(tl.float32), ak.to(tl.float32))
                elif IEEE:
                    acc += tl.dot(xk, ak, input_precision="ieee")
                else:
                    acc += tl.dot(xk, ak)
        if HAS_W:
            acc *= tl.load(w_ptr + p * sw_p + t * sw_t, mask=valid, other=0.0).to(tl.float32)[:, None]
        out = h_ptr + m[:, None] * BLOCK_R + r[None, :]
        if ATOMIC:
            tl.atomic_add(out, acc, mask=valid[:, None])
        else:
            tl.store(out, acc, mask=valid[:, None])


def _expand(h_ptr, b_ptr, y_ptr, rows_ptr, row_pairs_ptr, pair_slot_ptr, rank_ptr,
            T, D_OUT, W, sy_row, sy_t, sy_n, sb_slot, sb_r, sb_n,
            BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_N: tl.constexpr,
            UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """y[row, t, n] += Σ_j h[pair_j, t] B[slot_j][:, n] over one row's pairs, written once."""
    i = tl.program_id(0)
    row = tl.load(rows_ptr + i).to(tl.int64)
    t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    r = tl.arange(0, BLOCK_R)
    tv = t < T
    nv = n < D_OUT
    acc = tl.full((BLOCK_T, BLOCK_N), 0.0, tl.float32)
    for j in range(0, W):
        p = tl.load(row_pairs_ptr + i * W + j)
        if p >= 0:
            slot = tl.load(pair_slot_ptr + p)
            rank = tl.load(rank_ptr + slot)
            rv = r < rank
            h = tl.load(h_ptr + (p * T + t)[:, None] * BLOCK_R + r[None, :], mask=tv[:, None] & rv[None, :],
                        other=0.0)                                            # [BLOCK_T, BLOCK_R] fp32
            b = tl.load(b_ptr + slot.to(tl.int64) * sb_slot + r[:, None] * sb_r + n[None, :] * sb_n,
                        mask=rv[:, None] & nv[None, :], other=0.0)            # [BLOCK_R, BLOCK_N]
            if UPCAST:
                acc += tl.dot(h, b.to(tl.float32))
            elif IEEE:
                acc += tl.dot(h, b, input_precision="ieee")
            else:
                acc += tl.dot(h.to(b.dtype), b)
    out = y_ptr + row * sy_row + t[:, None] * sy_t + n[None, :] * sy_n
    mask = tv[:, None] & nv[None, :]
    old = tl.load(out, mask=mask, other=0.0)
    tl.store(out, (old.to(tl.float32) + acc).to(old.dtype), mask=mask)


_KERNELS: dict = {}  # device type -> (shrink, expand): compiled for CUDA, interpreted for the CPU
if triton is not None:
    from triton.runtime.interpreter import InterpretedFunction

    _KERNELS = {"cuda": (triton.jit(_shrink), triton.jit(_expand)),
                "cpu": (InterpretedFunction(_shrink), InterpretedFunction(_expand))}


def _pow2(n: int, low: int) -> int:
    return max(low, 1 << max(n - 1, 0).bit_length())


def fused_lora(x: torch.Tensor, y: torch.Tensor, layer, m) -> None:
    """The `triton` kernel of `layers.KERNELS`: x `[rows, T, d_in]`, y `[rows, T, d_out]` updated
    in place, for `layer` (a `BrickLinear`) under mapping `m` (built with kernel "triton")."""
    from composer.engine.layers import token_weights

    f = m.fused
    if f is None:
        raise RuntimeError("the triton kernel needs a BatchMapping built with kernel='triton' (its device tables)")
    if not usable(x.device):
        raise RuntimeError(f"the triton kernel runs on CUDA or (interpreted) CPU tensors with triton installed; "
                           f"got {x.device} tensors{'' if triton else ' and no triton'}")
    shrink, expand = _KERNELS[x.device.type]
    upcast = x.device.type == "cpu"
    _, t, d_in = x.shape
    d_out = y.shape[2]
    a, b = layer.lora_a, layer.lora_b
    block_r = _pow2(a.shape[1], 16)
    ieee = x.dtype == torch.float32
    w = token_weights(x, layer, m).pair                                   # [P, 1 or T, 1] or None

    s = launch_shape(m, tokens=t, d_in=d_in)
    h = (torch.zeros if s["split"] > 1 else torch.empty)(f.pair_row.shape[0] * t, block_r, device=x.device,
                                                        dtype=torch.float32)
    ws = (w.stride(0), w.stride(1) if w.shape[1] > 1 else 0) if w is not None else (0, 0)
    shrink[(f.segments.shape[0], s["blocks"], s["split"])](
        x, a, w if w is not None else h, h, f.segments, f.pair_row, layer.rank_table,
        t, d_in, s["k_per_split"], *x.stride(), *a.stride(), *ws,
        HAS_W=w is not None, ATOMIC=s["split"] > 1, BLOCK_M=s["block_m"], BLOCK_R=block_r, BLOCK_K=s["block_k"],
        UPCAST=upcast, IEEE=ieee)
    expand[(f.rows.shape[0], triton.cdiv(t, s["block_t"]), triton.cdiv(d_out, s["block_n"]))](
        h, b, y, f.rows, f.row_pairs, f.pair_slot, layer.rank_table,
        t, d_out, f.row_pairs.shape[1], *y.stride(), *b.stride(),
        BLOCK_T=s["block_t"], BLOCK_R=block_r, BLOCK_N=s["block_n"], UPCAST=upcast, IEEE=ieee)


def launch_shape(m, *, tokens: int, d_in: int) -> dict[str, int]:
    """Block sizes and grids of one forward of mapping `m` (untuned starting points), cached:
    a forward's Python is a dictionary lookup and two launches."""
    return _launch_shape(m.fused.segments.shape[0], m.fused.longest, tokens, d_in)


@functools.lru_cache(maxsize=1024)
def _launch_shape(groups: int, longest: int, tokens: int, d_in: int) -> dict[str, int]:
    """Shrink: BLOCK_M pair-tokens of one slot per program, d_in split over programs when the
    segments give fewer than ~128 blocks (a decode step); expand: one program per (row, token
    block, d_out block), a decode step filling one of tl.dot's minimum 16 tile rows."""
    def cdiv(a: int, b: int) -> int:
        return -(-a // b)

    block_m, block_k = (16 if longest * tokens <= 16 else 32 if longest * tokens <= 256 else 64), 64
    blocks = cdiv(longest * tokens, block_m)
    split = max(1, min(cdiv(d_in, 4 * block_k), 128 // max(groups * blocks, 1)))
    k_per_split = cdiv(cdiv(d_in, split), block_k) * block_k
    return {"block_m": block_m, "block_k": block_k, "blocks": blocks, "split": cdiv(d_in, k_per_split),
            "k_per_split": k_per_split, "block_t": min(64, _pow2(tokens, 16)), "block_n": 128 if tokens == 1 else 64}
