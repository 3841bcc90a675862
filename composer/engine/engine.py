"""Engine: one resident base model, bricks in resident slots, one batch for many mixes.

`generate(prompts, mixes)` runs many prompts at once, each row with its own mix (a `Route`,
`composer.engine.batch`):

* {brick_id: weight} or `Route.static(...)`, up to `k_max` bricks (None or {} = the base alone):

      row output = base + Σ_j w_j · s_j · B_j A_j x      in every served linear layer

* `Route.arrow([brick_id, ...], k=, temperature=)`: Arrow routing (`composer.engine.arrow`), per
  token and layer the top-k (k <= `k_max`) of the candidates (all resident at once, so at most
  `slots`) by their prototypes, softmax-weighted: Σ_c g_c(x) · s_c · B_c A_c x.

Rows of all kinds share one batch: an Arrow row's candidates are pairs like a static row's
bricks, only their weights are computed per token inside each layer.

How a call runs:
1. every mix is checked (bricks per row, weights finite, >= 0, not all zero, Arrow k and
   temperature), then every distinct brick's card (known, made for this base) and files
   (rank, targets, shapes) — all before any slot is touched, so a bad request raises a `BrickError` / `LibraryError`
   naming the problem and leaves the engine serving the next one as before;
2. rows are split into waves whose distinct bricks fit the slots (`plan_waves`);
3. per wave: its bricks are held in slots (`SlotManager`, LRU, loading copies only), one
   `BatchMapping` is built and set on the shared context, and HF `generate` runs with a KV
   cache; rows keep their positions, so the mapping holds for every decode step.

The model is wrapped in place (`inject`): its servable linear modules become `BrickLinear`s
with `slots` × `max_rank` buffers, so build one Engine per model. Device-agnostic: the model's
device and dtype are used throughout (CUDA when present).
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, TypeVar

import torch

from composer.emergent.partition import load_masks
from composer.emergent.sparse import SparseFFN
from composer.engine.batch import BatchContext, BatchMapping, BrickError, Kernel, Route
from composer.engine.layers import inject
from composer.engine.slots import SlotManager, plan_waves
from composer.generation import generate, sampling_options, seeded
from composer.library import BrickLibrary, fingerprint
from composer.models import max_positions

Mix = Mapping[str, float] | Route | None
T = TypeVar("T")


class Engine:
    """Serve `library`'s bricks on `model`: `generate(prompts, mixes)`, `logits(...)`.

    slots: bricks resident at once (a batch needing more runs in waves); max_rank: the
    largest brick rank accepted (buffers are padded to it); k_max: bricks per row's mixture;
    batch_size: rows per forward; cache_size: bricks kept parsed in CPU memory; targets:
    module-name suffixes to serve (default: every linear module but the output head);
    kernel: "auto" or a fixed kernel ("sgmv", "bgmv", "reference"), for tests and benchmarks.
    """

    def __init__(self, model, tokenizer, library: BrickLibrary, max_new_tokens: int = 48, *, slots: int = 8,
                 max_rank: int = 64, k_max: int = 4, batch_size: int = 64, cache_size: int = 16,
                 targets: Collection[str] | None = None, kernel: Kernel = "auto"):
        if not 1 <= k_max <= slots:
            raise ValueError(f"k_max must be between 1 and slots ({slots}); got {k_max}")
        self.model, self.tokenizer, self.library = model, tokenizer, library
        self.max_new_tokens, self.k_max, self.batch_size, self.kernel = max_new_tokens, k_max, batch_size, kernel
        self.base_fingerprint = fingerprint(model)  # before wrapping: the base's own state dict
        self.context = BatchContext()
        layers = inject(model, self.context, slots=slots, max_rank=max_rank, targets=targets)
        self.slots = SlotManager(layers, base_fingerprint=self.base_fingerprint, cache_size=cache_size)
        self._lock = threading.RLock()
        self._transient: dict[str, tuple[Path, str]] = {}

    # -- verbs -------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], mixes: Sequence[Mix], *, max_new_tokens: int | None = None,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 seed: int | None = None, emergent: Sequence[str | None] | None = None) -> list[str]:
        """One completion per prompt, in order, each row under its own mix ({brick: weight}, a
        `Route` or None). Greedy by default; `do_sample` draws with `temperature` / `top_p`,
        reproducibly given `seed` (sampling temperature; an Arrow route has its own).

        `emergent` names, per row, an emergent brick whose FFN neuron mask that row runs
        under (None: dense); the mask gates the LoRA branch of `down_proj` too, so a row can
        combine a sparse base with its LoRA bricks."""
        if isinstance(prompts, str):
            raise BrickError("generate takes a list of prompts, not one string")
        sampling_options(do_sample, temperature, top_p)  # bad options fail before any work
        new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        device = next(self.model.parameters()).device
        masks = self._masks(emergent, len(prompts))

        def run(wave: list[int]) -> list[str]:
            with nullcontext() if masks is None else SparseFFN(self.model, masks[wave]):
                return generate(self.model, self.tokenizer, [prompts[i] for i in wave], new_tokens,
                                batch_size=len(wave), do_sample=do_sample, temperature=temperature, top_p=top_p)

        with self._lock, seeded(seed, device):
            return self._run(self._rows(mixes, len(prompts)), run)

    @torch.inference_mode()
    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, mixes: Sequence[Mix]) -> torch.Tensor:
        """Next-token logits `[rows, T, vocab]` of one forward over `input_ids` `[rows, T]`."""
        def run(wave: list[int]) -> list[torch.Tensor]:
            index = torch.tensor(wave, device=input_ids.device)
            return list(self.model(input_ids=input_ids[index], attention_mask=attention_mask[index]).logits)

        with self._lock:
            return torch.stack(self._run(self._rows(mixes, input_ids.shape[0]), run))

    def pin(self, brick_id: str) -> None:
        """Keep a brick resident (never evicted) until `unpin`: for bricks most requests use."""
        with self._lock:
            self._prepare([brick_id])
            self.slots.pin(brick_id)

    def unpin(self, brick_id: str) -> None:
        self.slots.unpin(brick_id)

    # -- steps -------------------------------------------------------------------------
    def _rows(self, mixes: Sequence[Mix], n: int) -> list[Route]:
        """Checked routes, one per row (`Route()` = the base alone); raises for the first bad one,
        naming it, before any brick is read into a slot."""
        if isinstance(mixes, (Mapping, Route)) or len(mixes) != n:
            raise BrickError(f"one brick mix per prompt: {n} prompts but "
                             f"{'a single mix' if isinstance(mixes, (Mapping, Route)) else len(mixes)} mixes")
        rows = [self._route(i, mix) for i, mix in enumerate(mixes)]
        self._prepare(sorted({b for route in rows for b in route.bricks}))
        return rows

    def _route(self, i: int, mix: Mix) -> Route:
        """Row `i`'s mix as a checked `Route` (zero weights dropped); `BrickError` naming row i."""
        if mix is None:
            return Route()
        if isinstance(mix, Mapping):
            try:
                mix = Route.static(mix)
            except BrickError as err:
                raise BrickError(f"mix {i}: {err}") from None
        if not isinstance(mix, Route):
            raise BrickError(f"mix {i} is a {type(mix).__name__}; give {{brick_id: weight}}, a Route or None")
        bad = next((b for b in mix.bricks if not isinstance(b, str)), None)
        if bad is not None:
            raise BrickError(f"mix {i}: brick ids are strings, got {bad!r}")
        if mix.mode == "static" and len(mix.bricks) > self.k_max:
            raise BrickError(f"mix {i} names {len(mix.bricks)} bricks; at most k_max={self.k_max} per row")
        if mix.mode == "arrow" and mix.k > self.k_max:
            raise BrickError(f"mix {i}: arrow k={mix.k} is above the engine's k_max={self.k_max}")
        return mix

    def _masks(self, emergent: Sequence[str | None] | None, n: int) -> torch.Tensor | None:
        """Per-row neuron masks `[rows, layers, neurons]` (all ones for dense rows), or None."""
        if emergent is None or not any(emergent):
            return None
        if len(emergent) != n:
            raise BrickError(f"one emergent brick (or None) per prompt: {n} prompts, {len(emergent)} given")
        loaded = {}
        for brick_id in set(filter(None, emergent)):
            card = self.library.card(brick_id)
            if card.kind != "emergent" or card.base_fingerprint != self.base_fingerprint:
                raise BrickError(f"brick {brick_id!r} is not an emergent brick of this base")
            loaded[brick_id] = load_masks(self.library.path(brick_id), self.model)
        dense = torch.ones_like(next(iter(loaded.values())))
        return torch.stack([loaded[b] if b else dense for b in emergent])

    def add_transient(self, brick_id: str, folder: Path, base_fingerprint: str) -> None:
        """Serve a brick that is not in the library (e.g. a merge made for one request), by an
        id library bricks cannot have (one containing ':')."""
        if ":" not in brick_id:
            raise BrickError(f"transient brick ids contain ':' so they never shadow a library brick; got {brick_id!r}")
        self._transient[brick_id] = (Path(folder), base_fingerprint)

    @property
    def transient(self) -> list[str]:
        """Ids of the transient bricks being served."""
        return list(self._transient)

    def drop_transient(self, brick_id: str) -> None:
        """Stop serving a transient brick and free what it holds."""
        with self._lock:
            if self._transient.pop(brick_id, None) is not None:
                self.slots.unregister(brick_id)

    @property
    def max_positions(self) -> int | None:
        """The longest sequence (prompt + generated tokens) the base model was built for."""
        return max_positions(self.model.config)

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer.encode(prompt, add_special_tokens=False))

    def _prepare(self, brick_ids: Sequence[str]) -> None:
        """Check each brick's card and files (read into the CPU cache) before any slot changes."""
        for brick_id in brick_ids:
            if brick_id in self._transient:
                folder, base_fp = self._transient[brick_id]
            else:
                folder, base_fp = self.library.path(brick_id), self.library.card(brick_id).base_fingerprint
            self.slots.register(brick_id, folder, base_fp)
            self.slots.validate(brick_id)

    def _run(self, rows: list[Route], run: Callable[[list[int]], list[T]]) -> list[T]:
        """`run` over waves of rows (indices), each under its own mapping; results in row order."""
        param = next(self.model.parameters())
        results: list = [None] * len(rows)
        waves = plan_waves([route.bricks for route in rows], slots=self.slots.slots,
                           pinned=self.slots.pinned, max_rows=self.batch_size)
        for wave in waves:
            with self.slots.hold({b for i in wave for b in rows[i].bricks}) as slot_of:
                mapping = BatchMapping.build([rows[i].placed(slot_of) for i in wave],
                                             device=param.device, dtype=param.dtype, kernel=self.kernel)
                with self.context.use(mapping):
                    for i, out in zip(wave, run(wave)):
                        results[i] = out
        return results
