"""Merge methods against peft's own `add_weighted_adapter`, DARE's statistics, and bricks.

Every deterministic method must give the same ΔW = s · B @ A as peft at every module; the
random ones (DARE) are checked for reproducibility and for keeping expectations.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, LibraryError, fingerprint
from composer.ops.merge import MERGE_METHODS, LoraFactors, merge_adapters, merge_bricks
from composer.ops.merge.linear import task_arithmetic

torch.set_num_threads(1)
PREFIX = "base_model.model."


def tiny_llama(seed: int = 0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=4, vocab_size=64)).eval()


def tiny_gpt2(seed: int = 0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=64)).eval()


def lora(r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), **kw):
    return LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False, **kw)


def randomize_b(model, seed):
    """peft's random B is tiny; make every delta clearly visible."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)


def factors_of(peft_model, adapter: str) -> dict[str, LoraFactors]:
    """Our view of one peft adapter: module name -> (A, B, scale)."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            out[name.removeprefix(PREFIX)] = LoraFactors(a=module.lora_A[adapter].weight.detach().clone(),
                                                        b=module.lora_B[adapter].weight.detach().clone(),
                                                        scale=module.scaling[adapter])
    return out


def peft_deltas(peft_model, adapter: str) -> dict[str, torch.Tensor]:
    """ΔW `[d_out, d_in]` per module as peft computes it (fan_in_fan_out undone)."""
    out = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            delta = module.get_delta_weight(adapter).detach()
            out[name.removeprefix(PREFIX)] = delta.T if module.fan_in_fan_out else delta
    return out


@pytest.fixture(scope="module")
def peft_model():
    """One tiny Llama with three equal-rank adapters (different alphas and targets) + one r=2."""
    model = get_peft_model(tiny_llama(), lora(alpha=8), adapter_name="a")
    model.add_adapter("b", lora(alpha=16))
    model.add_adapter("c", lora(alpha=4, targets=("q_proj", "v_proj", "down_proj")))
    model.add_adapter("d", lora(r=2, alpha=2, use_rslora=True))
    randomize_b(model, 7)
    return model


def assert_same_deltas(peft_model, name: str, merged) -> None:
    expected = peft_deltas(peft_model, name)
    assert set(merged.modules) == set(expected)
    for module, delta in expected.items():
        torch.testing.assert_close(merged.modules[module].delta(), delta, atol=1e-5, rtol=1e-4, msg=module)


CASES = [  # (method, adapters, weights, params)
    ("linear", "abc", [0.7, -0.4, 1.2], {}),
    ("cat", "abcd", [0.7, -0.4, 1.2, 0.5], {}),
    ("svd", "abcd", [0.7, -0.4, 1.2, 0.5], {}),
    ("svd", "ab", [1.0, 1.0], {"svd_rank": 3}),
    ("ties", "abc", [0.7, -0.4, 1.2], {"density": 0.5}),
    ("ties", "abc", [1.0, 0.5, -1.0], {"density": 0.3, "majority_sign_method": "frequency"}),
    ("magnitude_prune", "abc", [0.7, -0.4, 1.2], {"density": 0.4}),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_deterministic_methods_match_peft(peft_model, case):
    method, names, weights, params = CASES[case]
    new = f"m{case}"
    peft_model.add_weighted_adapter(list(names), weights, new, combination_type=method, **params)
    ours = merge_adapters([factors_of(peft_model, n) for n in names], weights, method, **params)
    assert_same_deltas(peft_model, new, ours)
    assert all(f.scale == 1.0 for f in ours.modules.values())


def test_single_adapter_is_linear_like_peft(peft_model):
    peft_model.add_weighted_adapter(["b"], [-0.6], "single", combination_type="ties", density=0.2)
    merged = merge_adapters([factors_of(peft_model, "b")], [-0.6], "ties", density=0.2)
    assert merged.method == "linear" and merged.params == {}
    assert_same_deltas(peft_model, "single", merged)


def test_dare_is_seeded_and_reduces_to_its_deterministic_twin(peft_model):
    adapters = [factors_of(peft_model, n) for n in "abc"]
    w = [0.7, -0.4, 1.2]
    for method in ("dare_linear", "dare_ties"):
        one = merge_adapters(adapters, w, method, density=0.5, seed=3)
        again = merge_adapters(adapters, w, method, density=0.5, seed=3)
        other = merge_adapters(adapters, w, method, density=0.5, seed=4)
        module = "model.layers.0.self_attn.q_proj"
        assert torch.equal(one.modules[module].a, again.modules[module].a)
        assert not torch.equal(one.modules[module].a, other.modules[module].a)
    # density 1 drops nothing: DARE is then exactly linear / ties
    for dare, twin, extra in (("dare_linear", "linear", {}), ("dare_ties", "ties", {"density": 1.0})):
        got = merge_adapters(adapters, w, dare, density=1.0)
        want = merge_adapters(adapters, w, twin, **extra)
        for m in want.modules:
            torch.testing.assert_close(got.modules[m].delta(), want.modules[m].delta())


def test_dare_drop_and_rescale_keeps_the_expectation():
    torch.manual_seed(0)
    t = torch.randn(1, 500)
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([task_arithmetic(t, torch.ones(1), sparsify="random", density=0.3, generator=gen)
                         for _ in range(1000)])
    kept = draws != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(draws[kept], (t.expand_as(draws) / 0.3)[kept])  # survivors scaled by 1/p
    assert ((draws.mean(0) - t[0]).norm() / t.norm()).item() < 0.08              # E[τ'] = τ


def test_ties_elects_signs_and_averages_agreeing_entries():
    stack = torch.tensor([[2.0, -1.0, 3.0], [1.0, 4.0, -1.0]])
    merged = task_arithmetic(stack, torch.ones(2), elect="total")
    # entry 0: both +, mean 1.5; entry 1: total +3 -> only the 4.0 agrees; entry 2: total +2 -> 3.0
    torch.testing.assert_close(merged, torch.tensor([1.5, 4.0, 3.0]))


def test_methods_declare_params_and_papers():
    assert set(MERGE_METHODS) == {"linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"}
    for name, m in MERGE_METHODS.items():
        assert m.name == name and m.paper.startswith("https://") and m.summary
    assert [p.name for p in MERGE_METHODS["dare_ties"].params] == ["density", "majority_sign_method", "seed"]
    assert MERGE_METHODS["ties"].resolve({"density": 1}) == {"density": 1.0, "majority_sign_method": "total"}
    # None means "not given": a front end may pass every option it has
    assert MERGE_METHODS["cat"].resolve({"density": None, "svd_rank": None}) == {}
    assert MERGE_METHODS["dare_linear"].resolve({"density": 0.5, "seed": None}) == {"density": 0.5, "seed": 0}


@pytest.mark.parametrize("method, params, match", [
    ("slerp", {}, "unknown merge method 'slerp'; choose one of: linear, cat, svd"),
    ("ties", {}, "needs density"),
    ("ties", {"density": 0}, "0 < density <= 1"),
    ("dare_linear", {"density": 1.5}, "0 < density <= 1"),
    ("ties", {"density": 0.5, "majority_sign_method": "vote"}, "'total' or 'frequency'"),
    ("svd", {"svd_rank": 0}, "positive int"),
    ("cat", {"density": 0.5}, "has no parameter density; its parameters: none"),
    ("linear", {"dens": 0.5}, "has no parameter dens"),
])
def test_bad_method_or_params_are_clear_errors(peft_model, method, params, match):
    with pytest.raises(ComposerError, match=match):
        merge_adapters([factors_of(peft_model, "a")], [1.0], method, **params)


def test_factorwise_methods_refuse_mixed_ranks_and_weights_must_fit(peft_model):
    a, d = factors_of(peft_model, "a"), factors_of(peft_model, "d")
    with pytest.raises(ComposerError, match="same LoRA rank.*use 'cat' or 'svd'"):
        merge_adapters([a, d], [1, 1], "linear")
    with pytest.raises(ComposerError, match="2 adapters but 1 weights"):
        merge_adapters([a, d], [1], "cat")
    with pytest.raises(ComposerError, match="at least one adapter"):
        merge_adapters([], [], "cat")
    with pytest.raises(ComposerError, match="finite numbers"):
        merge_adapters([a, a], [1.0, float("nan")], "cat")


# -- bricks ----------------------------------------------------------------------------------
def save_brick(library, base, brick_id, config, seed):
    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(base), config)
    randomize_b(model, seed)
    model.save_pretrained(library.path(brick_id))
    library.write_card(BrickCard(id=brick_id, title=brick_id.upper(), description=f"does {brick_id}",
                                 examples=[f"{brick_id} this"], base_fingerprint=fingerprint(base)))
    return peft_deltas(model, "default")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_merge_bricks_writes_a_peft_loadable_brick(tmp_path, arch):
    base = tiny_llama() if arch == "llama" else tiny_gpt2()
    library = BrickLibrary(tmp_path)
    all_linear = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    few = ["q_proj", "v_proj"] if arch == "llama" else ["c_attn"]
    some = LoraConfig(r=2, lora_alpha=4, target_modules=few, init_lora_weights=False, use_rslora=True)
    da = save_brick(library, base, "a", all_linear, 1)
    db = save_brick(library, base, "b", some, 2)

    card = merge_bricks(library, [("a", 0.6), ("b", -1.5)], "ab", "cat")
    assert card.source["merge"] == {"method": "cat", "params": {},
                                    "sources": [{"id": "a", "version": 1, "weight": 0.6},
                                                {"id": "b", "version": 1, "weight": -1.5}]}
    assert card.title == "A + B" and card.examples == ["a this", "b this"] and library.card("ab") == card
    config = json.loads((library.path("ab") / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 4 and set(config["rank_pattern"].values()) == {6}
    keys = load_file(library.path("ab") / "adapter_model.safetensors")
    assert all(k.startswith(PREFIX) and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys)

    loaded = PeftModel.from_pretrained(copy.deepcopy(base), library.path("ab"))
    got = peft_deltas(loaded, "default")
    for module, delta in da.items():  # cat is exact: Σ w_i ΔW_i
        want = 0.6 * delta - 1.5 * db.get(module, torch.zeros_like(delta))
        torch.testing.assert_close(got[module], want, atol=1e-5, rtol=1e-4)
    assert set(got) == set(da)


def test_merge_bricks_refuses_foreign_bases_duplicates_and_taken_ids(tmp_path):
    base = tiny_llama()
    library = BrickLibrary(tmp_path)
    config = lora(r=2, alpha=2, targets=("q_proj",))
    save_brick(library, base, "a", config, 1)
    save_brick(library, tiny_llama(seed=1), "other", config, 2)
    with pytest.raises(ComposerError, match="different base models"):
        merge_bricks(library, [("a", 1.0), ("other", 1.0)], "x", "linear")
    with pytest.raises(ComposerError, match="already exists"):
        merge_bricks(library, [("a", 1.0)], "other", "linear")
    with pytest.raises(ComposerError, match="listed twice"):
        merge_bricks(library, [("a", 1.0), ("a", 2.0)], "x", "linear")
    with pytest.raises(LibraryError, match="unknown brick 'ghost'"):
        merge_bricks(library, [("a", 1.0), ("ghost", 1.0)], "x", "linear")
    with pytest.raises(ComposerError, match="unknown merge method"):
        merge_bricks(library, [("a", 1.0)], "x", "avg")
    assert library.ids() == ["a", "other"] and not list(tmp_path.glob(".x*"))
