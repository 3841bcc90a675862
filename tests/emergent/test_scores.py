"""Functionality scores (AP) on toys whose answer is known, and against scikit-learn."""

from __future__ import annotations

import pytest
import torch

from composer.emergent.profile import Profile
from composer.emergent.scores import average_precision, functionality_scores, jaccard, top_sets
from composer.errors import ComposerError


def test_matches_sklearn_with_ties():
    sklearn = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (200, 5), generator=g).float()  # many ties, like ReLU zeros
    scores[:, 4] = torch.rand(200, generator=g)  # no ties
    positive = torch.rand(200, generator=g) < 0.3
    ours = average_precision(scores, positive)
    for j in range(5):
        want = sklearn.average_precision_score(positive.numpy(), scores[:, j].numpy())
        assert abs(ours[j].item() - want) < 1e-6


def toy_profile(n_per_skill: int = 400, skills: int = 4) -> Profile:
    """Neuron 0 of layer 0 fires only for skill 1; every other neuron is noise blind to skills."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(skills).repeat_interleave(n_per_skill)
    acts = torch.rand(len(labels), 2, 8, generator=g)
    acts[:, 0, 0] = (labels == 1).float() * (1 + torch.rand(len(labels), generator=g))
    return Profile(acts, labels, tuple(f"s{i}" for i in range(skills)))


def test_a_wired_neuron_scores_one_and_a_random_one_the_base_rate():
    scores = functionality_scores(toy_profile())
    assert scores.shape == (4, 2, 8)
    assert scores[1, 0, 0].item() == pytest.approx(1.0)
    assert scores[0, 0, 0].item() < 0.25 + 0.02  # a silent neuron for skill 0: at most the base rate
    noise = scores[:, 1]  # layer 1 is all noise
    assert noise.mean().item() == pytest.approx(0.25, abs=0.02)
    assert noise.max().item() < 0.33


def test_top_sets_and_overlap():
    scores = functionality_scores(toy_profile())
    top = top_sets(scores, 0.125)  # 1 neuron of 8 per layer
    assert top.shape == (4, 2, 8) and top.sum((1, 2)).tolist() == [2, 2, 2, 2]
    assert top[1, 0, 0]
    sets = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    want = torch.tensor([[1.0, 1 / 3, 1.0], [1 / 3, 1.0, 1 / 3], [1.0, 1 / 3, 1.0]])
    assert torch.allclose(jaccard(sets), want)


def test_a_dataset_with_one_label_is_a_clear_error():
    profile = toy_profile()
    one = Profile(profile.activations, torch.zeros_like(profile.labels), ("only",))
    with pytest.raises(ComposerError, match="at least two skills"):
        functionality_scores(one)
    two_named_one_used = Profile(profile.activations, torch.zeros_like(profile.labels), ("a", "b"))
    with pytest.raises(ComposerError, match="at least two skills"):
        functionality_scores(two_named_one_used)
    missing = Profile(profile.activations, profile.labels.clamp(max=2), ("a", "b", "c", "d"))
    with pytest.raises(ComposerError, match=r"no examples for skill\(s\) \['d'\]"):
        functionality_scores(missing)
    with pytest.raises(ComposerError, match="both positive and negative"):
        average_precision(torch.rand(5, 2), torch.ones(5, dtype=torch.bool))
