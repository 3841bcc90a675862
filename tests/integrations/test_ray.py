"""Ray, locally (ray.init(num_cpus=2), nothing leaves the machine): a job on Ray Data writes the
same lines as in-process and resumes by the same rule; Ray Serve routes requests that name a
brick to a replica where that brick is pinned."""

import json
import os
import socket
import time
from pathlib import Path

import pytest

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
ray = pytest.importorskip("ray")
httpx = pytest.importorskip("httpx")

from composer import Workspace  # noqa: E402
from composer.jobs import run_job  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "jobs"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_job_on_ray_data_matches_and_resumes(local_ray, tmp_path):
    out = tmp_path / "out.jsonl"
    rows = [json.loads(line) for line in (EXAMPLES / "requests.jsonl").read_text().splitlines()]
    out.write_text("")  # an empty output file is a fresh start
    first = run_job(EXAMPLES / "requests.jsonl", out, workspace=Workspace.default(), workers=2, batch_size=2,
                    progress=False)
    assert (first.done, first.failed, first.skipped) == (len(rows), 0, 0)
    got = {r["custom_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert {k: r["output"] for k, r in got.items()} == {"up-1": "BIG CAT", "fr-1": "chat", "ant-1": "cold",
                                                        "requests#4": "WORLD BIG HELLO"}
    assert all(r["job"] == first.job and r["steps"] for r in got.values())
    # drop two lines: a rerun on Ray (one actor) runs exactly those
    kept = out.read_text().splitlines()[:2]
    out.write_text("\n".join(kept) + "\n")
    again = run_job(EXAMPLES / "requests.jsonl", out, workspace=Workspace.default(), workers=1, batch_size=2,
                    progress=False)
    assert (again.done, again.skipped) == (2, 2)
    assert sorted(json.loads(line)["custom_id"] for line in out.read_text().splitlines()) == sorted(got)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_routes_named_bricks_to_replicas_holding_them(local_ray):
    from ray import serve

    from composer.integrations.ray_jobs import composer_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(composer_app(Workspace.default(), replicas=2, num_cpus=0.5), name="composer", route_prefix="/")
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        asks = {"uppercase": ("big cat", "BIG CAT"), "plural": ("goose", "geese"), "antonym": ("hot", "cold")}
        served: dict[str, list[str]] = {}
        with httpx.Client(timeout=120) as client:
            for n in range(3):
                if n == 1:
                    time.sleep(2)  # replicas report their loaded bricks to Serve's router asynchronously
                for brick, (text, answer) in asks.items():
                    reply = client.post(url, json={"model": brick, "messages": [{"role": "user", "content": text}]},
                                        headers={"serve_multiplexed_model_id": brick})
                    assert reply.status_code == 200, reply.text
                    assert reply.json()["choices"][0]["message"]["content"] == answer
                    assert brick in reply.headers["x-pinned-bricks"].split(",")  # resident where it ran
                    served.setdefault(brick, []).append(reply.headers["x-serve-replica"])
            composed = client.post(url, json={"model": "composer", "messages": [
                {"role": "user", "content": "Reverse the words, then uppercase: hello big world"}]})
            assert composed.json()["choices"][0]["message"]["content"] == "WORLD BIG HELLO"
            unknown = client.post(url, json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
                                  headers={"serve_multiplexed_model_id": "nope"})
            assert unknown.status_code == 404 and "no brick 'nope'" in unknown.json()["error"]["message"]
        # multiplexing: after its first request, each brick's requests went to the replica holding it
        assert all(len(set(replicas[1:])) == 1 and replicas[1] == replicas[0] for replicas in served.values()), served
    finally:
        serve.shutdown()
