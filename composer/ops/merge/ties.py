"""TIES and DARE: sparsify each task tensor, optionally elect signs, then combine.

TIES-Merging (Yadav et al., https://arxiv.org/abs/2306.01708) trims each task vector to its
top-`density` entries by magnitude, elects one sign per entry and averages only the entries
that agree with it, so conflicting updates do not cancel into noise. DARE (Yu et al.,
"Language Models are Super Mario", https://arxiv.org/abs/2311.03099) instead drops entries
at random with keep-probability p = `density` and rescales survivors by 1/p, which keeps
every entry's expectation; `dare_ties` adds TIES's sign election, `dare_linear` does not.

All three are `linear.generalized` with a different configuration; for LoRA they act on the
A's and the B's separately, as peft's `add_weighted_adapter` does.
"""

from __future__ import annotations

from functools import partial

from composer.ops.merge.base import DENSITY, MAJORITY_SIGN, SEED, MergeMethod
from composer.ops.merge.linear import generalized

TIES = MergeMethod(
    name="ties",
    paper="https://arxiv.org/abs/2306.01708",
    summary="keep top-density entries by magnitude, elect a sign per entry, average the agreeing entries",
    params=(DENSITY, MAJORITY_SIGN),
    merge=partial(generalized, name="ties", sparsify="magnitude", elect=True),
)

DARE_LINEAR = MergeMethod(
    name="dare_linear",
    paper="https://arxiv.org/abs/2311.03099",
    summary="drop entries at random (keep-probability density), rescale by 1/density, weighted sum",
    params=(DENSITY, SEED),
    merge=partial(generalized, name="dare_linear", sparsify="random", elect=False),
)

DARE_TIES = MergeMethod(
    name="dare_ties",
    paper="https://arxiv.org/abs/2311.03099",
    summary="DARE's random drop and rescale, then TIES's sign election and disjoint average",
    params=(DENSITY, MAJORITY_SIGN, SEED),
    merge=partial(generalized, name="dare_ties", sparsify="random", elect=True),
)
