"""Balanced k-means experts, skill masks, and emergent bricks on disk."""

from __future__ import annotations

import pytest
import torch

from composer.emergent.partition import (MASKS, balanced_kmeans, check_masks, load_masks, partition, save_emergent,
                                         skill_masks)
from composer.emergent.profile import record
from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, fingerprint


def test_balanced_kmeans_recovers_separated_clusters_at_equal_sizes():
    g = torch.Generator().manual_seed(0)
    centers = torch.eye(8)[:4] * 10
    points = (centers.repeat_interleave(16, 0) + torch.randn(64, 8, generator=g))[torch.randperm(64, generator=g)]
    assign = balanced_kmeans(points, 4)
    assert torch.bincount(assign).tolist() == [16, 16, 16, 16]
    truth = points.argmax(1)  # each point's own center
    for c in range(4):  # every cluster is exactly one true group
        assert len(set(truth[assign == c].tolist())) == 1


@pytest.mark.parametrize("arch", ["llama", "phi3", "gpt2"])
def test_weight_partitions_are_balanced(tiny, arch):
    assignment = partition(tiny.make(arch), 8)
    assert assignment.shape == (2, tiny.width[arch])
    assert all(torch.bincount(row).tolist() == [tiny.width[arch] // 8] * 8 for row in assignment)


def test_coactivation_partitions_need_tokens(tiny):
    model = tiny.make()
    with pytest.raises(ComposerError, match="tokens_per_example"):
        partition(model, 4, features="coactivation")
    profile = record(model, tiny.tokenizer, tiny.examples, tiny.labels, tiny.skills, tokens_per_example=4)
    assert partition(model, 4, features="coactivation", tokens=profile.tokens).shape == (2, 64)
    with pytest.raises(ComposerError, match="choose one of"):
        partition(model, 4, features="gradients")


def test_skill_masks_keep_the_heaviest_neurons_within_budget():
    g = torch.Generator().manual_seed(0)
    importance = torch.rand(3, 2, 16, generator=g)
    masks = skill_masks(importance, 0.25)
    kept = masks.sum((1, 2))
    assert (kept <= 8).all() and (kept >= 6).all()  # 25 % of 32 units, ties aside
    for s in range(3):
        for layer in range(2):  # within a layer the kept neurons are the heaviest ones
            row, keep = importance[s, layer], masks[s, layer]
            assert keep.any() and (row[keep].min() > row[~keep].max())


def test_layers_get_the_budget_their_spread_needs():
    """Layer 0 is one dominant neuron, layer 1 spreads its work evenly: layer 1 keeps more."""
    importance = torch.full((1, 2, 16), 1.0)
    importance[0, 0, 3] = 100.0
    masks = skill_masks(importance, 0.5)
    assert masks[0, 0].sum() < masks[0, 1].sum()
    assert masks[0, 0, 3] and masks.sum() <= 16


def test_expert_masks_keep_whole_experts():
    g = torch.Generator().manual_seed(0)
    importance = torch.rand(3, 2, 16, generator=g)
    assignment = torch.arange(16).remainder(4).expand(2, 16)  # expert e = neurons e, e+4, e+8, e+12
    masks = skill_masks(importance, 0.5, assignment)
    assert (masks.sum((1, 2)) <= 16).all()
    for s in range(3):
        for layer in range(2):
            experts = assignment[layer][masks[s, layer]].unique()
            assert masks[s, layer].eq(torch.isin(assignment[layer], experts)).all()
    with pytest.raises(ComposerError, match="fraction"):
        skill_masks(importance, 0.0)


def card(model, brick_id="emergent-copy", kind="emergent"):
    return BrickCard(id=brick_id, kind=kind, title="Copy neurons", description="The neurons that copy text.",
                     examples=["Copy the text", "Echo it"], base_fingerprint=fingerprint(model))


def test_masks_round_trip_through_the_library(tiny, tmp_path):
    model = tiny.make()
    library = BrickLibrary(tmp_path, create=True)
    masks = torch.rand(2, 64) < 0.4
    folder = save_emergent(library, card(model), masks, model)
    assert (folder / MASKS).is_file() and library.ids() == ["emergent-copy"]
    assert library.card("emergent-copy").kind == "emergent"
    assert torch.equal(load_masks(folder, model), masks)
    assert torch.equal(load_masks(folder), masks)


def test_masks_that_do_not_fit_are_clear_errors(tiny, tmp_path):
    model = tiny.make()
    library = BrickLibrary(tmp_path, create=True)
    with pytest.raises(ComposerError, match=r"must be \[2, 64\]"):
        save_emergent(library, card(model), torch.ones(2, 32, dtype=torch.bool), model)
    with pytest.raises(ComposerError, match="kind 'emergent'"):
        save_emergent(library, card(model, kind="customized"), torch.ones(2, 64, dtype=torch.bool), model)
    with pytest.raises(ComposerError, match="only 0 and 1"):
        check_masks(torch.full((2, 64), 0.5), model)
    with pytest.raises(ComposerError, match=r"\[layers, neurons\]"):
        check_masks(torch.ones(64, dtype=torch.bool))
    folder = save_emergent(library, card(model), torch.ones(2, 64, dtype=torch.bool), model)
    with pytest.raises(ComposerError, match=r"do not fit this base.*\[2, 128\]"):
        load_masks(folder, tiny.make("gpt2"))  # GPT-2's FFN is 128 wide
    with pytest.raises(ComposerError, match="not an emergent brick"):
        load_masks(tmp_path)
    (folder / MASKS).write_bytes(b"not safetensors")
    with pytest.raises(ComposerError, match="corrupt"):
        load_masks(folder)
