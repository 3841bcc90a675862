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
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, Field, ValidationError

from composer.errors import ComposerError
from composer.storage import atomic_dir, recover, write_json

CARD = "brick.json"
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


class BrickLibrary:
    """Reads and validates a library folder; every write is atomic."""

    def __init__(self, root: str | Path, create: bool = False):
        self.root = Path(root)
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise LibraryError(f"brick library not found: {self.root} is not a folder")
        recover(self.root)

    @property
    def base_path(self) -> Path:
        return self.root / BASE_DIR

    def path(self, brick_id: str) -> Path:
        return self.root / check_id(brick_id)

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / CARD).is_file())

    def card(self, brick_id: str) -> BrickCard:
        path = self.path(brick_id) / CARD
        if not path.is_file():
            raise LibraryError(f"unknown brick {brick_id!r}: no {CARD} in {path.parent}")
        try:
            return BrickCard.model_validate_json(path.read_text())
        except (ValidationError, ValueError) as err:
            raise LibraryError(f"corrupt brick card {path}: {str(err).splitlines()[0]}") from None

    def cards(self) -> list[BrickCard]:
        return [self.card(i) for i in self.ids()]

    def write_card(self, card: BrickCard) -> None:
        write_json(self.path(card.id) / CARD, card.model_dump())

    def fingerprint(self) -> str:
        """Changes whenever any card or adapter file changes: the index is keyed on it."""
        h = hashlib.sha256()
        for brick_id in self.ids():
            folder = self.path(brick_id)
            for name in (CARD, "adapter_config.json", "adapter_model.safetensors", "masks.safetensors"):
                f = folder / name
                h.update(f"{brick_id}/{name}".encode())
                if f.is_file():
                    h.update(hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()[:16]

    # -- writes: each one a single atomic folder swap -----------------------------------
    def commit(self, brick_id: str, write, new_version: bool = False) -> BrickCard:
        """Write a brick through `write(folder) -> BrickCard` into a temp folder, then swap it in.

        A new id starts at version 1. With `new_version`, the active files are kept as a
        snapshot under `.versions/v<N>` and the new files become version max+1; without it an
        existing id is refused (no silent overwrite).
        """
        path = self.path(brick_id)
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
            write_json(tmp / CARD, card.model_dump())
        return card

    def versions(self, brick_id: str) -> list[int]:
        """Every version kept for a brick, the active one included, ascending."""
        history = self.path(brick_id) / HISTORY
        kept = [int(p.name[1:]) for p in history.iterdir() if p.name[1:].isdigit()] if history.is_dir() else []
        return sorted({*kept, self.card(brick_id).version})

    def rollback(self, brick_id: str, to: int | None = None) -> BrickCard:
        """Make an older version active again (default: the one before the active one)."""
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
        """Delete a brick and its history: one rename makes it vanish, then the files go."""
        path = self.path(brick_id)
        if not (path / CARD).is_file():
            raise LibraryError(f"unknown brick {brick_id!r}")
        gone = path.with_name(f".{brick_id}.{uuid.uuid4().hex}.tmp")
        os.replace(path, gone)
        shutil.rmtree(gone, ignore_errors=True)


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
