"""The four PNG figures of the emergent-brick analysis (matplotlib, headless Agg backend).

scores.png    best functionality score per layer × skill, and the histogram of all scores
overlap.png   Jaccard overlap of the skills' top neuron sets
pruning.png   exact-match and loss change on every skill (columns) after pruning a skill's top set (rows)
sparsity.png  exact match relative to dense vs share of FFN neurons active, per method, and
              the activation mass per-token expert selection keeps
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch


def _heatmap(ax, values, rows: Sequence[str], cols: Sequence[str], *, cmap: str, vmin: float, vmax: float, fmt: str):
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6.5,
                    color="white" if abs(v - vmin) > 0.6 * (vmax - vmin) else "black")
    return image


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw(out: Path, *, skills: Sequence[str], best_per_layer: torch.Tensor, all_scores: torch.Tensor,
         base_rate: float, overlap: torch.Tensor, pruning, curve, coverage: dict[str, dict[str, float]],
         features: str, target: float, top_fraction: float) -> list[Path]:
    """Write the figures into `out`; returns their paths. pruning: `PruneRow`s, curve: `SparsePoint`s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    image = _heatmap(left, best_per_layer.tolist(), [f"layer {i}" for i in range(len(best_per_layer))], skills,
                     cmap="viridis", vmin=0, vmax=1, fmt=".2f")
    fig.colorbar(image, ax=left, fraction=0.04)
    left.set_title("best functionality score (AP) per layer and skill")
    right.hist(all_scores.numpy(), bins=50, range=(0, 1), color="tab:blue")
    right.axvline(base_rate, color="tab:red", ls="--", label=f"base rate {base_rate:.2f}")
    right.set_yscale("log")
    right.set_xlabel("functionality score (AP, one skill vs rest)")
    right.set_ylabel("neuron × skill pairs")
    right.legend()
    right.set_title("distribution of all scores")
    paths.append(_save(fig, out / "scores.png"))

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = _heatmap(ax, overlap.tolist(), skills, skills, cmap="magma_r", vmin=0, vmax=1, fmt=".2f")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title(f"Jaccard overlap of top-{top_fraction:.0%} neurons per layer")
    paths.append(_save(fig, out / "overlap.png"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5))
    names = [f"prune {row.pruned}" for row in pruning]
    values = [[row.exact_match_change[s] for s in skills] for row in pruning]
    image = _heatmap(left, values, names, skills, cmap="RdBu", vmin=-1, vmax=1, fmt="+.2f")
    fig.colorbar(image, ax=left, fraction=0.046, label="exact match − dense")
    left.set_xlabel("evaluated skill")
    losses = [[row.loss_change[s] for s in skills] for row in pruning]
    top = max(1e-3, max(abs(v) for row in losses for v in row))
    image = _heatmap(right, losses, names, skills, cmap="RdBu_r", vmin=-top, vmax=top, fmt="+.2f")
    fig.colorbar(image, ax=right, fraction=0.046, label="answer loss − dense (nats/token)")
    right.set_xlabel("evaluated skill")
    fig.suptitle(f"zeroing a skill's top-{top_fraction:.0%} neurons per layer (or a random {top_fraction:.0%})")
    paths.append(_save(fig, out / "pruning.png"))

    fig, (ax, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for method in dict.fromkeys(p.method for p in curve):
        points = sorted((p.fraction_active, p.ratio_to_dense) for p in curve if p.method == method)
        ax.plot(*zip(*points), marker="o", label=method)
    ax.axhline(target, color="gray", ls="--", lw=1, label=f"{target:.0%} of dense")
    ax.axvline(0.4, color="gray", ls=":", lw=1, label="40 % active")
    ax.set_xlabel("share of FFN neurons active")
    ax.set_ylabel("exact match / dense exact match")
    ax.set_ylim(0, max(1.05, max(p.ratio_to_dense for p in curve) + 0.05))
    ax.legend(fontsize=8)
    ax.set_title("sparse inference on the generic skills")
    for name, points in coverage.items():
        xs = sorted(points, key=float)
        right.plot([float(x) for x in xs], [points[x] for x in xs], marker="o",
                   label=f"router picks ({features} experts)" if name == "router" else f"{name} experts, oracle top-k")
    right.set_xlabel("share of experts per layer (k / E)")
    right.set_ylabel("share of activation mass Σ|h| kept")
    right.set_ylim(0, 1.02)
    right.legend(fontsize=8)
    right.set_title("per-token expert coverage (held-out tokens)")
    paths.append(_save(fig, out / "sparsity.png"))
    return paths
