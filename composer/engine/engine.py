"""Engine: one resident base model, bricks in resident slots, one batch for many mixes.

`generate(prompts, mixes)` runs many prompts at once, each row with its own brick mix
({brick_id: weight}, up to `k_max` bricks; None or {} = the base alone):

    row output = base + Σ_j w_j · s_j · B_j A_j x      in every served linear layer

How a call runs:
1. every mix is checked (bricks per row, weights finite, >= 0, not all zero), then every
   distinct brick's card (known, made for this base) and files (rank, targets, shapes) —
   all before any slot is touched, so a bad request raises a `BrickError` / `LibraryError`
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

import json
import math
import numbers
import threading
from pathlib import Path
from typing import Callable, Collection, Mapping, Sequence, TypeVar

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.engine.batch import BatchContext, BatchMapping, Kernel
from composer.engine.generate import generate, sampling_options, seeded
from composer.engine.layers import inject
from composer.engine.slots import BrickError, SlotManager, plan_waves
from composer.library import BrickLibrary, LibraryError, fingerprint

Mix = Mapping[str, float] | None
Row = tuple[tuple[str, float], ...]  # one row's (brick id, weight) entries, zero weights dropped
T = TypeVar("T")
MAX_WEIGHT = 10.0  # beyond this a LoRA delta swamps the base: almost surely a caller's bug


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_tokenizer(path: Path):
    """The tokenizer class the folder's `tokenizer_config.json` names, else AutoTokenizer.

    transformers 5 lets some model types (qwen2, mistral) override the saved class: a
    byte-level tokenizer beside a Qwen2 config silently loads as an empty Qwen2 tokenizer.
    """
    import transformers

    config = Path(path) / "tokenizer_config.json"
    name = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    cls = getattr(transformers, name, None) if name else None
    return (cls or AutoTokenizer).from_pretrained(path)


def load_base(path: str | Path, device: str | None = None):
    """(model, tokenizer) from a Hugging Face folder, loaded offline, in eval mode."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise LibraryError(f"no base model at {path}: config.json is missing")
    dev = pick_device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev).eval()
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError) as err:
        raise LibraryError(f"cannot load base model at {path}: {str(err).splitlines()[0]}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


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

    # -- verbs -------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], mixes: Sequence[Mix], *, max_new_tokens: int | None = None,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                 seed: int | None = None) -> list[str]:
        """One completion per prompt, in order, each row under its own mix. Greedy by default;
        `do_sample` draws with `temperature` / `top_p`, reproducibly given `seed`."""
        if isinstance(prompts, str):
            raise BrickError("generate takes a list of prompts, not one string")
        sampling_options(do_sample, temperature, top_p)  # bad options fail before any work
        new_tokens = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        device = next(self.model.parameters()).device

        def run(wave: list[int]) -> list[str]:
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
    def _rows(self, mixes: Sequence[Mix], n: int) -> list[Row]:
        """Checked, normalised mixes; raises for the first bad one, naming it."""
        if isinstance(mixes, Mapping) or len(mixes) != n:
            raise BrickError(f"one brick mix per prompt: {n} prompts but "
                             f"{'a single mapping' if isinstance(mixes, Mapping) else len(mixes)} mixes")
        rows = []
        for i, mix in enumerate(mixes):
            if mix is None:
                rows.append(())
                continue
            if not isinstance(mix, Mapping):
                raise BrickError(f"mix {i} is a {type(mix).__name__}; give {{brick_id: weight}} or None")
            if len(mix) > self.k_max:
                raise BrickError(f"mix {i} names {len(mix)} bricks; at most k_max={self.k_max} per row")
            for brick_id, w in mix.items():
                if not isinstance(brick_id, str):
                    raise BrickError(f"mix {i}: brick ids are strings, got {brick_id!r}")
                if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) \
                        or not 0 <= w <= MAX_WEIGHT:
                    raise BrickError(f"mix {i}: weight {w!r} of brick {brick_id!r} is not a finite number "
                                     f"in [0, {MAX_WEIGHT}]")
            if mix and sum(mix.values()) == 0:
                raise BrickError(f"mix {i}: all weights are zero; pass None for the base alone")
            rows.append(tuple((b, float(w)) for b, w in sorted(mix.items()) if w > 0))
        self._prepare(sorted({b for row in rows for b, _ in row}))
        return rows

    def _prepare(self, brick_ids: Sequence[str]) -> None:
        """Check each brick's card and files (read into the CPU cache) before any slot changes."""
        for brick_id in brick_ids:
            card = self.library.card(brick_id)
            self.slots.register(brick_id, self.library.path(brick_id), card.base_fingerprint)
            self.slots.validate(brick_id)

    def _run(self, rows: list[Row], run: Callable[[list[int]], list[T]]) -> list[T]:
        """`run` over waves of rows (indices), each under its own mapping; results in row order."""
        param = next(self.model.parameters())
        results: list = [None] * len(rows)
        waves = plan_waves([[b for b, _ in row] for row in rows], slots=self.slots.slots,
                           pinned=self.slots.pinned, max_rows=self.batch_size)
        for wave in waves:
            with self.slots.hold({b for i in wave for b, _ in rows[i]}) as slot_of:
                mapping = BatchMapping.build([[(slot_of[b], w) for b, w in rows[i]] for i in wave],
                                             device=param.device, dtype=param.dtype, kernel=self.kernel)
                with self.context.use(mapping):
                    for i, out in zip(wave, run(wave)):
                        results[i] = out
        return results
