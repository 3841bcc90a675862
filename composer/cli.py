"""The `composer` command: a thin Typer layer over the Composer façade.

User errors print one line on stderr and exit 2, never a traceback.
"""

from __future__ import annotations

import functools
import json
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

_state: dict = {}


@app.callback()
def main(base: Optional[Path] = typer.Option(None, help="Hugging Face model folder (default: embedded)."),
         bricks: Optional[Path] = typer.Option(None, help="Brick library folder (default: embedded)."),
         embedder: Optional[str] = typer.Option(None, help="sentence-transformers model path."),
         device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present).")):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _state.update(base=base, bricks=bricks, embedder=embedder, device=device)


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


def _library_paths():
    from composer.composer import ROOT

    bricks = _state.get("bricks") or ROOT / "bricks"
    index = bricks / ".index" if _state.get("bricks") else ROOT / "index"
    return bricks, index


def _composer():
    from transformers.utils import logging as hf_logging

    from composer import Composer

    hf_logging.disable_progress_bar()

    if _state.get("bricks") or _state.get("base"):
        bricks, index = _library_paths()
        base = _state.get("base") or bricks / "base"
        return Composer.from_path(base, bricks, embedder=_state.get("embedder"), index=index,
                                  device=_state.get("device"))
    return Composer.from_default(device=_state.get("device"))


@app.command()
@user_errors
def run(instruction: str = typer.Argument(..., help="What to do, e.g. 'Reverse the words, then uppercase: hi there'."),
        input: Optional[str] = typer.Option(None, "--input", "-i", help="The payload, if not in the instruction."),
        mode: str = typer.Option("auto", help="auto, single, mixture, merge or arrow: how each step combines bricks."),
        as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON.")):
    """Plan an instruction, retrieve bricks for each step, run them and print the trace."""
    from composer.planner import HeuristicPlanner

    from composer.modes import check_mode

    check_mode(mode)
    HeuristicPlanner().plan(instruction, input)  # a bad instruction fails before any model loads
    result = _composer().run(instruction, input=input, mode=mode)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
        return
    typer.echo(f"plan: {len(result.steps)} step(s), input {result.plan.payload!r}")
    for n, step in enumerate(result.steps, 1):
        hits = ", ".join(f"{h.id} {h.score:.2f}" for h in step.bricks)
        typer.echo(f"{n}. {step.instruction!r}  [{hits}]")
        typer.echo(f"   {step.note}")
        typer.echo(f"   {step.input!r} -> {step.output!r}")
    typer.echo(f"answer: {result.output}")


@bricks_app.command("list")
@user_errors
def bricks_list():
    """One line per brick: id, kind, exact match with the brick and base alone, title."""
    from composer.library import BrickLibrary

    library = BrickLibrary(_library_paths()[0])
    for card in library.cards():
        m = card.metrics
        score = f"{m.exact_match:6.1%} (base {m.base_exact_match:5.1%})" if m else " " * 20
        typer.echo(f"{card.id:16} {card.kind:10} v{card.version}  {score}  {card.title}")


def _library():
    from composer.library import BrickLibrary

    return BrickLibrary(_library_paths()[0])


def _base_path() -> Path:
    return _state.get("base") or _library_paths()[0] / "base"


def _reindex() -> None:
    """Persist a fresh index after a library write (the index would also notice on next use)."""
    from transformers.utils import logging as hf_logging

    from composer.index import BrickIndex, load_embedder

    hf_logging.disable_progress_bar()
    bricks, folder = _library_paths()
    BrickIndex(_library(), folder, load_embedder(_state.get("embedder")), _state.get("embedder")).load_or_build()


@bricks_app.command("show")
@user_errors
def bricks_show(brick_id: str):
    """Print a brick's card and its versions."""
    library = _library()
    typer.echo(library.card(brick_id).model_dump_json(indent=2))
    typer.echo(f"versions: {library.versions(brick_id)}")


@bricks_app.command("add")
@user_errors
def bricks_add(path: Path, id: Optional[str] = typer.Option(None, "--id", help="Brick id (default: folder name)."),
               title: Optional[str] = typer.Option(None), description: Optional[str] = typer.Option(None),
               example: list[str] = typer.Option([], "--example", help="An instruction it serves (repeatable)."),
               force: bool = typer.Option(False, help="Accept a brick made for other weights of this architecture."),
               max_rank: int = typer.Option(64, help="Largest rank the engine's slots hold.")):
    """Validate a peft LoRA folder against the base and add it to the library."""
    from composer.engine.engine import load_base
    from composer.ops.add import add_brick

    base, _ = load_base(_base_path(), "cpu")
    card = add_brick(_library(), path, base, brick_id=id, title=title, description=description,
                     examples=example or None, force=force, max_rank=max_rank)
    _reindex()
    typer.echo(f"added {card.id} (v{card.version})")


@bricks_app.command("remove")
@user_errors
def bricks_remove(brick_id: str):
    """Delete a brick and all its versions."""
    _library().remove(brick_id)
    _reindex()
    typer.echo(f"removed {brick_id}")


@bricks_app.command("merge")
@user_errors
def bricks_merge(sources: list[str] = typer.Argument(..., help="ID[:WEIGHT] ..."),
                 into: str = typer.Option(..., "--into", help="Id of the new brick."),
                 method: str = typer.Option("linear", help="linear, cat, svd, ties, dare_linear, dare_ties, "
                                                           "magnitude_prune"),
                 density: Optional[float] = typer.Option(None), svd_rank: Optional[int] = typer.Option(None),
                 seed: Optional[int] = typer.Option(None)):
    """Merge bricks into a new brick; the card records sources, method and weights."""
    from composer.ops.merge import merge_bricks

    pairs = []
    for item in sources:
        brick_id, _, weight = item.partition(":")
        try:
            pairs.append((brick_id, float(weight) if weight else 1.0))
        except ValueError:
            raise ComposerError(f"bad weight in {item!r}: use ID or ID:WEIGHT, e.g. capital:0.5") from None
    card = merge_bricks(_library(), pairs, into, method, density=density, svd_rank=svd_rank, seed=seed)
    _reindex()
    typer.echo(f"merged {', '.join(i for i, _ in pairs)} into {card.id} ({card.source['merge']['method']})")


def _train_config(steps: int, seed: int, lr: float):
    from composer.ops.train import TrainConfig

    return TrainConfig(steps=steps, batch_size=16, lr=lr, warmup=min(30, steps // 5 + 1), seed=seed)


@bricks_app.command("train")
@user_errors
def bricks_train(id: str = typer.Option(..., "--id"), data: Path = typer.Option(..., help="JSONL of input/output."),
                 description: str = typer.Option(...), example: list[str] = typer.Option(..., "--example"),
                 title: Optional[str] = typer.Option(None), steps: int = typer.Option(300), rank: int = typer.Option(16),
                 lr: float = typer.Option(3e-3), seed: int = typer.Option(0)):
    """Grow: train a new LoRA brick on your data, measure it on held-out rows, register it."""
    from composer.ops.grow import grow

    card = grow(_library(), _base_path(), id, data, description, example, title=title,
                config=_train_config(steps, seed, lr), rank=rank, alpha=2 * rank)
    _reindex()
    m = card.metrics
    typer.echo(f"trained {card.id} v{card.version}: exact match {m.exact_match:.0%} "
               f"(base alone {m.base_exact_match:.0%}) on {m.eval}")


@bricks_app.command("update")
@user_errors
def bricks_update(brick_id: str, data: Path = typer.Option(...), steps: int = typer.Option(200),
                  lr: float = typer.Option(2e-3), seed: int = typer.Option(0)):
    """Continue training a brick on new data; the result becomes its next version."""
    from composer.ops.grow import update

    card = update(_library(), _base_path(), brick_id, data, config=_train_config(steps, seed, lr))
    _reindex()
    typer.echo(f"updated {card.id} to v{card.version}: exact match {card.metrics.exact_match:.0%} on {card.metrics.eval}")


@bricks_app.command("rollback")
@user_errors
def bricks_rollback(brick_id: str, to: Optional[int] = typer.Option(None, help="Version (default: previous).")):
    """Make an older version of a brick active again (all versions are kept)."""
    card = _library().rollback(brick_id, to)
    _reindex()
    typer.echo(f"{card.id} is at v{card.version}")


@app.command()
@user_errors
def analyze(out: Optional[Path] = typer.Option(None, help="Folder for JSON + PNG figures "
                                                         "(default: benchmarks/results/emergent).")):
    """Emergent bricks: FFN neuron scores per skill, overlaps, pruning, partitions, sparse accuracy."""
    from composer.emergent.analyze import analyze as run_analysis

    report = run_analysis(_base_path(), out)
    typer.echo(report.summary())


@index_app.command("build")
@user_errors
def index_build():
    """Rebuild the FAISS index of the library's cards."""
    from composer.index import BrickIndex, load_embedder
    from composer.library import BrickLibrary

    bricks, folder = _library_paths()
    index = BrickIndex(BrickLibrary(bricks), folder, load_embedder(_state.get("embedder")), _state.get("embedder"))
    index.build()
    typer.echo(f"indexed {len(index.rows)} texts of {len(set(index.rows))} bricks into {folder}")


def entrypoint() -> None:
    app(prog_name="composer")


if __name__ == "__main__":
    sys.exit(entrypoint())
