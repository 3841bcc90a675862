"""`composer base import`: real tiny models in, a safetensors folder that `load_base` reloads out.

The GGUF tests write a real GGUF with the `gguf` package's writer, from a tiny random llama (q/k
permuted the way llama.cpp's converter does), so CI covers GGUF import without a download.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from composer.base_import import import_base
from composer.cli import app
from composer.errors import ComposerError
from composer.models import load_base
from tests.helpers import ARCHITECTURES, save_base, tiny_model

REAL_GGUF = Path(__file__).parent.parent / "examples/real-model/cache/SmolLM2-135M-Instruct.Q4_1.gguf"


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits.float()


def files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_hf_folder_imports_as_safetensors_that_load_base_reloads(tmp_path, arch):
    source = tiny_model(arch)
    save_base(source, tmp_path / "src")
    report = import_base(tmp_path / "src", tmp_path / "base", progress=False)

    model, tokenizer = load_base(tmp_path / "base", device="cpu")
    ids = tokenizer("hello there").input_ids
    assert (logits(model, ids) - logits(source, ids)).abs().max() < 0.05
    assert "model.safetensors" in files(tmp_path / "base") and not {".bin", ".pt", ".pth"} & {
        Path(name).suffix for name in files(tmp_path / "base")}
    assert json.loads((tmp_path / "base/config.json").read_text())["dtype"] == "bfloat16"
    assert report.dest == str(tmp_path / "base") and report.format == "hf" and report.dtype == "bfloat16"
    assert report.architecture == type(source).__name__ and report.layers == 2 and report.max_positions == 256
    assert report.parameters == sum(p.numel() for p in source.parameters()) and not report.has_chat_template
    assert report.bytes == sum(p.stat().st_size for p in (tmp_path / "base").iterdir())
    assert (tmp_path / "base/model.safetensors").stat().st_mode == (tmp_path / "base/config.json").stat().st_mode
    assert 0 <= report.max_logit_diff < 0.05 and report.seconds > 0
    assert report.summary().startswith(f"imported {report.architecture} (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "src"]  # no temp folder left behind


def test_a_pickle_checkpoint_comes_out_as_float32_safetensors(tmp_path):
    source = tiny_model("llama")
    save_base(source, tmp_path / "src")
    (tmp_path / "src/model.safetensors").unlink()
    torch.save(source.state_dict(), tmp_path / "src/pytorch_model.bin")
    (tmp_path / "base").mkdir()  # an empty folder is a fine destination

    report = import_base(tmp_path / "src", tmp_path / "base", dtype="float32", progress=False)
    assert "pytorch_model.bin" not in files(tmp_path / "base") and "model.safetensors" in files(tmp_path / "base")
    assert report.max_logit_diff == 0 and report.dtype == "float32"
    model, _ = load_base(tmp_path / "base", device="cpu")
    assert torch.equal(logits(model, [5, 6, 7]), logits(source, [5, 6, 7]))


# ---- GGUF, written here with gguf's own writer -------------------------------------------------

MERGES = ["Ġ t", "h e", "Ġt he"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LAYER_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def tokens() -> list[str]:
    """A byte-level BPE vocabulary, gpt2-style: the 256 byte symbols, 3 merges, 3 control tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelled = [symbol for _, symbol in sorted(bytes_to_unicode().items())]
    return spelled + [merge.replace(" ", "") for merge in MERGES] + SPECIAL


def permute(weight, heads):
    """llama.cpp stores q and k rows interleaved per rotary pair; transformers undoes this on load."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def write_tiny_llama_gguf(path: Path, tied: bool = False, arch: str = "llama"):
    """A float32 GGUF of a tiny random llama with a chat template; returns the HF model it holds."""
    from transformers import LlamaConfig, LlamaForCausalLM

    gguf = pytest.importorskip("gguf")
    vocab = tokens()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=vocab.index("<|im_start|>"), eos_token_id=vocab.index("<|im_end|>"),
                         pad_token_id=None, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("tiny llama")
    writer.add_context_length(256)
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(8)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types([1] * (len(vocab) - len(SPECIAL)) + [3] * len(SPECIAL))  # 1 normal, 3 control
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_chat_template(CHATML)

    weights = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    for i in range(2):
        for hf_name, gguf_name in LAYER_NAMES.items():
            weight = weights[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                weight = permute(weight, 4 if gguf_name == "attn_q" else 2)
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", np.ascontiguousarray(weight))
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    if not tied:
        writer.add_tensor("output.weight", weights["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_imports_with_the_logits_transformers_reads_from_it(tmp_path, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / "src").mkdir()
    original = write_tiny_llama_gguf(tmp_path / "src/tiny.gguf", tied=tied)
    read = AutoModelForCausalLM.from_pretrained(tmp_path / "src", gguf_file="tiny.gguf").eval()
    read_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "src", gguf_file="tiny.gguf")
    report = import_base(tmp_path / "src/tiny.gguf", tmp_path / "base", progress=False)

    model, tokenizer = load_base(tmp_path / "base", device="cpu")
    text = "the cat then <|im_end|> é"
    ids = tokenizer(text).input_ids
    assert ids == read_tokenizer(text).input_ids and tokenizer.convert_ids_to_tokens(ids[:2]) == ["t", "he"]
    assert torch.equal(logits(read, ids), logits(original, ids))  # the file holds the model we wrote
    assert (logits(model, ids) - logits(read, ids)).abs().max() < 0.05
    assert model.config.tie_word_embeddings is tied and not hasattr(model.config, "quantization_config")
    assert "model.safetensors" in files(tmp_path / "base") and not any(n.endswith(".gguf")
                                                                      for n in files(tmp_path / "base"))
    # the GGUF names no pad token: the folder saves eos as pad, as load_base would choose
    assert json.loads((tmp_path / "base/tokenizer_config.json").read_text())["pad_token"] == "<|im_end|>"
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False).endswith("<|im_start|>assistant\n")
    assert (report.format, report.architecture, report.layers, report.max_positions) == ("gguf",
                                                                                         "LlamaForCausalLM", 2, 256)
    assert report.has_chat_template and report.parameters == sum(p.numel() for p in original.parameters())


def test_a_folder_holding_one_gguf_imports_exactly_in_float32(tmp_path):
    (tmp_path / "src").mkdir()
    original = write_tiny_llama_gguf(tmp_path / "src/tiny.gguf")
    report = import_base(tmp_path / "src", tmp_path / "base", dtype="float32", progress=False)
    model, _ = load_base(tmp_path / "base", device="cpu")
    assert report.source == str(tmp_path / "src/tiny.gguf") and report.max_logit_diff == 0
    assert torch.equal(logits(model, [1, 2, 3]), logits(original, [1, 2, 3]))


# ---- user errors ------------------------------------------------------------------------------

def test_user_errors_name_the_problem(tmp_path):
    with pytest.raises(ComposerError, match="no model at .*missing: the path does not exist"):
        import_base(tmp_path / "missing", tmp_path / "base")

    save_base(tiny_model("llama"), tmp_path / "src")
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep.txt").write_text("mine")
    with pytest.raises(ComposerError, match="already exists and is not an empty folder"):
        import_base(tmp_path / "src", tmp_path / "full")
    assert files(tmp_path / "full") == {"keep.txt"}
    with pytest.raises(ComposerError, match="unknown dtype 'int8'"):
        import_base(tmp_path / "src", tmp_path / "base", dtype="int8")

    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / "two" / name).write_bytes(b"")
    with pytest.raises(ComposerError, match=r"several GGUF files \(a.gguf, b.gguf\)"):
        import_base(tmp_path / "two", tmp_path / "base")

    from transformers import ResNetConfig

    ResNetConfig().save_pretrained(tmp_path / "vision")
    with pytest.raises(ComposerError, match="is not a causal language model .*'resnet'"):
        import_base(tmp_path / "vision", tmp_path / "base")
    assert not (tmp_path / "base").exists()


def test_an_unsupported_gguf_architecture_is_one_clear_line(tmp_path):
    write_tiny_llama_gguf(tmp_path / "odd.gguf", arch="rwkv6")
    with pytest.raises(ComposerError, match="cannot import .*odd.gguf: GGUF model with architecture rwkv6 "
                                            "is not supported yet") as err:
        import_base(tmp_path / "odd.gguf", tmp_path / "base", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "base").exists()
    assert files(tmp_path) == {"odd.gguf"}


def test_without_the_gguf_package_the_error_says_what_to_install(tmp_path, monkeypatch):
    write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    monkeypatch.setitem(sys.modules, "gguf", None)  # as if the extra were not installed
    with pytest.raises(ComposerError, match=r"install the gguf extra: pip install 'brick-composer\[gguf\]'"):
        import_base(tmp_path / "tiny.gguf", tmp_path / "base")


def test_the_cli_imports_and_prints_one_line_errors(tmp_path):
    save_base(tiny_model("qwen2"), tmp_path / "src")
    runner = CliRunner()
    done = runner.invoke(app, ["base", "import", str(tmp_path / "src"), str(tmp_path / "base"), "--dtype", "float16"])
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("imported Qwen2ForCausalLM (") and f"to {tmp_path / 'base'} as float16" in done.stdout
    assert len(done.stdout.strip().splitlines()) == 1

    again = runner.invoke(app, ["base", "import", str(tmp_path / "src"), str(tmp_path / "base")])
    missing = runner.invoke(app, ["base", "import", str(tmp_path / "nothing.gguf"), str(tmp_path / "other")])
    for result, message in ((again, "already exists and is not an empty folder"),
                            (missing, "the path does not exist")):
        assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


@pytest.mark.slow
@pytest.mark.skipif(not REAL_GGUF.is_file(), reason=f"no {REAL_GGUF.name} in examples/real-model/cache")
def test_the_real_smollm2_gguf_imports_and_answers(tmp_path):
    report = import_base(REAL_GGUF, tmp_path / "base", progress=False)
    assert (report.architecture, report.layers, report.max_positions) == ("LlamaForCausalLM", 30, 8192)
    assert report.has_chat_template and 130e6 < report.parameters < 140e6 and report.dtype == "bfloat16"
    model, tokenizer = load_base(tmp_path / "base", device="cpu")
    assert tokenizer.eos_token == "<|im_end|>" and model.config.tie_word_embeddings
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Convert to uppercase: hello world"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "HELLO WORLD" in tokenizer.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
