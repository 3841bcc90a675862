"""Engine against peft on five architectures: logits (fp32, 1e-5) and greedy tokens."""

from __future__ import annotations

import copy
import math
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from composer.engine.batch import BrickError
from composer.engine.engine import Engine
from composer.generation import generate
from composer.library import LibraryError
from composer.formats import PREFIX

ARCHS = ["llama", "qwen2", "mistral", "phi3", "gpt2"]
# mixed ranks, alphas and targets in one batch
BRICKS = {"a": dict(r=2, alpha=4), "b": dict(r=8, alpha=3, use_rslora=True), "c": dict(r=4, alpha=16)}
ROWS = ["a", "b", None, "c", "a", "b"]


def setup(kit, library, arch, **engine_kw):
    """(engine, peft model holding bricks a, b, c, base copy); generations decode to token ids."""
    from peft import PeftModel

    base = kit.make_base(arch)
    for i, (name, kw) in enumerate(BRICKS.items()):
        targets = ["q_proj", "c_attn", "qkv_proj"] if name == "c" else "all-linear"
        kit.save_brick(base, library, name, seed=10 + i, targets=targets, **kw)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(base), library.path("a"), adapter_name="a").eval()
    for name in ("b", "c"):
        peft_model.load_adapter(library.path(name), adapter_name=name)
    engine = Engine(copy.deepcopy(base), kit.id_tokenizer, library, max_new_tokens=10, **engine_kw)
    return engine, peft_model, base


def close(got, want, mask):
    live = mask.bool()
    return (got[live] - want[live]).abs().max().item()


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_match_peft(kit, library, arch):
    engine, peft_model, _ = setup(kit, library, arch)
    ids, mask = kit.batch()
    with torch.no_grad():
        peft_model.set_adapter("b")
        single = peft_model(input_ids=ids, attention_mask=mask).logits
        names = [n or "__base__" for n in ROWS]
        mixed = peft_model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
    assert close(engine.logits(ids, mask, [{"b": 1.0}] * len(ROWS)), single, mask) <= 1e-5
    ours = engine.logits(ids, mask, [{n: 1.0} if n else None for n in ROWS])
    assert close(ours, mixed, mask) <= 1e-5
    with peft_model.disable_adapter(), torch.no_grad():
        assert close(ours[2:3], peft_model(input_ids=ids[2:3], attention_mask=mask[2:3]).logits, mask[2:3]) <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_tokens_match_peft(kit, library, arch):
    engine, peft_model, _ = setup(kit, library, arch)
    names = [n or "__base__" for n in ROWS]
    want = generate(peft_model, kit.id_tokenizer, kit.prompts, max_new_tokens=10, adapter_names=names)
    got = engine.generate(kit.prompts, [{n: 1.0} if n else None for n in ROWS])
    assert got == want
    base = engine.generate(kit.prompts, [None] * len(ROWS))
    assert got[2] == base[2] and sum(g != b for g, b in zip(got, base)) >= 4  # bricks do change tokens


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_mixture_rows_equal_merged_weighted_sum(kit, library, arch):
    engine, _, base = setup(kit, library, arch)
    mixes = [{"a": 0.7, "b": 0.3}, {"a": 1.0}, {"c": 2.0, "b": 0.5, "a": 0.25}, None]
    ids, mask = kit.batch(kit.prompts[:4])
    ours = engine.logits(ids, mask, mixes)
    for i, mix in enumerate(mixes):
        ref = copy.deepcopy(base)
        with torch.no_grad():
            for brick, w in (mix or {}).items():
                tensors = load_file(library.path(brick) / "adapter_model.safetensors")
                alpha, r = BRICKS[brick]["alpha"], BRICKS[brick]["r"]
                scale = alpha / (math.sqrt(r) if BRICKS[brick].get("use_rslora") else r)
                for key in tensors:
                    if key.endswith("lora_A.weight"):
                        name = key[len(PREFIX):-len(".lora_A.weight")]
                        delta = w * scale * tensors[key.replace("lora_A", "lora_B")] @ tensors[key]
                        module = ref.get_submodule(name)
                        module.weight += delta if isinstance(module, torch.nn.Linear) else delta.t()
            want = ref(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1]).logits
        assert close(ours[i:i + 1], want, mask[i:i + 1]) <= 1e-5, mix


@pytest.mark.parametrize("kernel", ["sgmv", "bgmv", "reference"])
def test_other_kernels_and_waves_match_peft(kit, library, kernel):
    """Two slots for three distinct bricks: the batch runs in waves, rows in order."""
    engine, peft_model, _ = setup(kit, library, "qwen2", slots=2, k_max=2, kernel=kernel)
    names = [n or "__base__" for n in ROWS]
    ids, mask = kit.batch()
    with torch.no_grad():
        want = peft_model(input_ids=ids, attention_mask=mask, adapter_names=names).logits
    assert close(engine.logits(ids, mask, [{n: 1.0} if n else None for n in ROWS]), want, mask) <= 1e-5
    tokens = generate(peft_model, kit.id_tokenizer, kit.prompts, max_new_tokens=10, adapter_names=names)
    assert engine.generate(kit.prompts, [{n: 1.0} if n else None for n in ROWS]) == tokens
    assert engine.slots.stats.evictions > 0


def test_sampling_is_seeded(kit, library):
    engine, _, _ = setup(kit, library, "llama")
    mixes = [{"a": 1.0}, None, {"b": 0.5, "c": 0.5}]
    one = engine.generate(kit.prompts[:3], mixes, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    assert one == engine.generate(kit.prompts[:3], mixes, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    assert one != engine.generate(kit.prompts[:3], mixes, do_sample=True, temperature=1.5, top_p=0.9, seed=8)
    with pytest.raises(ValueError, match="temperature"):
        engine.generate(kit.prompts[:1], [None], do_sample=True, temperature=0)


def _break(library, kit, base, problem):
    """Write a brick named `bad` that has `problem`; returns the mix that uses it."""
    if problem == "rank":
        kit.save_brick(base, library, "bad", r=16)
    elif problem == "base":
        kit.save_brick(base, library, "bad", fp="0" * 16)
    else:
        kit.save_brick(base, library, "bad")
        path = library.path("bad") / "adapter_model.safetensors"
        tensors = load_file(path)
        key = next(k for k in tensors if k.endswith("q_proj.lora_A.weight"))
        if problem == "target":
            tensors[key.replace("q_proj", "nope_proj")] = tensors.pop(key)
            tensors[key.replace("q_proj", "nope_proj").replace("lora_A", "lora_B")] = \
                tensors.pop(key.replace("lora_A", "lora_B"))
        else:
            tensors[key] = torch.zeros(tensors[key].shape[0], 31)  # right rank, wrong input width
        save_file(tensors, path)
    return {"bad": 1.0}


@pytest.mark.parametrize("problem, mix, match", [
    ("rank", None, "rank 16 .* above the engine's max rank 8"),
    ("base", None, "was made for base 0000"),
    ("target", None, "targets modules the base does not have"),
    ("shape", None, "shapes at"),
    (None, {"a": 0.4, "b": 0.3, "c": 0.3}, "names 3 bricks; at most k_max=2"),
    (None, {"a": float("nan")}, "not a finite number"),
    (None, {"a": float("inf")}, "not a finite number"),
    (None, {"a": -0.5, "b": 1.0}, "not a finite number in \\[0, 10.0\\]"),
    (None, {"a": 0.0, "b": 0.0}, "all weights are zero"),
    (None, {"a": True}, "not a finite number"),
    (None, {"a": "1"}, "not a finite number"),
    (None, "a", "mix 1 is a str"),
    (None, {"nobody": 1.0}, "unknown brick 'nobody'"),
])
def test_bad_requests_raise_and_the_engine_keeps_serving(kit, library, problem, mix, match):
    engine, _, base = setup(kit, library, "llama", max_rank=8, k_max=2)
    good = [{"a": 1.0}, {"b": 0.5, "c": 0.5}, None]
    ids, mask = kit.batch(kit.prompts[:3])
    before = engine.logits(ids, mask, good)
    resident = engine.slots.resident
    if problem:
        mix = _break(library, kit, base, problem)
    with pytest.raises((BrickError, LibraryError), match=match) as err:
        engine.generate(kit.prompts[:3], [{"a": 1.0}, mix, None])
    assert isinstance(err.value, ValueError)
    assert engine.slots.resident == resident
    assert torch.equal(engine.logits(ids, mask, good), before)


def test_request_shape_errors(kit, library):
    engine, _, _ = setup(kit, library, "llama")
    with pytest.raises(BrickError, match="2 prompts but 1 mixes"):
        engine.generate(kit.prompts[:2], [None])
    with pytest.raises(BrickError, match="list of prompts"):
        engine.generate("hi", [None])
    with pytest.raises(ValueError, match="already served"):
        Engine(engine.model, kit.tokenizer, library)


def test_concurrent_requests_are_serialised(kit, library):
    engine, _, _ = setup(kit, library, "llama", slots=2, k_max=2)
    mixes = [[{"a": 1.0}, {"b": 1.0}], [{"c": 1.0}, None], [{"b": 1.0}, {"c": 1.0}]]
    want = [engine.generate(kit.prompts[:2], m) for m in mixes]
    assert len({tuple(w) for w in want}) == len(mixes)  # different mixes, different answers
    got = [None] * len(mixes)

    def worker(i):
        got[i] = engine.generate(kit.prompts[:2], mixes[i])
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(mixes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want
