"""SlotManager: reading and validating peft files, LRU, pinning, waves, 1,000 bricks on 8 slots."""

from __future__ import annotations

import copy
import json
import math
import random
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from composer.engine.batch import BatchContext, BatchMapping, BrickError
from composer.engine.layers import inject
from composer.engine.slots import SlotManager, plan_waves, read_brick
from composer.library import fingerprint
from composer.formats import PREFIX

FP = "f" * 16


@pytest.fixture
def served(kit):
    """(model, context, layers, base copy) for a tiny Llama."""
    base = kit.make_base("llama")
    model = copy.deepcopy(base)
    context = BatchContext()
    return model, context, inject(model, context, slots=3, max_rank=8), base


def folder(library, kit, base, brick_id, **kw):
    kit.save_brick(base, library, brick_id, fp=FP, **kw)
    return library.path(brick_id)


def rewrite(path, edit):
    """Apply `edit` to a brick's tensor dict and save it back."""
    tensors = load_file(path / "adapter_model.safetensors")
    edit(tensors)
    save_file(tensors, path / "adapter_model.safetensors")


def test_read_brick_scales_and_patterns(served, library, kit):
    _, _, layers, base = served
    path = folder(library, kit, base, "pat", r=4, alpha=8, rank_pattern={"q_proj": 2},
                  alpha_pattern={"layers.1.self_attn.v_proj": 3})
    w = read_brick("pat", path, layers, 8)
    assert w.rank == 4 and len(w.modules) == 14
    assert w.modules["model.layers.0.self_attn.q_proj"].a.shape == (2, 32)
    assert w.modules["model.layers.0.self_attn.q_proj"].scale == 8 / 2
    assert w.modules["model.layers.1.self_attn.v_proj"].scale == 3 / 4
    assert w.modules["model.layers.0.mlp.down_proj"].scale == 8 / 4
    rs = read_brick("rs", folder(library, kit, base, "rs", r=4, alpha=8, use_rslora=True), layers, 8)
    assert rs.modules["model.layers.0.mlp.up_proj"].scale == 8 / math.sqrt(4)


@pytest.mark.parametrize("problem, match", [
    ("rank", "above the engine's max rank 8"),
    ("module", "targets modules the base does not have"),
    ("shape", "shapes at 'model.layers.0.self_attn.q_proj'"),
    ("nan", "NaN or inf"),
    ("half", "not both A and B"),
    ("dora", "use_dora"),
    ("config_rank", "adapter_config says r=5"),
    ("extra", "not a LoRA A/B weight"),
    ("missing", "has no adapter_model.safetensors"),
])
def test_bad_bricks_are_refused_before_any_slot_changes(served, library, kit, problem, match):
    _, _, layers, base = served
    manager = SlotManager(layers, base_fingerprint=FP)
    manager.register("good", folder(library, kit, base, "good"), FP)
    manager.pin("good")
    before = {n: (l.lora_a.clone(), l.lora_b.clone(), list(l.ranks)) for n, l in layers.items()}
    q = PREFIX + "model.layers.0.self_attn.q_proj"
    if problem == "rank":
        path = folder(library, kit, base, "bad", r=16)
    elif problem == "dora":
        path = folder(library, kit, base, "bad", use_dora=True)
    else:
        path = folder(library, kit, base, "bad")
        edits = {
            "module": lambda t: t.update({PREFIX + f"model.layers.0.self_attn.nope.lora_{x}.weight":
                                          t.pop(f"{q}.lora_{x}.weight") for x in "AB"}),
            "shape": lambda t: t.__setitem__(q + ".lora_A.weight", torch.zeros(4, 33)),
            "nan": lambda t: t[q + ".lora_B.weight"].__setitem__((0, 0), float("nan")),
            "half": lambda t: t.pop(q + ".lora_B.weight"),
            "extra": lambda t: t.__setitem__(PREFIX + "model.norm.weight", torch.ones(32)),
        }
        if problem in edits:
            rewrite(path, edits[problem])
        elif problem == "config_rank":
            config = json.loads((path / "adapter_config.json").read_text())
            (path / "adapter_config.json").write_text(json.dumps({**config, "r": 5}))
        elif problem == "missing":
            (path / "adapter_model.safetensors").unlink()
    manager.register("bad", path, FP)
    with pytest.raises(BrickError, match=match):
        with manager.hold(["bad"]):
            pass
    for n, layer in layers.items():
        assert torch.equal(layer.lora_a, before[n][0]) and torch.equal(layer.lora_b, before[n][1])
        assert layer.ranks == before[n][2]
    assert manager.resident == {"good": 0} and manager.stats.loads == 1


def test_other_base_is_refused(served):
    _, _, layers, _ = served
    manager = SlotManager(layers, base_fingerprint=FP)
    with pytest.raises(BrickError, match="made for base 0123"):
        manager.register("x", "/nowhere", "0123")
    assert issubclass(BrickError, ValueError)


def test_lru_pinning_and_hold(served, library, kit):
    _, _, layers, base = served
    manager = SlotManager(layers, base_fingerprint=FP, cache_size=0)
    for i, name in enumerate("abcde"):
        manager.register(name, folder(library, kit, base, name, seed=i), FP)
    with manager.hold(["a", "b", "c"]) as slots:
        assert slots == {"a": 0, "b": 1, "c": 2}
        with pytest.raises(BrickError, match="only 0 of 3 slots can be freed"):
            with manager.hold(["d"]):
                pass
    with manager.hold(["a"]):  # a becomes most recent: b is the LRU victim
        pass
    with manager.hold(["d"]) as slots:
        assert slots == {"d": 1}
    assert manager.resident == {"c": 2, "a": 0, "d": 1}
    manager.pin("c")
    with manager.hold(["e", "b"]) as slots:  # c is the LRU but pinned: a and d go
        assert set(slots.values()) == {0, 1}
    assert set(manager.resident) == {"c", "e", "b"} and manager.pinned == {"c"}
    assert manager.stats.evictions == 3 and manager.stats.disk_reads == manager.stats.loads == 6
    manager.unpin("c")
    with manager.hold(["a", "d"]):
        assert "c" not in manager.resident


def test_rewritten_brick_is_reloaded(served, library, kit):
    _, _, layers, base = served
    manager = SlotManager(layers, base_fingerprint=FP)
    path = folder(library, kit, base, "v", seed=1)
    manager.register("v", path, FP)
    with manager.hold(["v"]) as slots:
        first = layers["model.layers.0.mlp.up_proj"].lora_a[slots["v"]].clone()
    folder(library, kit, base, "v", seed=2, r=2)
    manager.register("v", path, FP)
    with manager.hold(["v"]) as slots:
        layer = layers["model.layers.0.mlp.up_proj"]
        assert layer.ranks[slots["v"]] == 2 and not torch.equal(layer.lora_a[slots["v"]], first)


def test_plan_waves():
    needs = [{"a"}, {"b"}, set(), {"a", "c"}, {"d"}, {"b", "d"}, {"e"}]
    waves = plan_waves(needs, slots=3)
    assert sorted(i for w in waves for i in w) == list(range(7))
    for wave in waves:
        assert len(set().union(*(needs[i] for i in wave))) <= 3
    assert len(waves) == 2
    for wave in waves:  # grouped by brick set, base-only rows last
        keys = [sorted(needs[i]) for i in wave]
        assert keys == sorted(keys, key=lambda k: (not k, k))
    assert all(len(w) <= 2 for w in plan_waves(needs, slots=3, max_rows=2))
    pinned = plan_waves(needs, slots=3, pinned={"z"})
    assert all(len(set().union(*(needs[i] for i in w)) | {"z"}) <= 3 for w in pinned)
    with pytest.raises(BrickError, match="row 0 needs 3 bricks but only 2 slots are free"):
        plan_waves([{"a", "b", "c"}], slots=3, pinned={"z"})


def test_threads_never_see_a_held_brick_evicted(served, library, kit):
    _, _, layers, base = served
    manager = SlotManager(layers, base_fingerprint=FP, cache_size=8)
    names = [f"t{i}" for i in range(6)]
    for i, name in enumerate(names):
        manager.register(name, folder(library, kit, base, name, seed=i), FP)
    expected = {n: manager.read(n).modules["model.layers.1.mlp.down_proj"].a for n in names}
    layer, errors, held = layers["model.layers.1.mlp.down_proj"], [], []

    def worker(seed):
        rng = random.Random(seed)
        for _ in range(40):
            pick = rng.sample(names, 1)
            try:
                with manager.hold(pick) as slots:
                    held.append(pick[0])
                    r = expected[pick[0]].shape[0]
                    if not torch.equal(layer.lora_a[slots[pick[0]], :r], expected[pick[0]]):
                        errors.append(f"{pick[0]} wrong in slot {slots[pick[0]]}")
            except BrickError:
                pass  # every slot held by the other threads: a clear refusal, not corruption
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(held) >= 80 and set(held) == set(names)  # the holds did happen, on every brick


def test_thousand_bricks_on_eight_slots(kit, tmp_path):
    """A random stream over 1,000 registered bricks: every row matches its single-brick merged run."""
    torch.manual_seed(0)
    base = kit.make_base("llama")
    model = copy.deepcopy(base)
    context = BatchContext()
    layers = inject(model, context, slots=8, max_rank=4)
    manager = SlotManager(layers, base_fingerprint=FP, cache_size=4)
    shapes = {n: (l.in_features, l.out_features) for n, l in layers.items()}
    config = json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                         "target_modules": sorted({n.rsplit(".", 1)[-1] for n in shapes})})
    for i in range(1000):
        path = tmp_path / f"b{i}"
        path.mkdir()
        g = torch.Generator().manual_seed(i)
        save_file({f"{PREFIX}{n}.lora_{ab}.weight": torch.randn(*((2, d_in) if ab == "A" else (d_out, 2)),
                                                                  generator=g) * 0.3
                   for n, (d_in, d_out) in shapes.items() for ab in "AB"}, path / "adapter_model.safetensors")
        (path / "adapter_config.json").write_text(config)
        manager.register(f"b{i}", path, FP)

    def merged_logits(ids, mask, mix):
        """The reference: a fresh copy of the base with Σ w·s·B A merged into its weights."""
        ref = copy.deepcopy(base)
        with torch.no_grad():
            for brick, w in mix:
                tensors = load_file(tmp_path / brick / "adapter_model.safetensors")
                for n in shapes:
                    a, b = tensors[f"{PREFIX}{n}.lora_A.weight"], tensors[f"{PREFIX}{n}.lora_B.weight"]
                    ref.get_submodule(n).weight += w * 2.0 * (b @ a)
            return ref(input_ids=ids, attention_mask=mask).logits

    rng = random.Random(0)
    hot = [f"b{i}" for i in rng.sample(range(1000), 6)]
    ids, mask = kit.batch(kit.prompts[:4])
    checked = 0
    for _ in range(25):
        rows = []
        for _ in range(rng.randint(1, 10)):
            roll = rng.random()
            brick = rng.choice(hot) if roll < 0.4 else f"b{rng.randrange(1000)}"
            if roll > 0.9:
                rows.append(())
            elif roll > 0.8:
                other = f"b{rng.randrange(1000)}"
                rows.append(((brick, 0.6), (other, 0.4)) if other != brick else ((brick, 1.0),))
            else:
                rows.append(((brick, 1.0),))
        for wave in plan_waves([[b for b, _ in r] for r in rows], slots=8):
            with manager.hold({b for i in wave for b, _ in rows[i]}) as slot_of:
                assert len(set(manager.resident.values())) == len(manager.resident) <= 8
                mapping = BatchMapping.build([[(slot_of[b], w) for b, w in rows[i]] for i in wave])
                pick = torch.tensor([i % 4 for i in wave])
                with context.use(mapping), torch.no_grad():
                    got = model(input_ids=ids[pick], attention_mask=mask[pick]).logits
            for j, i in enumerate(wave):
                want = merged_logits(ids[pick[j:j + 1]], mask[pick[j:j + 1]], rows[i])[0]
                live = mask[pick[j]].bool()
                assert (got[j][live] - want[live]).abs().max() <= 1e-4, rows[i]
                checked += 1
    assert checked > 100 and manager.stats.evictions > 50 and manager.stats.hits > 0
