"""`BrickLinear`: a served linear layer with resident LoRA slots, batched over rows.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) adds to a frozen linear layer a rank-r
update ΔW = s · B A with A `[r, d_in]`, B `[d_out, r]`, s = alpha / r (alpha / √r for rsLoRA,
https://arxiv.org/abs/2312.03732). Serving many bricks at once (S-LoRA / Punica,
https://arxiv.org/abs/2311.03285, https://arxiv.org/abs/2310.18547) keeps every resident
brick in one stacked buffer per layer, allocated once:

    lora_a  [slots, r_max, d_in]    A of the brick in each slot, rows past its rank zero
    lora_b  [slots, r_max, d_out]   s · Bᵀ: scale folded in, stored transposed so that both
                                    products below are row-major GEMMs (measured 15-40 % faster
                                    on CPU than reading B `[d_out, r]` through a strided view)

    protos  [slots, d_in]           the Arrow prototype of the brick in each slot (top right
                                    singular vector of its ΔW, `composer.engine.arrow.prototype`),
                                    computed once when the brick is copied in
    present [slots] bool            the slot holds a brick at this layer (rank > 0)

and, for batch row i with mix {slot s_j: weight w_j} (a `BatchMapping`),

    y_i = base(x_i) + Σ_j w_j · (x_i lora_a[s_j]ᵀ) lora_b[s_j]        x_i `[T, d_in]`

where for an Arrow row the w_j are per-token gates `[T]` over its candidate slots, computed
per forward from x_i and `protos` (`token_weights`), then fed to the same kernels.

Loading a brick is a copy into its slot (`set_slot`), evicting one is `clear_slot`; nothing is
allocated after construction. Wrapped modules are `nn.Linear` (fused ones such as Phi-3's
`qkv_proj` and `gate_up_proj` included, as in peft) and transformers' `Conv1D` (GPT-2, weight
stored `[d_in, d_out]`); peft saves lora_A `[r, d_in]` and lora_B `[d_out, r]` for both, so
one layout serves both. The base module itself runs the base product, so its numerics are
the model's own.

Four kernels compute the delta (one registry, `KERNELS`), picked per forward by
`BatchMapping.kernel_for` (measurements there):
* `bgmv` (decode, balanced prefill): the rows of every slot gathered into one padded
  `[G, L·T, d_in]` block, two `bmm`s over the G distinct slots, one `index_add_`: a constant
  number of ops whatever the number of bricks, each brick's A and B read once (in place when
  the slots are a range; x and y too when the batch is grouped by brick, `aligned`).
* `sgmv` (unbalanced prefill): per segment (one slot) one `[n·T, d_in] @ [d_in, r]` and one
  `[n·T, r] @ [r, d_out]` at that slot's exact rank, then one `index_add_`; no padding.
* `triton` (registered when the triton package is installed; chosen by "auto" on CUDA): one
  fused shrink and one fused expand launch (`composer.engine.triton_kernels`), same
  semantics; on CPU tensors it runs in Triton's interpreter, for tests only.
* `reference`: per row, per brick, the dense ΔW = lora_bᵀ lora_a, in plain Python loops (an
  Arrow row: `composer.engine.arrow.reference`, per token): the semantics the other two are
  tested against.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Collection

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from composer.engine.batch import BatchContext, BatchMapping
from composer.engine import arrow


def linear_dims(module: nn.Module) -> tuple[int, int]:
    """(d_in, d_out) of a module this file can serve; ValueError for any other module."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, Conv1D):
        return module.weight.shape[0], module.weight.shape[1]
    raise ValueError(f"{type(module).__name__} is not a servable linear module (nn.Linear or Conv1D)")


class BrickLinear(nn.Module):
    """A linear module plus `slots` resident LoRA bricks of rank <= `max_rank` (see module doc)."""

    def __init__(self, base_layer: nn.Module, context: BatchContext, *, slots: int, max_rank: int):
        super().__init__()
        self.in_features, self.out_features = linear_dims(base_layer)
        self.base_layer = base_layer
        self.context = context
        weight = base_layer.weight
        if not weight.is_floating_point():
            raise ValueError(f"{type(base_layer).__name__} holds {weight.dtype} (quantized) weights; "
                             "only floating-point linear modules are served")
        self.register_buffer("lora_a", weight.new_zeros(slots, max_rank, self.in_features), persistent=False)
        self.register_buffer("lora_b", weight.new_zeros(slots, max_rank, self.out_features), persistent=False)
        self.register_buffer("protos", weight.new_zeros(slots, self.in_features), persistent=False)
        self.register_buffer("present", torch.zeros(slots, dtype=torch.bool, device=weight.device),
                             persistent=False)
        self.ranks = [0] * slots  # rank of the brick in each slot for this layer, 0 = none
        # per slot (A[:r]ᵀ, s·Bᵀ[:r]) as views of the buffers, None = none: the one-brick path
        self.views: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * slots
        self.register_buffer("rank_table", torch.zeros(slots, dtype=torch.int32, device=weight.device),
                             persistent=False)  # `ranks` on the device, for the Triton kernels

    @property
    def weight(self) -> torch.Tensor:
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def set_slot(self, slot: int, a: torch.Tensor, b: torch.Tensor, scale: float) -> None:
        """Copy a brick in: `a` = lora_A `[r, d_in]`, `b` = lora_B `[d_out, r]`, `scale` = s; its
        Arrow prototype is computed here, once per load."""
        r = a.shape[0]
        if a.shape != (r, self.in_features) or b.shape != (self.out_features, r) or r > self.lora_a.shape[1]:
            raise ValueError(f"slot shapes A {tuple(a.shape)}, B {tuple(b.shape)} do not fit a "
                             f"{self.in_features}->{self.out_features} layer of max rank {self.lora_a.shape[1]}")
        with torch.no_grad():
            self.lora_a[slot, :r].copy_(a)
            self.lora_a[slot, r:].zero_()
            self.lora_b[slot, :r].copy_(b.t() * scale)
            self.lora_b[slot, r:].zero_()
            self.protos[slot].copy_(arrow.prototype(a, b))
            self.present[slot] = True
            self.rank_table[slot] = r
        self.ranks[slot] = r
        self.views[slot] = (self.lora_a[slot, :r].t(), self.lora_b[slot, :r])

    def clear_slot(self, slot: int) -> None:
        with torch.no_grad():
            self.lora_a[slot].zero_()
            self.lora_b[slot].zero_()
            self.protos[slot].zero_()
            self.present[slot] = False
            self.rank_table[slot] = 0
        self.ranks[slot] = 0
        self.views[slot] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        mapping = self.context.mapping
        if mapping is None or mapping.empty:
            return y
        rows = x.shape[0]
        if rows != mapping.rows:
            raise RuntimeError(f"a forward of {rows} rows met a batch mapping of {mapping.rows} rows; "
                               "build the mapping for the batch actually run")
        x3 = x.reshape(rows, -1, self.in_features)
        y3 = y.view(rows, -1, self.out_features)
        KERNELS[mapping.kernel_for(x3.shape[1])](x3, y3, self, mapping)
        return y

    def extra_repr(self) -> str:
        slots, max_rank, _ = self.lora_a.shape
        return f"in={self.in_features}, out={self.out_features}, slots={slots}, max_rank={max_rank}"


@dataclass(frozen=True)
class Weights:
    """One forward's pair weights: `pair` `[P, 1 or T, 1]` in pair order (SGMV), `pad`
    `[G·L, 1 or T, 1]` in block order (BGMV); None = all 1. T-long with Arrow rows."""

    pair: torch.Tensor | None
    pad: torch.Tensor | None


def token_weights(x: torch.Tensor, layer: BrickLinear, m: BatchMapping) -> Weights:
    """The mapping's fixed weights, or, with Arrow rows, their gates at this layer for `x`
    `[rows, T, d_in]` (`composer.engine.arrow.gates`) merged with the static weights through the
    mapping's weight table (see `composer.engine.batch`)."""
    if m.arrow is None:
        return Weights(m.pair_weights, m.pad_weights)
    a = m.arrow
    n, c = a.slots.shape
    slots = a.slots.flatten()
    protos = layer.protos.index_select(0, slots).view(n, c, -1)                  # [R, C, d_in]
    present = layer.present.index_select(0, slots).view(n, c) & a.valid          # [R, C]
    gates = arrow.gates(x.index_select(0, a.rows), protos, present, a.rank_ok, a.inv_temperature)
    table = torch.cat([gates.transpose(1, 2).reshape(n * c, -1), a.fixed.expand(-1, x.shape[1])])
    return Weights(table.index_select(0, a.pair_source).unsqueeze(-1),
                   table.index_select(0, a.pad_source).unsqueeze(-1))


# -- kernels: (x [rows, T, d_in], y [rows, T, d_out] updated in place, layer, mapping) --------
def sgmv(x: torch.Tensor, y: torch.Tensor, layer: BrickLinear, m: BatchMapping) -> None:
    """Segmented: rows gathered in slot order, one matmul pair per distinct slot."""
    w = token_weights(x, layer, m)
    xs = x.index_select(0, m.pair_rows)
    outs, kept = [], []
    for seg in m.segments:
        r = layer.ranks[seg.slot]
        if r == 0:  # this brick does not touch this layer
            continue
        h = xs[seg.start:seg.stop] @ layer.lora_a[seg.slot, :r].t()
        if w.pair is not None:
            h.mul_(w.pair[seg.start:seg.stop])
        outs.append(h @ layer.lora_b[seg.slot, :r])
        kept.append(seg)
    if not outs:
        return
    if len(kept) == len(m.segments):
        index = m.pair_rows
    else:
        index = torch.cat([m.pair_rows[s.start:s.stop] for s in kept])
    y.index_add_(0, index, torch.cat(outs) if len(outs) > 1 else outs[0])


def bgmv(x: torch.Tensor, y: torch.Tensor, layer: BrickLinear, m: BatchMapping) -> None:
    """Batched over slots: rows gathered into a `[G, L·T]` block (G distinct slots, L the
    longest segment, short ones padded with weight-0 entries), each slot's A and B read once
    (a strided view when the slots are one range, else one `index_select`), two `bmm`s.
    One brick at weight 1 on every row (`single`: a one-brick run, the common request) is two
    plain GEMMs on the flat rows instead: at decode on a small model the per-op overhead is
    the cost, and this path has the fewest ops."""
    if m.single is not None:
        view = layer.views[m.single]
        if view is not None:
            y.view(-1, layer.out_features).addmm_(x.reshape(-1, layer.in_features) @ view[0], view[1])
        return
    r = max(layer.ranks[s] for s in m.slot_ids)
    if r == 0:
        return
    g, t = len(m.slot_ids), x.shape[1]
    w = token_weights(x, layer, m)
    if m.contiguous:
        a = layer.lora_a[m.slot_ids[0]:m.slot_ids[0] + g, :r]            # [G, r, d_in], no copy
        b = layer.lora_b[m.slot_ids[0]:m.slot_ids[0] + g, :r]            # [G, r, d_out]
    else:
        a = layer.lora_a[:, :r].index_select(0, m.slot_index)
        b = layer.lora_b[:, :r].index_select(0, m.slot_index)
    if m.aligned:  # the block is the batch's first G·L rows: read x and write y in place
        n = g * m.pad_len
        h = torch.bmm(x[:n].reshape(g, m.pad_len * t, -1), a.transpose(1, 2))
        y[:n].view(g, m.pad_len * t, -1).baddbmm_(h, b)
        return
    xg = x.index_select(0, m.pad_rows).view(g, m.pad_len * t, -1)        # [G, L·T, d_in]
    h = torch.bmm(xg, a.transpose(1, 2))                                  # [G, L·T, r]
    if w.pad is not None:
        h.view(g * m.pad_len, t, r).mul_(w.pad)
    y.index_add_(0, m.pad_rows, torch.bmm(h, b).view(g * m.pad_len, t, -1))


def reference(x: torch.Tensor, y: torch.Tensor, layer: BrickLinear, m: BatchMapping) -> None:
    """Per row, per brick: y_i += w · x_i ΔWᵀ with the dense ΔW = lora_bᵀ lora_a `[d_out, d_in]`;
    an Arrow row, per token, over its candidates present at this layer."""
    def delta(slot: int) -> torch.Tensor:
        r = layer.ranks[slot]
        return layer.lora_b[slot, :r].t() @ layer.lora_a[slot, :r]

    for i in range(m.rows):
        for slot, weight in zip(m.row_slots[i].tolist(), m.row_weights[i].tolist()):
            if slot >= 0 and layer.ranks[slot]:
                y[i] += weight * (x[i] @ delta(slot).t())
    for i, route in m.arrow.routes if m.arrow is not None else ():
        here = [s for s in route.bricks if layer.ranks[s]]
        if here:
            y[i] += arrow.reference(x[i], layer.protos[here], [delta(s) for s in here], route.k, route.temperature)


def triton(x: torch.Tensor, y: torch.Tensor, layer: BrickLinear, m: BatchMapping) -> None:
    """Fused shrink + expand in two Triton launches (`composer.engine.triton_kernels`, which
    imports triton: loaded on first use, so the package runs without it)."""
    from composer.engine.triton_kernels import fused_lora

    fused_lora(x, y, layer, m)


KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor, BrickLinear, BatchMapping], None]] = {
    "sgmv": sgmv, "bgmv": bgmv, "reference": reference,
}
if importlib.util.find_spec("triton") is not None:  # found, not imported: that waits for first use
    KERNELS["triton"] = triton


def inject(model: nn.Module, context: BatchContext, *, slots: int, max_rank: int,
           targets: Collection[str] | None = None) -> dict[str, BrickLinear]:
    """Replace the servable linear modules of `model` in place by `BrickLinear`s reading `context`.

    Served: every `nn.Linear` / `Conv1D` except the output embedding (peft's "all-linear"),
    or, with `targets`, those whose name equals or ends with ".<target>". Returns
    {module name: layer}, names as in the unwrapped model (and in peft adapter keys).
    """
    if any(isinstance(m, BrickLinear) for m in model.modules()):
        raise ValueError("this model is already served by an engine; build one Engine per model")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)) or module is head:
            continue
        if targets is None or any(name == t or name.endswith("." + t) for t in targets):
            chosen.append((name, module))
    layers: dict[str, BrickLinear] = {}
    for name, module in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layers[name] = BrickLinear(module, context, slots=slots, max_rank=max_rank)
        setattr(parent, child, layers[name])
    if not layers:
        raise ValueError(f"no servable linear module in {type(model).__name__}"
                         + (f" matches targets {sorted(targets)}" if targets is not None else ""))
    return layers
