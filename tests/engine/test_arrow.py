"""Arrow routing in the engine: prototypes, the per-token reference, mixed batches, decoding, errors."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from composer.engine.batch import BatchContext, BatchMapping, BrickError, Route
from composer.engine.engine import Engine
from composer.engine.layers import KERNELS, BrickLinear
from composer.errors import ComposerError
from composer.library import LibraryError
from composer.engine import arrow
from composer.formats import PREFIX

# mixed ranks and alphas; "c" only touches the attention input projection, so elsewhere it is
# no candidate (and rows routed among a and c fall back to a alone there)
BRICKS = {"a": dict(r=2, alpha=4), "b": dict(r=8, alpha=3, use_rslora=True), "c": dict(r=4, alpha=16)}
ARROWS = [Route.arrow(["a", "b", "c"], k=2), Route.arrow(["c", "b"], k=1), Route.arrow(["b", "a", "c"], k=3,
                                                                                      temperature=0.5)]


def setup(kit, library, arch, **engine_kw):
    """(engine, unwrapped base copy) with bricks a, b, c; generations decode to token ids."""
    base = kit.make_base(arch)
    for i, (name, kw) in enumerate(BRICKS.items()):
        targets = ["q_proj", "c_attn"] if name == "c" else "all-linear"
        kit.save_brick(base, library, name, seed=10 + i, targets=targets, **kw)
    return Engine(copy.deepcopy(base), kit.id_tokenizer, library, max_new_tokens=8, **engine_kw), base


def dense_deltas(library, brick_id) -> dict[str, torch.Tensor]:
    """Module name -> s · B A `[d_out, d_in]`, straight from the peft files."""
    config = json.loads((library.path(brick_id) / "adapter_config.json").read_text())
    tensors = load_file(library.path(brick_id) / "adapter_model.safetensors")
    out = {}
    for key, a in tensors.items():
        if key.endswith("lora_A.weight"):
            r = a.shape[0]
            scale = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
            out[key[len(PREFIX):-len(".lora_A.weight")]] = scale * tensors[key.replace("lora_A", "lora_B")] @ a
    return out


def reference_logits(base, library, route: Route, ids, mask) -> torch.Tensor:
    """One row's logits with Arrow applied by forward hooks on the unwrapped base: prototypes from
    a full SVD of each dense ΔW, gates and sums by `arrow.reference`, token by token."""
    deltas = {b: dense_deltas(library, b) for b in route.bricks}
    hooks = []
    for name, module in base.named_modules():
        here = [deltas[b][name] for b in route.bricks if name in deltas[b]]
        if not here or not isinstance(module, (nn.Linear, Conv1D)):
            continue
        protos = torch.stack([torch.linalg.svd(d)[2][0] for d in here])

        def hook(_, inputs, out, here=here, protos=protos):
            return out + arrow.reference(inputs[0][0], protos, here, route.k, route.temperature)[None]
        hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            return base(input_ids=ids, attention_mask=mask).logits
    finally:
        for h in hooks:
            h.remove()


def close(got, want, mask):
    return (got[mask.bool()] - want[mask.bool()]).abs().max().item()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_prototypes_are_top_right_singular_vectors_computed_once(kit, library, arch, monkeypatch):
    engine, _ = setup(kit, library, arch)
    calls = []
    real = arrow.prototype
    monkeypatch.setattr(arrow, "prototype", lambda a, b: calls.append(1) or real(a, b))
    for b in BRICKS:
        engine.pin(b)
    slots = engine.slots.resident
    layers = engine.slots.layers
    assert len(calls) == sum(len(dense_deltas(library, b)) for b in BRICKS)  # one per brick module, at load
    for brick, slot in slots.items():
        deltas = dense_deltas(library, brick)
        for name, layer in layers.items():
            if name not in deltas:  # c: only the attention input projection
                assert not layer.present[slot] and not layer.protos[slot].any()
                continue
            v = torch.linalg.svd(deltas[name])[2][0]
            cos = torch.dot(layer.protos[slot], v) / (layer.protos[slot].norm() * v.norm())
            assert layer.present[slot] and cos.abs() > 0.999, (brick, name)
    ids, mask = kit.batch(kit.prompts[:3])
    engine.logits(ids, mask, ARROWS)
    engine.generate(kit.prompts[:3], ARROWS, max_new_tokens=3)
    assert len(calls) == sum(len(dense_deltas(library, b)) for b in BRICKS)  # none per forward


@pytest.mark.parametrize("arch, kernel", [("llama", "auto"), ("llama", "sgmv"), ("llama", "bgmv"),
                                          ("llama", "reference"), ("gpt2", "auto")])
def test_arrow_rows_match_the_per_token_reference(kit, library, arch, kernel):
    engine, base = setup(kit, library, arch, kernel=kernel)
    ids, mask = kit.batch(kit.prompts[:3])
    ours = engine.logits(ids, mask, ARROWS)
    plain = engine.logits(ids, mask, [None] * 3)
    for i, route in enumerate(ARROWS):
        want = reference_logits(base, library, route, ids[i:i + 1], mask[i:i + 1])
        assert close(ours[i:i + 1], want, mask[i:i + 1]) <= 1e-5, route
        assert close(ours[i:i + 1], plain[i:i + 1], mask[i:i + 1]) > 1e-2  # the bricks do act


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_single_candidate_is_the_static_brick(kit, library, arch):
    engine, _ = setup(kit, library, arch)
    ids, mask = kit.batch(kit.prompts[:4])
    routed = engine.logits(ids, mask, [Route.arrow(["b"]), Route.arrow(["a"], temperature=0.1), None,
                                       Route.arrow(["c"])])
    static = engine.logits(ids, mask, [{"b": 1.0}, {"a": 1.0}, None, Route.static({"c": 1.0})])
    assert close(routed, static, mask) <= 1e-5


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_mixed_batch_rows_equal_each_row_alone(kit, library, arch):
    engine, _ = setup(kit, library, arch)
    mixes = [ARROWS[0], None, {"a": 0.7, "b": 0.3}, ARROWS[1], {"c": 1.0}, ARROWS[2]]
    ids, mask = kit.batch()
    together = engine.logits(ids, mask, mixes)
    for i, mix in enumerate(mixes):
        alone = engine.logits(ids[i:i + 1], mask[i:i + 1], [mix])
        assert close(together[i:i + 1], alone, mask[i:i + 1]) <= 1e-5, mix


def test_greedy_decoding_routes_each_new_token(kit, library):
    """KV-cached generation equals a loop of full forwards (no cache), one token at a time: each
    decode step routes its new token as the full forward does."""
    engine, _ = setup(kit, library, "llama")
    mixes = [ARROWS[0], {"b": 1.0}, None, ARROWS[2]]
    prompts = kit.prompts[:4]
    got = engine.generate(prompts, mixes, max_new_tokens=6)
    ids, mask = kit.batch(prompts)
    pad, eos = kit.id_tokenizer.pad_token_id, kit.id_tokenizer.eos_token_id
    done = torch.zeros(len(prompts), dtype=torch.bool)
    new = []
    for _ in range(6):
        step = engine.logits(ids, mask, mixes)[:, -1].argmax(-1)
        step = torch.where(done, pad, step)
        new.append(step)
        done |= step == eos
        ids, mask = torch.cat([ids, step[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
        if done.all():
            break
    want = [" ".join(map(str, row.tolist())) for row in torch.stack(new, 1)]
    assert got == want
    assert got[0] != engine.generate(prompts[:1], [None], max_new_tokens=6)[0]


def layer_with_bricks(kind: str) -> tuple[BrickLinear, BatchContext]:
    """One served layer, slots 0-3 holding random bricks of ranks 2, 6, 3, 4."""
    torch.manual_seed(0)
    base = nn.Linear(12, 20) if kind == "linear" else Conv1D(20, 12)
    context = BatchContext()
    layer = BrickLinear(base, context, slots=5, max_rank=8)
    for slot, (r, scale) in enumerate([(2, 2.0), (6, 0.5), (3, 1.5), (4, 0.25)]):
        layer.set_slot(slot, torch.randn(r, 12), torch.randn(20, r), scale)
    return layer, context


@pytest.mark.parametrize("kind", ["linear", "conv1d"])
@pytest.mark.parametrize("tokens", [1, 5])
def test_kernels_agree_on_arrow_rows(kind, tokens):
    """Per-row k and temperature, static and base rows beside, and a candidate slot empty at
    this layer (slot 3 cleared: no candidate here, so k is capped at the others)."""
    layer, context = layer_with_bricks(kind)
    layer.clear_slot(3)
    rows = [Route.arrow([0, 1, 2], k=2).placed({i: i for i in range(4)}), [(1, 0.5), (2, 1.0)], [],
            Route("arrow", (3, 0), k=2, temperature=0.3), Route("arrow", (2, 3, 1, 0), k=3, temperature=2.0),
            Route("arrow", (3,), k=1), [(0, 1.0)]]
    x = torch.randn(len(rows), tokens, 12)
    outs = {}
    for kernel in KERNELS:
        with context.use(BatchMapping.build(rows, kernel=kernel)):
            outs[kernel] = layer(x)
    scale = outs["reference"].abs().max()  # outputs reach ~20: fp32 agreement is relative
    for kernel in ("sgmv", "bgmv"):
        assert (outs[kernel] - outs["reference"]).abs().max() <= 1e-6 * scale, kernel
    base = layer.base_layer(x)
    assert torch.equal(outs["bgmv"][2], base[2]) and torch.equal(outs["bgmv"][5], base[5])  # nothing present
    solo = BatchMapping.build([[(0, 1.0)]] * 2)  # row 3 is slot 0 alone here: gate 1
    with context.use(solo):
        assert (layer(x[3:4].repeat(2, 1, 1))[0] - outs["sgmv"][3]).abs().max() <= 1e-6 * scale


def test_route_defaults_and_params_as_data():
    assert [p.name for p in arrow.PARAMS] == ["k", "temperature"] and arrow.PAPER.endswith("2405.11157")
    assert Route.arrow(["a", "b"]) == Route("arrow", ("a", "b"), k=2, temperature=1.0)
    assert Route.arrow(list("abcdef")).k == 4
    assert Route.static({"a": 0.0, "b": 2}) == Route("static", ("b",), (2.0,))
    assert Route() == Route.static({}) and Route().bricks == ()
    assert Route.arrow(["a", "b"]).placed({"a": 3, "b": 0}).bricks == (3, 0)


@pytest.mark.parametrize("make, match", [
    (lambda: Route.arrow(["a", "b"], k=0), "k=0 is invalid"),
    (lambda: Route.arrow(["a", "b"], k=3), "k=3 but only 2 candidate bricks"),
    (lambda: Route.arrow(["a", "b"], k=1.5), "k=1.5 is invalid"),
    (lambda: Route.arrow(["a", "b"], k=True), "k=True is invalid"),
    (lambda: Route.arrow(["a", "b"], temperature=0), "temperature=0 is invalid"),
    (lambda: Route.arrow(["a", "b"], temperature=-1.0), "temperature=-1.0 is invalid"),
    (lambda: Route.arrow(["a", "b"], temperature=float("nan")), "temperature=nan is invalid"),
    (lambda: Route.arrow(["a", "b"], temperature=float("inf")), "temperature=inf is invalid"),
    (lambda: Route.arrow([]), "at least one candidate"),
    (lambda: Route.arrow(["a", "a"]), "names a brick twice"),
    (lambda: Route.arrow("abc"), "list of candidate bricks, not a str"),
    (lambda: Route("arrow", ("a",), (1.0,)), "takes no weights"),
    (lambda: Route("static", ("a",), (1.0,), k=2), "belong to arrow routes"),
    (lambda: Route("sparse", ("a",)), "unknown route mode"),
])
def test_bad_routes_are_refused_when_built(make, match):
    with pytest.raises(BrickError, match=match) as err:
        make()
    assert isinstance(err.value, ComposerError)


@pytest.mark.parametrize("route, match", [
    (Route.arrow(["a", "b", "c"], k=3), "arrow k=3 is above the engine's k_max=2"),
    (Route.arrow(["a", "nobody"], k=1), "unknown brick 'nobody'"),
    (Route.arrow(["a", 3], k=1), "brick ids are strings"),
    (Route.static({"a": 0.5, "b": 0.25, "c": 0.25}), "names 3 bricks; at most k_max=2"),
    (Route.arrow(["a", "b", "c"], k=1), "needs 3 bricks but only 2 slots"),
])
def test_bad_requests_raise_before_anything_is_loaded(kit, library, route, match):
    engine, _ = setup(kit, library, "llama", slots=2, k_max=2)
    good = [Route.arrow(["a", "b"], k=1), None]
    ids, mask = kit.batch(kit.prompts[:2])
    before = engine.logits(ids, mask, good)
    resident, loads = engine.slots.resident, engine.slots.stats.loads
    with pytest.raises((BrickError, LibraryError), match=match):
        engine.generate(kit.prompts[:3], [None, route, {"a": 1.0}])
    assert engine.slots.resident == resident and engine.slots.stats.loads == loads
    assert torch.equal(engine.logits(ids, mask, good), before)
