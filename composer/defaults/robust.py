"""Case-robust bricks: `python -m composer.defaults.robust --only reverse,uppercase`.

Outputs of every brick must be valid inputs of every other brick: after a step title-cases
or upper-cases, the next brick sees capitals it never saw when it was trained on lowercase
inputs only. Each brick continues from its shipped weights (peft, trainable) on inputs in
lower, UPPER, Title and rAnDoM case with the skill's true output for each (a table key in any
case is the same key), until a dev set in every case is solved or its budget ends. The card
then records exact match per case (`source["case_exact_match"]`) next to the usual `metrics`;
`--record` only measures shipped bricks per case.

Users' payloads are real words and phrases, not the build's random letters: "montagne" and
"minimum" repeat bigrams that random letters never do, and a phrase runs past the build's four
words and 32 characters; a brick trained on random letters loops on both ("Visisisisible").
So half the inputs are real English words (the packaged embedder's vocabulary; a tenth of it
is held out for the card's `english_exact_match`) in phrases of up to six words and 48
characters, the output length the engine generates by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import re
import time
import zlib
from pathlib import Path

import torch

from composer.defaults.skills import (BRICK_SKILLS, CASES, SKILLS, Skill, case_eval_set, random_word, random_words,
                                      recase)
from composer.library import BrickCard
from composer.ops.train import Example, TrainConfig, exact_match, train
from composer.storage import atomic_dir, write_json

ROOT = Path(__file__).resolve().parents[2]
ROBUST_TRAIN = TrainConfig(steps=1500, batch_size=16, lr=1e-3, warmup=20, seed=1)
STEPS = {"reverse": 3000, "remove_vowels": 2500}
BAR = 0.97  # dev exact match every case of a string brick must reach before training stops early
PHRASE_WORDS, PHRASE_CHARS = 6, 48  # a user's phrase: longer than the build's 4 words / 32 characters


@functools.lru_cache(maxsize=2)
def english_words(held_out: bool) -> tuple[str, ...]:
    """Lowercase words of 2-10 letters in the packaged embedder's vocabulary (about 20,000),
    split by a hash of the word: a tenth is held out for evaluation, never trained on."""
    from composer.index import default_embedder_path

    vocab = (Path(default_embedder_path()) / "vocab.txt").read_text().split()
    return tuple(w for w in vocab if re.fullmatch(r"[a-z]{2,10}", w) and (zlib.crc32(w.encode()) % 10 == 0) == held_out)


def english_phrase(rng: random.Random, held_out: bool = False) -> str:
    """A phrase of English words; a quarter of them also hold "a" or "i", which bricks trained on
    words of two letters or more dropped or doubled ("i love you" -> "you love")."""
    words = english_words(held_out)
    phrase = random_words(rng, lambda r: r.choice(words), PHRASE_WORDS, PHRASE_CHARS)
    if rng.random() < 0.25 and len(phrase) + 2 <= PHRASE_CHARS and len(parts := phrase.split()) < PHRASE_WORDS:
        parts.insert(rng.randint(0, len(parts)), rng.choice("ai"))
        phrase = " ".join(parts)
    return phrase


@functools.lru_cache(maxsize=8)
def rule_words(skill_id: str, held_out: bool) -> tuple[str, ...]:
    """English words off a table skill's table that its spelling rule answers ("bottle", "galaxy"
    for `plural`): the held-out tenth is for the card's `rule_exact_match`, never trained on."""
    skill = SKILLS[skill_id]
    return tuple(w for w in english_words(held_out) if w not in skill.table and skill.rule(w) is not None)


def rule_set(skill: Skill, size: int, seed: str, held_out: bool) -> list[Example]:
    """Words the rule answers, each in a random case, with the rule's (lowercase) answer."""
    rng = random.Random(f"{skill.id}:rule:{seed}")
    words = rng.sample(rule_words(skill.id, held_out), size)
    return [(rng.choice(skill.instructions), recase(w, rng.choice(CASES), rng), skill.rule(w)) for w in words]


def doubled_word(rng: random.Random) -> str:
    """A random word, a third of the time with one letter doubled: random letters rarely repeat,
    real words often do ("green", "apple"); the card records exact match on such inputs."""
    word = random_word(rng)
    if rng.random() < 1 / 3:
        n = rng.randrange(len(word))
        word = word[: n + 1] + word[n:]
    return word


def _rounds(before: dict | None, steps: int, seconds: int, lr: float) -> dict:
    """The card's record of case-robust training, summed over the rounds it was continued."""
    before = before or {}
    return {"steps": before.get("steps", 0) + steps, "seconds": before.get("seconds", 0) + seconds, "lr": lr,
            "rounds": before.get("rounds", 1 if before else 0) + 1}


def chained_input(skill: Skill, rng: random.Random, held_out: bool) -> str:
    """What an earlier step hands this brick: another string brick's true output on a short
    English phrase ("pn ssm", "SWEET DREAMS", "tvsg"); kept in its case, which the earlier
    brick set."""
    earlier = rng.choice([s for s in BRICK_SKILLS if s.table is None and s.id != skill.id])
    return earlier.answer(" ".join(english_phrase(rng, held_out).split()[: rng.randint(1, 3)]))


def _changed_set(skill: Skill, size: int, rng: random.Random, draw, recased: bool = True) -> list[Example]:
    """`size` examples from `draw(rng)` -> (instruction, input), the input in a random case
    unless not `recased`, that the skill changes (an unchanged input says nothing about a brick)."""
    out = []
    while len(out) < size:
        instruction, x = draw(rng)
        if recased:
            x = recase(x, rng.choice(CASES), rng)
        if skill.answer(x) != x:
            out.append((instruction, x, skill.answer(x)))
    return out


def doubled_set(skill: Skill, size: int, seed: str) -> list[Example]:
    """Inputs whose every word may carry a doubled letter."""
    return _changed_set(skill, size, random.Random(f"{skill.id}:doubled:{seed}"),
                        lambda rng: skill.sample(rng, doubled_word)[:2])


def english_set(skill: Skill, size: int, seed: str) -> list[Example]:
    """Phrases of held-out English words."""
    return _changed_set(skill, size, random.Random(f"{skill.id}:english:{seed}"),
                        lambda rng: (rng.choice(skill.instructions), english_phrase(rng, held_out=True)))


def chained_set(skill: Skill, size: int, seed: str) -> list[Example]:
    """Other string bricks' outputs on held-out English phrases of 1-3 words."""
    return _changed_set(skill, size, random.Random(f"{skill.id}:chained:{seed}"),
                        lambda rng: (rng.choice(skill.instructions), chained_input(skill, rng, held_out=True)),
                        recased=False)


def case_sampler(skill: Skill, instructions: list[str]):
    """The build's mix (mostly the skill's phrasings, a fifth any other instruction), with the
    input in a random case and the true output. A string skill's input is half the time a
    phrase of real English words, else random words, sometimes with a doubled letter. A table
    skill with a spelling rule gets, half the time, an English word off its table that the rule
    answers ("bottle" -> "bottles"), so that it learns the rule beside its irregular keys.
    A string skill's input is, a quarter of the time, another string brick's output instead
    (`chained_input`), in the case that brick gave it."""

    def sample(rng: random.Random, n: int) -> list[Example]:
        out = []
        for _ in range(n):
            instruction, x, _ = skill.sample(rng, doubled_word)
            ruled = skill.rule is not None and rng.random() < 0.5
            chained = skill.table is None and rng.random() < 0.25
            if ruled:
                x = rng.choice(rule_words(skill.id, False))
            elif chained:
                x = chained_input(skill, rng, held_out=False)
            elif skill.table is None and rng.random() < 0.5:
                x = english_phrase(rng)
            y = skill.rule(x) if ruled else None  # the rule answers the lowercase word
            if not chained:
                x = recase(x, rng.choice(CASES), rng)
            if rng.random() < 0.2:
                instruction = rng.choice(instructions)
            out.append((instruction, x, y if ruled else skill.answer(x)))
        return out

    return sample


def case_scores(skill: Skill, model, tokenizer, size: int = 100) -> dict[str, float]:
    return {case: exact_match(model, tokenizer, case_eval_set(skill, case, size)) for case in CASES}


def word_scores(skill: Skill, model, tokenizer) -> dict[str, float]:
    """A string brick's card numbers on real-word shapes: doubled letters, held-out English phrases;
    a table brick's with a spelling rule: held-out words off its table."""
    if skill.table is not None:
        return ({"rule_exact_match": exact_match(model, tokenizer, rule_set(skill, 100, "eval", held_out=True))}
                if skill.rule is not None else {})
    return {"doubled_letter_exact_match": exact_match(model, tokenizer, doubled_set(skill, 100, "eval")),
            "english_exact_match": exact_match(model, tokenizer, english_set(skill, 100, "eval")),
            "chained_exact_match": exact_match(model, tokenizer, chained_set(skill, 100, "eval"))}


def stop_sets(skill: Skill) -> dict[str, tuple[list[Example], float]]:
    """The sets a round checks every 100 steps, each with the exact match it must reach before the
    round stops early. A string brick: 32 inputs per case, doubled letters, English phrases and
    other bricks' outputs, at BAR. A table brick: the whole table in every case, at 100% (the
    table is all it knows; a sample at 97% left one key wrong per table), and 32 words its rule
    answers at BAR."""
    if skill.table is not None:
        sets = {case: (case_eval_set(skill, case), 1.0) for case in CASES}
        return sets | ({"rule": (rule_set(skill, 32, "dev", held_out=False), BAR)} if skill.rule is not None else {})
    dev = {case: random.Random(case).sample(case_eval_set(skill, case, 64), 32) for case in CASES}
    dev |= {"doubled": doubled_set(skill, 32, "dev"), "english": english_set(skill, 32, "dev"),
            "chained": chained_set(skill, 32, "dev")}
    return {name: (items, BAR) for name, items in dev.items()}


def robust_brick(skill: Skill, bricks: Path, out: Path, steps: int | None = None,
                 lr: float | None = None) -> dict[str, float]:
    """Continue `bricks/<id>` on every case; save it (card updated) under `out/<id>`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from composer.defaults.build import ALL_INSTRUCTIONS, measure, write_table

    start = time.time()
    base = AutoModelForCausalLM.from_pretrained(bricks / "base", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(bricks / "base")
    model = PeftModel.from_pretrained(base, str(bricks / skill.id), is_trainable=True)
    sets = stop_sets(skill)
    config = dataclasses.replace(ROBUST_TRAIN, steps=steps or STEPS.get(skill.id, ROBUST_TRAIN.steps),
                                 lr=lr or ROBUST_TRAIN.lr)
    losses = train(model, tokenizer, case_sampler(skill, ALL_INSTRUCTIONS), config, desc=f"robust {skill.id}",
                   progress=False, check_every=100,
                   done=lambda: all(exact_match(model, tokenizer, items) >= bar for items, bar in sets.values()))
    for p in model.parameters():  # ship fp16 and measure what ships
        if p.requires_grad:
            p.data = p.data.half().float()
    model.eval()
    scores = case_scores(skill, model, tokenizer)
    card = BrickCard.model_validate_json((bricks / skill.id / "brick.json").read_text())
    card.metrics = measure(skill, model, tokenizer)
    card.source = {**card.source, **word_scores(skill, model, tokenizer), "case_exact_match": scores,
                   "case_robust": _rounds(card.source.get("case_robust"), len(losses), round(time.time() - start),
                                          config.lr)}
    model.peft_config["default"].base_model_name_or_path = "../base"
    with atomic_dir(out / skill.id) as tmp:
        model.half().save_pretrained(tmp)
        write_json(tmp / "brick.json", card.model_dump())
        write_table(skill, tmp)  # the table as trained on now (it may have grown since the build)
    print(f"{skill.id}: {len(losses)} steps, {round(time.time() - start)} s, per case "
          + ", ".join(f"{c} {v:.0%}" for c, v in scores.items())
          + (f", doubled letters {card.source['doubled_letter_exact_match']:.0%}, "
             f"English phrases {card.source['english_exact_match']:.0%}, "
             f"other bricks' outputs {card.source['chained_exact_match']:.0%}" if skill.table is None else "")
          + (f", words off the table {card.source['rule_exact_match']:.0%}" if skill.rule is not None else ""),
          flush=True)
    return scores


def record_cases(bricks: Path, ids: list[str]) -> None:
    """Measure shipped bricks per input case (string bricks also on doubled letters and English
    phrases), untrained, and record it on their cards."""
    from composer.defaults.build import rewrite_cards

    def update(card, skill, model, tokenizer):
        source = {**card.source, "case_exact_match": case_scores(skill, model, tokenizer),
                  **word_scores(skill, model, tokenizer)}
        print(skill.id, {k: v for k, v in source.items() if k.endswith("exact_match")}, flush=True)
        return card.model_copy(update={"source": source})

    rewrite_cards(bricks, ids, update)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated brick ids (default: every brick skill)")
    parser.add_argument("--bricks", type=Path, default=ROOT / "bricks")
    parser.add_argument("--out", type=Path, default=ROOT / "bricks", help="where the continued bricks go")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None, help="training budget per brick (default: STEPS)")
    parser.add_argument("--lr", type=float, default=None,
                        help="peak learning rate (default 1e-3; lower polishes a brick that is nearly right)")
    parser.add_argument("--record", action="store_true", help="only measure per case and record it on the cards")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids = [i for i in args.only.split(",") if i] or [s.id for s in BRICK_SKILLS]
    if args.record:
        return record_cases(args.bricks, ids)
    for skill_id in ids:
        robust_brick(SKILLS[skill_id], args.bricks, args.out, args.steps, args.lr)


if __name__ == "__main__":
    main()
