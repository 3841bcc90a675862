"""Scale-out on Ray (the `ray` extra): batch jobs on Ray Data, and a Ray Serve deployment.

Batch jobs: `ray_lines` runs a job's items with Ray Data's `map_batches` over a pool of N
actors (`ActorPoolStrategy(size=N)`, spelled `concurrency=N` before Ray 2.51), each holding
one Composer, loaded once per actor, not per batch. The driver writes the lines, so the
output format and the resume rule are `composer.jobs`'s. On a cluster, set RAY_ADDRESS (or
call `ray.init(address="auto")`) before `run_job(..., workers=N)`, with the library folder
at the same path on every node.

Serving: `composer_app(workspace, replicas=N)` is a Serve application of N replicas, each
holding one Composer behind the OpenAI-compatible app of `composer.integrations.server`
(`model` = "composer" or a brick id). A request that names its brick in the HTTP header
`serve_multiplexed_model_id` (the same id as its `model`) is routed by Serve's model
multiplexing to a replica where that brick is already resident; the replica pins the brick
in its engine's slots until Serve evicts it (least recently used, at most
BRICKS_PER_REPLICA). On a cluster the replicas spread over the nodes, and each brick's
traffic stays on the few replicas that hold it instead of loading it everywhere.

Usage statistics are off (RAY_USAGE_STATS_ENABLED=0): nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from composer.errors import ComposerError  # noqa: E402
from composer.jobs import Job, JobItem, chunks, run_items  # noqa: E402

try:
    import numpy as np
    import ray
    from ray import serve
except ImportError:  # the optional extra is missing
    raise ComposerError("Ray is not installed: pip install -c constraints.txt -e '.[ray]'") from None


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
        context = ray.data.DataContext.get_current()  # imports ray.data, which sets up its loggers
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # the job has its own progress bar
        context.enable_progress_bars = False
        ordered = [item for chunk in chunks(pending, batch_size) for item in chunk]  # same options together
        data = ray.data.from_items([{"item": item.model_dump_json()} for item in ordered])
        data = data.map_batches(JobActor, fn_constructor_kwargs={"workspace": workspace_args(workspace),
                                                                 "job_hash": job.hash, "device": device},
                                compute=ray.data.ActorPoolStrategy(size=workers), batch_size=batch_size,
                                num_cpus=num_cpus, batch_format="numpy")
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            yield [json.loads(text) for text in batch["line"]]
    finally:
        if started:
            ray.shutdown()


# -- serving on Ray Serve --------------------------------------------------------------------
BRICKS_PER_REPLICA = 4  # pinned per replica: half the engine's default slots, so mixtures still find room


class ResidentBrick:
    """A brick pinned in a replica's engine while Serve keeps it loaded (unpinned on eviction)."""

    def __init__(self, composer, brick_id: str):
        self.composer, self.brick_id = composer, brick_id
        composer.pin(brick_id)

    def __del__(self):
        self.composer.unpin(self.brick_id)


@serve.deployment
@serve.ingress()
class ComposerDeployment:
    """One Composer per replica behind the OpenAI-compatible app of `composer.integrations.server`;
    a request whose `serve_multiplexed_model_id` header names a brick pins it in this replica."""

    def __init__(self, workspace: dict, device: str | None = None, server: dict | None = None):
        self.composer, self.server = _composer(workspace, device), server or {}

    def __serve_build_asgi_app__(self):
        from fastapi import Request
        from fastapi.responses import JSONResponse

        from composer.integrations.server import create_app

        app = create_app(self.composer, **self.server)
        replica = serve.get_replica_context().replica_id.unique_id

        @app.middleware("http")
        async def pin_named_brick(request: Request, call_next):
            brick_id = serve.get_multiplexed_model_id()
            if brick_id:
                try:
                    await self.brick(brick_id)
                except ComposerError as err:
                    return JSONResponse({"error": {"message": str(err), "type": "invalid_request_error",
                                                   "param": "serve_multiplexed_model_id",
                                                   "code": "model_not_found"}}, status_code=404)
            response = await call_next(request)
            response.headers["x-serve-replica"] = replica
            response.headers["x-pinned-bricks"] = ",".join(sorted(self.composer.pinned))
            return response

        return app

    @serve.multiplexed(max_num_models_per_replica=BRICKS_PER_REPLICA)
    async def brick(self, brick_id: str) -> ResidentBrick:
        if brick_id not in {card.id for card in self.composer.library.cards()}:
            raise ComposerError(f"no brick {brick_id!r} in the library")
        return await asyncio.to_thread(ResidentBrick, self.composer, brick_id)


def composer_app(workspace, *, replicas: int = 2, device: str | None = None, num_cpus: float = 1, **server):
    """The Serve application: `serve.run(composer_app(ws, replicas=2))`; `server` options go to
    `create_app` (window_ms, max_batch, api_key...)."""
    options = ComposerDeployment.options(num_replicas=replicas, ray_actor_options={"num_cpus": num_cpus})
    return options.bind(workspace_args(workspace), device, server)
