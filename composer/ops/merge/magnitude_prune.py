"""Magnitude pruning then task arithmetic: TIES's trim step without its sign election.

Each task tensor keeps its top-`density` entries by |value| (the "trim" of TIES-Merging,
Yadav et al., https://arxiv.org/abs/2306.01708); the pruned tensors are then summed with
their weights. Same semantics as peft's `magnitude_prune` combination type (applied to the
A's and the B's separately).
"""

from __future__ import annotations

from functools import partial

from composer.ops.merge.base import DENSITY, MergeMethod
from composer.ops.merge.linear import generalized

MAGNITUDE_PRUNE = MergeMethod(
    name="magnitude_prune",
    paper="https://arxiv.org/abs/2306.01708",
    summary="keep top-density entries by magnitude, then weighted sum (no sign election)",
    params=(DENSITY,),
    merge=partial(generalized, name="magnitude_prune", sparsify="magnitude", elect=False),
)
