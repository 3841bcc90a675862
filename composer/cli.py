"""The `composer` command: a thin Typer layer over the Composer façade.

User errors print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from composer.errors import ComposerError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compose LLM bricks from instructions.")
bricks_app = typer.Typer(no_args_is_help=True, help="Inspect and manage the brick library.")
index_app = typer.Typer(no_args_is_help=True, help="The FAISS index of brick cards.")
app.add_typer(bricks_app, name="bricks")
app.add_typer(index_app, name="index")
base_app = typer.Typer(no_args_is_help=True, help="Bring your own base model.")
app.add_typer(base_app, name="base")

_state: dict = {}
MAX_CHARS = 200  # the Composer's default input limit, checked here before any model loads
FORMATS_HELP = "Prompt format, plain or chat,"
MAX_MINUTES_HELP = "Stop training after this many minutes and keep the best checkpoint so far."


@app.callback()
def main(base: Optional[Path] = typer.Option(None, help="Hugging Face model folder (default: embedded)."),
         bricks: Optional[Path] = typer.Option(None, help="Brick library folder (default: embedded)."),
         embedder: Optional[str] = typer.Option(None, help="sentence-transformers model path."),
         device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
         planner: str = typer.Option("heuristic", help="heuristic, or llm:<module>:<attribute> naming a LangChain "
                                                      "chat model (or a function returning one).")):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _state.update(base=base, bricks=bricks, embedder=embedder, device=device, planner=planner)


def user_errors(fn):
    """Turn user errors into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ComposerError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2)

    return wrapper


def _workspace():
    """The workspace the global options name: the embedded default, or --bricks/--base."""
    from composer.workspace import Workspace

    if _state.get("bricks"):
        return Workspace(_state["bricks"], base=_state.get("base"), embedder=_state.get("embedder"))
    if _state.get("base"):
        raise ComposerError("--base needs --bricks: the embedded library's bricks were made for its own base")
    return Workspace.default(embedder=_state.get("embedder"))


def _composer(**options):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    planner = None
    if _state.get("planner", "heuristic") != "heuristic":
        from composer.llm_planner import planner_from_spec

        planner = planner_from_spec(_state["planner"])  # a bad spec fails before the model loads
    composer = _workspace().composer(device=_state.get("device"), **options)
    if planner is not None:  # the LLM planner falls back on the composer's own heuristic planner
        planner.fallback, composer.planner = composer.planner, planner
    return composer


@app.command()
@user_errors
def run(instruction: str = typer.Argument(..., help="What to do, e.g. 'Reverse the words, then uppercase: hi there'."),
        input: Optional[str] = typer.Option(None, "--input", "-i", help="The payload, if not in the instruction."),
        mode: str = typer.Option("auto", help="auto, single, mixture, merge, arrow, sparse (emergent bricks) or "
                                               "base (the base model alone): how each step combines bricks."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON.")):
    """Plan an instruction, retrieve bricks for each step, run them and print the trace."""
    from composer.modes import check_mode
    from composer.text import check_text

    check_mode(mode)
    check_text(instruction, "instruction", MAX_CHARS, newlines=True)  # bad text fails before any model loads
    if input is not None:
        check_text(input, "input", MAX_CHARS)
    result = _composer().run(instruction, input=input, mode=mode)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(f"plan: {len(result.steps)} step(s), input {result.plan.payload!r}")
    for n, step in enumerate(result.steps, 1):
        hits = ", ".join(f"{h.id} {h.score:.2f}" for h in step.bricks)
        typer.echo(f"{n}. {step.instruction!r}  [{hits}]")
        typer.echo(f"   {step.note}")
        if step.task and step.task != step.instruction:
            typer.echo(f"   prompted with the card's task line {step.task!r}")
        typer.echo(f"   {step.input!r} -> {step.output!r}")
    typer.echo(f"answer: {result.output}")


@bricks_app.command("list")
@user_errors
def bricks_list():
    """One line per brick: id, kind, version, exact match with the brick and base alone, title.
    Broken folders are listed too, marked BROKEN with the reason (see `bricks doctor`)."""
    for entry in _workspace().list():
        if not entry.ok:
            typer.echo(f"{entry.id:16} BROKEN      {entry.problem}")
            continue
        card, m = entry.card, entry.card.metrics
        score = f"{m.exact_match:6.1%} (base {m.base_exact_match:5.1%})" if m else " " * 20
        typer.echo(f"{card.id:16} {card.kind:10} v{card.version}  {score}  {card.title}")


@bricks_app.command("doctor")
@user_errors
def bricks_doctor(fix: bool = typer.Option(False, "--fix", help="Remove broken folders and leftovers.")):
    """Explain what is wrong in the library; with --fix, remove what cannot be served."""
    problems = _workspace().doctor(fix=fix)
    for p in problems:
        typer.echo(f"{p.name}: {p.problem} -> {'fixed: ' if fix else 'fix: '}{p.fix}")
    typer.echo(f"{len(problems)} problem(s){' fixed' if fix and problems else ''}"
               + ("" if fix or not problems else "; run `composer bricks doctor --fix` to remove them"))


@bricks_app.command("show")
@user_errors
def bricks_show(brick_id: str):
    """Print a brick's card and its versions."""
    info = _workspace().show(brick_id)
    typer.echo(info.card.model_dump_json(indent=2))
    typer.echo(f"versions: {info.versions}")


@bricks_app.command("add")
@user_errors
def bricks_add(path: Path, id: Optional[str] = typer.Option(None, "--id", help="Brick id (default: folder name)."),
               title: Optional[str] = typer.Option(None), description: Optional[str] = typer.Option(None),
               example: list[str] = typer.Option([], "--example", help="An instruction it serves (repeatable)."),
               force: bool = typer.Option(False, help="Accept a brick made for other weights of this architecture."),
               max_rank: int = typer.Option(64, help="Largest rank the engine's slots hold."),
               prompt_format: Optional[str] = typer.Option(None, "--prompt-format",
                                                           help=f"{FORMATS_HELP} the adapter was trained in "
                                                                "(default: its card's, else the library's).")):
    """Validate a peft LoRA folder against the base and add it to the library."""
    card = _workspace().add(path, brick_id=id, title=title, description=description, examples=example or None,
                            force=force, max_rank=max_rank, prompt_format=prompt_format)
    typer.echo(f"added {card.id} (v{card.version})")


@bricks_app.command("remove")
@user_errors
def bricks_remove(brick_id: str):
    """Delete a brick and all its versions."""
    _workspace().remove(brick_id)
    typer.echo(f"removed {brick_id}")


@bricks_app.command("out-of-scope")
@user_errors
def bricks_out_of_scope(add: list[str] = typer.Option([], "--add", help="A request no brick does (repeatable)."),
                        remove: list[str] = typer.Option([], "--remove", help="One to drop (repeatable)."),
                        clear: bool = typer.Option(False, "--clear", help="Drop them all first.")):
    """List, add or remove requests no brick does: a step nearer to one than to any brick is refused."""
    ws = _workspace()
    texts = ws.library.out_of_scope
    if add or remove or clear:
        unknown = [t for t in remove if t not in texts]
        if unknown:
            raise ComposerError(f"not an out-of-scope request of this library: {unknown[0]!r}")
        texts = ws.set_out_of_scope([t for t in ([] if clear else texts) if t not in remove] + list(add))
    typer.echo("\n".join(texts) if texts else "no out-of-scope requests")


@bricks_app.command("merge")
@user_errors
def bricks_merge(sources: list[str] = typer.Argument(..., help="ID[:WEIGHT] ..."),
                 into: str = typer.Option(..., "--into", help="Id of the new brick."),
                 method: str = typer.Option("linear", help="linear, cat, svd, ties, dare_linear, dare_ties, "
                                                           "magnitude_prune"),
                 density: Optional[float] = typer.Option(None), svd_rank: Optional[int] = typer.Option(None),
                 seed: Optional[int] = typer.Option(None)):
    """Merge bricks into a new brick; the card records sources, method and weights."""
    pairs = []
    for item in sources:
        brick_id, _, weight = item.partition(":")
        try:
            pairs.append((brick_id, float(weight) if weight else 1.0))
        except ValueError:
            raise ComposerError(f"bad weight in {item!r}: use ID or ID:WEIGHT, e.g. capital:0.5") from None
    card = _workspace().merge(pairs, into, method, density=density, svd_rank=svd_rank, seed=seed)
    typer.echo(f"merged {', '.join(i for i, _ in pairs)} into {card.id} ({card.source['merge']['method']})")


@bricks_app.command("train")
@user_errors
def bricks_train(id: str = typer.Option(..., "--id"), data: Path = typer.Option(..., help="JSONL of input/output."),
                 description: str = typer.Option(...), example: list[str] = typer.Option(..., "--example"),
                 title: Optional[str] = typer.Option(None),
                 steps: Optional[int] = typer.Option(None, help="Training steps (default: by base size)."),
                 rank: Optional[int] = typer.Option(None, help="LoRA rank (default: by base size)."),
                 lr: Optional[float] = typer.Option(None, help="Learning rate (default: by base size)."),
                 seed: int = typer.Option(0),
                 max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help=MAX_MINUTES_HELP),
                 prompt_format: Optional[str] = typer.Option(None, "--prompt-format",
                                                             help=f"{FORMATS_HELP} (default: the library's; for a "
                                                                  "new library chat if the base has a chat template).")):
    """Grow: train a new LoRA brick on your data, measure it on held-out rows, register it."""
    card = _workspace().train(id, data, description, example, title=title, steps=steps, rank=rank, lr=lr, seed=seed,
                              max_minutes=max_minutes, prompt_format=prompt_format)
    m = card.metrics
    early = " (stopped by --max-minutes, best checkpoint kept)" if card.source.get("stopped_early") else ""
    typer.echo(f"trained {card.id} v{card.version}: exact match {m.exact_match:.0%} "
               f"(base alone {m.base_exact_match:.0%}) on {m.eval}; {card.source['steps']} steps{early}")


@bricks_app.command("update")
@user_errors
def bricks_update(brick_id: str, data: Path = typer.Option(...),
                  steps: Optional[int] = typer.Option(None, help="Training steps (default: by base size)."),
                  lr: Optional[float] = typer.Option(None, help="Learning rate (default: by base size)."),
                  seed: int = typer.Option(0),
                  max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help=MAX_MINUTES_HELP)):
    """Continue training a brick on new data; the result becomes its next version."""
    card = _workspace().update(brick_id, data, steps=steps, lr=lr, seed=seed, max_minutes=max_minutes)
    typer.echo(f"updated {card.id} to v{card.version}: exact match {card.metrics.exact_match:.0%} on {card.metrics.eval}")


@bricks_app.command("rollback")
@user_errors
def bricks_rollback(brick_id: str, to: Optional[int] = typer.Option(None, help="Version (default: previous).")):
    """Make an older version of a brick active again (all versions are kept)."""
    card = _workspace().rollback(brick_id, to)
    typer.echo(f"{card.id} is at v{card.version}")


@app.command()
@user_errors
def batch(job: Path = typer.Argument(..., help="A YAML job file, or a JSONL file of {id?, instruction, input} lines."),
          out: Path = typer.Option(..., "--out", help="JSONL results, one line per item; a rerun resumes it."),
          batch_size: int = typer.Option(32, "--batch-size", help="Items per run_batch call (engine batch)."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Print each item's plan and bricks; run nothing."),
          force: bool = typer.Option(False, "--force", help="Resume into an output file of a different job."),
          ray: bool = typer.Option(False, "--ray", help="Run on Ray Data (needs the ray extra)."),
          workers: Optional[int] = typer.Option(None, "--workers", help="Ray actors, one Composer each (default 2).")):
    """Run a job file: one JSONL line per item (custom_id, output, steps, error, ms), resumable."""
    from transformers.utils import logging as hf_logging

    from composer.jobs import JobInterrupted, run_job

    if workers is not None and not ray:
        raise ComposerError("--workers needs --ray")
    hf_logging.disable_progress_bar()
    try:
        summary = run_job(job, out, workspace=_workspace(), device=_state.get("device"), batch_size=batch_size,
                          force=force, dry_run=dry_run, workers=(workers or 2) if ray else None)
    except JobInterrupted as stop:
        typer.echo(f"interrupted: {stop.summary.line()}; finished items are saved, rerun to resume", err=True)
        raise typer.Exit(130)
    for p in summary.planned or []:
        typer.echo(f"{p.custom_id}: " + (f"error: {p.error}" if p.error else " | ".join(p.steps)))
    typer.echo(summary.line())


@app.command()
@user_errors
def analyze(out: Optional[Path] = typer.Option(None, help="Folder for JSON + PNG figures "
                                                         "(default: benchmarks/results/emergent)."),
            profile_per_skill: int = typer.Option(64, min=2, help="Prompts per skill to profile neurons on."),
            eval_per_skill: int = typer.Option(32, min=1, help="Prompts per skill for pruning and sparsity.")):
    """Emergent bricks: FFN neuron scores per skill, overlaps, pruning, partitions, sparse accuracy."""
    from composer.emergent.analyze import analyze as run_analysis

    report = run_analysis(_workspace().base_path, out, profile_per_skill=profile_per_skill,
                          eval_per_skill=eval_per_skill)
    typer.echo(report.summary())


@app.command()
@user_errors
def ui(host: str = typer.Option("127.0.0.1", help="Address to bind (other machines reach it only if you say so)."),
       port: int = typer.Option(7860, help="Port to serve on.")):
    """Serve the Gradio chat UI: compose, see every step, manage and grow bricks."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ui import build_app, launch
    from ui.chat import Runner

    composer = _composer()  # honours --planner like `run`
    app_ = build_app(composer.workspace, runner=Runner(composer, _state.get("device")))
    try:
        launch(app_, host=host, port=port)
    except OSError as err:
        raise ComposerError(f"cannot serve on {host}:{port}: {err}") from None


@index_app.command("build")
@user_errors
def index_build(tune_encoder: bool = typer.Option(False, "--tune-encoder", help="Also fine-tune the embedder on "
                                                  "the cards (LoRA; minutes on CPU, kept for later rebuilds).")):
    """Rebuild the FAISS index of the library's cards."""
    from tqdm import tqdm

    workspace = _workspace()
    with tqdm(desc="tuning the encoder", disable=not tune_encoder, mininterval=2) as bar:
        def progress(step: int, total: int, loss: float) -> None:
            bar.total = total
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

        bricks = workspace.reindex(tune_encoder=tune_encoder, progress=progress)
    typer.echo(f"indexed {len(workspace.index.rows)} texts of {bricks} bricks into {workspace.index_folder}")


@base_app.command("import")
@user_errors
def base_import(source: Path = typer.Argument(..., help="A .gguf file, a folder holding one, or a Hugging Face "
                                                        "model folder."),
                dest: Path = typer.Argument(..., help="New folder for the safetensors model and its tokenizer."),
                dtype: str = typer.Option("bfloat16", help="float32, bfloat16 or float16.")):
    """Import a model (GGUF or Hugging Face) as a safetensors base folder, checked by reloading it."""
    from composer.base_import import import_base

    typer.echo(import_base(source, dest, dtype=dtype).summary())


@app.command()
@user_errors
def serve(host: str = typer.Option("127.0.0.1", help="Address to bind (0.0.0.0 exposes it to your network)."),
          port: int = typer.Option(8000, help="TCP port."),
          max_queue: int = typer.Option(256, help="Requests waiting at once; beyond this the server answers 503."),
          timeout: float = typer.Option(120, help="Seconds a request may take before it answers 503.")):
    """Serve the OpenAI-compatible API: GET /v1/models, POST /v1/chat/completions (model = composer or a
    brick id). Set COMPOSER_API_KEY to require `Authorization: Bearer <key>`."""
    from composer.integrations.server import serve as run_server

    run_server(_composer(), host=host, port=port, max_queue=max_queue, timeout_s=timeout)


def entrypoint() -> None:
    app(prog_name="composer")


if __name__ == "__main__":
    sys.exit(entrypoint())
