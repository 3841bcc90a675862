"""The brick library on disk: a base-model folder plus one folder per brick.

A brick folder is a plain peft LoRA folder (`adapter_config.json`,
`adapter_model.safetensors`) plus `brick.json`, its card. Peft reads our folders and we read
peft's. The card names its base by fingerprint so a brick never runs on a base it was not
made for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Iterator, Literal, Mapping, Sequence, TypeVar

import torch
from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, ValidationError

from composer.errors import ComposerError
from composer.storage import atomic_dir, recover, write_json, write_text

CARD = "brick.json"
ADAPTER_CONFIG, ADAPTER_WEIGHTS, MASKS = "adapter_config.json", "adapter_model.safetensors", "masks.safetensors"
DIGESTED = (CARD, ADAPTER_CONFIG, ADAPTER_WEIGHTS, MASKS)
LOCK, GENERATION, META = ".library.lock", ".generation", "library.json"
PICKLES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
HISTORY = ".versions"  # inside a brick folder: one full snapshot per older version
BASE_DIR = "base"
_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class LibraryError(ComposerError):
    """A problem with the library or a brick, phrased for the user."""


class Metrics(BaseModel):
    """Exact match (surrounding whitespace ignored) with the brick and with the base alone."""

    exact_match: float
    base_exact_match: float
    samples: int
    eval: str = ""


class BrickCard(BaseModel):
    id: str
    title: str
    description: str
    examples: list[str] = Field(min_length=1)
    kind: Literal["customized", "emergent"] = "customized"
    prompt_format: Literal["plain", "chat"] = "plain"  # what it was trained on (composer.prompt)
    base_fingerprint: str
    base_architecture: str = ""
    metrics: Metrics | None = None
    version: int = 1
    source: dict = Field(default_factory=dict)
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def text_for_index(self) -> list[str]:
        """The texts a brick is retrieved by: its title + description, then each example."""
        return [f"{self.title}: {self.description}", *self.examples]


def check_id(brick_id: str) -> str:
    if not _ID.match(brick_id or ""):
        raise LibraryError(f"invalid brick id {brick_id!r}: use 1-64 of a-z, 0-9, '_' or '-', starting alphanumeric")
    return brick_id


def fingerprint(model) -> str:
    """sha256 over the config (minus volatile keys) and every parameter, name and shape.

    Tensors are hashed as float32 so a base stored in fp16 and loaded in fp32 (or bf16)
    keeps one fingerprint; tensors over 1M elements are hashed on a fixed stride so the
    fingerprint of a 7B model costs seconds, not minutes.
    """
    config = model.config.to_dict()
    for key in ("transformers_version", "torch_dtype", "dtype", "_name_or_path", "architectures",
                "use_cache", "_attn_implementation_autoset", "output_attentions", "output_hidden_states"):
        config.pop(key, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        if flat.numel() > 1_000_000:
            flat = flat[:: flat.numel() // 65_536]
        h.update(f"{name}:{tuple(tensor.shape)}".encode())
        h.update(flat.to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


OUT_OF_SCOPE_LIMIT, OUT_OF_SCOPE_CHARS = 1000, 200
OUT_OF_SCOPE = "~out-of-scope"  # the index's row id for them (no brick id can hold "~")


class LibraryMeta(BaseModel):
    """`library.json`: what every brick of the library shares. Libraries made before it
    existed have none and use the plain prompt format.

    `out_of_scope`: requests no brick of the library does ("translate it into german" beside a
    French brick). Retrieval has no "none of these" answer, so a near-domain request lands on
    the nearest brick with a high score; the index holds these texts beside the cards, and a
    step nearer to one of them than to any brick is refused. The retriever is not trained on
    them: as every brick's negatives they cost near-synonym bricks (reverse / reverse_words)
    top-1 on new wordings."""

    prompt_format: Literal["plain", "chat"] | None = None
    out_of_scope: list[str] = []


class BrickEntry(BaseModel):
    """One folder of the library as `list` shows it: healthy (with its card) or broken (why)."""

    id: str
    ok: bool
    card: BrickCard | None = None
    problem: str | None = None


class Problem(BaseModel):
    """Something `doctor` found: a path in the library, what is wrong, what `--fix` does."""

    name: str
    problem: str
    fix: str


T = TypeVar("T")
_Stamp = tuple[int, int, int]  # (size, mtime_ns, inode): a file rewritten or replaced changes it


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class BrickLibrary:
    """Reads and validates a library folder; every write is atomic and takes the library lock.

    Broken folders (a bad card, a card whose id is not its folder's name, an invalid name, a
    symlink, missing or pickle-only weights) are quarantined: listed with the reason by
    `entries()` and `problems()`, never served or indexed, never in the way of the others.
    Cards and content digests are cached per file stamp, so a warm call re-reads nothing.
    """

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise LibraryError(f"brick library not found: {self.root} is not a folder")
        self._cards: dict[str, tuple[_Stamp, BrickCard | LibraryError]] = {}
        self._digests: dict[str, tuple[tuple, str]] = {}
        self._scan: tuple[tuple, dict[str, tuple[tuple, BrickEntry]]] | None = None  # per folder: stamps, entry
        self._meta: tuple[_Stamp | None, LibraryMeta] = (None, LibraryMeta())  # library.json: stamp, content
        self._known: tuple[tuple, dict[str, Mapping[str, str]]] | None = None  # generation, known_inputs()
        self._mutex = threading.RLock()
        self._flock = FileLock(str(self.root / LOCK))  # re-entrant within a thread
        try:  # crash recovery only while no other process writes (they hold the lock)
            with self.locked(timeout=0):
                recover(self.root)
        except LibraryError:
            pass

    # -- locking -----------------------------------------------------------------------
    @contextmanager
    def locked(self, timeout: float = 120) -> Iterator[None]:
        """The library's inter-process write lock (a file lock beside the bricks)."""
        try:
            self._flock.acquire(timeout=timeout)
        except Timeout:
            raise LibraryError(f"the library {self.root} is locked by another writer; try again") from None
        try:
            yield
        finally:
            self._flock.release()

    # -- reading -----------------------------------------------------------------------
    @property
    def base_path(self) -> Path:
        return self.root / BASE_DIR

    def path(self, brick_id: str) -> Path:
        return self.root / check_id(brick_id)

    @property
    def meta(self) -> LibraryMeta:
        """`library.json` as it is now (re-read only when its stamp moved)."""
        path = self.root / META
        stamp = _stamp(path)
        if self._meta[0] != stamp:
            try:
                value = LibraryMeta() if stamp is None else LibraryMeta.model_validate_json(path.read_bytes())
            except (ValidationError, ValueError, OSError) as err:
                raise LibraryError(f"corrupt {path}: {str(err).splitlines()[0]}") from None
            self._meta = (stamp, value)
        return self._meta[1]

    @property
    def prompt_format(self) -> str | None:
        """The prompt format recorded for this library's bricks, or None (none recorded yet:
        plain, if the library has bricks)."""
        return self.meta.prompt_format

    @property
    def out_of_scope(self) -> list[str]:
        """Requests no brick of this library does (`LibraryMeta.out_of_scope`)."""
        return list(self.meta.out_of_scope)

    def set_out_of_scope(self, texts: Sequence[str]) -> list[str]:
        """Record the library's out-of-scope requests (replacing the list; deduplicated, in order)."""
        kept: dict[str, str] = {}  # lower case -> as first given
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise LibraryError(f"an out-of-scope request must be non-empty text, got {text!r}")
            text = " ".join(text.split())
            if len(text) > OUT_OF_SCOPE_CHARS:
                raise LibraryError(f"out-of-scope request longer than {OUT_OF_SCOPE_CHARS} characters: {text[:40]!r}...")
            kept.setdefault(text.lower(), text)
        if len(kept) > OUT_OF_SCOPE_LIMIT:
            raise LibraryError(f"{len(kept)} out-of-scope requests; at most {OUT_OF_SCOPE_LIMIT}")
        with self.locked():
            write_json(self.root / META, self.meta.model_copy(update={"out_of_scope": list(kept.values())}).model_dump())
        return list(kept.values())

    def generation(self) -> tuple:
        """Changes whenever a brick folder is added, replaced or removed (every write renames
        in the library's root): the cheap per-call staleness test."""
        return _stamp(self.root) or (0, 0, 0)

    def entries(self) -> list[BrickEntry]:
        """Every brick folder, healthy or broken, sorted by id (the base and dot paths aside)."""
        with self._mutex:
            gen = self.generation()
            if self._scan is None or self._scan[0] != gen:
                names = sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and p.name != BASE_DIR
                               and (p.is_dir() or p.is_symlink()))
                before = self._scan[1] if self._scan else {}
                self._scan = (gen, {})
                for name in names:
                    stamps = (_stamp(self.root / name), _stamp(self.root / name / CARD))
                    if name in before and before[name][0] == stamps:  # folder and card as they were
                        self._scan[1][name] = before[name]
                        continue
                    entry = self._entry(name)
                    if entry.ok or (self.root / name).exists() or (self.root / name).is_symlink():
                        self._scan[1][name] = (stamps, entry)  # a folder swapped out meanwhile is skipped
            else:  # same folder set: refresh entries whose card changed in place
                for name in list(self._scan[1]):
                    if self._card_stale(name):
                        self._scan[1][name] = ((_stamp(self.root / name), _stamp(self.root / name / CARD)),
                                               self._entry(name))
            return [entry for _, entry in self._scan[1].values()]

    def ids(self) -> list[str]:
        """Ids of the healthy bricks."""
        return [e.id for e in self.entries() if e.ok]

    def cards(self) -> list[BrickCard]:
        return [e.card for e in self.entries() if e.ok]

    def known_inputs(self) -> dict[str, Mapping[str, str]]:
        """{brick: {each `input` of its data.jsonl, lowercased: that input as the table spells it}}
        for the healthy bricks that ship their training table (a knowledge brick's keys), re-read
        when the library changes: the planner reads payloads by them, a close call goes to the
        brick that knows the step's input, and a brick is asked a key as its table spells it. A
        key spelled two ways in one table maps to "" (no one spelling to ask)."""
        with self._mutex:
            gen = self.generation()
            if self._known is not None and self._known[0] == gen:
                return self._known[1]
        def inputs(folder: Path) -> Mapping[str, str] | None:
            data = folder / "data.jsonl"
            if not data.is_file():
                return None
            spelled: dict[str, str] = {}
            for line in data.read_text().splitlines():
                row = json.loads(line) if line.strip() else None
                if isinstance(row, dict):
                    key = str(row.get("input", ""))
                    spelled[key.lower()] = key if spelled.get(key.lower(), key) == key else ""
            return MappingProxyType(spelled)

        known = {}
        for brick_id in self.ids():
            try:
                found = self.read(brick_id, inputs)  # one version of the folder, even mid-swap
            except LibraryError:  # removed meanwhile
                continue
            if found is not None:
                known[brick_id] = found
        with self._mutex:
            self._known = (gen, known)
        return known

    def card(self, brick_id: str) -> BrickCard:
        """A healthy brick's card (cached per file stamp); LibraryError naming what is wrong."""
        folder = self.path(brick_id)
        card = self._read_card(brick_id)
        if isinstance(card, LibraryError):
            raise card
        problem = _files_problem(folder, card) or self._format_problem(card)
        if problem:
            raise LibraryError(f"brick {brick_id!r} is broken: {problem}")
        return card

    def read(self, brick_id: str, read: Callable[[Path], T], tries: int = 20) -> T:
        """`read(folder)` such that all it read belongs to one version of the brick: a write
        swaps the whole folder (a new inode), so a read that straddled a swap is retried."""
        folder = self.path(brick_id)
        for _ in range(tries):
            before = _stamp(folder)
            if before is None:
                raise LibraryError(f"unknown brick {brick_id!r}")
            try:
                value = read(folder)
            except (OSError, RuntimeError, LibraryError):
                if _stamp(folder) == before:
                    raise
                continue
            if _stamp(folder) == before:
                return value
        raise LibraryError(f"brick {brick_id!r} kept changing while being read; try again")

    def problems(self) -> list[Problem]:
        """Broken brick folders and stray paths, each with what `doctor --fix` does."""
        found = [Problem(name=e.id, problem=e.problem or "", fix="remove the folder")
                 for e in self.entries() if not e.ok]
        for p in sorted(self.root.iterdir()):
            if p.name.startswith(".") and p.name.endswith((".tmp", ".old")):
                found.append(Problem(name=p.name, problem="left over from an interrupted write",
                                     fix="finish or undo the write"))
        return found

    def discard(self, name: str) -> None:
        """Remove a broken folder or a leftover (names a valid id cannot have included)."""
        path = self.root / name
        if "/" in name or name in ("", ".", "..", BASE_DIR) or path.parent != self.root:
            raise LibraryError(f"{name!r} is not an entry of the library")
        with self.locked():
            if name.startswith("."):
                recover(self.root)
            elif path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                _vanish(path)

    def _read_card(self, brick_id: str) -> BrickCard | LibraryError:
        path = self.root / brick_id / CARD
        stamp = _stamp(path)
        with self._mutex:
            cached = self._cards.get(brick_id)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            if stamp is None:
                card = LibraryError(f"unknown brick {brick_id!r}: no {CARD} in {path.parent}")
            else:
                try:
                    card = BrickCard.model_validate_json(path.read_bytes())
                    if card.id != brick_id:
                        card = LibraryError(f"brick folder {brick_id!r} holds a card for {card.id!r}; "
                                            "a card's id must equal its folder's name")
                except (ValidationError, ValueError, OSError) as err:
                    card = LibraryError(f"corrupt brick card {path}: {str(err).splitlines()[0]}")
            self._cards[brick_id] = (stamp, card)
            return card

    def _card_stale(self, name: str) -> bool:
        cached = self._cards.get(name)
        return cached is None or cached[0] != _stamp(self.root / name / CARD)

    def _entry(self, name: str) -> BrickEntry:
        folder = self.root / name
        if folder.is_symlink():
            return BrickEntry(id=name, ok=False, problem="a symlink: brick folders must be real folders")
        if not _ID.match(name):
            return BrickEntry(id=name, ok=False, problem="invalid folder name: use 1-64 of a-z, 0-9, '_' or '-'")
        card = self._read_card(name)
        if isinstance(card, LibraryError):
            return BrickEntry(id=name, ok=False, problem=str(card))
        problem = _files_problem(folder, card) or self._format_problem(card)
        return BrickEntry(id=name, ok=not problem, card=card, problem=problem)

    def _format_problem(self, card: BrickCard) -> str | None:
        library = self.prompt_format or "plain"
        if card.prompt_format != library:
            return (f"trained in the {card.prompt_format} prompt format, but this library's bricks use {library}; "
                    "a brick never runs in a format it was not trained in")
        return None

    def write_card(self, card: BrickCard) -> None:
        """Replace a brick's card in place (e.g. new metrics); the root is touched so every
        reader's `generation()` changes."""
        with self.locked():
            write_json(self.path(card.id) / CARD, card.model_dump())
            write_text(self.root / GENERATION, uuid.uuid4().hex)

    def digest(self, brick_id: str) -> str:
        """Content hash of a brick's card and weight files, re-hashed only when a stamp changed."""
        folder = self.root / brick_id
        stamps = tuple((name, _stamp(folder / name)) for name in DIGESTED)
        with self._mutex:
            cached = self._digests.get(brick_id)
            if cached is not None and cached[0] == stamps:
                return cached[1]
        h = hashlib.sha256()
        for name, stamp in stamps:
            if stamp is not None:
                h.update(name.encode())
                h.update(hashlib.sha256((folder / name).read_bytes()).digest())
        digest = h.hexdigest()[:16]
        with self._mutex:
            self._digests[brick_id] = (stamps, digest)
        return digest

    def digests(self) -> dict[str, str]:
        """{brick id: content digest} of every healthy brick."""
        return {brick_id: self.digest(brick_id) for brick_id in self.ids()}

    def fingerprint(self) -> str:
        """Changes whenever any card or weight file changes: the index is keyed on it."""
        return hashlib.sha256(json.dumps(sorted(self.digests().items())).encode()).hexdigest()[:16]

    # -- writes: each one a single atomic folder swap, under the lock -------------------
    def commit(self, brick_id: str, write, new_version: bool = False) -> BrickCard:
        """Write a brick through `write(folder) -> BrickCard` into a temp folder, then swap it in.

        A new id starts at version 1. With `new_version`, the active files are kept as a
        snapshot under `.versions/v<N>` and the new files become version max+1; without it an
        existing id is refused (no silent overwrite). The first brick of a library without
        a recorded prompt format records its own; any other must match the library's.
        """
        path = self.path(brick_id)
        with self.locked():
            if path.is_symlink():
                raise LibraryError(f"{path} is a symlink: brick folders must be real folders")
            exists = (path / CARD).is_file()
            if exists and not new_version:
                raise LibraryError(f"brick {brick_id!r} already exists; remove it first or pick another id")
            if new_version and not exists:
                raise LibraryError(f"unknown brick {brick_id!r}: nothing to update")
            with atomic_dir(path) as tmp:
                version = 1
                if exists:
                    current = self.card(brick_id)
                    _copy_history(path, tmp)
                    _snapshot(path, tmp / HISTORY / f"v{current.version}")
                    version = max(self.versions(brick_id)) + 1
                card = write(tmp).model_copy(update={"id": brick_id, "version": version})
                self._check_format(brick_id, card.prompt_format)
                write_json(tmp / CARD, card.model_dump())
                _normalize_modes(tmp)
        return card

    def _check_format(self, brick_id: str, name: str) -> None:
        """Record `name` as the library's prompt format if it has none and no other brick;
        refuse a brick in another format than the library's (under the lock)."""
        recorded = self.prompt_format
        if recorded is None and not [i for i in self.ids() if i != brick_id]:
            write_json(self.root / META, self.meta.model_copy(update={"prompt_format": name}).model_dump())
            return
        library = recorded or "plain"
        if name != library:
            raise LibraryError(f"brick {brick_id!r} was trained in the {name} prompt format, but this library's "
                               f"bricks use {library}; train it in {library}, or start a library for {name} bricks")

    def versions(self, brick_id: str) -> list[int]:
        """Every version kept for a brick, the active one included, ascending."""
        history = self.path(brick_id) / HISTORY
        kept = [int(p.name[1:]) for p in history.iterdir() if p.name[1:].isdigit()] if history.is_dir() else []
        return sorted({*kept, self.card(brick_id).version})

    def rollback(self, brick_id: str, to: int | None = None) -> BrickCard:
        """Make an older version active again (default: the one before the active one)."""
        with self.locked():
            current = self.card(brick_id).version
            older = [v for v in self.versions(brick_id) if v != current]
            target = to if to is not None else max((v for v in older if v < current), default=None)
            if target is None or target not in older:
                raise LibraryError(f"brick {brick_id!r} has no version {target} to roll back to "
                                   f"(versions: {self.versions(brick_id)}, active: {current})")
            path = self.path(brick_id)
            with atomic_dir(path) as tmp:
                _copy_history(path, tmp, skip=f"v{target}")
                _snapshot(path, tmp / HISTORY / f"v{current}")
                _snapshot(path / HISTORY / f"v{target}", tmp)
        return self.card(brick_id)

    def remove(self, brick_id: str) -> None:
        """Delete a brick (healthy or broken) and its history: one rename makes it vanish."""
        path = self.path(brick_id)
        with self.locked():
            if path.is_symlink():
                path.unlink()
                return
            if not path.is_dir():
                raise LibraryError(f"unknown brick {brick_id!r}")
            _vanish(path)


def _files_problem(folder: Path, card: BrickCard) -> str | None:
    """Why a brick's files cannot be served, or None: weights present as safetensors, no links."""
    needed = (MASKS,) if card.kind == "emergent" else (ADAPTER_CONFIG, ADAPTER_WEIGHTS)
    for name in (CARD, *needed):
        if (folder / name).is_symlink():
            return f"{name} is a symlink: brick files must be real files"
    missing = [n for n in needed if not (folder / n).is_file()]
    if not missing:
        return None
    if not folder.is_dir():
        return "the folder is gone (removed or being replaced)"
    if ADAPTER_WEIGHTS in missing and any(f.suffix in PICKLES for f in _listing(folder)):
        return "its weights are a pickle file (.bin/.pt), which is never loaded; convert them to safetensors"
    return f"missing {', '.join(missing)}"


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _vanish(path: Path) -> None:
    """One rename makes a folder disappear for readers; then its files are deleted."""
    gone = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    os.replace(path, gone)
    shutil.rmtree(gone, ignore_errors=True)


def _normalize_modes(folder: Path) -> None:
    """Every file readable like the rest (some writers create 0600 files), dirs traversable."""
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o777 & ~umask)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o666 & ~umask)


def _snapshot(src: Path, dst: Path) -> None:
    """Copy a version's own files (not its history) from src to dst, hard-linking when possible."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            _link_or_copy(f, dst / f.name)


def _copy_history(src: Path, dst: Path, skip: str = "") -> None:
    history = src / HISTORY
    if history.is_dir():
        for version in history.iterdir():
            if version.name != skip:
                _snapshot(version, dst / HISTORY / version.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Files are never modified in place (only replaced), so a hard link is a safe copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
