"""The OpenAI-compatible server, live on 127.0.0.1, driven by the official `openai` client."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
import uvicorn

from composer.integrations.langchain import default_composer
from composer.integrations.server import create_app

TWO_STEPS = "Reverse the words, then uppercase: hello big world"
INPUTS = {"uppercase": "big cat", "capitalize": "hello world", "reverse": "hello", "reverse_words": "one two three",
          "remove_vowels": "banana split", "rot13": "hello", "acronym": "portable network graphics",
          "capital": "France", "antonym": "hot", "plural": "goose", "french": "cat", "sentiment": "I love this movie"}


class Live:
    """A uvicorn server in a thread on a free port of 127.0.0.1."""

    def __init__(self, app):
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=120)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def composer():
    return default_composer()


@pytest.fixture(scope="module")
def live(composer):
    server = Live(create_app(composer))
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded(composer):
    """Keyed, one request at a time, a queue of one and a 1 s timeout: to see 401 and 503."""
    server = Live(create_app(composer, api_key="secret", max_batch=1, max_queue=1, timeout_s=1))
    yield server
    server.close()


def test_models_list_composer_and_every_brick(live, composer):
    models = {m.id: m for m in live.client().models.list()}
    bricks = {c.id for c in composer.library.cards()}
    assert set(models) == {"composer", *bricks} and {"uppercase", "plural", "emergent-copy"} <= bricks
    assert models["uppercase"].parent == "base" and models["composer"].parent is None
    assert live.client().models.retrieve("plural").id == "plural"
    assert httpx.get(live.url.removesuffix("/v1") + "/health").json() == {"status": "ok", "bricks": len(bricks)}


def test_composer_plans_and_returns_the_trace(live):
    out = live.client().chat.completions.create(
        model="composer", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": TWO_STEPS}])
    assert out.choices[0].message.content == "WORLD BIG HELLO" and out.choices[0].finish_reason == "stop"
    trace = out.composer
    assert [s["used"] for s in trace["steps"]] == [["reverse_words"], ["uppercase"]]
    assert out.usage.prompt_tokens == sum(s["prompt_tokens"] for s in trace["steps"]) > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_brick_model_runs_on_the_whole_message(live, composer):
    out = live.client().chat.completions.create(model="reverse", messages=[{"role": "user", "content": "hello"}],
                                                 temperature=0, seed=1, top_p=1)
    assert out.choices[0].message.content == "olleh" == composer.run_brick("reverse", "hello").output
    assert out.composer["plan"]["planner"] == "direct" and out.composer["steps"][0]["used"] == ["reverse"]


def test_max_tokens_and_stop(live):
    client = live.client()
    short = client.chat.completions.create(model="uppercase", max_tokens=3,
                                           messages=[{"role": "user", "content": "a long sentence here"}])
    assert short.choices[0].finish_reason == "length" and len(short.choices[0].message.content) <= 3
    cut = client.chat.completions.create(model="uppercase", stop=[" CAT"],
                                         messages=[{"role": "user", "content": "big cat"}])
    assert cut.choices[0].message.content == "BIG"


def test_stream_sends_steps_answer_usage_and_done(live):
    chunks = list(live.client().chat.completions.create(
        model="composer", messages=[{"role": "user", "content": TWO_STEPS}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "WORLD BIG HELLO"
    steps = [c.composer_step for c in chunks if getattr(c, "composer_step", None)]
    assert [s["output"] for s in steps] == ["world big hello", "WORLD BIG HELLO"]
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish[0].choices[0].finish_reason == "stop" and finish[0].composer["output"] == "WORLD BIG HELLO"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    raw = httpx.post(f"{live.url}/chat/completions", timeout=60, json={
        "model": "uppercase", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).text
    assert raw.rstrip().endswith("data: [DONE]") and '"usage"' not in raw


def test_errors_have_openai_bodies(live):
    client = live.client()
    user = [{"role": "user", "content": "Uppercase: big cat"}]
    with pytest.raises(openai.NotFoundError, match="unknown model 'gpt-4'"):
        client.chat.completions.create(model="gpt-4", messages=user)
    with pytest.raises(openai.BadRequestError, match="n must be 1"):
        client.chat.completions.create(model="composer", messages=user, n=2)
    with pytest.raises(openai.BadRequestError, match="no input found"):
        client.chat.completions.create(model="composer", messages=[{"role": "user", "content": "Uppercase"}])
    with pytest.raises(openai.BadRequestError, match="no input found"):  # before the stream starts, too
        client.chat.completions.create(model="composer", messages=[{"role": "user", "content": "Uppercase"}],
                                       stream=True)
    with pytest.raises(openai.BadRequestError, match="no user message"):
        client.chat.completions.create(model="composer", messages=[{"role": "system", "content": "Uppercase: x"}])
    with pytest.raises(openai.UnprocessableEntityError, match="temperature"):
        client.chat.completions.create(model="composer", messages=user, temperature=3)
    with pytest.raises(openai.APIStatusError, match="limit is 200") as err:
        client.chat.completions.create(model="uppercase", messages=[{"role": "user", "content": "a" * 300}])
    assert err.value.status_code == 413
    big = httpx.post(f"{live.url}/chat/completions", content=b"x" * 70_000,
                     headers={"content-type": "application/json"})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    bad = httpx.post(f"{live.url}/chat/completions", content=b"{not json",
                     headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="non-ASCII"):
        client.chat.completions.create(model="reverse", messages=[{"role": "user", "content": "h\u00e9llo"}])


def test_api_key(guarded):
    with pytest.raises(openai.AuthenticationError, match="API key"):
        guarded.client("wrong").models.list()
    assert any(m.id == "composer" for m in guarded.client("secret").models.list())


def test_overload_and_timeout_answer_503(guarded, composer):
    """While the engine is held, one request runs (blocked), one waits in the queue, the rest get 503."""
    client = guarded.client("secret")

    def ask(_):
        try:
            client.chat.completions.create(model="uppercase", messages=[{"role": "user", "content": "hi"}])
            return "ok"
        except openai.APIStatusError as err:
            return f"{err.status_code} {err.body['code']}"

    with composer._lock, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert "503 overloaded" in answers and "503 timeout" in answers, answers


@pytest.mark.slow
def test_64_concurrent_requests_over_12_bricks_match_one_by_one(live, composer):
    """Requests batched by the server give the answers of the same requests run one at a time."""
    pairs = [(brick, text) for brick, text in INPUTS.items()]
    pairs += [("uppercase", "two cats"), ("reverse", "world"), ("plural", "mouse"), ("capital", "Japan")]
    expected = {(b, t): composer.run_brick(b, t).output for b, t in pairs}  # one by one
    requests = [pairs[i % len(pairs)] for i in range(64)]
    batches_before = len(live.app.state.batcher.batches)
    client = live.client()

    def ask(pair):
        brick, text = pair
        return client.chat.completions.create(model=brick, messages=[{"role": "user", "content": text}]) \
            .choices[0].message.content

    start = time.monotonic()
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(ask, requests))
    assert time.monotonic() - start < 300
    assert answers == [expected[p] for p in requests]
    sizes = live.app.state.batcher.batches[batches_before:]
    assert sum(sizes) == 64 and max(sizes) > 1, sizes  # gathered into engine batches, not run one by one


@pytest.mark.slow
def test_composer_serve_command_with_an_llm_planner(tmp_path):
    """`composer --planner llm:... serve --port P` serves, and its plans come from the LLM planner."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = "llm:tests.integrations.test_llm_planner:scripted_model"
    proc = subprocess.Popen([sys.executable, "-m", "composer.cli", "--planner", spec, "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "w"))
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)
        deadline = time.monotonic() + 180
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()
                time.sleep(0.5)
        out = client.chat.completions.create(model="composer", messages=[{"role": "user", "content": TWO_STEPS}])
        assert out.choices[0].message.content == "WORLD BIG HELLO" and out.composer["plan"]["planner"] == "llm"
    finally:
        proc.terminate()
        proc.wait(30)


def test_an_error_after_the_first_step_ends_the_stream_with_an_error_event(live):
    """Step 1 has streamed (status 200 sent), step 2 matches no brick: the stream carries the error."""
    user = [{"role": "user", "content": "Uppercase, then xqzv wbrt: big cat"}]
    with pytest.raises(openai.BadRequestError, match="no brick matches"):
        live.client().chat.completions.create(model="composer", messages=user)
    stream = live.client().chat.completions.create(model="composer", messages=user, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="no brick matches"):
        for chunk in stream:
            seen.append(chunk)
    assert seen[-1].composer_step["output"] == "BIG CAT"
    raw = httpx.post(f"{live.url}/chat/completions", timeout=60,
                     json={"model": "composer", "messages": user, "stream": True}).text
    assert '"code": "NoBrickError"' in raw and raw.rstrip().endswith("data: [DONE]")
