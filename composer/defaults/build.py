"""One command that rebuilds the whole embedded default: `python -m composer.defaults.build`.

Stages: pre-train the base (generic skills only) -> train one LoRA brick per brick skill,
measured with and without itself, card written -> build the index. Seeded; what it writes
is exactly what the repository ships under `bricks/` and `index/`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.defaults import base
from composer.defaults.skills import BRICK_SKILLS, SKILLS, Skill
from composer.library import BrickCard, Metrics, fingerprint
from composer.ops.train import Example, TrainConfig, add_lora, exact_match, train
from composer.storage import atomic_dir, write_json

ROOT = Path(__file__).resolve().parents[2]
BRICK_TRAIN = TrainConfig(steps=1500, batch_size=32, lr=4e-3, warmup=30, seed=0)
LORA_RANK, LORA_ALPHA = 16, 32
EVAL_SIZE = 100
ALL_INSTRUCTIONS = [i for s in SKILLS.values() for i in s.instructions]


def build_base(out: Path) -> None:
    start = time.time()
    model, tokenizer, losses = base.pretrain()
    with atomic_dir(out) as tmp:
        model.to(torch.float16).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "training.json", {
            "skills": [s.id for s in base.GENERIC_SKILLS], "config": base.BASE_TRAIN.__dict__,
            "final_loss": round(sum(losses[-50:]) / 50, 4), "seconds": round(time.time() - start)})


def eval_set(skill: Skill, seed: int = 12345, size: int = EVAL_SIZE) -> list[Example]:
    """Fresh inputs (another seed than training) or the whole table, examples cycled."""
    examples = skill.instructions[:5]
    if skill.table is not None:
        return [(examples[i % 5], x, y) for i, (x, y) in enumerate(skill.table.items())]
    rng = random.Random(seed)
    inputs = [skill.make_input(rng) for _ in range(size)]
    return [(examples[i % 5], x, skill.answer(x)) for i, x in enumerate(inputs)]


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
    dev = eval_set(skill, seed=777, size=48)[:48]
    losses = train(model, tokenizer, brick_sampler(skill), BRICK_TRAIN, desc=f"brick {skill.id}",
                   done=lambda: exact_match(model, tokenizer, dev) == 1.0, check_every=100)
    for name, p in model.named_parameters():  # ship fp16 and measure what ships
        if p.requires_grad:
            p.data = p.data.half().float()
    evals = eval_set(skill)
    em = exact_match(model, tokenizer, evals)
    with model.disable_adapter():
        base_em = exact_match(model, tokenizer, evals)
    card = BrickCard(
        id=skill.id, title=skill.title, description=skill.description, examples=list(skill.instructions[:5]),
        base_fingerprint=base_fp, base_architecture=model.config.architectures[0] if model.config.architectures else "",
        metrics=Metrics(exact_match=em, base_exact_match=base_em, samples=len(evals),
                        eval="whole table" if skill.table is not None else f"{len(evals)} fresh random inputs"),
        source={"trained_by": "composer.defaults.build", "steps": len(losses), "rank": LORA_RANK,
                "alpha": LORA_ALPHA, "seed": BRICK_TRAIN.seed, "seconds": round(time.time() - start)})
    model.peft_config["default"].base_model_name_or_path = "../base"
    with atomic_dir(out / skill.id) as tmp:
        model.half().save_pretrained(tmp)
        write_json(tmp / "brick.json", card.model_dump())
        if skill.table is not None:
            (tmp / "data.jsonl").write_text("".join(json.dumps({"input": x, "output": y}) + "\n"
                                                   for x, y in skill.table.items()))
    print(f"{skill.id}: exact match {em:.2%} with brick, {base_em:.2%} base alone, {len(losses)} steps", flush=True)
    return card.metrics.model_dump()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=["all", "base", "bricks", "index"], default="all")
    parser.add_argument("--only", default="", help="comma-separated brick ids (bricks stage)")
    parser.add_argument("--out", type=Path, default=ROOT / "bricks")
    args = parser.parse_args()
    if args.stage in ("all", "base"):
        build_base(args.out / "base")
    if args.stage in ("all", "bricks"):
        wanted = set(filter(None, args.only.split(","))) or {s.id for s in BRICK_SKILLS}
        for skill in BRICK_SKILLS:
            if skill.id in wanted:
                build_brick(skill, args.out, args.out / "base")


if __name__ == "__main__":
    main()
