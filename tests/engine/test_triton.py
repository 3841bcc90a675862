"""The fused Triton kernels equal the reference kernel: random mixes, Arrow rows, split-K,
fp32 and bf16, and a whole served model. On CUDA tensors when there is a GPU, otherwise in
Triton's interpreter on CPU tensors (so CI checks the kernels' logic); skipped without triton."""

from __future__ import annotations

import copy
import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("triton")

from composer.engine import triton_kernels  # noqa: E402
from composer.engine.batch import BatchContext, BatchMapping, Route  # noqa: E402
from composer.engine.engine import Engine  # noqa: E402
from composer.engine.layers import KERNELS, BrickLinear  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # cpu: the interpreter


def served_layer(d_in: int, d_out: int, ranks: list[int], *, max_rank: int, dtype=torch.float32, seed: int = 0):
    """A layer whose slot i holds a random brick of rank ranks[i] (0 = empty at this layer)."""
    torch.manual_seed(seed)
    context = BatchContext()
    layer = BrickLinear(nn.Linear(d_in, d_out), context, slots=len(ranks) + 1, max_rank=max_rank)
    for slot, r in enumerate(ranks):
        if r:
            layer.set_slot(slot, torch.randn(r, d_in) / d_in ** 0.5, torch.randn(d_out, r), 0.5 + slot / 4)
    return layer.to(device=DEVICE, dtype=dtype), context


def random_rows(n: int, slots: int, k: int, seed: int) -> list[list[tuple[int, float]]]:
    """n rows of 0..k distinct slots each, weights 1.0 or random in (0, 2]."""
    rng = random.Random(seed)
    return [[(s, rng.choice([1.0, round(rng.uniform(0.05, 2.0), 3)]))
             for s in rng.sample(range(slots), rng.randint(0, k))] for _ in range(n)]


def run(layer, context, x, rows, kernel: str) -> torch.Tensor:
    with context.use(BatchMapping.build(rows, device=DEVICE, dtype=x.dtype, kernel=kernel)), torch.no_grad():
        return layer(x)


@pytest.mark.parametrize("tokens", [1, 7, 19])
def test_random_mixes_fp32(tokens):
    """Mixtures of up to 3 bricks, ranks 1..20 in a rank-20 buffer (and an empty slot), rows
    without bricks; sizes that are no multiple of any block."""
    layer, context = served_layer(40, 72, [3, 20, 0, 9, 1, 16], max_rank=20)
    for seed in range(2):
        rows = random_rows(11, 6, 3, seed=seed + 10 * tokens)
        x = torch.randn(len(rows), tokens, 40, device=DEVICE)
        want = run(layer, context, x, rows, "reference")
        got = run(layer, context, x, rows, "triton")
        assert (got - want).abs().max() <= 1e-5 * want.abs().max(), rows
        with torch.no_grad():
            base = layer.base_layer(x)
        for i, row in enumerate(rows):
            if not row:  # rows without bricks are never written: the base, bit for bit
                assert torch.equal(got[i], base[i])


@pytest.mark.parametrize("tokens", [1, 9])
def test_random_mixes_bf16(tokens):
    """bf16: the delta (output - base) against the fp32 maths of the same bf16 weights is
    within one bf16 ulp of the output; on a GPU (round to nearest even) no worse than the torch
    kernel's. (Triton's interpreter truncates fp32 -> bf16, hence one ulp, not half.)"""
    layer, context = served_layer(48, 64, [4, 16, 8, 2], max_rank=16, dtype=torch.bfloat16)
    rows = random_rows(9, 4, 2, seed=tokens)
    x = torch.randn(len(rows), tokens, 48, device=DEVICE, dtype=torch.bfloat16)
    layer32 = copy.deepcopy(layer).float()  # with its own copy of the context
    with torch.no_grad():
        base, base32 = layer.base_layer(x).float(), layer32.base_layer(x.float())
    exact = run(layer32, layer32.context, x.float(), rows, "reference") - base32
    err = {k: (run(layer, context, x, rows, k).float() - base - exact).abs().max() for k in ("triton", "bgmv")}
    top = (base + exact).abs().max()
    assert err["triton"] <= top / 128, err
    if DEVICE.type == "cuda":
        assert err["triton"] <= 1.25 * err["bgmv"] + 1e-3, err


def test_arrow_rows_and_static_rows_share_the_launch():
    """Arrow rows (per-token gates as weights, per-row k and temperature, a candidate empty at
    this layer) beside static mixtures and base rows."""
    layer, context = served_layer(32, 24, [2, 6, 3, 0, 5], max_rank=8)
    rows = [Route("arrow", (0, 1, 2), k=2, temperature=1.0), [(1, 0.5), (2, 1.0)], [],
            Route("arrow", (3, 0), k=2, temperature=0.3), Route("arrow", (2, 3, 1, 0, 4), k=3, temperature=2.0),
            [(4, 1.5)]]
    x = torch.randn(len(rows), 6, 32, device=DEVICE)
    want = run(layer, context, x, rows, "reference")
    assert (run(layer, context, x, rows, "triton") - want).abs().max() <= 1e-5 * want.abs().max()


def test_split_k_decode():
    """A wide input with few tokens per slot splits d_in over programs (fp32 atomics into h)."""
    layer, context = served_layer(300, 20, [8, 5], max_rank=8)
    rows = [[(0, 1.0)], [(1, 0.5), (0, 2.0)], [(1, 1.0)]]
    m = BatchMapping.build(rows, device=DEVICE, kernel="triton")
    assert triton_kernels.launch_shape(m, tokens=1, d_in=300)["split"] > 1
    x = torch.randn(3, 1, 300, device=DEVICE)
    want = run(layer, context, x, rows, "reference")
    assert (run(layer, context, x, rows, "triton") - want).abs().max() <= 1e-5 * want.abs().max()


def test_tables_are_built_once_per_mapping():
    m = BatchMapping.build([[(3, 1.0)], [(1, 0.5), (3, 0.0)], [], [(1, 1.0), (0, 2.0)]], kernel="triton")
    f = m.fused
    assert f.segments.tolist() == [[0, 0, 1], [1, 1, 3], [3, 3, 4]] and f.longest == 2  # (slot, start, stop)
    assert f.pair_slot.tolist() == [0, 1, 1, 3] and f.pair_row.tolist() == [3, 1, 3, 0]
    assert f.rows.tolist() == [0, 1, 3] and f.row_pairs.tolist() == [[3, -1], [1, -1], [0, 2]]
    assert f.segments.dtype == torch.int32 and m.kernel_for(1) == m.kernel_for(9) == "triton"
    assert BatchMapping.build([[(0, 1.0)]]).fused is None  # torch kernels: no tables


def test_auto_picks_triton_on_cuda_only(monkeypatch):
    cpu = BatchMapping.build([[(0, 1.0)], [(1, 1.0)]], device="cpu")
    assert cpu.kernel == "auto" and cpu.kernel_for(1) == "bgmv" and "triton" in KERNELS
    if torch.cuda.is_available():
        assert BatchMapping.build([[(0, 1.0)]], device="cuda").kernel_for(5) == "triton"
        assert BatchMapping.build([[(0, 1.0)]], device="cuda", kernel="torch").kernel_for(1) == "bgmv"
    with pytest.raises(ValueError, match="needs the triton package and a CUDA device"):
        BatchMapping.build([[(0, 1.0)]], device="meta", kernel="triton")
    monkeypatch.setattr(triton_kernels, "triton", None)  # as without the package: a clear error
    with pytest.raises(ValueError, match="kernel 'triton' needs the triton package"):
        BatchMapping.build([[(0, 1.0)]], kernel="triton")


def test_engine_logits_equal_the_torch_kernels(kit, library):
    """A served model (2 layers, 7 modules each): static mixtures, an Arrow row, a base row."""
    base = kit.make_base("llama")
    for i, (name, r) in enumerate((("a", 2), ("b", 8), ("c", 4))):
        kit.save_brick(base, library, name, r=r, alpha=2 * r, seed=10 + i)
    engines = {k: Engine(copy.deepcopy(base).to(DEVICE), kit.id_tokenizer, library, slots=3, k_max=2, kernel=k)
               for k in ("bgmv", "triton")}
    ids, mask = kit.batch(kit.prompts[:4])
    mixes = [{"a": 1.0}, {"b": 0.5, "c": 1.5}, None, Route.arrow(["a", "b", "c"], k=2)]
    got = {k: e.logits(ids.to(DEVICE), mask.to(DEVICE), mixes) for k, e in engines.items()}
    live = mask.bool().to(DEVICE)
    assert (got["triton"] - got["bgmv"])[live].abs().max() <= 1e-4


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_kernels_compile_for_hopper(dtype):
    """The compiled path, without a GPU: both kernels lower through Triton to an sm_90 cubin
    (ptxas included), the split-K atomics too; bf16 products use the tensor cores (mma)."""
    from triton import compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    shrink, expand = triton_kernels._KERNELS["cuda"]
    pointers = {"x_ptr": dtype, "a_ptr": dtype, "w_ptr": dtype, "b_ptr": dtype, "y_ptr": dtype, "h_ptr": "fp32"}
    ieee = dtype == "fp32"
    for kernel, constants in ((shrink, dict(HAS_W=True, ATOMIC=True, BLOCK_M=16, BLOCK_R=16, BLOCK_K=64)),
                              (expand, dict(BLOCK_T=16, BLOCK_R=32, BLOCK_N=128))):
        constants.update(UPCAST=False, IEEE=ieee)
        signature = {p.name: "constexpr" if p.name in constants else
                     f"*{pointers.get(p.name, 'i32')}" if p.name.endswith("_ptr") else "i32" for p in kernel.params}
        ptx = compile(ASTSource(kernel, signature, constants), target=GPUTarget("cuda", 90, 32)).asm["ptx"]
        assert ("mma" in ptx) == (dtype == "bf16")


@pytest.mark.slow
def test_benchmark_cuda_path_dry_run(tmp_path, monkeypatch):
    """`benchmarks/mixed_batch.py --dry-run`: the CUDA run's code (contenders, torch vs Triton,
    generation, per-layer kernels, targets, JSON + PNG) on CPU tensors at a tiny shape, ours
    and peft checked equal before timing. Its timings mean nothing."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "mixed_batch.py"
    spec = importlib.util.spec_from_file_location("mixed_batch", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "mixed_batch", bench)  # its dataclass resolves the module by name
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", ["mixed_batch.py", "--dry-run", "--out", str(tmp_path)])
    bench.main()
    result = json.loads((tmp_path / "mixed_batch_dry_run.json").read_text())
    assert (tmp_path / "mixed_batch_dry_run.png").stat().st_size > 0
    assert result["env"]["dry_run"] and result["env"]["setup"]["kernel"] == "triton"
    for point in result["sweep"]:
        assert point["agrees_with_peft"] and set(point["decode_ms"]) == {"base", "ours", "ours_torch", "peft"}
    assert result["generation"]["identical_tokens"] and result["generation"]["identical_tokens_torch_kernels"]
    assert {"sgmv_us", "bgmv_us", "triton_us"} <= set(result["kernels_layer_prefill"][0])
    assert [t["name"].split(",")[0] for t in result["targets"]][:3] == [
        "decode T(ours)/T(base)", "decode T(ours)/T(base)", "prefill T(ours)/T(base)"]
