"""`SlotManager`: N resident slots for M >> N registered bricks, LRU over slots.

A brick is registered by id, folder and the base fingerprint on its card (only its files'
stamps are read, so a brick rewritten in place is reloaded). When a batch needs it, its peft
folder is read by `composer.formats.read_lora_folder` (safetensors + JSON only,
never pickle; the file format is described there), checked against the served layers, kept
in a small CPU cache, and copied into a free slot of every served layer, evicting the least
recently used brick that is neither pinned nor held by a running batch. Everything that can
be wrong with a brick is found while reading, before any slot is touched, and raised as a
`BrickError` naming the problem; a bad brick never leaves a slot half written.

`plan_waves` splits a batch whose rows need more distinct bricks than there are slots into
waves that each fit; the engine runs them one after another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Collection, Iterator, Mapping, Sequence

from composer.engine.batch import BrickError
from composer.engine.layers import BrickLinear
from composer.errors import ComposerError
from composer.formats import LoraFactors
from composer.formats import read_lora_folder


@dataclass(frozen=True)
class BrickWeights:
    brick_id: str
    rank: int                             # the largest rank over its modules
    modules: dict[str, LoraFactors]       # base-model module name -> factors

    @property
    def nbytes(self) -> int:
        return sum(d.a.nbytes + d.b.nbytes for d in self.modules.values())


@dataclass
class SlotStats:
    loads: int = 0       # bricks copied into a slot
    hits: int = 0        # requests for a brick already resident
    evictions: int = 0
    disk_reads: int = 0  # adapter files read (CPU cache misses)


def read_brick(brick_id: str, folder: Path, layers: Mapping[str, BrickLinear], max_rank: int) -> BrickWeights:
    """Read a peft LoRA folder (`read_lora_folder`) and check it against the served `layers`;
    fp32 CPU tensors."""
    where = f"brick {brick_id!r} ({folder})"
    try:
        lora = read_lora_folder(folder)
    except ComposerError as err:
        raise BrickError(f"{where}: {err}") from None
    unknown = sorted(set(lora.modules) - set(layers))
    if unknown:
        example = next(iter(layers))
        raise BrickError(f"{where} targets modules the base does not have or the engine does not serve: "
                         f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} "
                         f"({len(layers)} served modules, e.g. {example!r})")
    modules: dict[str, LoraFactors] = {}
    for name, factors in lora.modules.items():
        a, b, layer, r = factors.a.float(), factors.b.float(), layers[name], factors.rank
        if r > max_rank:
            raise BrickError(f"{where} has rank {r} at {name!r}, above the engine's max rank {max_rank}")
        if a.shape != (r, layer.in_features) or b.shape != (layer.out_features, r):
            raise BrickError(f"{where}: shapes at {name!r} are A {tuple(a.shape)}, B {tuple(b.shape)}; the base "
                             f"layer needs A [r, {layer.in_features}] and B [{layer.out_features}, r]")
        modules[name] = LoraFactors(a=a, b=b, scale=factors.scale)
    return BrickWeights(brick_id=brick_id, rank=max(f.rank for f in modules.values()), modules=modules)


def plan_waves(needs: Sequence[Collection[str]], *, slots: int, pinned: Collection[str] = (),
               max_rows: int | None = None) -> list[list[int]]:
    """Group row indices into waves whose distinct bricks, plus the pinned ones, fit `slots`.

    First fit over rows sorted by their brick set, so rows sharing bricks share a wave; a wave
    holds at most `max_rows` rows. Rows needing no brick join any wave with room. Within a
    wave rows stay grouped by brick set, base-only rows last: each brick's rows are one run of
    the batch, which lets the layers read and write them in place (`BatchMapping.aligned`).
    """
    pinned = set(pinned)
    waves: list[tuple[list[int], set[str]]] = []
    for i in sorted(range(len(needs)), key=lambda i: (not needs[i], sorted(needs[i]))):
        need = set(needs[i])
        if len(need | pinned) > slots:
            raise BrickError(f"row {i} needs {len(need)} bricks but only {slots - len(pinned - need)} "
                             f"slots are free ({slots} slots, {len(pinned)} pinned)")
        for rows, bricks in waves:
            if (max_rows is None or len(rows) < max_rows) and len(bricks | need | pinned) <= slots:
                rows.append(i)
                bricks |= need
                break
        else:
            waves.append(([i], need))
    return [rows for rows, _ in waves]


class SlotManager:
    """Owns which brick sits in which slot of every served layer. Thread-safe (one lock)."""

    def __init__(self, layers: Mapping[str, BrickLinear], *, base_fingerprint: str, cache_size: int = 16):
        if not layers:
            raise ValueError("a slot manager needs at least one served layer")
        self.layers = dict(layers)
        self.base_fingerprint = base_fingerprint
        first = next(iter(self.layers.values()))
        self.slots, self.max_rank = first.lora_a.shape[0], first.lora_a.shape[1]
        self.cache_size = cache_size
        self.stats = SlotStats()
        self._lock = threading.RLock()
        self._paths: dict[str, tuple[Path, tuple]] = {}  # brick -> (folder, file stamps)
        self._cache: OrderedDict[str, BrickWeights] = OrderedDict()
        self._resident: OrderedDict[str, int] = OrderedDict()  # brick -> slot, least recent first
        self._free = list(range(self.slots))
        self._pinned: set[str] = set()
        self._held: dict[str, int] = {}  # brick -> number of running batches using it

    # -- registry ---------------------------------------------------------------------
    def register(self, brick_id: str, folder: str | Path, base_fingerprint: str) -> None:
        """Make a brick known (only its files' stamps are read); refused if it was made for
        another base. Registering again after its files changed drops the stale copies."""
        if base_fingerprint != self.base_fingerprint:
            raise BrickError(f"brick {brick_id!r} was made for base {base_fingerprint}, "
                             f"not this base ({self.base_fingerprint})")
        entry = (Path(folder), _stamp(Path(folder)))
        with self._lock:
            if self._paths.get(brick_id, entry) != entry:
                self._forget(brick_id)
            self._paths[brick_id] = entry

    def unregister(self, brick_id: str) -> None:
        """Forget a brick entirely (its slot and cached weights are freed)."""
        with self._lock:
            self._forget(brick_id)
            self._paths.pop(brick_id, None)

    def registered(self, brick_id: str) -> bool:
        return brick_id in self._paths

    def read(self, brick_id: str) -> BrickWeights:
        """The validated weights of a registered brick, from the CPU cache or disk."""
        with self._lock:
            if brick_id not in self._paths:
                raise BrickError(f"brick {brick_id!r} is not registered with the slot manager")
            if brick_id in self._cache:
                self._cache.move_to_end(brick_id)
                return self._cache[brick_id]
            weights = read_brick(brick_id, self._paths[brick_id][0], self.layers, self.max_rank)
            self.stats.disk_reads += 1
            if self.cache_size > 0:
                self._cache[brick_id] = weights
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return weights

    def validate(self, brick_id: str) -> None:
        """Read and check a registered brick, unless resident (it was checked when loaded)."""
        with self._lock:
            if brick_id not in self._resident:
                self.read(brick_id)

    # -- slots ------------------------------------------------------------------------
    @property
    def resident(self) -> dict[str, int]:
        with self._lock:
            return dict(self._resident)

    @property
    def pinned(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._pinned)

    @contextmanager
    def hold(self, brick_ids: Collection[str]) -> Iterator[dict[str, int]]:
        """Load `brick_ids` (evicting LRU bricks as needed) and keep them resident inside the
        block; yields {brick id: slot}."""
        ids = sorted(set(brick_ids))
        with self._lock:
            slot_of = self._acquire(ids)
            for i in ids:
                self._held[i] = self._held.get(i, 0) + 1
        try:
            yield slot_of
        finally:
            with self._lock:
                for i in ids:
                    self._held[i] -= 1
                    if not self._held[i]:
                        del self._held[i]

    def pin(self, brick_id: str) -> int:
        """Load a brick and keep it resident until `unpin`; returns its slot."""
        with self._lock:
            slot = self._acquire([brick_id])[brick_id]
            self._pinned.add(brick_id)
            return slot

    def unpin(self, brick_id: str) -> None:
        with self._lock:
            self._pinned.discard(brick_id)

    def _acquire(self, ids: list[str]) -> dict[str, int]:
        missing = [i for i in ids if i not in self._resident]
        self.stats.hits += len(ids) - len(missing)
        busy = self._pinned | set(self._held) | set(ids)
        victims = [b for b in self._resident if b not in busy]  # least recently used first
        if len(missing) > len(self._free) + len(victims):
            raise BrickError(f"{len(ids)} bricks needed at once but only {len(self._free) + len(victims)} "
                             f"of {self.slots} slots can be freed ({len(self._pinned)} pinned, "
                             f"{len(self._held)} held by running batches)")
        weights = [self.read(i) for i in missing]  # every brick validated before a slot is touched
        for w in weights:
            if not self._free:
                victim = victims.pop(0)
                self._free.append(self._resident.pop(victim))
                self.stats.evictions += 1
            slot = min(self._free)
            self._free.remove(slot)
            self._load(slot, w)
            self._resident[w.brick_id] = slot
        for i in ids:
            self._resident.move_to_end(i)
        return {i: self._resident[i] for i in ids}

    def _load(self, slot: int, weights: BrickWeights) -> None:
        """Copy a brick into `slot` of every layer (cleared where the brick has no module)."""
        try:
            for name, layer in self.layers.items():
                delta = weights.modules.get(name)
                if delta is None:
                    layer.clear_slot(slot)
                else:
                    layer.set_slot(slot, delta.a, delta.b, delta.scale)
        except Exception:
            for layer in self.layers.values():
                layer.clear_slot(slot)
            self._free.append(slot)
            raise
        self.stats.loads += 1

    def _forget(self, brick_id: str) -> None:
        """Drop a brick's cached weights and slot: its files changed since it was registered."""
        if brick_id in self._held:
            raise BrickError(f"brick {brick_id!r} changed on disk while a running batch uses it")
        self._cache.pop(brick_id, None)
        if brick_id in self._resident:
            slot = self._resident.pop(brick_id)
            for layer in self.layers.values():
                layer.clear_slot(slot)
            self._free.append(slot)


def _stamp(folder: Path) -> tuple:
    """(mtime, size) of the adapter files: changes when a brick is rewritten in place."""
    stamp = []
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        try:
            st = (folder / name).stat()
            stamp += [st.st_mtime_ns, st.st_size]
        except OSError:
            stamp += [None, None]
    return tuple(stamp)
