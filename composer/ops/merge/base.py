"""The types every merge method shares: LoRA factors in, LoRA factors out, parameters as data.

A LoRA module adds ΔW = s · B @ A to a base weight W `[d_out, d_in]`, with A `[r, d_in]`,
B `[d_out, r]` and s = alpha / r (alpha / √r with rsLoRA). An adapter is a dict from module
name (as in the base model, e.g. `model.layers.0.self_attn.q_proj`) to its factors. A merge
method maps n adapters and n weights to one adapter whose modules all have s = 1 (the scale
is folded into the factors, as peft's `add_weighted_adapter` does by saving alpha = r).

Each method is a `MergeMethod`: its name, paper, parameters declared as `Param` data, and a
pure function. `MergeMethod.resolve` checks user parameters against the declarations, so
every method rejects unknown or invalid options the same way, listing the valid ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from composer.errors import ComposerError
from composer.formats import Adapter, LoraFactors
from composer.params import Param


@dataclass(frozen=True)
class MergeMethod:
    """A named merge: `merge(adapters, weights, **params) -> {module: LoraFactors}`."""

    name: str
    paper: str
    summary: str
    params: tuple[Param, ...]
    merge: Callable[..., dict[str, LoraFactors]]

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Declared parameters with defaults filled in; unknown or bad ones raise.

        A value of None means "not given", so a front end may pass every option it has.
        """
        given = {k: v for k, v in given.items() if v is not None}
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            valid = ", ".join(known) or "none"
            raise ComposerError(f"merge method {self.name!r} has no parameter {', '.join(unknown)}; "
                                f"its parameters: {valid}")
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.coerce(given[p.name], self.name)
            elif p.required:
                raise ComposerError(f"merge method {self.name!r} needs {p.name} ({p.rule or p.help})")
            else:
                out[p.name] = p.default
        return out


# Parameters several methods share, declared once.
DENSITY = Param("density", float, required=True, check=lambda d: 0.0 < d <= 1.0, rule="a float with 0 < density <= 1",
                help="share of each task tensor's entries kept by pruning")
MAJORITY_SIGN = Param("majority_sign_method", str, default="total", check=lambda m: m in ("total", "frequency"),
                      rule="'total' or 'frequency'",
                      help="how each entry's sign is elected: by summed value or by vote")
SEED = Param("seed", int, default=0, rule="an int", help="seed of the random drop mask")


def modules_of(adapters: Sequence[Adapter], weights: Sequence[float]) -> dict[str, list[tuple[LoraFactors, float]]]:
    """Module name -> the (factors, weight) of every adapter that has that module, in order.

    Like peft, an adapter that lacks a module simply takes no part in that module's merge.
    """
    out: dict[str, list[tuple[LoraFactors, float]]] = {}
    for adapter, weight in zip(adapters, weights):
        for name, factors in adapter.items():
            out.setdefault(name, []).append((factors, float(weight)))
    return dict(sorted(out.items()))


def factorwise(adapters: Sequence[Adapter], weights: Sequence[float], method: str,
               combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, LoraFactors]:
    """Combine the A's with each other and the B's with each other (peft's LoRA task arithmetic).

    Adapter i's effective weight c_i = w_i · s_i is split between its factors:
    a_i ← sign(c_i)·√|c_i| · A_i and b_i ← √|c_i| · B_i, so a single adapter merged alone
    gives exactly c_i · B_i A_i. `combine(stack [n, ...], coefficients [n]) -> tensor` then
    merges the n A's and, separately, the n B's. The result is not Σ c_i B_i A_i (cross
    terms B_i A_j appear); that is peft's semantics, and what `cat`/`svd` avoid.
    All adapters must have the same rank at each module.
    """
    out = {}
    for name, parts in modules_of(adapters, weights).items():
        ranks = {f.rank for f, _ in parts}
        if len(ranks) > 1:
            raise ComposerError(f"merge method {method!r} needs the same LoRA rank in every adapter, but module "
                                f"{name!r} has ranks {sorted(ranks)}; use 'cat' or 'svd' to merge different ranks")
        c = [w * f.scale for f, w in parts]
        coef_a = torch.tensor([math.copysign(math.sqrt(abs(x)), x) for x in c])
        coef_b = torch.tensor([math.sqrt(abs(x)) for x in c])
        dtype = parts[0][0].a.dtype
        a = combine(torch.stack([f.a.float() for f, _ in parts]), coef_a)
        b = combine(torch.stack([f.b.float() for f, _ in parts]), coef_b)
        out[name] = LoraFactors(a=a.to(dtype), b=b.to(dtype))
    return out
