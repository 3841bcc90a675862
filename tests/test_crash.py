"""Kill a process at random points while it writes to the library and index (SIGKILL, no
clean-up): afterwards the library must open whole and the index must match it."""

import multiprocessing as mp
import os
import random
import signal
import threading
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from composer.index import BrickIndex, load_embedder
from composer.library import BrickCard, BrickLibrary


def _write(n):
    def write(folder):
        save_file({"w": torch.full((64, 64), float(n))}, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text('{"r": %d}' % n)
        return BrickCard(id="x", title=f"brick {n}", description=f"version text {n}", examples=[f"do {n}"],
                         base_fingerprint="0" * 16)

    return write


def _worker(root, index_dir, embedder, seed):
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())  # the inherited bar lock is shared with the parent: a kill must not hold it
    rng = random.Random(seed)
    library = BrickLibrary(root)
    index = BrickIndex(library, index_dir, embedder)
    for n in range(1000):
        op = rng.choice(["update", "rollback", "add", "remove", "index"])
        ids = library.ids()
        if op == "add" or not ids:
            brick_id = f"b{rng.randrange(6)}"
            if brick_id not in ids:
                library.commit(brick_id, _write(n))
        elif op == "update":
            library.commit(rng.choice(ids), _write(n), new_version=True)
        elif op == "rollback":
            brick_id = rng.choice(ids)
            if len(library.versions(brick_id)) > 1:
                library.rollback(brick_id, rng.choice([v for v in library.versions(brick_id)
                                                       if v != library.card(brick_id).version]))
        elif op == "remove" and len(ids) > 1:
            library.remove(rng.choice(ids))
        else:
            index.build()


def _check(root, index_dir, embedder):
    library = BrickLibrary(root)  # recovers a swap cut in half
    assert not [p for p in root.iterdir() if p.name.endswith((".tmp", ".old"))]
    for brick_id in library.ids():
        card = library.card(brick_id)
        folder = library.path(brick_id)
        tensor = load_file(str(folder / "adapter_model.safetensors"))["w"]
        n = int(card.title.split()[1])  # the files and the card of one version belong together
        assert tensor[0, 0].item() == n and f'"r": {n}' in (folder / "adapter_config.json").read_text()
        assert card.version in library.versions(brick_id)
        for v in library.versions(brick_id):
            if v != card.version:
                old = folder / ".versions" / f"v{v}"
                assert (old / "brick.json").is_file() and (old / "adapter_model.safetensors").is_file()
    index = BrickIndex(library, index_dir, embedder).load_or_build()
    assert sorted(set(index.rows)) == library.ids()


@pytest.mark.slow
def test_kill_at_random_points_leaves_library_and_index_consistent(tmp_path):
    embedder = load_embedder()
    root, index_dir = tmp_path / "lib", tmp_path / "idx"
    root.mkdir()
    ctx = mp.get_context("fork")
    rng = random.Random(0)
    active = 0
    for trial in range(24):
        before = sorted((i, BrickLibrary(root).card(i).title) for i in BrickLibrary(root).ids())
        proc = ctx.Process(target=_worker, args=(root, index_dir, embedder, trial))
        proc.start()
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        _check(root, index_dir, embedder)
        active += sorted((i, BrickLibrary(root).card(i).title) for i in BrickLibrary(root).ids()) != before
    assert BrickLibrary(root).ids()
    assert active >= 12  # the kills landed while the worker was writing, not before it began
