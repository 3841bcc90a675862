"""The Gradio app: Chat, Bricks, Grow and Analysis tabs over one Composer and its Workspace.

`build_app(workspace)` wires the tabs to the Composer façade and the Workspace, nothing
else; `launch` serves it on 127.0.0.1 with uploads size-limited, analytics off, and only the
displayed figures readable through `allowed_paths`.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from composer import ComposerError  # noqa: E402
from composer.workspace import ROOT  # noqa: E402
from ui import bricks as bricks_tab  # noqa: E402
from ui.chat import EXAMPLES, MAX_K, MODES, Runner, respond  # noqa: E402
from ui.grow import MAX_STEPS, MAX_UPLOAD_BYTES, Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIGURES = [
    (RESULTS / "emergent" / "scores.png", "Functionality scores of FFN neurons per skill (heatmap)"),
    (RESULTS / "emergent" / "overlap.png", "Overlap of the skills' top neurons"),
    (RESULTS / "emergent" / "pruning.png", "Accuracy when a skill's neurons are pruned"),
    (RESULTS / "emergent" / "sparsity.png", "Sparse inference: accuracy vs neurons kept"),
    (RESULTS / "mixed_batch.png", "Engine: one mixed-brick batch vs one request at a time"),
]
POLL_S = 0.5


def _message(err: Exception) -> str:
    return str(err) if isinstance(err, ComposerError) else f"{type(err).__name__}: {err}"


def build_app(workspace, device: str | None = None, runner: Runner | None = None) -> gr.Blocks:
    """The app over `workspace`; `runner` (its Composer and request batching) is built here unless passed."""
    runner = runner or Runner(workspace.composer(device), device)
    composer, trainer = runner.composer, Trainer(workspace)
    settings = composer.settings

    with gr.Blocks(title="Brick Composer", analytics_enabled=False) as app:
        gr.Markdown("## Brick Composer\nType an instruction; it is planned into steps, each step retrieves "
                    "bricks (LoRA adapters or emergent neuron masks) and runs on one shared base model.")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chat = gr.Chatbot(elem_id="chat", height=560, buttons=["copy", "copy_all"], label="Chat",
                                      placeholder="Steps show as collapsible messages; the answer comes last.")
                    with gr.Row():
                        instruction = gr.Textbox(label="Instruction", elem_id="instruction", scale=4,
                                                 placeholder="e.g. Reverse the words, then uppercase: hello big world")
                        payload = gr.Textbox(label="Input (optional)", elem_id="input", scale=2,
                                             placeholder="the text, if not after a colon")
                    with gr.Row():
                        send = gr.Button("Send", variant="primary", elem_id="send")
                        gr.ClearButton([chat, instruction, payload], value="Clear", elem_id="clear")
                    gr.Examples(EXAMPLES, [instruction, payload], label="Examples (click one, then Send)")
                with gr.Column(scale=1):
                    mode = gr.Dropdown(MODES, value="auto", label="Mode", elem_id="mode",
                                       info="how each step combines bricks; base = the base model alone")
                    k = gr.Slider(1, MAX_K, value=settings.k, step=1, label="k (bricks a mixture may combine)")
                    threshold = gr.Slider(0, 1, value=settings.threshold, step=0.01,
                                          label="threshold (a brick below it is not trusted)")
                    decoding = gr.Radio(["greedy", "sampling"], value="greedy", label="Decoding")
                    temperature = gr.Slider(0.05, 2, value=0.7, step=0.05, label="temperature (sampling)")
                    top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="top-p (sampling)")
                    seed = gr.Number(0, precision=0, label="seed (sampling)")

            def on_chat(history, text, given, *controls):
                yield from respond(runner, history, text, given, *controls)

            chat_inputs = [chat, instruction, payload, mode, k, threshold, decoding, temperature, top_p, seed]
            send.click(on_chat, chat_inputs, chat, api_name="chat", concurrency_limit=32)
            instruction.submit(on_chat, chat_inputs, chat, api_name=False, concurrency_limit=32)

        with gr.Tab("Bricks") as bricks_ui:
            table = gr.Dataframe(bricks_tab.table(workspace), headers=bricks_tab.TABLE_HEADERS, interactive=False,
                                 label="Library", elem_id="bricks-table")
            with gr.Row():
                query = gr.Textbox(label="Search (what the retriever finds for a query)", elem_id="search", scale=4)
                search_k = gr.Slider(1, 10, value=5, step=1, label="hits", scale=1)
            hits = gr.Dataframe(headers=bricks_tab.SEARCH_HEADERS, interactive=False, label="Hits", elem_id="hits")
            with gr.Row():
                picked = gr.Dropdown(bricks_tab.brick_ids(workspace), label="Card", elem_id="card-pick")
                version = gr.Dropdown([], label="Version to roll back to")
                roll = gr.Button("Roll back")
            card = gr.Markdown("Pick a brick to see its card.", elem_id="card")
            bricks_note = gr.Markdown()

            def on_search(text, n):
                try:
                    return bricks_tab.search(composer, text, n), ""
                except Exception as err:
                    return [], f"⚠️ {_message(err)}"

            def on_pick(brick_id):
                try:
                    text, versions = bricks_tab.card_view(workspace, brick_id)
                    return text, gr.update(choices=versions, value=None)
                except Exception as err:
                    return f"⚠️ {_message(err)}", gr.update(choices=[], value=None)

            def on_rollback(brick_id, to):
                try:
                    note = bricks_tab.rollback(workspace, brick_id, to)
                except Exception as err:
                    note = f"⚠️ {_message(err)}"
                text, versions = on_pick(brick_id)
                return note, bricks_tab.table(workspace), text, versions

            def refreshed():
                return bricks_tab.table(workspace), gr.update(choices=bricks_tab.brick_ids(workspace))

            query.submit(on_search, [query, search_k], [hits, bricks_note], api_name="search")
            picked.change(on_pick, picked, [card, version], api_name="card")
            roll.click(on_rollback, [picked, version], [bricks_note, table, card, version], api_name="rollback")
            bricks_ui.select(refreshed, None, [table, picked], api_name=False)

        with gr.Tab("Grow"):
            gr.Markdown("Train a new brick on your own input/output pairs: a JSONL file, one "
                        '`{"input": "...", "output": "..."}` per line (at most '
                        f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB). Training runs in the background; "
                        "the chat keeps working.")
            with gr.Row():
                data = gr.File(label="Training data (.jsonl)", file_types=[".jsonl"], elem_id="grow-data")
                with gr.Column():
                    new_id = gr.Textbox(label="Brick id", placeholder="e.g. double_letters", elem_id="grow-id")
                    description = gr.Textbox(label="Description", placeholder="what the brick does")
                    examples = gr.Textbox(label="Example instructions (one per line)", lines=3)
                    steps = gr.Slider(10, MAX_STEPS, value=300, step=10, label="Training steps")
                    train = gr.Button("Train", variant="primary", elem_id="grow-train")
            progress = gr.HTML(elem_id="grow-status")
            outcome = gr.Markdown(elem_id="grow-outcome")

            def on_train(path, brick_id, text, lines, n):
                try:
                    job = trainer.start(path, brick_id, text, lines, n)
                except Exception as err:
                    yield "", f"⚠️ {_message(err)}", gr.skip(), gr.skip()
                    return
                while not job.done.wait(POLL_S):
                    yield job.progress_html(), "", gr.skip(), gr.skip()
                yield job.progress_html(), job.summary(), *refreshed()

            train.click(on_train, [data, new_id, description, examples, steps], [progress, outcome, table, picked],
                        api_name="grow", concurrency_limit=1)

        with gr.Tab("Analysis"):
            shown = [(path, caption) for path, caption in FIGURES if path.is_file()]
            if not shown:
                gr.Markdown("No figures yet: run `composer analyze` and `python benchmarks/mixed_batch.py`.")
            for path, caption in shown:
                gr.Image(str(path), label=caption, interactive=False, buttons=[])
    return app


def launch(app: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, block: bool = True):
    """Serve `app` (blocking unless `block` is False); returns (server app, local url, share url)."""
    return app.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block, share=False,
        allowed_paths=[str(path) for path, _ in FIGURES if path.is_file()], max_file_size=MAX_UPLOAD_BYTES,
        footer_links=["api"])
