"""Supervised training on (instruction, input, output) triples: used for the default base
model, for the default bricks and for growing or updating a user's brick.

Loss is taken on the answer tokens and EOS only, so the model learns to answer, not to
re-type prompts. Whatever parameters have `requires_grad` are trained: all of them for
the base, only LoRA matrices for a brick.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from composer.prompt import render

Example = tuple[str, str, str]  # (instruction, input, output)
Sampler = Callable[[random.Random, int], Sequence[Example]]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 30
    weight_decay: float = 0.0
    seed: int = 0


def encode_batch(tokenizer, batch: Sequence[Example], device) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 everywhere but answer + EOS)."""
    rows, labels = [], []
    for instruction, text, answer in batch:
        prompt = tokenizer.encode(render(instruction, text), add_special_tokens=False)
        target = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
        rows.append(prompt + target)
        labels.append([-100] * len(prompt) + target)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
    lab = torch.tensor([l + [-100] * (width - len(l)) for l in labels], device=device)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


Progress = Callable[[int, int, float], None]  # (steps done, total steps, recent mean loss)


def train(model, tokenizer, sample: Sampler, config: TrainConfig, desc: str = "train",
          progress: bool | Progress = True, done: Callable[[], bool] | None = None,
          check_every: int = 100) -> list[float]:
    """AdamW with linear warm-up and cosine decay; returns the loss of every step.

    `progress`: a terminal bar (True), nothing (False), or a callback after every step (a UI's
    live bar). `done`, asked every `check_every` steps, ends training early (e.g. a dev set is
    solved).
    """
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)

    def lr_at(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        done = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    device = next(model.parameters()).device
    model.train()
    losses = []
    bar = tqdm(range(config.steps), desc=desc, disable=progress is not True, mininterval=2)
    for _ in bar:
        batch = encode_batch(tokenizer, sample(rng, config.batch_size), device)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        recent = sum(losses[-20:]) / len(losses[-20:])
        bar.set_postfix(loss=f"{recent:.4f}")
        if callable(progress):
            progress(len(losses), config.steps, recent)
        if done is not None and len(losses) % check_every == 0:
            model.eval()
            finished = done()
            model.train()
            if finished:
                break
    model.eval()
    return losses


def add_lora(model, r: int = 16, alpha: int = 32, target_modules: str | list[str] = "all-linear"):
    """Wrap a base model with one trainable LoRA adapter (peft), every other weight frozen."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=target_modules, lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def exact_match(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 48) -> float:
    """Share of examples whose greedy answer equals the output, surrounding whitespace ignored."""
    from composer.generation import generate

    answers = generate(model, tokenizer, [render(i, x) for i, x, _ in examples], max_new_tokens=max_new_tokens)
    return sum(a.strip() == y.strip() for a, (_, _, y) in zip(answers, examples)) / max(1, len(examples))
