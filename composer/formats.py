"""Read and write peft LoRA folders: `adapter_config.json` + `adapter_model.safetensors`.

Tensor keys are `base_model.model.<module>.lora_A.weight` `[r, d_in]` and
`...lora_B.weight` `[d_out, r]`, where `<module>` is the module's name in the base model;
this holds for GPT-2's transposed `Conv1D` too (peft `tuners/lora/layer.py`). Per module,
r comes from the tensors and must equal the config's (`rank_pattern` applied); the scale is
alpha / r (alpha from `alpha_pattern`, else `lora_alpha`), or alpha / √r with `use_rslora`.

Only JSON and safetensors are ever opened. A folder whose weights exist only as a pickle
(`.bin`, `.pt`, ...) is refused by its file names alone: unpickling can run code.
Everything here is independent of a base model; `composer.ops.validate` adds those checks.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from composer.errors import ComposerError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# peft options that change the maths or add weights beyond plain LoRA A/B pairs.
UNSUPPORTED = ("use_dora", "lora_bias", "modules_to_save", "trainable_token_indices", "layer_replication",
               "alora_invocation_tokens", "target_parameters", "arrow_config", "use_qalora")

@dataclass(frozen=True)
class LoraFactors:
    """One module's LoRA: ΔW = scale · b @ a, with a `[r, d_in]` and b `[d_out, r]`."""

    a: torch.Tensor
    b: torch.Tensor
    scale: float = 1.0

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def delta(self) -> torch.Tensor:
        """ΔW `[d_out, d_in]` in float32."""
        return self.scale * (self.b.float() @ self.a.float())


Adapter = Mapping[str, LoraFactors]


@dataclass(frozen=True)
class MergedAdapter:
    """A merge's output: factors per module (scale 1) plus what a peft config needs."""

    modules: dict[str, LoraFactors]
    method: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def r(self) -> int:
        """The most common rank; modules of another rank go in `rank_pattern`."""
        return Counter(f.rank for f in self.modules.values()).most_common(1)[0][0]

    @property
    def rank_pattern(self) -> dict[str, int]:
        """Full module name -> rank, for modules whose rank differs from `r` (e.g. a `cat`
        of adapters that cover different modules)."""
        r = self.r
        return {name: f.rank for name, f in sorted(self.modules.items()) if f.rank != r}

    @property
    def target_modules(self) -> list[str]:
        """Leaf names (`q_proj`, ...) as peft writes them; a leaf that matches a module this
        adapter has no tensors for gets peft's zero-B init there, i.e. no change."""
        return sorted({name.rsplit(".", 1)[-1] for name in self.modules})


_KEY = re.compile(rf"{re.escape(PREFIX)}(.+)\.lora_([AB])\.weight")


@dataclass(frozen=True)
class LoraFolder:
    """A peft LoRA folder as read: its config and its factors per module name."""

    config: dict[str, Any]
    modules: dict[str, LoraFactors]


def pattern_value(patterns: Mapping[str, Any], module: str, default: Any) -> Any:
    """peft's `get_pattern_key`: the first key that matches the end of the name after a dot."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_config(folder: Path, max_rank: int | None = None) -> dict[str, Any]:
    """Parse and check `adapter_config.json`: a plain LoRA with r, lora_alpha and targets."""
    path = folder / CONFIG
    if not path.is_file():
        raise ComposerError(f"{folder} is not a peft adapter: it has no {CONFIG}")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ComposerError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise ComposerError(f"{path} must hold a JSON object")
    if config.get("peft_type") != "LORA":
        raise ComposerError(f"{path}: peft_type is {config.get('peft_type')!r}; only 'LORA' adapters are supported")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if config.get(k) in (None, "", [])]
    if missing:
        raise ComposerError(f"{path} is incomplete: it lacks {', '.join(missing)}")
    r, alpha, targets = config["r"], config["lora_alpha"], config["target_modules"]
    if not isinstance(r, int) or isinstance(r, bool) or r <= 0:
        raise ComposerError(f"{path}: r must be a positive int, not {r!r}")
    if max_rank is not None and r > max_rank:
        raise ComposerError(f"{path}: rank r={r} is above the maximum rank {max_rank}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool):
        raise ComposerError(f"{path}: lora_alpha must be a number, not {alpha!r}")
    if not (isinstance(targets, str) or (isinstance(targets, list) and all(isinstance(t, str) for t in targets))):
        raise ComposerError(f"{path}: target_modules must be a string or a list of strings, not {targets!r}")
    options = [k for k in UNSUPPORTED if config.get(k)]
    if options:
        raise ComposerError(f"{path} uses peft options Brick Composer does not support: {', '.join(options)}")
    return config


def weights_path(folder: Path) -> Path:
    """The safetensors file; a pickle-only folder is refused without opening the pickle."""
    path = folder / WEIGHTS
    if path.is_file():
        return path
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ComposerError(f"{folder} holds its weights as a pickle ({', '.join(pickles)}), which is refused because "
                            f"loading a pickle can run arbitrary code; convert it to {WEIGHTS} with a tool you trust")
    raise ComposerError(f"{folder} has no {WEIGHTS}")


def read_lora_folder(folder: str | Path, max_rank: int | None = None) -> LoraFolder:
    """Read a peft LoRA folder: config checks, then its safetensors paired into modules."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ComposerError(f"adapter folder not found: {folder}")
    config = read_config(folder, max_rank)
    path = weights_path(folder)
    try:
        tensors = load_file(path, device="cpu")
    except (OSError, ValueError, SafetensorError) as err:
        raise ComposerError(f"cannot read {path}: {str(err).splitlines()[0]}") from None
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = _KEY.fullmatch(key)
        if not match:
            raise ComposerError(f"{path} holds tensor {key!r}, which is not a LoRA A/B weight "
                                f"('{PREFIX}<module>.lora_A.weight' / '.lora_B.weight')")
        pairs.setdefault(match[1], {})[match[2]] = tensor
    if not pairs:
        raise ComposerError(f"{path} holds no LoRA weights")
    rslora = bool(config.get("use_rslora"))
    modules = {}
    for name, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise ComposerError(f"{path}: module {name!r} has lora_{''.join(pair)} but not both A and B")
        a, b = pair["A"], pair["B"]
        r = a.shape[0]
        if a.dim() != 2 or b.dim() != 2 or b.shape[1] != r:
            raise ComposerError(f"{path}: module {name!r} has A {tuple(a.shape)} and B {tuple(b.shape)}; "
                                "LoRA needs A [r, d_in] and B [d_out, r]")
        expected = pattern_value(config.get("rank_pattern") or {}, name, config["r"])
        if r != expected:
            raise ComposerError(f"{path}: module {name!r} has rank {r} but adapter_config says r={expected}")
        if max_rank is not None and r > max_rank:
            raise ComposerError(f"{path}: module {name!r} has rank {r}, above the maximum rank {max_rank}")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ComposerError(f"{path}: the weights of module {name!r} hold NaN or inf")
        alpha = float(pattern_value(config.get("alpha_pattern") or {}, name, config["lora_alpha"]))
        modules[name] = LoraFactors(a=a, b=b, scale=alpha / (math.sqrt(r) if rslora else r))
    return LoraFolder(config=config, modules=modules)


def merged_config(merged: MergedAdapter, source: Mapping[str, Any]) -> dict[str, Any]:
    """The peft config of a merge: scale 1 everywhere (alpha = r per module), plain LoRA.

    Built from scratch rather than copied, so no source option (layers_to_transform,
    init_lora_weights=False, dropout, ...) leaks into the merge; task type, base name and
    fan_in_fan_out (GPT-2's Conv1D) are kept from the first source.
    """
    r, ranks = merged.r, merged.rank_pattern
    return {
        "peft_type": "LORA",
        "task_type": source.get("task_type", "CAUSAL_LM"),
        "base_model_name_or_path": source.get("base_model_name_or_path"),
        "r": r,
        "lora_alpha": r,
        "rank_pattern": {re.escape(k): v for k, v in ranks.items()},
        "alpha_pattern": {re.escape(k): v for k, v in ranks.items()},
        "target_modules": merged.target_modules,
        "fan_in_fan_out": bool(source.get("fan_in_fan_out", False)),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def write_lora_folder(folder: Path, merged: MergedAdapter, source_config: Mapping[str, Any]) -> None:
    """Write `merged` as a peft-loadable LoRA folder (the folder must exist)."""
    tensors = {}
    for name, f in merged.modules.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = f.a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = f.b.contiguous()
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CONFIG).write_text(json.dumps(merged_config(merged, source_config), indent=2) + "\n")
