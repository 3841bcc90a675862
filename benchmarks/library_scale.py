"""How the library service scales: synthetic libraries of 20, 200, 2,000 and 10,000 bricks.

Every brick is a real peft LoRA folder (a small random adapter of a tiny Llama base, made
here) with a varied card (title, description and two examples drawn from word lists).
Measured per size, in one process on one torch thread (times exclude Python start-up):

- open: a fresh `Workspace` + its saved index, loaded and checked against the library
  (the embedder's own load included);
- retrieve p50: warm `Composer.retrieve`, 50 queries;
- run overhead p50: warm one-step `Composer.run` minus the engine's own generation time,
  compared with the 20-brick library (the per-call cost the library adds);
- list: `Workspace.list()` on a fresh workspace (cold: every card read);
- add / remove: `Workspace.add` of a new adapter folder and `Workspace.remove`, index
  refreshed incrementally.

Then HNSW against exact search at 100,000+ vectors (the 10,000-brick library's card vectors
plus noisy copies of them): recall@10 and query time. Writes
`benchmarks/results/library_scale.json` and prints a Markdown table.

    python benchmarks/library_scale.py [--sizes 20 200 2000 10000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import ByT5Tokenizer, LlamaConfig, LlamaForCausalLM

from composer.index import load_embedder, new_faiss_index
from composer.library import BrickCard, fingerprint
from composer.workspace import ROOT, Workspace

OUT = ROOT / "benchmarks" / "results" / "library_scale.json"
WORDS = ("letters words text sentence names numbers dates colours animals cities verbs nouns vowels rhymes emails "
         "titles tags prices lists codes").split()
VERBS = ("sort reverse shorten translate count tag clean format spell split join mask rank shift label").split()
STYLES = ("in french", "backwards", "politely", "in capitals", "as a list", "with dashes", "twice", "in order",
          "by length", "without spaces", "in pig latin", "as initials")


def make_base(folder: Path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                         pad_token_id=0, eos_token_id=1, bos_token_id=None)).eval()
    model.save_pretrained(folder)
    ByT5Tokenizer(extra_ids=0).save_pretrained(folder)
    return model


def make_adapter(base, folder: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            init_lora_weights=False))
    model.save_pretrained(folder)
    model.unload()


def card_for(i: int, rng: random.Random, base_fp: str) -> BrickCard:
    verb, noun, style = rng.choice(VERBS), rng.choice(WORDS), rng.choice(STYLES)
    return BrickCard(id=f"b{i:05d}", title=f"{verb.title()} {noun} {style}",
                     description=f"{verb.title()} the {noun} of the text {style} (synthetic brick {i}).",
                     examples=[f"{verb} the {noun} {style}", f"please {verb} my {noun} {style}"],
                     base_fingerprint=base_fp)


def grow_library(ws: Workspace, adapter: Path, start: int, stop: int, base_fp: str) -> None:
    """Bricks start..stop-1 written straight through the library's commit path."""
    rng = random.Random(start)
    for i in range(start, stop):
        card = card_for(i, rng, base_fp)

        def write(folder: Path, card=card) -> BrickCard:
            for f in adapter.iterdir():
                shutil.copyfile(f, folder / f.name)
            return card

        ws.library.commit(card.id, write)


def p50_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def measure(root: Path, index_dir: Path, embedder, queries: list[str]) -> dict:
    t = time.perf_counter()
    ws = Workspace(root, index=index_dir)
    ws.index  # loads the embedder, the saved index, and checks it against every card
    open_s = time.perf_counter() - t
    c = ws.composer(device="cpu")
    c.retrieve(queries[0])
    # every timed query new to the retriever's query memo, which would answer a repeat unembedded
    fresh = (f"{q} (request {n})" for n, q in enumerate(itertools.cycle(queries)))
    retrieve = p50_ms(lambda: c.retrieve(next(fresh), k=3), 50)
    engine_ms = []
    original = c.engine.generate

    def timed(*a, **k):
        t0 = time.perf_counter()
        out = original(*a, **k)
        engine_ms.append((time.perf_counter() - t0) * 1000)
        return out

    c.engine.generate = timed
    c.run(queries[0], input="abc", max_new_tokens=4)
    total = []
    for q in queries[:30]:
        t0 = time.perf_counter()
        c.run(q, input="abc", max_new_tokens=4)
        total.append((time.perf_counter() - t0) * 1000)
    overhead = round(statistics.median([a - b for a, b in zip(total, engine_ms[1:])]), 2)
    t = time.perf_counter()
    listed = Workspace(root, index=index_dir).list()
    list_s = time.perf_counter() - t
    return {"bricks": len(listed), "open_s": round(open_s, 3), "retrieve_p50_ms": retrieve,
            "run_overhead_p50_ms": overhead, "list_s": round(list_s, 3), "workspace": ws}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 200, 2000, 10000])
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread per process, as a server per core runs; a shared CPU makes more threads spin
    embedder = load_embedder()
    rng = random.Random(0)  # the first 20 bricks' own examples: in every library, and they match
    queries = [e for i in range(20) for e in card_for(i, rng, "").examples]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = make_base(tmp / "lib" / "base")
        base_fp = fingerprint(base)
        make_adapter(base, tmp / "adapter", 0)
        make_adapter(base, tmp / "new", 1)
        (tmp / "new" / "brick.json").write_text(json.dumps({"description": "Brand new skill", "examples": ["new"]}))
        ws = Workspace(tmp / "lib")
        from composer.index import BrickIndex

        have = 0
        for size in sorted(args.sizes):
            grow_library(ws, tmp / "adapter", have, size, base_fp)
            have = size
            BrickIndex(ws.library, tmp / "index", embedder).load_or_build()  # embed the new cards once
            row = measure(tmp / "lib", tmp / "index", embedder, queries)
            live = row.pop("workspace")
            t = time.perf_counter()
            live.add(tmp / "new", brick_id="zz-new")
            row["add_s"] = round(time.perf_counter() - t, 3)
            t = time.perf_counter()
            live.remove("zz-new")
            row["remove_s"] = round(time.perf_counter() - t, 3)
            rows.append(row)
            print(row, flush=True)
        vectors = live.index._index.reconstruct_n(0, live.index._index.ntotal)
        ann = hnsw_recall(vectors, embedder.encode(queries, normalize_embeddings=True))
    base_row = rows[0]
    for row in rows:
        row["run_overhead_vs_20_ms"] = round(row["run_overhead_p50_ms"] - base_row["run_overhead_p50_ms"], 2)
    result = {"sizes": rows, "hnsw": ann, "targets": {
        "retrieve_p50_ms": 15, "run_overhead_vs_20_ms": 10, "open_s_at_10000": 2, "add_remove_s_at_10000": 1.5,
        "list_s_at_10000": 1, "hnsw_recall_at_10": 0.95}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))


def hnsw_recall(vectors: np.ndarray, queries: np.ndarray, copies: int = 4, seed: int = 0) -> dict:
    """recall@10 of HNSW against exact search over the library's vectors plus noisy copies."""
    rng = np.random.default_rng(seed)
    noisy = [vectors] + [vectors + rng.normal(0, 0.05, vectors.shape).astype(np.float32) for _ in range(copies)]
    data = np.concatenate(noisy)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    flat, hnsw = new_faiss_index(data.shape[1], "flat"), new_faiss_index(data.shape[1], "hnsw")
    flat.add(data)
    t = time.perf_counter()
    hnsw.add(data)
    build = time.perf_counter() - t
    _, exact = flat.search(queries, 10)
    t = time.perf_counter()
    _, approx = hnsw.search(queries, 10)
    hnsw_ms = (time.perf_counter() - t) * 1000 / len(queries)
    t = time.perf_counter()
    flat.search(queries, 10)
    flat_ms = (time.perf_counter() - t) * 1000 / len(queries)
    recall = float(np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)]))
    return {"vectors": int(data.shape[0]), "recall_at_10": round(recall, 4), "build_s": round(build, 1),
            "hnsw_query_ms": round(hnsw_ms, 3), "flat_query_ms": round(flat_ms, 3)}


def table(result: dict) -> str:
    lines = ["| bricks | open (s) | retrieve p50 (ms) | run overhead vs 20 bricks (ms) | list (s) | add (s) | remove (s) |",
             "|---|---|---|---|---|---|---|"]
    for r in result["sizes"]:
        lines.append(f"| {r['bricks']:,} | {r['open_s']} | {r['retrieve_p50_ms']} | {r['run_overhead_vs_20_ms']:+} | "
                     f"{r['list_s']} | {r['add_s']} | {r['remove_s']} |")
    h = result["hnsw"]
    lines.append(f"\nHNSW over {h['vectors']:,} card vectors: recall@10 {h['recall_at_10']} against exact search; "
                 f"{h['hnsw_query_ms']} ms vs {h['flat_query_ms']} ms per query (build {h['build_s']} s).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
