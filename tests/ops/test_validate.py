"""`validate_adapter`: real peft adapters of three architectures pass; each bad case is a
clear `ComposerError`; a pickle is never opened."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

from composer.errors import ComposerError
from composer.library import fingerprint
from composer.ops.validate import validate_adapter

torch.set_num_threads(1)
SIZE = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
ARCHS = {
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**SIZE)),
    "phi3": lambda: Phi3ForCausalLM(Phi3Config(**SIZE)),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=64)),
}
WEIGHTS = "adapter_model.safetensors"


def base(arch="llama", seed=0):
    torch.manual_seed(seed)
    return ARCHS[arch]().eval()


def adapter(model, folder, r=4, alpha=8, targets="all-linear", **kw):
    """A peft LoRA of `model` saved in `folder`; returns peft's ΔW per module."""
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=r, lora_alpha=alpha, target_modules=targets,
                                                                init_lora_weights=False, **kw))
    peft_model.save_pretrained(folder)
    deltas = {}
    for name, m in peft_model.named_modules():
        if hasattr(m, "lora_A") and "default" in m.lora_A:
            delta = m.get_delta_weight("default").detach()
            deltas[name.removeprefix("base_model.model.")] = delta.T if m.fan_in_fan_out else delta
    return deltas


@pytest.fixture(scope="module")
def llama():
    return base("llama")


@pytest.mark.parametrize("arch, fused", [("llama", "q_proj"), ("gpt2", "c_attn"), ("phi3", "qkv_proj")])
def test_real_peft_adapters_pass_and_keep_their_deltas(tmp_path, arch, fused):
    model = base(arch)
    want = adapter(model, tmp_path, use_rslora=arch == "phi3")
    got = validate_adapter(tmp_path, model)
    assert got.r == 4 and got.lora_alpha == 8 and got.warnings == [] and got.forced_from is None
    assert got.base_fingerprint == fingerprint(model)
    assert set(got.modules) == set(want) and any(n.endswith(fused) for n in got.modules)
    for name, delta in want.items():
        torch.testing.assert_close(got.modules[name].delta(), delta)


def test_missing_folder_config_and_incomplete_configs(tmp_path, llama):
    with pytest.raises(ComposerError, match="adapter folder not found"):
        validate_adapter(tmp_path / "nope", llama)
    with pytest.raises(ComposerError, match="has no adapter_config.json"):
        validate_adapter(tmp_path, llama)
    adapter(llama, tmp_path)
    path = tmp_path / "adapter_config.json"
    good = json.loads(path.read_text())
    for change, match in [({"r": 0}, "r must be a positive int"), ({"r": "4"}, "r must be a positive int"),
                          ({"lora_alpha": None}, "incomplete: it lacks lora_alpha"),
                          ({"target_modules": []}, "incomplete: it lacks target_modules"),
                          ({"peft_type": "IA3"}, "only 'LORA'"), ({"use_dora": True}, "does not support: use_dora")]:
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ComposerError, match=match):
            validate_adapter(tmp_path, llama)
    path.write_text("{not json")
    with pytest.raises(ComposerError, match="not valid JSON"):
        validate_adapter(tmp_path, llama)


class Payload:
    """Unpickling this creates the marker file: proof that a pickle was opened."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_only_adapter_is_refused_unopened(tmp_path, llama, monkeypatch):
    adapter(llama, tmp_path)
    (tmp_path / WEIGHTS).unlink()
    marker = tmp_path.parent / "UNPICKLED"
    (tmp_path / "adapter_model.bin").write_bytes(pickle.dumps(Payload(marker)))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ComposerError, match=r"pickle \(adapter_model.bin\).*can run arbitrary code"):
        validate_adapter(tmp_path, llama)
    adapter(llama, tmp_path / "both", targets=["q_proj"])  # safetensors beside the pickle: pickle ignored
    (tmp_path / "adapter_model.bin").rename(tmp_path / "both" / "adapter_model.bin")
    assert "adapter_model.bin (pickle, never opened)" in validate_adapter(tmp_path / "both", llama).warnings[0]
    assert not marker.exists()


def test_rank_above_max_is_refused(tmp_path, llama):
    adapter(llama, tmp_path, r=8)
    with pytest.raises(ComposerError, match="r=8 is above the maximum rank 4"):
        validate_adapter(tmp_path, llama, max_rank=4)
    assert validate_adapter(tmp_path, llama, max_rank=8).r == 8


def rewrite(folder, edit):
    tensors = load_file(folder / WEIGHTS)
    edit(tensors)
    save_file(tensors, str(folder / WEIGHTS))


def test_shapes_that_disagree_with_the_base_or_r(tmp_path, llama):
    adapter(llama, tmp_path, targets=["q_proj"])
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    rewrite(tmp_path, lambda t: t.update({key: torch.zeros(4, 16)}))
    with pytest.raises(ComposerError, match=r"shapes at 'model.layers.0.self_attn.q_proj' are A \(4, 16\)"):
        validate_adapter(tmp_path, llama)
    rewrite(tmp_path, lambda t: t.update({key: torch.zeros(2, 32)}))
    with pytest.raises(ComposerError, match="not both|LoRA needs A"):
        validate_adapter(tmp_path, llama)


def test_other_architecture_and_unnamed_or_foreign_tensors(tmp_path, llama):
    adapter(base("gpt2"), tmp_path / "gpt2")
    with pytest.raises(ComposerError, match="do not exist in the base model .*another architecture"):
        validate_adapter(tmp_path / "gpt2", llama)
    adapter(llama, tmp_path / "q", targets=["q_proj"])
    config = tmp_path / "q" / "adapter_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "target_modules": ["v_proj"]}))
    with pytest.raises(ComposerError, match="target_modules .* does not name, so peft would ignore them"):
        validate_adapter(tmp_path / "q", llama)
    adapter(llama, tmp_path / "bias", targets=["q_proj"])
    rewrite(tmp_path / "bias", lambda t: t.update({"base_model.model.model.layers.0.self_attn.q_proj.bias":
                                                   torch.zeros(32)}))
    with pytest.raises(ComposerError, match="not a LoRA A/B weight"):
        validate_adapter(tmp_path / "bias", llama)


def test_brick_json_base_is_checked_and_force_is_recorded(tmp_path, llama):
    adapter(llama, tmp_path)
    card = tmp_path / "brick.json"
    card.write_text(json.dumps({"base_fingerprint": "f" * 16, "base_architecture": "LlamaForCausalLM"}))
    with pytest.raises(ComposerError, match="made for another base .*Use force"):
        validate_adapter(tmp_path, llama)
    forced = validate_adapter(tmp_path, llama, force=True)
    assert forced.forced_from == "f" * 16 and "force" in forced.warnings[0]
    card.write_text(json.dumps({"base_fingerprint": fingerprint(llama), "base_architecture": "GPT2LMHeadModel"}))
    with pytest.raises(ComposerError, match="made for a GPT2LMHeadModel base"):
        validate_adapter(tmp_path, llama, force=True)


def test_tensors_are_cast_to_the_base_dtype(tmp_path, llama):
    adapter(llama, tmp_path, targets=["q_proj", "v_proj"])
    half = copy.deepcopy(llama).to(torch.bfloat16)
    got = validate_adapter(tmp_path, half, base_fingerprint="known")
    assert got.base_fingerprint == "known" and got.warnings == ["weights cast from float32 to bfloat16"]
    assert all(f.a.dtype == f.b.dtype == torch.bfloat16 for f in got.modules.values())
