"""BrickLinear and BatchMapping: the three kernels agree with each other and with the maths."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from composer.engine.batch import BatchContext, BatchMapping, Segment
from composer.engine.layers import KERNELS, BrickLinear, inject

D_IN, D_OUT, SLOTS, MAX_RANK = 12, 20, 5, 8


def make_layer(kind: str, seed: int = 0):
    """A served layer with slots 0-3 holding bricks of ranks 2, 8, 5, 3 (slot 4 empty)."""
    torch.manual_seed(seed)
    base = nn.Linear(D_IN, D_OUT) if kind == "linear" else Conv1D(D_OUT, D_IN)
    if kind == "conv1d":
        nn.init.normal_(base.bias)
    context = BatchContext()
    layer = BrickLinear(base, context, slots=SLOTS, max_rank=MAX_RANK)
    bricks = {}
    for slot, (r, scale) in enumerate([(2, 2.0), (8, 0.5), (5, 1.6), (3, 0.125)]):
        a, b = torch.randn(r, D_IN), torch.randn(D_OUT, r)
        layer.set_slot(slot, a, b, scale)
        bricks[slot] = (a, b, scale)
    return layer, context, bricks


def direct(layer, x, rows, bricks):
    """y_i = base(x_i) + Σ w · s · x_i Aᵀ Bᵀ straight from the raw A, B, s."""
    y = layer.base_layer(x).clone()
    for i, entries in enumerate(rows):
        for slot, w in entries:
            a, b, s = bricks[slot]
            y[i] += w * s * (x[i] @ a.t() @ b.t())
    return y


ROWS = [[(1, 1.0)], [], [(0, 0.25), (2, 0.75)], [(1, 1.0)], [(3, 2.0), (1, 0.5), (0, 1.0)], [(2, 1.0)], []]
GAPPED = [[(3, 1.0)], [(0, 0.5)], [], [(3, 1.0), (0, 1.0)], [(0, 1.0)]]  # slots 0 and 3: gathered, not a view
ALIGNED = [[(2, 1.0)], [(2, 1.0)], [(3, 1.0)], [(3, 1.0)], [], []]  # the engine's wave order: in place


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("kernel", ["sgmv", "bgmv", "reference"])
@pytest.mark.parametrize("tokens", [1, 5])
@pytest.mark.parametrize("rows", [ROWS, GAPPED, ALIGNED], ids=["range", "gapped", "aligned"])
def test_kernels_match_the_formula(kind, kernel, tokens, rows):
    layer, context, bricks = make_layer(kind)
    x = torch.randn(len(rows), tokens, D_IN)
    expected = direct(layer, x, rows, bricks)
    mapping = BatchMapping.build(rows, kernel=kernel)
    assert mapping.aligned == (rows is ALIGNED)
    with context.use(mapping):
        got = layer(x)
    assert (got - expected).abs().max() <= 1e-5
    empty = next(i for i, r in enumerate(rows) if not r)
    assert torch.equal(got[empty], layer.base_layer(x)[empty])  # a row without a brick is the base, bit for bit


def test_unit_weights_single_brick_rows():
    layer, context, bricks = make_layer("linear")
    rows = [[(s % 4, 1.0)] for s in range(9)]  # contiguous slots 0-3, segments of 3, 2, 2, 2
    x = torch.randn(9, 1, D_IN)
    outs = {}
    for kernel in ("sgmv", "bgmv", "reference"):
        mapping = BatchMapping.build(rows, kernel=kernel)
        assert mapping.pair_weights is None
        with context.use(mapping):
            outs[kernel] = layer(x)
    assert (outs["sgmv"] - direct(layer, x, rows, bricks)).abs().max() <= 1e-5
    assert (outs["sgmv"] - outs["bgmv"]).abs().max() <= 1e-5
    assert (outs["sgmv"] - outs["reference"]).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("tokens", [1, 6])
def test_one_brick_on_every_row_is_the_plain_gemm_path(kind, tokens):
    """`single` is set only when every row has the same one brick at weight 1; its path gives
    the formula, and a layer the brick does not touch (rank 0 here) stays the base."""
    layer, context, bricks = make_layer(kind)
    rows = [[(2, 1.0)]] * 3
    mapping = BatchMapping.build(rows)
    assert mapping.single == 2 and mapping.kernel_for(tokens) == "bgmv"
    x = torch.randn(3, tokens, D_IN)
    with context.use(mapping):
        got = layer(x)
    assert (got - direct(layer, x, rows, bricks)).abs().max() <= 1e-5
    layer.clear_slot(2)
    with context.use(mapping):
        assert torch.equal(layer(x), layer.base_layer(x))
    for other in ([[(2, 1.0)], [(2, 0.5)]], [[(2, 1.0)], []], [[(2, 1.0)], [(1, 1.0)]], [[(2, 1.0), (1, 1.0)]]):
        assert BatchMapping.build(other).single is None, other


def test_empty_slot_in_a_layer_is_skipped():
    """A brick that does not touch this layer (rank 0 here) adds nothing, in every kernel."""
    layer, context, bricks = make_layer("linear")
    layer.clear_slot(1)
    assert layer.ranks[1] == 0 and not layer.lora_a[1].any() and not layer.lora_b[1].any()
    rows = [[(1, 1.0)], [(0, 1.0), (1, 0.5)], [(2, 0.5)]]
    x = torch.randn(3, 4, D_IN)
    kept = {s: v for s, v in bricks.items() if s != 1}
    expected = direct(layer, x, [[e for e in r if e[0] != 1] for r in rows], kept)
    for kernel in KERNELS:
        with context.use(BatchMapping.build(rows, kernel=kernel)):
            assert (layer(x) - expected).abs().max() <= 1e-5, kernel


def test_set_slot_pads_and_replaces():
    layer, _, _ = make_layer("linear")
    a, b = torch.randn(2, D_IN), torch.randn(D_OUT, 2)
    layer.set_slot(1, a, b, 3.0)  # rank 2 over the rank-8 brick that sat there
    assert layer.ranks[1] == 2
    assert torch.equal(layer.lora_a[1, :2], a) and not layer.lora_a[1, 2:].any()
    assert torch.allclose(layer.lora_b[1, :2], 3.0 * b.t()) and not layer.lora_b[1, 2:].any()
    with pytest.raises(ValueError, match="do not fit"):
        layer.set_slot(0, torch.randn(2, D_IN + 1), b, 1.0)
    with pytest.raises(ValueError, match="do not fit"):
        layer.set_slot(0, torch.randn(MAX_RANK + 1, D_IN), torch.randn(D_OUT, MAX_RANK + 1), 1.0)


def test_no_mapping_and_empty_mapping_are_the_base():
    layer, context, _ = make_layer("conv1d")
    x = torch.randn(3, 2, D_IN)
    assert torch.equal(layer(x), layer.base_layer(x))
    with context.use(BatchMapping.build([[], [], []])):
        assert torch.equal(layer(x), layer.base_layer(x))
    with context.use(BatchMapping.build([[(0, 1.0)]] * 2)), pytest.raises(RuntimeError, match="2 rows"):
        layer(x)


def test_mapping_layout():
    m = BatchMapping.build([[(3, 1.0)], [(1, 0.5), (3, 0.0)], [], [(1, 1.0), (0, 2.0)]])
    assert m.rows == 4 and m.slot_ids == (0, 1, 3) and m.slot_index.tolist() == [0, 1, 3] and not m.contiguous
    assert m.segments == (Segment(0, 0, 1), Segment(1, 1, 3), Segment(3, 3, 4))
    assert m.pair_rows.tolist() == [3, 1, 3, 0]
    assert m.pair_weights.flatten().tolist() == [2.0, 0.5, 1.0, 1.0]
    assert m.pad_len == 2 and m.pad_rows.tolist() == [3, 0, 1, 3, 0, 0]  # padding reads row 0 ...
    assert m.pad_weights.flatten().tolist() == [2.0, 0.0, 0.5, 1.0, 1.0, 0.0]  # ... at weight 0
    assert m.row_slots.tolist() == [[3, -1], [1, -1], [-1, -1], [1, 0]]  # zero weight dropped
    assert m.kernel_for(1) == "bgmv" and m.kernel_for(7) == "sgmv"  # 6 padded entries for 4 pairs
    even = BatchMapping.build([[(s % 4 + 2, 1.0)] for s in range(8)])
    assert even.contiguous and even.pad_len == 2 and even.pad_weights is None and even.pair_weights is None
    assert not even.aligned and even.kernel_for(7) == "bgmv"  # balanced: no padding
    grouped = BatchMapping.build([[(s // 2, 1.0)] for s in range(8)] + [[]])
    assert grouped.aligned and grouped.pad_rows.tolist() == list(range(8))
    assert BatchMapping.build([[(0, 1.0)]], kernel="reference").kernel_for(1) == "reference"
    with pytest.raises(ValueError, match="twice"):
        BatchMapping.build([[(1, 1.0), (1, 0.5)]])
    with pytest.raises(ValueError, match="unknown kernel"):
        BatchMapping.build([], kernel="fast")


def test_inject_serves_linear_modules_but_the_head(kit):
    model = kit.make_base("gpt2")
    layers = inject(model, BatchContext(), slots=2, max_rank=4)
    assert set(layers) == {f"transformer.h.{i}.{m}" for i in range(2)
                           for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert isinstance(model.transformer.h[0].attn.c_attn, BrickLinear)
    assert not isinstance(model.lm_head, BrickLinear)
    with pytest.raises(ValueError, match="already served"):
        inject(model, BatchContext(), slots=2, max_rank=4)
    phi = inject(kit.make_base("phi3"), BatchContext(), slots=2, max_rank=4, targets=["qkv_proj", "gate_up_proj"])
    fused = ("mlp.gate_up_proj", "self_attn.qkv_proj")
    assert sorted(phi) == [f"model.layers.{i}.{m}" for i in range(2) for m in fused]
    with pytest.raises(ValueError, match="no servable"):
        inject(kit.make_base("llama"), BatchContext(), slots=2, max_rank=4, targets=["nope"])
