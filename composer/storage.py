"""Crash-safe writes: a file or folder is built beside its target, then renamed over it.

A reader never sees a half-written file. Folders cannot be swapped in one rename, so a
folder swap is two renames (target -> `.name.X.old`, temp -> target); `recover` finishes or
undoes a swap that a killed process left half done, and removes stray temp paths.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


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
