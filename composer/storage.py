"""Crash-safe writes: a file or folder is built beside its target, then renamed over it.

A reader never sees a half-written file. Folders cannot be swapped in one rename, so a
folder swap is two renames (target -> `.name.X.old`, temp -> target); `recover` finishes or
undoes a swap that a killed process left half done, and removes stray temp paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_checked(path: Path, tensors: dict, meta: dict) -> None:
    """Weights (numpy arrays) as safetensors at `path`, then `meta` plus their sha256 beside them
    (`.json`): a reader tells weights that belong to their meta from a torn or replaced pair."""
    import numpy as np
    from safetensors.numpy import save

    data = save({name: np.ascontiguousarray(array) for name, array in tensors.items()})
    write_bytes(path, data)
    write_json(Path(path).with_suffix(".json"), {**meta, "weights_sha256": hashlib.sha256(data).hexdigest()})


def read_checked(path: Path, want: dict) -> dict | None:
    """The weights `write_checked` wrote at `path` when their meta has every item of `want` and
    their sha256 matches; else None (missing, other meta, damaged or unreadable)."""
    from safetensors.numpy import load

    path = Path(path)
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in want.items()):
            return None
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
            log.warning("%s does not match the checksum in its meta; not used", path)
            return None
        return load(data)
    except (OSError, ValueError, TypeError):
        return None


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temp folder; on success it replaces `target` (old one removed after)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover(root: Path) -> None:
    """Make `root`'s entries whole after a crash: restore a target whose swap was cut between
    its two renames, then delete leftover temp and old paths."""
    root = Path(root)
    if not root.is_dir():
        return
    for leftover in sorted(root.glob(".*.old")) + sorted(root.glob(".*.tmp")):
        name = leftover.name[1:].rsplit(".", 2)[0]
        if leftover.suffix == ".old" and not (root / name).exists():
            os.replace(leftover, root / name)
        elif leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)
