"""Scale-out on Ray (the `ray` extra): batch jobs on Ray Data, and a Ray Serve deployment.

Batch jobs: `ray_lines` runs a job's items with Ray Data's `map_batches` over a pool of
`concurrency=N` actors, each holding one Composer (the base model and index load once per
actor, not per batch). The driver writes the lines, so the output format and the resume rule
are `composer.jobs`'s. On a cluster, `ray.init(address="auto")` (or RAY_ADDRESS) before
`run_job(..., workers=N)`, with the library folder at the same path on every node.

Serving: `composer_app(workspace, replicas=N)` is a Serve application of N replicas, each
holding one Composer, behind `POST /run`. A request may name a brick (HTTP header
`serve_multiplexed_model_id`, or `handle.options(multiplexed_model_id=...)`); Serve's model
multiplexing then routes it to a replica where that brick is already resident, and the
replica pins it in its engine's slots until Serve evicts it (least recently used, at most
BRICKS_PER_REPLICA, half the engine's default slots, so mixtures still find free slots). The brick is a routing key: the step's bricks are still chosen by
retrieval, so requests whose bricks are known in advance (e.g. from `Composer.retrieve`)
land where those weights are loaded.

Usage statistics are off (RAY_USAGE_STATS_ENABLED=0): nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from composer.errors import ComposerError  # noqa: E402
from composer.jobs import Job, JobItem, Options, chunks, run_items  # noqa: E402

try:
    import numpy as np
    import ray
    from fastapi import FastAPI, HTTPException
    from ray import serve
except ImportError:  # the optional extra is missing
    raise ComposerError("Ray is not installed: pip install -e '.[ray]'") from None


def workspace_args(workspace) -> dict:
    """What an actor needs to open the same workspace (paths, not objects: actors may sit on
    other nodes)."""
    return {"bricks": str(workspace.library.root), "base": str(workspace.base_path),
            "index": str(workspace.index_folder), "embedder": workspace.embedder_name}


def _composer(workspace: dict, device: str | None):
    from composer.workspace import Workspace

    return Workspace(**workspace).composer(device)


# -- batch jobs on Ray Data ------------------------------------------------------------------
class JobActor:
    """A Ray Data actor: one Composer, loaded once, runs batch after batch of job items."""

    def __init__(self, workspace: dict, job_hash: str, device: str | None = None):
        self.composer, self.job_hash = _composer(workspace, device), job_hash

    def __call__(self, batch: dict) -> dict:
        items = [JobItem.model_validate_json(text) for text in batch["item"]]
        lines = run_items(self.composer, items, self.job_hash)
        return {"line": np.array([json.dumps(line) for line in lines], dtype=object)}


def ray_lines(job: Job, pending: list[JobItem], workspace, *, workers: int = 2, batch_size: int = 32,
              device: str | None = None, num_cpus: float = 1) -> Iterator[list[dict]]:
    """Output lines of `pending`, one list per finished batch, computed by `workers` actors.
    Starts a local Ray (and stops it after) unless one is already initialised."""
    if not pending:
        return
    started = not ray.is_initialized()
    if started:
        ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # the job has its own progress bar
        ray.data.DataContext.get_current().enable_progress_bars = False
        ordered = [item for chunk in chunks(pending, batch_size) for item in chunk]  # same options together
        data = ray.data.from_items([{"item": item.model_dump_json()} for item in ordered])
        data = data.map_batches(JobActor, fn_constructor_kwargs={"workspace": workspace_args(workspace),
                                                                 "job_hash": job.hash, "device": device},
                                concurrency=workers, batch_size=batch_size, num_cpus=num_cpus, batch_format="numpy")
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            yield [json.loads(text) for text in batch["line"]]
    finally:
        if started:
            ray.shutdown()


# -- serving on Ray Serve --------------------------------------------------------------------
class RunRequest(Options):
    model_config = ConfigDict(extra="forbid", frozen=True)
    instruction: str
    input: str | None = Field(None, description="the payload, if not in the instruction")


class ResidentBrick:
    """A brick pinned in a replica's engine while Serve keeps it loaded (unpinned on eviction)."""

    def __init__(self, composer, brick_id: str):
        self.composer, self.brick_id = composer, brick_id
        composer.engine.pin(brick_id)

    def __del__(self):
        self.composer.engine.unpin(self.brick_id)


api = FastAPI(title="Brick Composer on Ray Serve")
BRICKS_PER_REPLICA = 4


@serve.deployment
@serve.ingress(api)
class ComposerDeployment:
    """One Composer per replica; requests naming a brick are multiplexed by brick id."""

    def __init__(self, workspace: dict, device: str | None = None):
        self.composer = _composer(workspace, device)

    @serve.multiplexed(max_num_models_per_replica=BRICKS_PER_REPLICA)
    async def brick(self, brick_id: str) -> ResidentBrick:
        if brick_id not in {e.id for e in self.composer.workspace.list() if e.ok}:
            raise HTTPException(404, f"no brick {brick_id!r} in the library")
        return await asyncio.to_thread(ResidentBrick, self.composer, brick_id)

    @api.post("/run")
    async def run(self, request: RunRequest) -> dict:
        """The Result as JSON, plus which replica ran it and the bricks pinned there."""
        brick_id = serve.get_multiplexed_model_id()
        if brick_id:
            await self.brick(brick_id)
        options = request.model_dump(exclude={"instruction", "input", "mode"})
        try:
            result = await asyncio.to_thread(self.composer.run, request.instruction, request.input, request.mode,
                                             **options)
        except ComposerError as err:
            raise HTTPException(400, str(err)) from None
        return {"result": result.model_dump(), "replica": serve.get_replica_context().replica_id.unique_id,
                "brick": brick_id or None, "pinned": sorted(self.composer.engine.slots.pinned)}


def composer_app(workspace, *, replicas: int = 2, device: str | None = None, num_cpus: float = 1):
    """The Serve application: `serve.run(composer_app(ws, replicas=2))`, then POST /run."""
    options = ComposerDeployment.options(num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus})
    return options.bind(workspace_args(workspace), device)
