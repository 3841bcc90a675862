"""One command that rebuilds the whole embedded default: `python -m composer.defaults.build`.

Stages: pre-train the base (generic skills only) -> train one LoRA brick per brick skill,
measured with and without itself, card written -> build the index. Seeded; what it writes
is exactly what the repository ships under `bricks/` and `index/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.defaults import base
from composer.defaults.skills import (BRICK_SKILLS, CASES, REQUESTS, SKILLS, Skill, annotated_requests,
                                      card_examples, eval_set)
from composer.library import BrickCard, Metrics, fingerprint
from composer.ops.train import Example, TrainConfig, add_lora, exact_match, train
from composer.storage import atomic_dir, write_json

ROOT = Path(__file__).resolve().parents[2]
BRICK_TRAIN = TrainConfig(steps=3000, batch_size=16, lr=2e-3, warmup=30, seed=0)  # most stop early, dev set solved
# Reverse needs a new attention pattern (each output reads the mirrored input position), not a
# per-character map on top of the base's copying, and learns several times slower; deleting
# vowels shifts every later character, and its last errors need twice the default budget.
STEPS = {"reverse": 10000, "remove_vowels": 6000}
# These solve the 64-input dev set before they clear the evaluation by a safe margin (reverse_words
# stopped at 94%, capitalize at 96%): trained to the end of their schedule instead.
FULL_SCHEDULE = {"reverse_words", "capitalize", "rot13"}
LORA_RANK, LORA_ALPHA = 16, 32
ALL_INSTRUCTIONS = [i for s in SKILLS.values() for i in s.instructions]


def build_base(out: Path) -> None:
    """Pre-train phase by phase, saving the base after each one; phases already recorded in
    the saved base's training.json are not run again (so a stopped build resumes)."""
    info = json.loads((out / "training.json").read_text()) if (out / "training.json").is_file() else {}
    done = [p["name"] for p in info.get("phases", [])]
    model = tokenizer = None
    for phase in base.PHASES:
        if phase.name in done:
            continue
        if model is None:
            model, tokenizer = base.load_or_init(out if done else None)
        start = time.time()
        losses = base.run_phase(model, tokenizer, phase)
        info.setdefault("phases", []).append({
            "name": phase.name, "config": phase.config.__dict__,
            "final_loss": round(sum(losses[-50:]) / 50, 4), "seconds": round(time.time() - start)})
        info["skills"] = [s.id for s in base.GENERIC_SKILLS]
        with atomic_dir(out) as tmp:
            model.to(torch.float16).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(tmp / "training.json", info)
        model.float()
        done.append(phase.name)
    evaluate_base(out)


def evaluate_base(path: Path) -> None:
    """Add the shipped (fp16-stored) base's exact match per generic skill to training.json."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    info = json.loads((path / "training.json").read_text())
    info["generic_exact_match"] = {s.id: exact_match(model, tokenizer, eval_set(s, size=50))
                                   for s in base.GENERIC_SKILLS}
    write_json(path / "training.json", info)


def measure(skill: Skill, model, tokenizer) -> Metrics:
    """Exact match of a peft model with its adapter and with the base alone, on the inputs the
    skill changes (`eval_set`). Per input case, `composer.defaults.robust` adds its own numbers."""
    evals = eval_set(skill, changed=True)
    em = exact_match(model, tokenizer, evals)
    with model.disable_adapter():
        base_em = exact_match(model, tokenizer, evals)
    return Metrics(exact_match=em, base_exact_match=base_em, samples=len(evals),
                   eval="whole table" if skill.table is not None else f"{len(evals)} fresh random inputs it changes")


def brick_sampler(skill: Skill):
    """Mostly the skill's own phrasings; a fifth of prompts carry any other instruction so the
    brick answers with its skill whatever wording the planner hands it."""

    def sample(rng: random.Random, n: int) -> list[Example]:
        out = []
        for _ in range(n):
            instruction, x, y = skill.sample(rng)
            if rng.random() < 0.2:
                instruction = rng.choice(ALL_INSTRUCTIONS)
            out.append((instruction, x, y))
        return out

    return sample


def build_brick(skill: Skill, out: Path, base_path: Path) -> dict:
    start = time.time()
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    base_fp = fingerprint(model)
    model = add_lora(model, LORA_RANK, LORA_ALPHA)
    # The training distribution (identities included), or the whole table to memorise.
    dev = eval_set(skill, seed=777, size=64)
    config = dataclasses.replace(BRICK_TRAIN, steps=STEPS.get(skill.id, BRICK_TRAIN.steps))
    losses = train(model, tokenizer, brick_sampler(skill), config, desc=f"brick {skill.id}",
                   done=None if skill.id in FULL_SCHEDULE else lambda: exact_match(model, tokenizer, dev) == 1.0,
                   check_every=100)
    for name, p in model.named_parameters():  # ship fp16 and measure what ships
        if p.requires_grad:
            p.data = p.data.half().float()
    metrics = measure(skill, model, tokenizer)
    card = BrickCard(
        id=skill.id, title=skill.title, description=skill.description, examples=card_examples(skill),
        base_fingerprint=base_fp, base_architecture=model.config.architectures[0] if model.config.architectures else "",
        metrics=metrics,
        source={"trained_by": "composer.defaults.build", "steps": len(losses), "rank": LORA_RANK,
                "alpha": LORA_ALPHA, "seed": BRICK_TRAIN.seed, "seconds": round(time.time() - start)})
    model.peft_config["default"].base_model_name_or_path = "../base"
    with atomic_dir(out / skill.id) as tmp:
        model.half().save_pretrained(tmp)
        write_json(tmp / "brick.json", card.model_dump())
        write_table(skill, tmp)
    print(f"{said(skill.id, metrics)}, {len(losses)} steps", flush=True)
    return metrics.model_dump()


def write_table(skill: Skill, folder: Path) -> None:
    """A table brick's table as `data.jsonl` (input, output rows) in its folder: what it was
    trained to know, read by the planner as the brick's known inputs."""
    if skill.table is not None:
        (folder / "data.jsonl").write_text("".join(json.dumps({"input": x, "output": y}) + "\n"
                                                   for x, y in skill.table.items()))


def said(skill_id: str, metrics: Metrics) -> str:
    return f"{skill_id}: exact match {metrics.exact_match:.2%} with brick, {metrics.base_exact_match:.2%} base alone"


def rewrite_cards(out: Path, ids: list[str], update) -> None:
    """Load the base once and each brick in peft in turn; `update(card, skill, model, tokenizer)`
    returns the card to write back (re-measured numbers of shipped bricks)."""
    from peft import PeftModel

    base_model = AutoModelForCausalLM.from_pretrained(out / "base", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out / "base")
    for skill_id in ids:
        model = PeftModel.from_pretrained(base_model, str(out / skill_id))
        card = BrickCard.model_validate_json((out / skill_id / "brick.json").read_text())
        card = update(card, SKILLS[skill_id], model, tokenizer)
        write_json(out / skill_id / "brick.json", card.model_dump())
        base_model = model.unload()


def remeasure(out: Path, ids: list[str]) -> None:
    """Measure shipped bricks again (after a change to `eval_set`) and rewrite their cards."""
    def update(card, skill, model, tokenizer):
        card = card.model_copy(update={"metrics": measure(skill, model, tokenizer)})
        print(said(skill.id, card.metrics), flush=True)
        return card

    rewrite_cards(out, ids, update)


def _build_brick_job(skill_id: str, out: Path) -> dict:
    torch.set_num_threads(1)  # one core per job: two 2-thread jobs on 2 cores thrash
    return build_brick(SKILLS[skill_id], out, out / "base")


def build_bricks(out: Path, ids: list[str], jobs: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    if jobs <= 1:
        for skill_id in ids:
            build_brick(SKILLS[skill_id], out, out / "base")
        return
    with ProcessPoolExecutor(jobs) as pool:
        for result in pool.map(_build_brick_job, ids, [out] * len(ids)):
            pass


def build_emergent(out: Path) -> None:
    """Emergent bricks of the base (FFN skill-neuron masks) into the library, with the
    analysis figures under benchmarks/results/emergent."""
    from composer.emergent.analyze import analyze

    print(analyze(out / "base", ROOT / "benchmarks" / "results" / "emergent", library=out).summary())


def build_index(out: Path, index_dir: Path) -> None:
    from composer.index import BrickIndex
    from composer.library import BrickLibrary
    from composer.retriever import brick_embedder

    library = BrickLibrary(out)
    library.set_out_of_scope(text_lines(OUT_OF_SCOPE_FILE))
    def progress(step: int, total: int, loss: float) -> None:
        if step % 10 == 0:
            print(f"tuning the encoder: step {step}/{total}, loss {loss:.3f}", flush=True)

    # the retriever trained for these cards, beside the embedder tuned on them (about 17 minutes on 2 cores)
    embedder, name = brick_embedder(library, index_dir, retrain=True, tune_encoder=True, progress=progress)
    index = BrickIndex(library, index_dir, embedder, name).build()
    print(f"index: {len(index.rows)} vectors for {index.count('customized') + index.count('emergent')} bricks and "
          f"{len(library.out_of_scope)} out-of-scope requests in {index_dir}")


PAYLOAD_VARIANTS = 4  # copies of each request with another request's payload (cross-corpus: +3% plans)
COMMAND_PAYLOADS = Path(__file__).resolve().parent / "command_payloads.txt"  # payloads that read as instructions
REQUEST_TRAILERS = Path(__file__).resolve().parent / "request_trailers.txt"  # "... for my notes" after a payload
TRAILER_SHARE = 0.3  # of the copies whose payload closes the request, those that get a trailer
OUT_OF_SCOPE_FILE = Path(__file__).resolve().parent / "out_of_scope.txt"  # requests no default brick does


def text_lines(path: Path) -> list[str]:
    """A packaged list: one entry per line, '#' lines are comments."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def command_payloads() -> list[str]:
    return text_lines(COMMAND_PAYLOADS)


def request_examples(folder: Path = REQUESTS, variants: int = PAYLOAD_VARIANTS) -> list[tuple[str, list[int]]]:
    """(text, payload label per word) for every annotated request: the whole request, which the
    planner tags before it looks for delimiters, and, when its payload is written inline, its
    first step, which the planner tags when the whole request gave no confident payload. Each
    also with `variants` payloads of other requests for a skill of the same input (any
    string-skill payload, the same table skill's), so that the tagger learns the wording around
    a payload rather than the payloads, and a string-skill request with one more that reads as
    an instruction (`command_payloads`). A copy whose payload closes the request gets, at
    `TRAILER_SHARE`, words people add after a payload ("... for my notes", `request_trailers.txt`),
    so that the tagger ends the payload before them. Seeded."""
    from composer.planner import split_payload, split_steps
    from composer.tagger import label

    rows = [row for rows in annotated_requests(folder) for row in rows]
    kinds = {s.id: s.id if s.kind == "table" else "string" for s in BRICK_SKILLS}
    payloads: dict[str, list[str]] = {}
    for row in rows:
        payloads.setdefault(kinds[row["skills"][0]], []).append(row["payload"])
    rng, out, commands = random.Random(0), [], command_payloads()
    trailers, trail = text_lines(REQUEST_TRAILERS), random.Random(1)  # own stream: the payload draws stay as they were
    for row in rows:
        kind = kinds[row["skills"][0]]
        others = [rng.choice(payloads[kind]) for _ in range(variants)] + \
            ([rng.choice(commands)] if kind == "string" and variants else [])
        for payload in [row["payload"], *others]:
            whole = row["instruction"].replace(row["payload"], payload, 1).strip()
            if whole.lower().endswith(payload.lower()) and trail.random() < TRAILER_SHARE:
                whole = f"{whole} {trail.choice(trailers)}"
            text, _, how = split_payload(whole)
            steps = split_steps(text)
            for piece in dict.fromkeys([whole] + ([steps[0]] if steps and not how else [])):
                if labels := label(piece, payload):
                    out.append((piece, labels))
    return out


def build_tagger(folder: Path = REQUESTS) -> None:
    """Train the planner's payload tagger on the annotated requests; it ships in composer/data."""
    from composer import tagger
    from composer.index import default_embedder_path, load_embedder

    torch.manual_seed(0)
    examples = request_examples(folder)
    weights, loss = tagger.train(load_embedder(), examples)
    tagger.save(weights, {"base": tagger.base_id(default_embedder_path()), "examples": len(examples),
                          "payload_variants": PAYLOAD_VARIANTS, "lora_rank": tagger.RANK,
                          "lora_targets": list(tagger.TARGETS), "epochs": tagger.EPOCHS,
                          "words": sum(len(labels) for _, labels in examples), "last_batch_loss": round(loss, 4),
                          "sources": sorted(p.name for p in folder.glob("*.jsonl"))})
    print(f"payload tagger: {len(examples)} requests (with payload variants), last batch loss {loss:.4f} -> {tagger.WEIGHTS}")


def write_examples(out: Path) -> None:
    """Bring the shipped cards' examples up to `card_examples` (the retriever trains on them)."""
    for skill in BRICK_SKILLS:
        card = BrickCard.model_validate_json((out / skill.id / "brick.json").read_text())
        card.examples = card_examples(skill)
        write_json(out / skill.id / "brick.json", card.model_dump())


def report(out: Path) -> str:
    """The accuracy table README shows, read back from the cards."""
    from composer.library import BrickLibrary

    lines = ["| brick | kind of input | samples | exact match, base + brick | exact match, base alone "
             "| lower | UPPER | Title | rAnDoM | English phrases | English words off the table "
             "| other bricks' outputs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for card in BrickLibrary(out).cards():
        if card.kind != "customized":
            continue
        m = card.metrics
        cases = card.source.get("case_exact_match", {})  # per input case, written by composer.defaults.robust
        per_case = " | ".join(f"{cases[c]:.0%}" if c in cases else "-" for c in CASES)
        # held-out English phrases, a table skill's rule on held-out words, and a string brick on
        # the other string bricks' outputs (what a chain hands it): composer.defaults.robust
        english = [card.source.get(key) for key in ("english_exact_match", "rule_exact_match", "chained_exact_match")]
        lines.append(f"| `{card.id}` | {m.eval} | {m.samples} | {m.exact_match:.0%} | {m.base_exact_match:.0%} "
                     f"| {per_case} | " + " | ".join("-" if v is None else f"{v:.0%}" for v in english) + " |")
    base_info = json.loads((out / "base" / "training.json").read_text())
    lines += ["", "Base model on its own (generic) pre-training skills, exact match on 50 fresh inputs each:", "",
              "| skill | exact match |", "|---|---|"]
    lines += [f"| `{k}` | {v:.0%} |" for k, v in base_info.get("generic_exact_match", {}).items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["all", "base", "base-eval", "bricks", "measure", "cards", "emergent", "index",
                                                "tagger", "report"], default="all")
    parser.add_argument("--only", default="", help="comma-separated brick ids (bricks and measure stages)")
    parser.add_argument("--jobs", type=int, default=2, help="bricks trained in parallel, one core each")
    parser.add_argument("--out", type=Path, default=ROOT / "bricks")
    parser.add_argument("--index", type=Path, default=ROOT / "index")
    args = parser.parse_args()
    if args.stage in ("all", "base"):
        build_base(args.out / "base")
    if args.stage == "base-eval":
        evaluate_base(args.out / "base")
    wanted = set(filter(None, args.only.split(","))) or {s.id for s in BRICK_SKILLS}
    if args.stage in ("all", "bricks"):
        # String skills take the longest: trained first so the parallel jobs end together.
        strings_first = sorted((s for s in BRICK_SKILLS if s.id in wanted), key=lambda s: s.kind != "string")
        build_bricks(args.out, [s.id for s in strings_first], args.jobs)
    if args.stage == "measure":
        remeasure(args.out, [s.id for s in BRICK_SKILLS if s.id in wanted])
    if args.stage == "cards":
        write_examples(args.out)
    if args.stage in ("all", "emergent"):
        build_emergent(args.out)
    if args.stage in ("all", "index"):
        build_index(args.out, args.index)
    if args.stage in ("all", "tagger"):
        build_tagger()
    if args.stage in ("all", "report"):
        print(report(args.out))


if __name__ == "__main__":
    main()
