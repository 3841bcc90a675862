"""Mixed-brick batches: base alone vs our engine vs peft `adapter_names` vs sequential peft.

One process, one random-init Llama (hidden 1024, 4 layers, intermediate 2816, vocab 32000,
fp32, CPU), the same random LoRA bricks (all-linear, alpha = 2r) for every contender:

  base        the unwrapped model, no bricks
  ours        `composer.engine` (BrickLinear slots + one BatchMapping per batch)
  peft        PeftModel with every brick loaded, one forward with `adapter_names`
  sequential  PeftModel, `set_adapter` then a batch-1 forward, once per request

Sweep: distinct bricks n in {1, 4, 32} x rank r in {8, 16, 64}, batch 32 (32/n rows per
brick, grouped by brick as the engine orders its waves), for a prefill forward (32 x PREFILL
tokens) and one decode step (32 x 1 token over a PREFILL-token KV cache). Ours and peft
outputs are compared before any timing (and the bricks must visibly move the logits).
Timings are medians over interleaved rounds (every contender once per round, so drift from
other load on the machine hits all alike); ratios, not absolute times, are the result.

Also: generation tokens/s (32 requests, each its own brick, r=16) ours vs peft generate;
hot-load time of a default-size brick (r=16 on the hidden-192 default base shape) from disk
into a slot; a per-layer kernel comparison (sgmv vs bgmv) behind the engine's kernel choice;
and the floor: bytes of the distinct bricks' A and B read once, at the measured bandwidth of
a GEMV streaming 256 MB (plus the per-row FLOP ratio r·Σ(d_in+d_out) / Σ d_in·d_out).

    python benchmarks/mixed_batch.py [--quick] [--threads N]
Writes benchmarks/results/mixed_batch{,_quick}.json and .png and prints every ratio and the
targets met or missed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

from composer.engine.batch import BatchContext, BatchMapping  # noqa: E402
from composer.engine.engine import Engine  # noqa: E402
from composer.engine.generate import generate  # noqa: E402
from composer.engine.layers import KERNELS, BrickLinear  # noqa: E402
from composer.engine.slots import SlotManager  # noqa: E402
from composer.library import BrickCard, BrickLibrary, fingerprint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BATCH, PREFILL = 32, 12


class IdTokenizer(ByT5Tokenizer):
    """Byte prompts in, token ids out: the random model's tokens need no text form."""

    def batch_decode(self, sequences, **_):
        return [" ".join(map(str, s.tolist())) for s in sequences]


def llama(hidden: int, layers: int, intermediate: int, heads: int, vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, vocab_size=vocab,
                         pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return LlamaForCausalLM(config).eval()


def write_brick(library: BrickLibrary, base, brick_id: str, r: int, fp: str, seed: int) -> None:
    """A random peft-format LoRA (all-linear, alpha 2r) with its card: peft and ours read it."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, module in base.named_modules():
        if name.rsplit(".", 1)[-1] in TARGETS:
            d_in, d_out = module.in_features, module.out_features
            key = f"base_model.model.{name}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, d_in, generator=g) / d_in ** 0.5
            tensors[f"{key}.lora_B.weight"] = torch.randn(d_out, r, generator=g) * 0.02
    folder = library.path(brick_id)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 2 * r, "target_modules": TARGETS,
        "lora_dropout": 0.0, "bias": "none"}))
    library.write_card(BrickCard(id=brick_id, title=brick_id, description="benchmark brick", examples=["x"],
                                 base_fingerprint=fp))


def timed(contenders: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median ms per contender; each is (prepare, run), only `run` timed, interleaved rounds."""
    samples: dict[str, list[float]] = {k: [] for k in contenders}
    for i in range(warmup + rounds):
        for name, (prepare, run) in contenders.items():
            state = prepare()
            start = time.perf_counter()
            run(state)
            if i >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in samples.items()}


def bandwidth_gbs() -> dict[str, float]:
    """Memory bandwidth two ways: a 256 MB fp32 copy (read + write bytes / s) and a GEMV
    streaming a 256 MB matrix once (read bytes / s), the access pattern of decode-time LoRA
    weights; the floor uses the GEMV figure."""
    a, b = torch.randn(64 * 2 ** 20), torch.empty(64 * 2 ** 20)
    w, v = a.view(4096, 16384), torch.randn(1, 4096)
    copy_s, gemv_s = [], []
    for _ in range(5):
        start = time.perf_counter()
        b.copy_(a)
        copy_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        v @ w
        gemv_s.append(time.perf_counter() - start)
    return {"copy_gbs": 2 * a.nbytes / min(copy_s) / 1e9, "gemv_read_gbs": a.nbytes / min(gemv_s) / 1e9}


class Bench:
    def __init__(self, args, workdir: Path):
        self.args = args
        self.base = llama(1024, 4, 2816, 16, 32000)
        self.fp = fingerprint(self.base)
        self.library = BrickLibrary(workdir)
        self.ranks = [16] if args.quick else [8, 16, 64]
        self.distinct = [1, 32] if args.quick else [1, 4, 32]
        self.bricks = {r: [f"r{r}-{i}" for i in range(max(self.distinct))] for r in self.ranks}
        for r, ids in self.bricks.items():
            for i, brick_id in enumerate(ids):
                write_brick(self.library, self.base, brick_id, r, self.fp, seed=1000 * r + i)
        from peft import PeftModel

        all_ids = [b for ids in self.bricks.values() for b in ids]
        self.peft = PeftModel.from_pretrained(copy.deepcopy(self.base), self.library.path(all_ids[0]),
                                              adapter_name=all_ids[0]).eval()
        for brick_id in all_ids[1:]:
            self.peft.load_adapter(self.library.path(brick_id), adapter_name=brick_id)
        self.tokenizer = IdTokenizer(extra_ids=0)
        self.engine = Engine(copy.deepcopy(self.base), self.tokenizer, self.library, max_new_tokens=args.new_tokens,
                             slots=max(self.distinct), max_rank=max(self.ranks), k_max=1, cache_size=0)
        for brick_id in all_ids:  # the engine registers bricks itself in generate; sweeps hold them directly
            self.engine.slots.register(brick_id, self.library.path(brick_id), self.fp)
        torch.manual_seed(1)
        self.ids = torch.randint(3, 259, (BATCH, PREFILL))
        self.next = torch.randint(3, 259, (BATCH, 1))

    # -- contenders ------------------------------------------------------------------------
    @contextmanager
    def served(self, r: int, n: int) -> Iterator[dict]:
        """Forward callables over the batch of rank-r bricks with n distinct ("base", "ours",
        "peft") plus "names" and "slot_of"; inside the block the engine holds the bricks."""
        names = [self.bricks[r][i * n // BATCH] for i in range(BATCH)]
        engine, peft, base = self.engine, self.peft, self.base
        with engine.slots.hold(set(names)) as slot_of:
            mapping = BatchMapping.build([[(slot_of[b], 1.0)] for b in names])

            def ours(**kw):
                with engine.context.use(mapping):
                    return engine.model(**kw, logits_to_keep=1)
            yield {"names": names, "slot_of": slot_of, "ours": ours,
                   "peft": lambda **kw: peft(**kw, adapter_names=names, logits_to_keep=1),
                   "base": lambda **kw: base(**kw, logits_to_keep=1)}

    # -- one sweep point ------------------------------------------------------------------
    def point(self, r: int, n: int) -> dict:
        mask = torch.ones(BATCH, PREFILL, dtype=torch.long)
        mask1 = torch.ones(BATCH, PREFILL + 1, dtype=torch.long)
        with self.served(r, n) as fns:
            names, slot_of, ours, theirs, plain = fns["names"], fns["slot_of"], fns["ours"], fns["peft"], fns["base"]
            with torch.inference_mode():
                caches = {k: f(input_ids=self.ids, attention_mask=mask).past_key_values
                          for k, f in (("base", plain), ("ours", ours), ("peft", theirs))}
                pre = {k: f(input_ids=self.ids, attention_mask=mask).logits
                       for k, f in (("ours", ours), ("peft", theirs))}
                dec = {k: f(input_ids=self.next, attention_mask=mask1, past_key_values=copy.deepcopy(caches[k])).logits
                       for k, f in (("ours", ours), ("peft", theirs))}
                diff = max((pre["ours"] - pre["peft"]).abs().max().item(),
                           (dec["ours"] - dec["peft"]).abs().max().item())
                effect = (pre["ours"] - plain(input_ids=self.ids, attention_mask=mask).logits).abs().max().item()
                if diff > 1e-3 or effect < 100 * diff:
                    raise SystemExit(f"ours and peft disagree at r={r}, n={n}: max |diff| {diff:.2e}, "
                                     f"bricks move logits by {effect:.2e}")
                start = time.perf_counter()
                BatchMapping.build([[(slot_of[b], 1.0)] for b in names])
                build_ms = (time.perf_counter() - start) * 1e3
                prefill = timed({k: (lambda: None, lambda _, f=f: f(input_ids=self.ids, attention_mask=mask))
                                 for k, f in (("base", plain), ("ours", ours), ("peft", theirs))},
                                rounds=self.args.prefill_rounds, warmup=1)
                decode = timed({k: (lambda k=k: copy.deepcopy(caches[k]),
                                    lambda c, f=f: f(input_ids=self.next, attention_mask=mask1, past_key_values=c))
                                for k, f in (("base", plain), ("ours", ours), ("peft", theirs))},
                               rounds=self.args.decode_rounds, warmup=2)
        return {"rank": r, "distinct": n, "max_abs_diff_vs_peft": diff, "brick_effect_on_logits": effect,
                "mapping_build_ms": build_ms, "prefill_ms": prefill, "decode_ms": decode,
                **self.floor(r, n, decode["base"])}

    def floor(self, r: int, n: int, t_base_ms: float) -> dict:
        """Bytes of n distinct bricks' A and B (read once) and the time they add at GEMV bandwidth."""
        layers = [m for m in self.engine.model.modules() if isinstance(m, BrickLinear)]
        per_brick = sum(r * (m.in_features + m.out_features) for m in layers) * 4
        base_macs = sum(m.in_features * m.out_features for m in layers)
        floor_bytes = n * per_brick
        extra_ms = floor_bytes / self.bw["gemv_read_gbs"] / 1e6
        return {"floor_bytes": floor_bytes, "floor_ms": t_base_ms + extra_ms, "floor_ratio": 1 + extra_ms / t_base_ms,
                "flop_ratio_per_row": r * sum(m.in_features + m.out_features for m in layers) / base_macs}

    def sequential(self, r: int, n: int) -> dict:
        """32 requests one after another, `set_adapter` each: prefill and one decode step,
        timed in the same interleaved rounds as ours on the same batch (a paired ratio)."""
        names = [self.bricks[r][i * n // BATCH] for i in range(BATCH)]
        mask, mask1 = torch.ones(1, PREFILL, dtype=torch.long), torch.ones(1, PREFILL + 1, dtype=torch.long)
        full, full1 = mask.repeat(BATCH, 1), mask1.repeat(BATCH, 1)
        with torch.inference_mode(), self.served(r, n) as fns:
            ours_cache = fns["ours"](input_ids=self.ids, attention_mask=full).past_key_values
            caches = []
            for i, b in enumerate(names):
                self.peft.set_adapter(b)
                caches.append(self.peft(input_ids=self.ids[i:i + 1], attention_mask=mask).past_key_values)

            def prefill(_):
                for i, b in enumerate(names):
                    self.peft.set_adapter(b)
                    self.peft(input_ids=self.ids[i:i + 1], attention_mask=mask, logits_to_keep=1)

            def decode(state):
                for i, b in enumerate(names):
                    self.peft.set_adapter(b)
                    self.peft(input_ids=self.next[i:i + 1], attention_mask=mask1, past_key_values=state[i],
                              logits_to_keep=1)
            rounds = self.args.seq_rounds
            pre = timed({"sequential": (lambda: None, prefill),
                         "ours": (lambda: None, lambda _: fns["ours"](input_ids=self.ids, attention_mask=full))},
                        rounds=rounds, warmup=1)
            dec = timed({"sequential": (lambda: copy.deepcopy(caches), decode),
                         "ours": (lambda: copy.deepcopy(ours_cache),
                                  lambda c: fns["ours"](input_ids=self.next, attention_mask=full1,
                                                        past_key_values=c))},
                        rounds=rounds, warmup=1)
        return {"rank": r, "distinct": n, "prefill_ms": pre["sequential"], "decode_ms": dec["sequential"],
                "ours_prefill_ms": pre["ours"], "ours_decode_ms": dec["ours"],
                "prefill_vs_ours": pre["sequential"] / pre["ours"], "decode_vs_ours": dec["sequential"] / dec["ours"]}

    def generation(self, r: int) -> dict:
        """32 requests, each its own brick: tokens/s of a whole greedy generate, ours vs peft."""
        names = self.bricks[r][:BATCH]
        prompts = ["".join(chr(97 + (7 * i + j) % 26) for j in range(PREFILL)) for i in range(BATCH)]
        runs = {
            "ours": lambda: self.engine.generate(prompts, [{b: 1.0} for b in names]),
            "peft": lambda: generate(self.peft, self.tokenizer, prompts, self.args.new_tokens, adapter_names=names),
        }
        outs = {k: f() for k, f in runs.items()}
        same = outs["ours"] == outs["peft"]
        tokens = sum(len(o.split()) for o in outs["ours"])
        ms = timed({k: (lambda: None, lambda _, f=f: f()) for k, f in runs.items()}, rounds=self.args.gen_rounds,
                   warmup=0)
        return {"rank": r, "requests": BATCH, "new_tokens": tokens, "identical_tokens": same,
                "tokens_per_s": {k: tokens / (v / 1e3) for k, v in ms.items()}, "ms": ms}


def hot_load(workdir: Path, reps: int = 20) -> dict:
    """Disk -> slot for a default-size brick: r=16, all-linear, hidden 192, 4 layers, inter 768."""
    base = llama(192, 4, 768, 6, 259)
    fp = fingerprint(base)
    (workdir / "hot").mkdir()
    library = BrickLibrary(workdir / "hot")
    for i in range(2):
        write_brick(library, base, f"hot{i}", 16, fp, seed=i)
    context = BatchContext()
    from composer.engine.layers import inject

    layers = inject(base, context, slots=1, max_rank=64)
    manager = SlotManager(layers, base_fingerprint=fp, cache_size=0)  # every hold reads the files
    for i in range(2):
        manager.register(f"hot{i}", library.path(f"hot{i}"), fp)
    times, reads = [], []
    for k in range(reps + 2):
        start = time.perf_counter()
        with manager.hold([f"hot{k % 2}"]):
            pass
        times.append((time.perf_counter() - start) * 1e3)
        start = time.perf_counter()
        manager.read(f"hot{k % 2}")
        reads.append((time.perf_counter() - start) * 1e3)
    nbytes = manager.read("hot0").nbytes
    return {"brick_bytes": nbytes, "modules": len(layers), "load_ms_median": statistics.median(times[2:]),
            "read_validate_ms_median": statistics.median(reads[2:]), "loads": manager.stats.loads}


def kernel_micro(rounds: int) -> list[dict]:
    """One 1024->1024 layer, decode, batch 32, r=16: µs per forward of each kernel vs the base."""
    out = []
    for n in (1, 4, 32):
        context = BatchContext()
        layer = BrickLinear(torch.nn.Linear(1024, 1024), context, slots=32, max_rank=64)
        for s in range(32):
            layer.set_slot(s, torch.randn(16, 1024), torch.randn(1024, 16), 2.0)
        x = torch.randn(BATCH, 1, 1024)
        row = {"distinct": n}
        with torch.inference_mode():
            row["base_us"] = timed({"b": (lambda: None, lambda _: layer.base_layer(x))}, rounds, 3)["b"] * 1e3
            for kernel in ("sgmv", "bgmv"):
                mapping = BatchMapping.build([[(i * n // BATCH, 1.0)] for i in range(BATCH)], kernel=kernel)
                with context.use(mapping):
                    row[f"{kernel}_us"] = timed({"k": (lambda: None, lambda _: layer(x))}, rounds, 3)["k"] * 1e3 \
                        - row["base_us"]
        out.append(row)
    assert set(KERNELS) >= {"sgmv", "bgmv"}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, phase in zip(axes, ("decode", "prefill")):
        labels, ours, peft, floor = [], [], [], []
        for p in result["sweep"]:
            t = p[f"{phase}_ms"]
            labels.append(f"r{p['rank']}\nn{p['distinct']}")
            ours.append(t["ours"] / t["base"])
            peft.append(t["peft"] / t["base"])
            floor.append(p["floor_ratio"] if phase == "decode" else float("nan"))
        xs = range(len(labels))
        ax.bar([x - 0.2 for x in xs], ours, 0.4, label="ours / base")
        ax.bar([x + 0.2 for x in xs], peft, 0.4, label="peft adapter_names / base")
        if phase == "decode":
            ax.plot(list(xs), floor, "k_", markersize=18, label="bytes floor / base")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(list(xs), labels)
        ax.set_title(f"{phase} (batch {BATCH}), time relative to base alone")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def targets(result: dict) -> list[dict]:
    """The brief's targets (decode step, batch 32, r=16 unless stated) against the measurements."""
    point = {(p["rank"], p["distinct"]): p for p in result["sweep"]}
    rows = []

    def add(name: str, measured: float, op: str, goal: float) -> None:
        rows.append({"name": name, "measured": measured, "op": op, "goal": goal,
                     "met": measured <= goal if op == "<=" else measured >= goal})
    for n, goal in ((4, 1.15), (32, 1.35)):
        if (16, n) in point:
            d = point[(16, n)]["decode_ms"]
            add(f"decode T(ours)/T(base), {n} distinct", d["ours"] / d["base"], "<=", goal)
    if (16, 32) in point:
        d = point[(16, 32)]["decode_ms"]
        add("decode T(peft)/T(ours), 32 distinct", d["peft"] / d["ours"], ">=", 2.5)
    for s in result["sequential"]:
        add(f"decode T(sequential)/T(ours), {s['distinct']} distinct", s["decode_vs_ours"], ">=", 10)
    for (r, n), p in sorted(point.items()):
        if n == 1:
            for phase in ("decode", "prefill"):
                t = p[f"{phase}_ms"]
                add(f"{phase} T(peft)/T(ours), 1 brick, r={r}", t["peft"] / t["ours"], ">=", 1.0)
    g = result["generation"]["tokens_per_s"]
    add("generation tokens/s ours/peft, 32 bricks", g["ours"] / g["peft"], ">=", 2.0)
    add("hot-load ms, r=16 default-size brick", result["hot_load"]["load_ms_median"], "<=", 20)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="r=16 only, n in {1, 32}, fewer rounds")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steady timings on a shared CPU)")
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()
    args.decode_rounds, args.prefill_rounds, args.seq_rounds, args.gen_rounds = \
        (5, 2, 2, 1) if args.quick else (9, 3, 3, 2)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        result = {"env": {"torch": torch.__version__, "threads": args.threads, "cpu": platform.processor() or
                          platform.machine(), "cores": os.cpu_count(), "load_avg_start": os.getloadavg()[0],
                          "quick": args.quick, "batch": BATCH, "prefill_tokens": PREFILL, "dtype": "float32",
                          "model": "Llama hidden 1024, 4 layers, intermediate 2816, vocab 32000"}}
        bench = Bench(args, workdir)
        bench.bw = bandwidth_gbs()
        result["env"].update(bench.bw)
        result["env"]["setup_s"] = time.perf_counter() - started
        result["sweep"] = []
        for r in bench.ranks:
            for n in bench.distinct:
                p = bench.point(r, n)
                result["sweep"].append(p)
                print(f"r={r:<2} n={n:<2} decode ours/base {p['decode_ms']['ours'] / p['decode_ms']['base']:.3f} "
                      f"peft/ours {p['decode_ms']['peft'] / p['decode_ms']['ours']:.2f} | prefill ours/base "
                      f"{p['prefill_ms']['ours'] / p['prefill_ms']['base']:.3f} peft/ours "
                      f"{p['prefill_ms']['peft'] / p['prefill_ms']['ours']:.2f} | floor {p['floor_ratio']:.3f} "
                      f"| diff {p['max_abs_diff_vs_peft']:.1e}", flush=True)
        result["sequential"] = []
        for n in bench.distinct:
            s = bench.sequential(16, n)
            result["sequential"].append(s)
            print(f"sequential r=16 n={n:<2} decode seq/ours {s['decode_vs_ours']:.1f} "
                  f"prefill seq/ours {s['prefill_vs_ours']:.1f}", flush=True)
        g = bench.generation(16)
        result["generation"] = g
        print(f"generation: ours {g['tokens_per_s']['ours']:.1f} tok/s, peft {g['tokens_per_s']['peft']:.1f} tok/s, "
              f"ratio {g['tokens_per_s']['ours'] / g['tokens_per_s']['peft']:.2f}, identical {g['identical_tokens']}",
              flush=True)
        result["hot_load"] = hot_load(workdir)
        print(f"hot-load r=16 brick ({result['hot_load']['brick_bytes'] / 1e6:.2f} MB): "
              f"{result['hot_load']['load_ms_median']:.2f} ms (read+validate "
              f"{result['hot_load']['read_validate_ms_median']:.2f} ms)", flush=True)
        result["kernels_layer_decode"] = kernel_micro(rounds=20)
        for row in result["kernels_layer_decode"]:
            print(f"layer 1024x1024 decode n={row['distinct']:<2}: base {row['base_us']:.0f} us, "
                  f"sgmv +{row['sgmv_us']:.0f} us, bgmv +{row['bgmv_us']:.0f} us", flush=True)
    result["env"]["total_s"] = time.perf_counter() - started
    result["env"]["load_avg_end"] = os.getloadavg()[0]
    result["targets"] = targets(result)
    print("\ntarget                                           measured   goal     met")
    for t in result["targets"]:
        print(f"{t['name']:<48} {t['measured']:>8.3f}   {t['op']} {t['goal']:<6} {'yes' if t['met'] else 'NO'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "mixed_batch_quick" if args.quick else "mixed_batch"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.json/.png in {result['env']['total_s']:.0f} s")


if __name__ == "__main__":
    main()
