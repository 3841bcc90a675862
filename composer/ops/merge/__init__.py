"""Merging LoRA bricks: one explicit registry of methods and one entry point.

Every method has the semantics of peft's `PeftModel.add_weighted_adapter` with the same
`combination_type` (see each file for the maths and the paper). `merge_adapters` works on
tensors; `merge_bricks` reads bricks from a library and writes the merge as a new brick.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

from composer.errors import ComposerError
from composer.library import CARD, BrickCard, BrickLibrary, check_id
from composer.formats import Adapter, LoraFactors, MergedAdapter
from composer.ops.merge.base import MergeMethod
from composer.params import Param
from composer.ops.merge.cat import CAT
from composer.ops.merge.linear import LINEAR
from composer.ops.merge.magnitude_prune import MAGNITUDE_PRUNE
from composer.formats import read_lora_folder, write_lora_folder
from composer.ops.merge.svd import SVD
from composer.ops.merge.ties import DARE_LINEAR, DARE_TIES, TIES

MERGE_METHODS: dict[str, MergeMethod] = {
    m.name: m for m in (LINEAR, CAT, SVD, TIES, DARE_LINEAR, DARE_TIES, MAGNITUDE_PRUNE)
}


def get_method(name: str) -> MergeMethod:
    try:
        return MERGE_METHODS[name]
    except KeyError:
        raise ComposerError(f"unknown merge method {name!r}; choose one of: {', '.join(MERGE_METHODS)}") from None


def merge_adapters(adapters: Sequence[Adapter], weights: Sequence[float], method: str = "cat",
                   **params: Any) -> MergedAdapter:
    """Merge n adapters (module name -> `LoraFactors`) with n weights (negative allowed).

    The result has scale 1 at every module (peft saves merges with alpha = r). As in peft,
    merging a single adapter always uses `linear` (w · ΔW exactly), whatever the method
    (its parameters are still checked); the result then says `linear`.
    """
    spec = get_method(method)
    resolved = spec.resolve(params)
    if not adapters:
        raise ComposerError("nothing to merge: give at least one adapter")
    if len(weights) != len(adapters):
        raise ComposerError(f"got {len(adapters)} adapters but {len(weights)} weights; give one weight per adapter")
    if not all(isinstance(w, numbers.Real) and not isinstance(w, bool) and math.isfinite(w) for w in weights):
        raise ComposerError(f"weights must be finite numbers, got {list(weights)!r}")
    weights = [float(w) for w in weights]
    if len(adapters) == 1:
        spec, resolved = LINEAR, {}
    return MergedAdapter(modules=spec.merge(adapters, weights, **resolved), method=spec.name, params=resolved)


def merge_bricks(library: BrickLibrary, sources: Sequence[tuple[str, float]], new_id: str, method: str = "cat", *,
                 title: str | None = None, description: str | None = None, examples: Sequence[str] | None = None,
                 record: Mapping[str, Any] | None = None, **params: Any) -> BrickCard:
    """Merge library bricks `[(id, weight), ...]` into a new brick `new_id`; returns its card.

    Sources must exist and share one base fingerprint; `new_id` must be free. Everything
    is read and merged before anything is written; the new folder (peft files + card)
    appears atomically. The card records sources (id, version, weight), method and the
    resolved parameters in `source["merge"]` (plus `record`, e.g. how weights were found);
    title, description and examples default to the sources' combined.
    """
    check_id(new_id)
    if (library.path(new_id) / CARD).exists():
        raise ComposerError(f"brick {new_id!r} already exists; choose a new id for the merge")
    if not sources:
        raise ComposerError("nothing to merge: give at least one source brick")
    ids = [brick_id for brick_id, _ in sources]
    if len(set(ids)) != len(ids):
        raise ComposerError(f"a source brick is listed twice: {ids}")
    cards = [library.card(brick_id) for brick_id in ids]
    bases = {c.base_fingerprint for c in cards}
    if len(bases) > 1:
        made_for = ", ".join(f"{c.id} -> {c.base_fingerprint}" for c in cards)
        raise ComposerError(f"cannot merge bricks made for different base models ({made_for})")
    folders = [read_lora_folder(library.path(brick_id)) for brick_id in ids]
    merged = merge_adapters([f.modules for f in folders], [w for _, w in sources], method, **params)
    card = BrickCard(
        id=new_id,
        title=title or " + ".join(c.title for c in cards),
        description=description or f"{merged.method} merge of " + "; ".join(f"{c.title}: {c.description}"
                                                                            for c in cards),
        examples=list(examples) if examples else list(dict.fromkeys(e for c in cards for e in c.examples)),
        base_fingerprint=cards[0].base_fingerprint,
        base_architecture=cards[0].base_architecture,
        source={"merge": {"method": merged.method, "params": merged.params,
                          "sources": [{"id": c.id, "version": c.version, "weight": float(w)}
                                      for c, (_, w) in zip(cards, sources)]}, **(record or {})},
    )

    def write(tmp):
        write_lora_folder(tmp, merged, folders[0].config)
        return card

    return library.commit(new_id, write)


__all__ = ["MERGE_METHODS", "Adapter", "LoraFactors", "MergeMethod", "MergedAdapter", "Param", "get_method",
           "merge_adapters", "merge_bricks"]
