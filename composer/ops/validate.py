"""Check a foreign peft LoRA folder against the resident base before it joins the library.

`composer bricks add PATH` runs `validate_adapter` first and writes nothing unless it
passes; every failure is a `ComposerError` that names the problem. What is checked, in order:

1. `adapter_config.json` exists, parses, is a plain LoRA (`peft_type` LORA, no DoRA, bias,
   modules_to_save, ...) and has r (0 < r <= max_rank), lora_alpha and target_modules.
2. The weights are `adapter_model.safetensors`; a folder with only a pickle (`.bin`, `.pt`,
   ...) is refused by file name, never opened. Only safetensors is read (a pickle beside
   it is ignored, with a warning).
3. Every tensor is a `base_model.model.<module>.lora_{A,B}.weight` pair whose module the
   config's target_modules names, that exists in the base and is a linear layer, with
   A `[r, d_in]` and B `[d_out, r]` (GPT-2's `Conv1D` stores its weight `[d_in, d_out]`,
   peft's LoRA factors are the same as for `nn.Linear`).
4. Which base: peft's `base_model_name_or_path` is a free-text hint (a local path, a hub
   name, or nothing), so it is not trusted. The module names and shapes above are the
   architecture check; if the folder carries a `brick.json`, its `base_architecture` must
   match and its `base_fingerprint` must equal the base's, unless `force=True`, in which
   case the mismatch is reported in the result so the new card can record it.
5. Tensors are cast to the base's dtype.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers.pytorch_utils import Conv1D

from composer.errors import ComposerError
from composer.library import CARD, fingerprint
from composer.formats import LoraFactors
from composer.formats import CONFIG, PICKLE_SUFFIXES, WEIGHTS, read_lora_folder


@dataclass(frozen=True)
class ValidatedAdapter:
    """A checked adapter, ready to be written as a brick (tensors in the base's dtype)."""

    folder: Path
    modules: dict[str, LoraFactors]  # base module name -> factors (a [r, d_in], b [d_out, r], scale)
    r: int
    lora_alpha: float
    target_modules: list[str] | str
    config: dict[str, Any]
    base_fingerprint: str            # the resident base's, for the new card
    forced_from: str | None = None   # brick.json's other base fingerprint, when force=True overrode it
    warnings: list[str] = field(default_factory=list)


def linear_dims(base_model) -> dict[str, tuple[int, int]]:
    """Module name -> (d_in, d_out) of every linear layer LoRA can target in the base."""
    dims = {}
    for name, module in base_model.named_modules():
        if isinstance(module, torch.nn.Linear):
            dims[name] = (module.in_features, module.out_features)
        elif isinstance(module, Conv1D):  # weight [d_in, d_out]
            dims[name] = tuple(module.weight.shape)
    return dims


def architecture(model) -> str:
    archs = getattr(model.config, "architectures", None)
    return archs[0] if archs else type(model).__name__


def targeted(targets: list[str] | str, name: str) -> bool:
    """peft's rule: a string is a full-match regex ("all-linear" matches every linear
    layer), a list entry matches the full name or its dotted tail."""
    if isinstance(targets, str):
        return targets == "all-linear" or re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _list(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _card_base(folder: Path) -> tuple[str, str]:
    """(base_fingerprint, base_architecture) from the folder's brick.json, '' when absent."""
    path = folder / CARD
    if not path.is_file():
        return "", ""
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ComposerError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(card, dict):
        raise ComposerError(f"{path} must hold a JSON object")
    return str(card.get("base_fingerprint") or ""), str(card.get("base_architecture") or "")


def validate_adapter(folder: str | Path, base_model, max_rank: int = 64, *, force: bool = False,
                     base_fingerprint: str | None = None) -> ValidatedAdapter:
    """Check the peft LoRA folder against `base_model`; nothing is written. See module doc.

    `base_fingerprint` skips hashing the base when the caller already knows it.
    """
    folder = Path(folder)
    lora = read_lora_folder(folder, max_rank)
    config = lora.config
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    warnings = [f"ignored {', '.join(pickles)} (pickle, never opened); used {WEIGHTS}"] if pickles else []
    card_fp, card_arch = _card_base(folder)
    arch = architecture(base_model)
    if card_arch and card_arch != arch:
        raise ComposerError(f"{folder} was made for a {card_arch} base, but the base model is a {arch}")

    dims = linear_dims(base_model)
    names = sorted(lora.modules)
    absent = [n for n in names if n not in dims]
    if absent:
        existing = dict(base_model.named_modules())
        kind = "are not linear layers of" if all(n in existing for n in absent) else "do not exist in"
        raise ComposerError(f"{folder} targets modules that {kind} the base model ({arch}): {_list(absent)}; "
                            f"is it an adapter for another architecture?")
    targets = config["target_modules"]
    try:
        unnamed = [n for n in names if not targeted(targets, n)]
    except re.error as err:
        raise ComposerError(f"{folder / CONFIG}: target_modules {targets!r} is not a valid regex: {err}") from None
    if unnamed:
        raise ComposerError(f"{folder} holds weights for modules its target_modules ({targets!r}) does not name, "
                            f"so peft would ignore them: {_list(unnamed)}")
    for name in names:
        f, (d_in, d_out) = lora.modules[name], dims[name]
        if f.a.shape != (f.rank, d_in) or f.b.shape != (d_out, f.rank):
            raise ComposerError(f"{folder}: shapes at {name!r} are A {tuple(f.a.shape)} and B {tuple(f.b.shape)}, "
                                f"but the base layer needs A [{f.rank}, {d_in}] and B [{d_out}, {f.rank}]")

    base_fp = base_fingerprint or fingerprint(base_model)
    forced_from = None
    if card_fp and card_fp != base_fp:
        if not force:
            raise ComposerError(f"{folder} was made for another base (fingerprint {card_fp}; this base is {base_fp}); "
                                "its weights would act on different features. Use force to import it anyway")
        forced_from = card_fp
        warnings.append(f"imported with force: made for base {card_fp}, not this base {base_fp}")

    dtype = next(base_model.parameters()).dtype
    cast = sorted({str(f.a.dtype).removeprefix("torch.") for f in lora.modules.values() if f.a.dtype != dtype})
    if cast:
        warnings.append(f"weights cast from {', '.join(cast)} to {str(dtype).removeprefix('torch.')}")
    modules = {n: LoraFactors(a=f.a.to(dtype), b=f.b.to(dtype), scale=f.scale) for n, f in lora.modules.items()}
    return ValidatedAdapter(folder=folder, modules=modules, r=config["r"], lora_alpha=float(config["lora_alpha"]),
                            target_modules=targets, config=config, base_fingerprint=base_fp,
                            forced_from=forced_from, warnings=warnings)
