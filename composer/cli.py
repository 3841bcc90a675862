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
        except ComposerError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2)
        except FileNotFoundError as err:
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
        as_json: bool = typer.Option(False, "--json", help="Print the whole result as JSON.")):
    """Plan an instruction, retrieve bricks for each step, run them and print the trace."""
    from composer.planner import HeuristicPlanner

    HeuristicPlanner().plan(instruction, input)  # a bad instruction fails before any model loads
    result = _composer().run(instruction, input=input)
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


@index_app.command("build")
@user_errors
def index_build():
    """Rebuild the FAISS index of the library's cards."""
    from composer.index import BrickIndex, load_embedder
    from composer.library import BrickLibrary

    bricks, folder = _library_paths()
    index = BrickIndex(BrickLibrary(bricks), folder, load_embedder(_state.get("embedder")), _state.get("embedder"))
    index.build()
    typer.echo(f"indexed {len(index._rows)} texts of {len(set(index._rows))} bricks into {folder}")


def entrypoint() -> None:
    app(prog_name="composer")


if __name__ == "__main__":
    sys.exit(entrypoint())
