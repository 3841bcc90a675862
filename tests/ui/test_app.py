"""The launched app through gradio_client, as any HTTP client sees it: chat, bricks, grow, security."""

import json
import re
import time

import httpx
import pytest

from composer.workspace import ROOT

CONTROLS = dict(mode="auto", k=3, threshold=0.43, decoding="greedy", temperature=0.7, top_p=0.9, seed=None)


@pytest.fixture(scope="session", autouse=True)
def cli_server(workspace):
    """`composer --bricks ... ui` in its own process, started first so that its start-up overlaps
    the other tests; checked by the last test."""
    import subprocess
    import sys

    from tests.ui.conftest import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "composer.cli", "--bricks", str(workspace.library.root), "ui",
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    yield server, port
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False)


def pairs(history):
    """A chat history as (title or None, text) pairs."""
    return [((m.get("metadata") or {}).get("title"), "".join(p["text"] for p in m["content"] if p.get("type") == "text"))
            for m in history]


def chat(client, instruction, input="", **controls):
    """The final chat history as (title or None, text) pairs, the user's message first."""
    c = {**CONTROLS, **controls}
    return pairs(client.predict([], instruction, input, c["mode"], c["k"], c["threshold"], c["decoding"],
                                c["temperature"], c["top_p"], c["seed"], api_name="/chat"))


def test_chat_answers_with_one_collapsible_message_per_step(client):
    history = chat(client, "Reverse the words, then uppercase: hello big world")
    (_, asked), step1, step2, (title, answer) = history
    assert asked == "Reverse the words, then uppercase: hello big world"
    assert answer == "WORLD BIG HELLO" and title is None
    assert step1[0].startswith("Step 1: Reverse the words → reverse_words")
    assert step2[0].startswith("Step 2: uppercase → uppercase")
    assert re.search(r"\*\*Retrieved:\*\* `reverse_words` (0\.9\d|1\.00)", step1[1])  # a card example
    assert "`hello big world` → `WORLD BIG HELLO`" not in step1[1]
    assert "`WORLD BIG HELLO`" in step2[1] and "**Mode:** single" in step2[1] and " ms" in step2[1]


def test_chat_streams_each_step_before_the_answer(client):
    job = client.submit([], "Reverse the words, then uppercase: hello big world", "", *CONTROLS.values(),
                        api_name="/chat")
    job.result(timeout=120)
    titles = [[title for title, _ in pairs(history)] for history in job.outputs()]
    assert titles[0] == [None, "Working"]  # the user's message and a pending one, before any step
    assert [None, "Step 1: Reverse the words → reverse_words (single)", "Working"] in titles
    assert titles[-1][-1] is None and len(titles[-1]) == 4


def test_chats_sent_together_share_one_engine_batch(client, runner):
    before = len(runner.batcher.batches)
    asks = {"Uppercase: big cat": "BIG CAT", "Give the plural: goose": "geese", "Translate to French: cat": "chat"}
    jobs = {text: client.submit([], text, "", *CONTROLS.values(), api_name="/chat") for text in asks}
    for text, job in jobs.items():
        assert pairs(job.result(timeout=120))[-1][1] == asks[text]  # each gets its own answer
    assert max(runner.batcher.batches[before:]) >= 2


def test_chat_with_a_separate_input_box(client):
    history = chat(client, "Give the plural", "goose")
    assert "goose" in history[0][1] and history[-1][1] == "geese" and "→ plural" in history[1][0]


def test_a_message_that_is_not_a_task_gets_what_the_library_can_do(client):
    reply = chat(client, "hi")[-1][1]
    assert "could not find a task" in reply and "**Uppercase**" in reply and "**Plural**" in reply
    assert "Traceback" not in reply


def test_a_bad_request_is_a_clear_chat_message_and_the_app_keeps_serving(client):
    from gradio_client.exceptions import AppError

    assert "ASCII" in chat(client, "Uppercase: café")[-1][1]
    assert chat(client, "Uppercase: " + "x" * 300)[-1][1].startswith("⚠️")
    with pytest.raises(AppError, match="nope is not in the list of choices"):  # refused by the controls
        chat(client, "Uppercase: a", mode="nope")
    with pytest.raises(AppError, match="less than minimum value 1"):
        chat(client, "Uppercase: a", k=0)
    assert chat(client, "Uppercase: big cat")[-1][1] == "BIG CAT"


def test_threshold_is_applied_per_request(client):
    assert chat(client, "Shout it: hi")[-1][1] == "HI"  # uppercase scores above the default threshold
    reply = chat(client, "Shout it: hi", threshold=1.0)[-1][1]  # only a card's own wording scores 1
    assert "No brick matches" in reply and "threshold 1.0" in reply
    assert chat(client, "Shout it: hi")[-1][1] == "HI"
    assert chat(client, "Uppercase: big cat", mode="base")[1][0] == "Step 1: Uppercase → base model (base)"


def test_sampling_with_a_seed_is_repeatable(client):
    first = chat(client, "Uppercase: big cat", decoding="sampling", temperature=1.5, seed=7)[-1][1]
    assert first == chat(client, "Uppercase: big cat", decoding="sampling", temperature=1.5, seed=7)[-1][1]


def test_search_and_card_and_a_refused_rollback(client):
    hits, note = client.predict("make it all caps", 5, api_name="/search")
    assert hits["data"][0][0] == "uppercase" and hits["data"][0][1] > 0.9 and len(hits["data"]) == 5 and note == ""
    card, versions = client.predict("uppercase", api_name="/card")
    shipped = json.loads((ROOT / "bricks" / "uppercase" / "brick.json").read_text())["metrics"]["exact_match"]
    assert "### Uppercase (`uppercase`, v1, customized)" in card and f"exact match **{shipped:.0%}**" in card
    note, *_ = client.predict("uppercase", None, api_name="/rollback")
    assert note.startswith("⚠️") and "no version" in note


def test_grow_registers_a_brick_the_next_chat_retrieves_and_rolls_back(client, workspace, tmp_path):
    from gradio_client import handle_file

    words = ["cat", "dog", "sun", "big red", "hello", "tree", "blue sky", "moon", "fish", "old car"]
    data = tmp_path / "shout.jsonl"
    data.write_text("".join(json.dumps({"input": w, "output": w + "!!!"}) + "\n" for w in words))
    job = client.submit(handle_file(str(data)), "shout", "Add exclamation marks at the end",
                        "Add exclamation marks\nEnd it with exclamation marks", 30, api_name="/grow")
    deadline = time.monotonic() + 60
    while not any("training" in out[0] for out in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert chat(client, "Uppercase: big cat")[-1][1] == "BIG CAT"  # the chat serves while the brick trains
    assert not job.done()
    progress, outcome, table, _ = job.result(timeout=300)
    assert outcome.startswith("✅ trained **shout** v1") and "held-out rows of 10" in outcome
    assert 'max="30"' in progress and "step 30/30" in progress
    assert ["shout", "customized", "v1"] == [row[:3] for row in table["data"] if row[0] == "shout"][0]
    step = chat(client, "Add exclamation marks: hi")[1]
    assert "→ shout" in step[0] and re.search(r"\*\*Retrieved:\*\* `shout` (0\.[89]\d|1\.00)", step[1])

    workspace.update("shout", data, steps=5, progress=False)  # a second version, then back to the first
    assert "v2" in client.predict("shout", api_name="/card")[0]
    note, table, card, _ = client.predict("shout", 1, api_name="/rollback")
    assert note == "shout is now at v1" and "(`shout`, v1," in card and "v1, v2" in card


def test_grow_refuses_bad_data_and_bad_ids(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    outcome = client.predict(handle_file(str(bad)), "broken", "d", "e", 20, api_name="/grow")[1]
    assert outcome.startswith("⚠️") and ":1: not valid JSON" in outcome
    good = tmp_path / "good.jsonl"
    good.write_text('{"input": "a", "output": "b"}\n')
    outcome = client.predict(handle_file(str(good)), "Bad Id!", "d", "e", 20, api_name="/grow")[1]
    assert "invalid brick id 'Bad Id!'" in outcome
    text = tmp_path / "data.txt"
    text.write_text('{"input": "a", "output": "b"}\n')
    with pytest.raises(AppError, match="Invalid file type"):
        client.predict(handle_file(str(text)), "x", "d", "e", 20, api_name="/grow")
    big = tmp_path / "big.jsonl"
    big.write_text('{"input": "a", "output": "b"}\n' * 200_000)  # 6 MB, over the 5 MB limit
    with pytest.raises(Exception, match="(?i)maximum|too large|413"):
        client.predict(handle_file(str(big)), "big", "d", "e", 20, api_name="/grow")


def test_no_file_outside_the_displayed_figures_is_served(served, workspace):
    url = served[0]
    assert url.startswith("http://127.0.0.1:")
    for path in (ROOT / "README.md", workspace.library.root / "uppercase" / "brick.json", ROOT / "pyproject.toml"):
        assert httpx.get(f"{url}/gradio_api/file={path}").status_code in (403, 404)
    figure = ROOT / "benchmarks" / "results" / "mixed_batch.png"
    if figure.is_file():
        assert httpx.get(f"{url}/gradio_api/file={figure}").status_code == 200


def test_composer_ui_command_serves_on_localhost(cli_server):
    """`composer ui` as a user starts it: a process that serves the page on 127.0.0.1."""
    server, port = cli_server
    deadline, page = time.monotonic() + 150, None
    while time.monotonic() < deadline and server.poll() is None:
        try:
            page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            break
        except httpx.TransportError:
            time.sleep(1)
    assert page is not None and page.status_code == 200 and "Brick Composer" in page.text, server.poll()
