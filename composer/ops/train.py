"""Supervised training on (instruction, input, output) triples: used for the default base
model, for the default bricks and for growing or updating a user's brick.

Loss is taken on the answer tokens and EOS only, so the model learns to answer, not to
re-type prompts. Whatever parameters have `requires_grad` are trained: all of them for
the base, only LoRA matrices for a brick. Prompts render in the library's `PromptFormat`
(plain when none is given), and the answer ends with the format's end-of-answer token.

`plan_for(model)` picks brick-training defaults by model size, so a 135M-parameter instruct
model on a laptop CPU gets a step count and batch that finish in minutes, not the tiny
default's; `train(..., deadline=)` stops at a wall-clock limit and keeps the best
checkpoint seen.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from tqdm import tqdm

from composer.prompt import PlainFormat, PromptFormat

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


def encode_batch(tokenizer, batch: Sequence[Example], device, fmt: PromptFormat | None = None
                 ) -> dict[str, torch.Tensor]:
    """Right-padded ids, attention mask and labels (-100 everywhere but answer + its end token)."""
    fmt = fmt or PlainFormat(tokenizer)
    rows, labels = [], []
    for instruction, text, answer in batch:
        prompt = tokenizer.encode(fmt.render(instruction, text), add_special_tokens=False)
        target = tokenizer.encode(answer, add_special_tokens=False) + [fmt.answer_end]
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
          check_every: int = 100, fmt: PromptFormat | None = None, deadline: float | None = None) -> list[float]:
    """AdamW with linear warm-up and cosine decay; returns the loss of every step.

    `progress`: a terminal bar (True), nothing (False), or a callback after every step (a UI's
    live bar). `done`, asked every `check_every` steps, ends training early (e.g. a dev set is
    solved). `deadline` (a `time.monotonic()` value) ends it when the time is up.
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
        batch = encode_batch(tokenizer, sample(rng, config.batch_size), device, fmt)
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
        if deadline is not None and time.monotonic() >= deadline:
            break
    bar.close()
    model.eval()
    return losses


class BestCheckpoint:
    """Keeps the trainable weights with the best dev score seen, so a run stopped early (or
    one that overfits late) still ends on its best checkpoint. Use as `train(done=...)`, call
    once more after training, then `restore()`."""

    def __init__(self, model, score: Callable[[], float]):
        self.model, self.score = model, score
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        value = self.score()
        if self.best is None or value >= self.best[0]:  # a tie goes to the later, longer-trained weights
            state = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
            self.best = (value, self.calls, state)
        return False  # the user's step budget stands; only the deadline ends a run early

    def restore(self) -> tuple[float, int] | None:
        """Put the best weights back; (its dev score, the check it was found at), or None."""
        if self.best is None:
            return None
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self.best[2].items():
                params[name].copy_(value)
        return self.best[0], self.best[1]


@dataclass(frozen=True)
class BrickPlan:
    """How to train a brick on one base: steps, optimiser, LoRA shape, memory saving."""

    steps: int
    lr: float
    rank: int
    targets: str | list[str]
    batch_size: int
    checkpointing: bool = False


def plan_for(model) -> BrickPlan:
    """Defaults by base size, for a CPU. Up to 1B parameters LoRA goes on every linear layer:
    on SmolLM2-135M it costs about the same per step as attention-only (the frozen forward and
    backward dominate) and learned uppercase to 100% of held-out rows where attention-only
    stalled near 40% (`examples/real-model`). Above ~50M parameters a step costs seconds, so
    fewer, smaller steps; above 1B, attention-only (a third of the adapter, so of every
    engine slot) with gradient checkpointing, which trades a third more time for activations
    that fit in memory."""
    n = sum(p.numel() for p in model.parameters())
    if n <= 50_000_000:
        return BrickPlan(steps=300, lr=3e-3, rank=16, targets="all-linear", batch_size=16)
    if n <= 1_000_000_000:
        return BrickPlan(steps=100, lr=1e-3, rank=16, targets="all-linear", batch_size=8)
    return BrickPlan(steps=80, lr=5e-4, rank=8, targets=attention_targets(model) or "all-linear", batch_size=4,
                     checkpointing=True)


def attention_targets(model) -> list[str]:
    """The linear layers inside attention blocks, any architecture, as peft target suffixes
    `<block>.<layer>`: `self_attn.q_proj` (Llama, Qwen, Mistral), `attn.c_attn` and
    `attn.c_proj` (GPT-2, whose MLP has a `c_proj` too), `self_attention.dense` (Falcon)."""
    from transformers.pytorch_utils import Conv1D

    names = set()
    for path, module in model.named_modules():
        parts = path.split(".")
        if len(parts) >= 2 and isinstance(module, (torch.nn.Linear, Conv1D)) \
                and ("attn" in parts[-2].lower() or "attention" in parts[-2].lower()):
            names.add(".".join(parts[-2:]))
    return sorted(names)


def seconds_per_step(model, tokenizer, batch: Sequence[Example], fmt: PromptFormat | None = None) -> float:
    """Time of one forward + backward on `batch` (gradients dropped): what a step will cost,
    told before training starts."""
    model.train()
    start = time.perf_counter()
    model(**encode_batch(tokenizer, batch, next(model.parameters()).device, fmt)).loss.backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    model.eval()
    return elapsed


def add_lora(model, r: int = 16, alpha: int = 32, target_modules: str | list[str] = "all-linear",
             checkpointing: bool = False):
    """Wrap a base model with one trainable LoRA adapter (peft), every other weight frozen."""
    from peft import LoraConfig, get_peft_model

    if checkpointing:  # transformers 5 renamed it; 4.x has only the old name
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=target_modules, lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def exact_match(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 48,
                fmt: PromptFormat | None = None) -> float:
    """Share of examples whose greedy answer equals the output, surrounding whitespace ignored."""
    from composer.generation import generate

    fmt = fmt or PlainFormat(tokenizer)
    answers = generate(model, tokenizer, [fmt.render(i, x) for i, x, _ in examples], max_new_tokens=max_new_tokens)
    return sum(a.strip() == y.strip() for a, (_, _, y) in zip(answers, examples)) / max(1, len(examples))
