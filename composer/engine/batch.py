"""Per-batch routing metadata: which bricks, with which weights, act on which batch row.

A row asks for its bricks with a `Route`, in one of two modes:

* static (`Route.static({brick: w})`; the engine also takes the plain dict): fixed weights,

      y_i = base(x_i) + Σ_j w_ij · (x_i A_sᵀ) B_sᵀ          (s = slot of entry j, scale in B_s)

* arrow (`Route.arrow(candidates, k=, temperature=)`, maths in `composer.engine.arrow`): the
  weights are per-token gates, computed inside each layer from the candidates' prototypes,

      y_it = base(x_it) + Σ_c g_c(x_it) · (x_it A_cᵀ) B_cᵀ    (g: top-k softmax, zero elsewhere)

A route names brick ids in a request and slots once placed (`Route.placed`); that is how
`BatchMapping.build` reads it.

One `BatchMapping` is built per generate/forward call, from the rows' mixes and the slots the
bricks sit in, and every `BrickLinear` reads the same object through one shared
`BatchContext` (set once, read by reference, never rebuilt per layer or per decode step:
rows keep their positions for the whole of `model.generate`).

The same content is laid out once per kernel (see `composer.engine.layers`), all at build:

* per row, `row_slots` / `row_weights` `[rows, k]` (slot -1 = empty entry): the reference;
* per (row, brick) pair, sorted by slot: `pair_rows` `[P]`, `pair_weights` `[P, 1, 1]`
  (None when every weight is 1) and `segments`, the runs of one slot in that order: SGMV
  runs one matmul pair per segment;
* the same pairs as a `[G, L]` block, G = distinct slots, L = the longest segment, short
  segments padded with weight-0 entries (`pad_rows`, `pad_weights` `[G·L]`): BGMV gathers the
  rows into it and runs one `bmm` for all slots; `slot_index` `[G]` gathers the slots'
  weights unless `slot_ids` is a contiguous range (then a strided view reads them in place).
  When the block is the batch's first G·L rows (`aligned`: one brick per row, rows grouped by
  brick in equal runs, base-only rows last, as the engine orders its waves) x and y are used
  in place: no gather, no scatter. When every row has the same one brick at weight 1
  (`single`, a one-brick run) BGMV is two plain GEMMs on the flat rows.
* Arrow rows (`arrow`, an `ArrowRows`): each (row, candidate) is one more pair in the layouts
  above, so the same kernels run them; only their weights differ, being gates known inside
  each layer. Per forward a layer computes the gates `[R, T, C]` of all R Arrow rows at once
  and reads each pair's weights `[T]` from one table (the gates, then the static pairs' fixed
  weights, then 0 for padding) through `pair_source` / `pad_source`, laid out here. A batch
  without Arrow rows never builds the table: its static rows keep the path above.

Rows without a brick appear in no pair: they cost nothing.

`kernel_for` picks by shape among the torch kernels (`kernel="torch"`, and "auto" off CUDA).
On CUDA with `triton` importable, "auto" is the fused Triton pair instead
(`composer.engine.triton_kernels`: one shrink and one expand launch per layer over the
device tables `fused`, built here once per mapping; not yet measured on a GPU).

The torch kernels, measured on a 2-core AMD EPYC, fp32, one thread, one 1024->1024 layer, 32
rows, r=16, 32 distinct bricks: decode base 750 µs; BGMV +77 µs (reads the 4 MB of bricks
once, at about the copy bandwidth); SGMV +254 µs (32 segments of small ops); gathering A and
B per row instead +143 µs. Prefill (12 tokens a row): base 7.7 ms; BGMV +0.93 ms, SGMV +1.32
ms; but a padded block computes its padding, so a prefill of unbalanced segments runs SGMV
(exact sizes, exact per-slot ranks).
"""

from __future__ import annotations

import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Hashable, Iterator, Literal, Mapping, Sequence

import torch

from composer.errors import ComposerError
from composer.engine import arrow as arrow_ops
from composer.params import Param

if TYPE_CHECKING:
    from composer.engine.triton_kernels import FusedTables

Kernel = Literal["auto", "torch", "triton", "sgmv", "bgmv", "reference"]
KERNEL_NAMES: tuple[str, ...] = ("auto", "torch", "triton", "sgmv", "bgmv", "reference")
MAX_WEIGHT = 10.0  # beyond this a LoRA delta swamps the base: almost surely a caller's bug


class BrickError(ComposerError):
    """A brick or a request the engine cannot serve; the message names the problem."""


@dataclass(frozen=True)
class Route:
    """How one row's bricks act on it; valid by construction (anything else raises `BrickError`).

    mode "static": brick j at weight `weights[j]`, each a finite number in [0, MAX_WEIGHT], not
    all zero; zero weights are dropped; no bricks at all (`Route()`) is the base alone.
    mode "arrow": per token and layer, the top-`k` of the candidate `bricks` with softmax
    `temperature` (`composer.engine.arrow`, parameters declared there as `PARAMS`); k defaults to
    min(4, candidates), temperature to 1.0. Build with `Route.static` / `Route.arrow`.
    """

    mode: Literal["static", "arrow"] = "static"
    bricks: tuple[Hashable, ...] = ()     # brick ids in a request, slots once placed
    weights: tuple[float, ...] = ()       # static only: one per brick
    k: int | None = None                  # arrow only
    temperature: float | None = None      # arrow only

    @classmethod
    def static(cls, weights: Mapping[Hashable, float]) -> "Route":
        """Fixed weights {brick: w}: the row adds Σ w · s B A of its bricks."""
        return cls("static", tuple(weights), tuple(weights.values()))

    @classmethod
    def arrow(cls, bricks: Sequence[Hashable], *, k: int | None = None, temperature: float | None = None) -> "Route":
        """Arrow routing among the candidate `bricks` (see `composer.engine.arrow`)."""
        if isinstance(bricks, (str, Mapping)):
            raise BrickError(f"an arrow route takes a list of candidate bricks, not a {type(bricks).__name__}")
        return cls("arrow", tuple(bricks), k=k, temperature=temperature)

    def placed(self, slot_of: Mapping[Hashable, int]) -> "Route":
        """The same route over the slots its bricks sit in."""
        return replace(self, bricks=tuple(slot_of[b] for b in self.bricks))

    def __post_init__(self) -> None:
        bricks = tuple(self.bricks)
        if len(set(bricks)) != len(bricks):
            raise BrickError(f"a route names a brick twice: {list(bricks)}")
        if self.mode == "static":
            self._static(bricks)
        elif self.mode == "arrow":
            self._arrow(bricks)
        else:
            raise BrickError(f"unknown route mode {self.mode!r}; choose static or arrow")

    def _static(self, bricks: tuple) -> None:
        if self.k is not None or self.temperature is not None:
            raise BrickError("k and temperature belong to arrow routes; a static route has weights only")
        weights = tuple(self.weights)
        if len(weights) != len(bricks):
            raise BrickError(f"a static route needs one weight per brick: {len(bricks)} bricks, "
                             f"{len(weights)} weights")
        for brick, w in zip(bricks, weights):
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) \
                    or not 0 <= w <= MAX_WEIGHT:
                raise BrickError(f"weight {w!r} of brick {brick!r} is not a finite number in [0, {MAX_WEIGHT}]")
        if weights and not any(weights):
            raise BrickError("all weights are zero; pass None for the base alone")
        kept = [(b, float(w)) for b, w in zip(bricks, weights) if w > 0]
        object.__setattr__(self, "bricks", tuple(b for b, _ in kept))
        object.__setattr__(self, "weights", tuple(w for _, w in kept))

    def _arrow(self, bricks: tuple) -> None:
        if self.weights:
            raise BrickError("an arrow route takes no weights: its gates are computed per token")
        if not bricks:
            raise BrickError("an arrow route needs at least one candidate brick")
        k = min(arrow_ops.K.default, len(bricks)) if self.k is None else _arrow_param(arrow_ops.K, self.k)
        if k > len(bricks):
            raise BrickError(f"arrow route: k={k} but only {len(bricks)} candidate bricks; "
                             "k is at most the number of candidates")
        temperature = arrow_ops.TEMPERATURE.default if self.temperature is None \
            else _arrow_param(arrow_ops.TEMPERATURE, self.temperature)
        object.__setattr__(self, "bricks", bricks)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "temperature", temperature)


def _arrow_param(p: Param, value) -> int | float:
    """`value` of the declared Arrow parameter `p`, as its type, or a `BrickError` naming the rule."""
    kind = numbers.Integral if p.type is int else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not p.check(p.type(value)):
        raise BrickError(f"arrow route: {p.name}={value!r} is invalid; it must be {p.rule}")
    return p.type(value)


@dataclass(frozen=True)
class Segment:
    """Pairs `start:stop` of the slot-sorted pair order all use slot `slot`."""

    slot: int
    start: int
    stop: int


@dataclass(frozen=True, eq=False)
class ArrowRows:
    """The Arrow rows of a batch (R rows, C = most candidates, K = largest k), as the layers'
    gate step reads them; each pair's weights come from the table [R·C gates; F fixed]."""

    routes: tuple[tuple[int, Route], ...]  # (batch row, its route over slots): the reference kernel
    rows: torch.Tensor                     # [R] long, the batch rows routed by Arrow
    slots: torch.Tensor                    # [R, C] long, candidates' slots, 0 past a row's candidates
    valid: torch.Tensor                    # [R, C] bool, a real candidate (not padding)
    rank_ok: torch.Tensor                  # [R, 1, K] bool, rank j < that row's k
    inv_temperature: torch.Tensor          # [R, 1, 1] float32, 1 / τ
    fixed: torch.Tensor                    # [F, 1] model dtype, static pairs' weights in pair order, then 0
    pair_source: torch.Tensor              # [P] long, table row of each pair's weights
    pad_source: torch.Tensor               # [G·L] long, table row of each block entry's (padding -> 0)

    @classmethod
    def build(cls, routed: list[tuple[int, Route]], pairs: list[tuple[int, int, float, int]], pad: list[int],
              *, device: torch.device | str, dtype: torch.dtype) -> "ArrowRows":
        """From the Arrow rows, the slot-sorted pairs (slot, row, weight, gate index or -1) and
        the block's pair index per entry (-1 = padding)."""
        width = max(len(route.bricks) for _, route in routed)
        slots = torch.zeros(len(routed), width, dtype=torch.long)
        valid = torch.zeros(len(routed), width, dtype=torch.bool)
        for j, (_, route) in enumerate(routed):
            slots[j, :len(route.bricks)] = torch.tensor(route.bricks)
            valid[j, :len(route.bricks)] = True
        ks = torch.tensor([route.k for _, route in routed]).view(-1, 1, 1)
        gates = len(routed) * width
        sources, fixed = [], []
        for _, _, weight, gate in pairs:
            sources.append(gate if gate >= 0 else gates + len(fixed))
            if gate < 0:
                fixed.append(weight)
        fixed.append(0.0)
        return cls(
            routes=tuple(routed),
            rows=torch.tensor([i for i, _ in routed], dtype=torch.long, device=device),
            slots=slots.to(device),
            valid=valid.to(device),
            rank_ok=(torch.arange(int(ks.max())) < ks).to(device),
            inv_temperature=torch.tensor([1 / route.temperature for _, route in routed],
                                         dtype=torch.float32, device=device).view(-1, 1, 1),
            fixed=torch.tensor(fixed, dtype=dtype, device=device).view(-1, 1),
            pair_source=torch.tensor(sources, dtype=torch.long, device=device),
            pad_source=torch.tensor([sources[p] if p >= 0 else gates + len(fixed) - 1 for p in pad],
                                    dtype=torch.long, device=device),
        )


@dataclass(frozen=True, eq=False)
class BatchMapping:
    rows: int
    row_slots: torch.Tensor              # [rows, k] long, static entries, -1 = none (Arrow rows: none)
    row_weights: torch.Tensor            # [rows, k] model dtype, 0 where the slot is -1
    pair_rows: torch.Tensor              # [P] long, batch row of each pair, slot-sorted
    pair_weights: torch.Tensor | None    # [P, 1, 1] model dtype; None when all are 1 or `arrow` is set
    segments: tuple[Segment, ...]        # runs of equal slot over the pair order
    slot_ids: tuple[int, ...]            # [G] the distinct slots in use, ascending
    slot_index: torch.Tensor             # [G] long, slot_ids on the device
    pad_len: int                         # L, the longest segment
    pad_rows: torch.Tensor               # [G·L] long, row of each block entry (0 for padding)
    pad_weights: torch.Tensor | None     # [G·L, 1, 1]; 0 for padding; None if no padding and all 1, or `arrow`
    aligned: bool                        # the block is the batch's first G·L rows, in order
    kernel: Kernel = "auto"              # "auto" is resolved at build: "triton" on CUDA with triton
    arrow: ArrowRows | None = None       # the Arrow rows' gate layout; None when there are none
    contiguous: bool = False             # the slots in use are one range: a strided view, no gather
    balanced: bool = True                # the padded block wastes at most a quarter of its rows
    fused: FusedTables | None = None     # the Triton kernels' device tables (kernel "triton" only)
    single: int | None = None            # the slot, when every row has just that brick at weight 1

    @classmethod
    def build(cls, rows: Sequence[Route | Sequence[tuple[int, float]]], *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32, kernel: Kernel = "auto") -> "BatchMapping":
        """From per-row routes over slots (`Route.placed`) or (slot, weight) entries (a static
        row); zero weights are dropped, a slot may not repeat within a row (a mixture names each
        brick once)."""
        if kernel not in KERNEL_NAMES:
            raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNEL_NAMES)}")
        if kernel in ("auto", "triton") and (kernel == "triton" or torch.device(device).type == "cuda"):
            from composer.engine import triton_kernels  # imports triton: only on this path

            if triton_kernels.usable(device):
                kernel = "triton"
            elif kernel == "triton":
                raise ValueError(f"kernel 'triton' needs the triton package and a CUDA device "
                                 f"(or TRITON_INTERPRET=1 for CPU tensors); device is {device}")
        static: list[tuple[tuple[int, float], ...]] = []
        routed: list[tuple[int, Route]] = []
        for i, row in enumerate(rows):
            if isinstance(row, Route) and row.mode == "arrow":
                routed.append((i, row))
                row = ()
            elif isinstance(row, Route):
                row = zip(row.bricks, row.weights)
            static.append(tuple(row))
        k = max((len(r) for r in static), default=0) or 1
        row_slots = torch.full((len(rows), k), -1, dtype=torch.long)
        row_weights = torch.zeros(len(rows), k, dtype=torch.float64)
        pairs: list[tuple[int, int, float, int]] = []  # (slot, row, weight, gate index; -1 = static)
        for i, entries in enumerate(static):
            if len({s for s, _ in entries}) != len(entries):
                raise ValueError(f"row {i} names a slot twice: {list(entries)}")
            for j, (slot, weight) in enumerate(entries):
                if slot < 0:
                    raise ValueError(f"row {i} has a negative slot {slot}")
                if weight != 0:
                    row_slots[i, j], row_weights[i, j] = slot, weight
                    pairs.append((slot, i, float(weight), -1))
        width = max((len(route.bricks) for _, route in routed), default=0)
        for n, (i, route) in enumerate(routed):
            for c, slot in enumerate(route.bricks):
                if slot < 0:
                    raise ValueError(f"row {i} has a negative slot {slot}")
                pairs.append((slot, i, 1.0, n * width + c))
        pairs.sort(key=lambda p: p[:2])
        segments: list[Segment] = []
        for p, (slot, *_) in enumerate(pairs):
            if segments and segments[-1].slot == slot:
                segments[-1] = Segment(slot, segments[-1].start, p + 1)
            else:
                segments.append(Segment(slot, p, p + 1))
        pad_len = max((s.stop - s.start for s in segments), default=0)
        pad = [p for s in segments for p in [*range(s.start, s.stop), *[-1] * (pad_len - s.stop + s.start)]]
        pad_rows = [pairs[p][1] if p >= 0 else 0 for p in pad]
        weights = [w for _, _, w, _ in pairs]
        unit = not routed and all(w == 1.0 for w in weights)

        def column(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device).view(-1, 1, 1)

        return cls(
            rows=len(rows),
            row_slots=row_slots.to(device),
            row_weights=row_weights.to(device=device, dtype=dtype),
            pair_rows=torch.tensor([r for _, r, _, _ in pairs], dtype=torch.long, device=device),
            pair_weights=None if unit or routed else column(weights),
            segments=tuple(segments),
            slot_ids=tuple(s.slot for s in segments),
            slot_index=torch.tensor([s.slot for s in segments], dtype=torch.long, device=device),
            pad_len=pad_len,
            pad_rows=torch.tensor(pad_rows, dtype=torch.long, device=device),
            pad_weights=None if routed or (unit and len(pad) == len(pairs))
            else column([pairs[p][2] if p >= 0 else 0.0 for p in pad]),
            aligned=unit and pad_rows == list(range(len(pad_rows))),
            kernel=kernel,
            arrow=ArrowRows.build(routed, pairs, pad, device=device, dtype=dtype) if routed else None,
            contiguous=bool(segments) and segments[-1].slot - segments[0].slot + 1 == len(segments),
            balanced=len(pad) * 4 <= len(pairs) * 5,
            fused=triton_kernels.FusedTables.build(len(rows), pairs, segments, device=device)
            if kernel == "triton" else None,
            single=segments[0].slot if unit and len(segments) == 1 and len(pairs) == len(rows) else None,
        )

    @property
    def empty(self) -> bool:
        """No row has a brick: layers return the base output untouched."""
        return not self.segments

    def kernel_for(self, tokens_per_row: int) -> Kernel:
        """The kernel for one forward of `tokens_per_row` tokens per row (1 = a decode step).
        Torch kernels ("auto" off CUDA, "torch"): BGMV for decode, and for a prefill whose
        padded block wastes at most a quarter of its rows; SGMV for a prefill of unbalanced
        segments (no padding, exact ranks). Both facts are fixed at build, read here per layer."""
        if self.kernel not in ("auto", "torch"):
            return self.kernel
        return "bgmv" if tokens_per_row == 1 or self.balanced else "sgmv"


class BatchContext:
    """The one mutable cell every served layer of a model reads its mapping from."""

    def __init__(self) -> None:
        self.mapping: BatchMapping | None = None

    @contextmanager
    def use(self, mapping: BatchMapping | None) -> Iterator[BatchMapping | None]:
        """Route every forward inside the block by `mapping` (None = base alone)."""
        previous, self.mapping = self.mapping, mapping
        try:
            yield mapping
        finally:
            self.mapping = previous
