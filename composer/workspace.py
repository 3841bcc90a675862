"""Workspace: the one library service every front end manages bricks through.

A workspace owns a library folder, its base model path, its index folder and the embedder.
The CLI, the Gradio UI, the HTTP server and batch jobs call its verbs — `list`, `show`,
`add`, `remove`, `merge`, `train`, `update`, `rollback`, `reindex`, `doctor` — and build
their `Composer` from it (`workspace.composer()`), so none of them wires library, index and
base by hand. Every write takes the library's inter-process lock and then refreshes the
index incrementally (only added or changed cards are embedded).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Sequence

from pydantic import BaseModel

from composer.errors import ComposerError
from composer.library import BrickCard, BrickEntry, BrickLibrary, Problem

ROOT = Path(__file__).resolve().parents[1]
Progress = Callable[[int, int, float], None]  # (step, total steps, recent loss)
# Up to this many bricks the index embeds with a retriever trained on the cards, retrained
# when they change (seconds); above it, with the plain embedder: training is quadratic in the
# number of card texts, and a write must stay incremental (only its own card embedded).
TRAINED_UP_TO = 100


class BrickInfo(BaseModel):
    """What `show` tells about one brick: its card and every version kept."""

    card: BrickCard
    versions: list[int]


class Workspace:
    """Library + base + index + embedder, with one verb per library operation."""

    def __init__(self, bricks: str | Path, base: str | Path | None = None, index: str | Path | None = None,
                 embedder: str | None = None, create: bool = False):
        self.library = BrickLibrary(bricks, create=create)
        self.base_path = Path(base) if base else self.library.base_path
        self.index_folder = Path(index) if index else self.library.root / ".index"
        self.embedder_name = embedder
        self._index = None
        self._lock = threading.RLock()  # the index object is shared by the threads of one process

    @classmethod
    def default(cls, embedder: str | None = None) -> "Workspace":
        """The embedded default shipped in the repository: `bricks/` and `index/`."""
        bricks = ROOT / "bricks"
        if not (bricks / "base" / "config.json").is_file():
            raise ComposerError(f"the default library is missing at {bricks}; rebuild it with "
                                "`python -m composer.defaults.build`")
        return cls(bricks, index=ROOT / "index", embedder=embedder)

    # -- reading ---------------------------------------------------------------------------
    @property
    def index(self):
        """The brick index, loaded (or rebuilt when stale) on first use."""
        with self._lock:
            if self._index is None:
                self._index = self._open_index().load_or_build()
            return self._index

    def _open_index(self, retrain: bool = False, tune_encoder: bool = False, progress: Progress | None = None):
        """A BrickIndex whose embedder is the retriever trained for this library's cards
        (`composer.retriever`), or the plain embedder for libraries above TRAINED_UP_TO bricks."""
        from composer.index import BrickIndex, load_embedder
        from composer.retriever import brick_embedder

        if len(self.library.ids()) > TRAINED_UP_TO:
            if tune_encoder:
                raise ComposerError(f"tuning the encoder is for libraries of up to {TRAINED_UP_TO} bricks; this "
                                    f"one has {len(self.library.ids())}")
            return BrickIndex(self.library, self.index_folder, load_embedder(self.embedder_name), self.embedder_name)
        embedder, name = brick_embedder(self.library, self.index_folder, self.embedder_name, retrain=retrain,
                                        tune_encoder=tune_encoder, progress=progress)
        return BrickIndex(self.library, self.index_folder, embedder, name)

    def list(self) -> list[BrickEntry]:
        """Every brick folder, healthy or broken (with the reason), sorted by id."""
        return self.library.entries()

    def show(self, brick_id: str) -> BrickInfo:
        return BrickInfo(card=self.library.card(brick_id), versions=self.library.versions(brick_id))

    def doctor(self, fix: bool = False) -> list[Problem]:
        """Problems in the library (broken folders, stray paths); with `fix`, remove them."""
        with self.library.locked():
            problems = self.library.problems()
            if fix:
                for problem in problems:
                    self.library.discard(problem.name)
        self._refresh()
        return problems

    def composer(self, device: str | None = None, **options):
        """A `Composer` over this workspace (base loaded once, index shared)."""
        from composer.composer import Composer
        from composer.engine.engine import Engine
        from composer.models import load_base

        model, tokenizer = load_base(self.base_path, device)
        return Composer(Engine(model, tokenizer, self.library), self.index, workspace=self, **options)

    # -- writing: each verb under the library lock, then an incremental index refresh --------
    def add(self, folder: str | Path, *, brick_id: str | None = None, title: str | None = None,
            description: str | None = None, examples: Sequence[str] | None = None, force: bool = False,
            max_rank: int = 64, prompt_format: str | None = None) -> BrickCard:
        """Validate a peft LoRA folder against the base and register it. `prompt_format`: the
        one the adapter was trained in (default: its card's, else the library's)."""
        from composer.models import load_base
        from composer.ops.add import add_brick
        from composer.prompt import library_format

        base, tokenizer = load_base(self.base_path, "cpu")
        card = add_brick(self.library, folder, base, brick_id=brick_id, title=title, description=description,
                         examples=list(examples) if examples else None, force=force, max_rank=max_rank,
                         prompt_format=prompt_format, library_format=library_format(self.library, tokenizer).name)
        return self._refreshed(card)

    def remove(self, brick_id: str) -> None:
        self.library.remove(brick_id)
        self._refresh()

    def merge(self, sources: Sequence[tuple[str, float]], into: str, method: str = "linear", **params) -> BrickCard:
        from composer.ops.merge import merge_bricks

        params = {k: v for k, v in params.items() if v is not None}
        return self._refreshed(merge_bricks(self.library, list(sources), into, method, **params))

    def train(self, brick_id: str, data: str | Path, description: str, examples: Sequence[str], *,
              title: str | None = None, steps: int | None = None, rank: int | None = None, lr: float | None = None,
              seed: int = 0, max_minutes: float | None = None, prompt_format: str | None = None,
              progress: bool | Progress = True) -> BrickCard:
        """Grow: train a new LoRA brick on a JSONL of input/output rows, measure it, register it.
        Steps, rank and lr default by base size; `prompt_format` defaults to the library's
        (for a new library: chat if the base has a chat template)."""
        from composer.ops.grow import Budget, grow

        budget = Budget(steps=steps, lr=lr, rank=rank, seed=seed, max_minutes=max_minutes)
        card = grow(self.library, self.base_path, brick_id, data, description, list(examples), title=title,
                    budget=budget, prompt_format=prompt_format, progress=progress)
        return self._refreshed(card)

    def update(self, brick_id: str, data: str | Path, *, steps: int | None = None, lr: float | None = None,
               seed: int = 0, max_minutes: float | None = None, progress: bool | Progress = True) -> BrickCard:
        """Continue training a brick on new data; the result becomes its next version."""
        from composer.ops.grow import Budget, update

        budget = Budget(steps=steps, lr=lr, seed=seed, max_minutes=max_minutes)
        return self._refreshed(update(self.library, self.base_path, brick_id, data, budget=budget, progress=progress))

    def rollback(self, brick_id: str, to: int | None = None) -> BrickCard:
        return self._refreshed(self.library.rollback(brick_id, to))

    def set_out_of_scope(self, texts: Sequence[str]) -> list[str]:
        """Record the requests no brick of the library does (`LibraryMeta.out_of_scope`); the
        index holds them beside the cards."""
        kept = self.library.set_out_of_scope(texts)
        self._refresh()
        return kept

    def reindex(self, tune_encoder: bool = False, progress: Progress | None = None) -> int:
        """Train the retriever again and rebuild the index from scratch; returns the bricks indexed.
        `tune_encoder`: first fine-tune the embedder itself on the cards (minutes; `progress` sees
        each step), kept for later rebuilds (`composer.retriever.tune_encoder`)."""
        from composer.library import OUT_OF_SCOPE

        with self._lock:
            self._index = self._open_index(retrain=True, tune_encoder=tune_encoder, progress=progress).build()
            return len(set(self._index.rows) - {OUT_OF_SCOPE})

    def _refresh(self) -> None:
        """After a write: a small library's retriever is retrained on the new cards (and every
        card embedded again); otherwise only the added or changed cards are embedded."""
        from composer.retriever import is_stale

        with self._lock:
            if self._index is not None or self.index_folder.exists():
                if len(self.library.ids()) <= TRAINED_UP_TO and is_stale(self.library, self.index_folder):
                    self._index = None
                self.index.fresh()

    def _refreshed(self, card: BrickCard) -> BrickCard:
        self._refresh()
        return card
