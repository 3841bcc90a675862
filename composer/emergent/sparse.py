"""Sparse FFN inference: run the base with only some FFN neurons active.

Every FFN computes y = down(h) with h `[B, T, I]` its neurons (see `profile.py`). `SparseFFN`
puts a forward pre-hook on each down projection that replaces its input by

    h' = h ⊙ m        m `[I]` (one mask for every row), `[B, 1, I]` (one per batch row, e.g.
                      chosen per instruction from an emergent brick), times, with a router,
                      a per-token `[B, T, I]` mask: the neurons of the k experts it picks

so a switched-off neuron contributes nothing downstream. With every mask entry 1, h' = h · 1
is bitwise h: the sparse run equals the dense run exactly.

Composes with LoRA: peft (and the engine) wrap `down_proj` in a LoRA layer computing
base_layer(h) + B A h. The hook sits on the *outer* module, so the mask applies to the whole
FFN input, the LoRA branch included: a LoRA brick and an emergent brick run in one forward.

Router (MoEfication, Zhang et al. 2022, https://arxiv.org/abs/2110.01786): a small MLP per
layer reads the FFN input x `[.., H]` (the MLP module's input, saved by a pre-hook on it)
and predicts each expert's activation mass s_e = log(1 + Σ_{i ∈ e} |h_i|); the k highest run.
Trained by regression on profiled tokens, so k can be chosen freely at inference.
"""

from __future__ import annotations

import torch
from torch import nn

from composer.emergent.partition import check_masks
from composer.emergent.profile import TokenSample, ffn_layers
from composer.errors import ComposerError


def expert_mass(activations: torch.Tensor, assignment: torch.Tensor, experts: int) -> torch.Tensor:
    """Σ |h_i| over each expert's neurons: `[T, I]` and assignment `[I]` -> `[T, E]`."""
    index = assignment.expand_as(activations)
    return activations.new_zeros(*activations.shape[:-1], experts).scatter_add_(-1, index, activations.abs())


class Router(nn.Module):
    """One MLP per FFN layer: FFN input `[.., H]` -> predicted log expert mass `[.., E]`."""

    def __init__(self, assignment: torch.Tensor, hidden: int, width: int = 64):
        super().__init__()
        self.register_buffer("assignment", assignment.long())
        self.experts = int(assignment.max()) + 1
        self.nets = nn.ModuleList(nn.Sequential(nn.Linear(hidden, width), nn.ReLU(), nn.Linear(width, self.experts))
                                  for _ in range(len(assignment)))

    def forward(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self.nets[layer](x)

    def neuron_mask(self, layer: int, x: torch.Tensor, k: int) -> torch.Tensor:
        """`[.., I]` 0/1: the neurons of the k experts predicted strongest for each token."""
        scores = self(layer, x.to(self.nets[layer][0].weight.dtype))
        picked = torch.zeros_like(scores).scatter_(-1, scores.topk(k, -1).indices, 1.0)
        return picked[..., self.assignment[layer]]


def train_router(tokens: TokenSample, assignment: torch.Tensor, *, steps: int = 200, lr: float = 3e-3,
                 width: int = 64, seed: int = 0) -> Router:
    """Fit a `Router` on profiled tokens (x `[T, L, H]`, h `[T, L, I]`): full-batch Adam on MSE."""
    torch.manual_seed(seed)
    router = Router(assignment, tokens.inputs.shape[-1], width)
    targets = [expert_mass(tokens.activations[:, i], assignment[i], router.experts).log1p()
               for i in range(len(assignment))]
    opt = torch.optim.Adam(router.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = sum(nn.functional.mse_loss(router(i, tokens.inputs[:, i]), t) for i, t in enumerate(targets))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return router.eval().requires_grad_(False)


class SparseFFN:
    """Context manager: while open, the FFN neurons of `model` are masked (see module doc).

    masks: bool `[L, I]` (all rows) or `[B, L, I]` (per batch row; B must equal the batch of
    every forward, so generate one chunk of rows per mask chunk); `router` + `k`: per-token
    expert selection on top. Both may be changed between forwards (`.masks = ...`).
    """

    def __init__(self, model: nn.Module, masks: torch.Tensor | None = None, *, router: Router | None = None,
                 k: int | None = None):
        self.model = model
        self.layers = ffn_layers(model)
        if router is not None and not (k and 1 <= k <= router.experts):
            raise ComposerError(f"a router needs k in 1..{router.experts} experts per token (got {k})")
        if router is not None and tuple(router.assignment.shape) != (len(self.layers), self.layers[0].width):
            raise ComposerError(f"router partitions {tuple(router.assignment.shape)} do not fit this base's "
                                f"{len(self.layers)} FFN layers of {self.layers[0].width} neurons")
        self.router = router.to(next(model.parameters()).device) if router is not None else None
        self.k = k
        self.masks = masks
        self._inputs: dict[int, torch.Tensor] = {}
        self._handles: list = []

    @property
    def masks(self) -> torch.Tensor | None:
        return self._masks

    @masks.setter
    def masks(self, masks: torch.Tensor | None) -> None:
        self._masks = None if masks is None else check_masks(masks, self.model, batched=masks.dim() == 3)

    @property
    def active_fraction(self) -> float:
        """Share of FFN neurons a token may use: mask density times k / E with a router."""
        share = 1.0 if self._masks is None else self._masks.float().mean().item()
        return share * (self.k / self.router.experts if self.router is not None else 1.0)

    def __enter__(self) -> "SparseFFN":
        for i, layer in enumerate(self.layers):
            self._handles.append(layer.down.register_forward_pre_hook(self._mask_hook(i)))
            if self.router is not None:
                self._handles.append(layer.mlp.register_forward_pre_hook(self._input_hook(i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._inputs.clear()

    def _input_hook(self, index: int):
        def keep(module, args):
            self._inputs[index] = args[0]
        return keep

    def _mask_hook(self, index: int):
        def apply(module, args):
            h = args[0]
            if self._masks is not None:
                m = self._masks[..., index, :]  # [I] or [B, I]
                if m.dim() == 2:
                    if len(m) != len(h):
                        raise ComposerError(f"{len(m)} per-row masks for a batch of {len(h)} rows")
                    m = m[:, None, :]
                h = h * m.to(device=h.device, dtype=h.dtype)
            if self.router is not None:
                h = h * self.router.neuron_mask(index, self._inputs[index], self.k).to(h.dtype)
            return (h, *args[1:])
        return apply
