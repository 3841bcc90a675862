"""Training helpers: defaults by base size, attention targets on every architecture, the best
checkpoint, the per-step estimate, gradient checkpointing."""

import random

import pytest
import torch

from composer.ops.train import (BestCheckpoint, TrainConfig, add_lora, attention_targets, plan_for, seconds_per_step,
                                train)
from composer.prompt import PlainFormat
from tests.helpers import ARCHITECTURES, save_base, tiny_model

ROWS = [("Double it", w, w + w) for w in ["ab", "cd", "ef", "gh"]]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_attention_targets_adapt_attention_only(arch):
    model = tiny_model(arch)
    targets = attention_targets(model)
    assert targets and all("." in t for t in targets)
    adapted = add_lora(model, 2, 4, targets)
    names = {n.rsplit(".lora_A", 1)[0] for n, _ in adapted.named_parameters() if ".lora_A" in n}
    assert names and all(("attn" in n or "attention" in n) for n in names)
    assert not any("mlp" in n for n in names)  # GPT-2's MLP has a c_proj too


def test_plan_for_grows_cautious_with_size():
    small = plan_for(tiny_model("llama"))
    assert small.targets == "all-linear" and small.rank == 16 and not small.checkpointing

    class Big(torch.nn.Module):  # parameter count is all plan_for reads besides module names
        def __init__(self, n):
            super().__init__()
            self.self_attn = torch.nn.Module()
            self.self_attn.q_proj = torch.nn.Linear(1, 1)
            self.weight = torch.nn.Parameter(torch.empty(n), requires_grad=False)

    medium, large = plan_for(Big(135_000_000)), plan_for(Big(1_500_000_000))
    assert medium.targets == "all-linear" and medium.steps < small.steps and medium.lr < small.lr
    assert large.targets == ["self_attn.q_proj"] and large.checkpointing and large.batch_size < medium.batch_size


def test_seconds_per_step_leaves_no_gradients(tmp_path):
    from composer.models import load_base

    model, tokenizer = load_base(save_base(tiny_model("llama"), tmp_path / "base"), "cpu")
    model = add_lora(model, 2, 4)
    assert seconds_per_step(model, tokenizer, ROWS) > 0
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_best_checkpoint_restores_the_best_scored_weights():
    model = torch.nn.Linear(2, 2)
    scores = iter([0.5, 0.9, 0.1, 0.9, 0.2])
    best = BestCheckpoint(model, lambda: next(scores))
    for value in (1.0, 2.0, 3.0, 4.0, 5.0):
        torch.nn.init.constant_(model.weight, value)
        assert best() is False
    assert best.restore() == (0.9, 4)  # of two equal scores, the later (longer-trained) weights
    assert torch.equal(model.weight, torch.full((2, 2), 4.0))


def test_gradient_checkpointing_trains(tmp_path):
    from composer.models import load_base

    model, tokenizer = load_base(save_base(tiny_model("llama"), tmp_path / "base"), "cpu")
    model = add_lora(model, 4, 8, checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    losses = train(model, tokenizer, lambda rng, n: random.Random(0).choices(ROWS, k=n),
                   TrainConfig(steps=30, batch_size=4, lr=1e-2, warmup=2), progress=False, fmt=PlainFormat(tokenizer))
    assert sum(losses[-5:]) < sum(losses[:5])
