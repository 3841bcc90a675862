"""Functionality scores: how well one neuron, on its own, tells one skill's inputs from the rest.

Following the seed paper's analysis of emergent bricks (Configurable Foundation Models,
https://arxiv.org/abs/2409.02877, its empirical analysis), a neuron's activation is read as a one-vs-rest
classifier score for skill s, and its functionality score is the average precision

    AP = Σ_n (R_n − R_{n−1}) · P_n

over the distinct activation thresholds n, taken from the highest (P_n, R_n: precision and
recall of "activation >= threshold n"). A neuron that fires only for skill s scores 1; one
blind to skills scores about the base rate, the share of skill s in the data. Tied
activations (ReLU's exact zeros) form one threshold, exactly as scikit-learn's
`average_precision_score`, which the tests compare against.

Top-5 % sets (per layer, per skill) and their Jaccard overlap |A ∩ B| / |A ∪ B| show whether
skills draw on separate neurons.
"""

from __future__ import annotations

import math

import torch

from composer.emergent.profile import Profile
from composer.errors import ComposerError


def average_precision(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """AP of each column of `scores` `[N, M]` against the labels `positive` (bool `[N]`): `[M]`.

    Vectorised over columns: sort each column descending, cumulate true positives, keep the
    last row of every run of tied scores (one threshold), and sum ΔR · P over those rows.
    Since the true-positive count never decreases, the count at the previous threshold is the
    running maximum of the counts kept so far.
    """
    positive = positive.bool()
    n_pos = int(positive.sum())
    if n_pos == 0 or n_pos == len(positive):
        raise ComposerError("average precision needs both positive and negative examples")
    ordered, order = scores.float().sort(dim=0, descending=True, stable=True)
    hits = positive[order].float()  # [N, M]
    tp = hits.cumsum(0)
    last_of_tie = torch.ones_like(hits, dtype=torch.bool)
    last_of_tie[:-1] = ordered[1:] != ordered[:-1]
    kept = torch.where(last_of_tie, tp, torch.zeros_like(tp))
    before = torch.cat([torch.zeros_like(tp[:1]), kept.cummax(0).values[:-1]])  # tp at the previous threshold
    rank = torch.arange(1, len(hits) + 1, dtype=tp.dtype)[:, None]
    return torch.where(last_of_tie, (tp - before) * tp / rank, torch.zeros_like(tp)).sum(0) / n_pos


def functionality_scores(profile: Profile) -> torch.Tensor:
    """AP of every neuron for every skill, one-vs-rest: `[S, L, I]` from a `[N, L, I]` profile."""
    counts = torch.bincount(profile.labels, minlength=len(profile.skills))
    if len(profile.skills) < 2 or (counts > 0).sum() < 2:
        raise ComposerError(f"functionality scores need examples of at least two skills "
                            f"(got {int((counts > 0).sum())} labelled skill(s))")
    missing = [profile.skills[s] for s in range(len(profile.skills)) if counts[s] == 0]
    if missing:
        raise ComposerError(f"no examples for skill(s) {missing}: every listed skill needs examples")
    n, layers, width = profile.activations.shape
    flat = profile.activations.reshape(n, layers * width)
    return torch.stack([average_precision(flat, profile.labels == s).reshape(layers, width)
                        for s in range(len(profile.skills))])


def top_sets(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Bool `[S, L, I]`: per skill and layer the ceil(fraction · I) neurons of highest score."""
    if not 0 < fraction <= 1:
        raise ComposerError(f"fraction must be in (0, 1] (got {fraction})")
    k = math.ceil(fraction * scores.shape[-1])
    top = torch.zeros_like(scores, dtype=torch.bool)
    return top.scatter_(-1, scores.topk(k, dim=-1).indices, True)


def jaccard(sets: torch.Tensor) -> torch.Tensor:
    """Pairwise |A ∩ B| / |A ∪ B| of the neuron sets `[S, ...]` (bool): `[S, S]`."""
    flat = sets.reshape(len(sets), -1).float()
    inter = flat @ flat.T
    sizes = flat.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    return inter / union.clamp(min=1)
