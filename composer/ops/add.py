"""Import any peft LoRA folder into the library: validate everything, then write once.

The new brick folder holds the config verbatim, the tensors cast to the base's dtype under
peft's own key names, and a card; a failure at any point leaves library and index as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import save_file

from composer.errors import ComposerError
from composer.library import CARD, BrickCard, BrickLibrary, check_id
from composer.formats import CONFIG, PREFIX, WEIGHTS
from composer.ops.validate import architecture, validate_adapter
from composer.prompt import FORMATS


def add_brick(library: BrickLibrary, folder: str | Path, base_model, *, brick_id: str | None = None,
              title: str | None = None, description: str | None = None, examples: list[str] | None = None,
              force: bool = False, max_rank: int = 64, base_fingerprint: str | None = None,
              prompt_format: str | None = None, library_format: str = "plain") -> BrickCard:
    """Validate `folder` against `base_model` and register it as `brick_id` (default: folder name).

    Card fields not given fall back to the folder's own `brick.json`, if it has one. The
    prompt format the adapter was trained in: as given, else its own card's, else the
    library's (`library_format`); the library refuses one that differs from its bricks'.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ComposerError(f"no adapter folder at {folder}")
    brick_id = check_id(brick_id or folder.name)
    if (library.path(brick_id) / CARD).is_file():
        raise ComposerError(f"brick {brick_id!r} already exists; remove it first or pass another id")
    own = json.loads((folder / CARD).read_text()) if (folder / CARD).is_file() else {}
    description = description or own.get("description")
    examples = examples or own.get("examples")
    if not description or not examples:
        raise ComposerError("a brick needs a description and at least one example instruction "
                            "(--description, --example) so the index can find it")
    prompt_format = prompt_format or own.get("prompt_format") or library_format
    if prompt_format not in FORMATS:
        raise ComposerError(f"unknown prompt format {prompt_format!r}; choose one of {', '.join(FORMATS)}")
    checked = validate_adapter(folder, base_model, max_rank, force=force, base_fingerprint=base_fingerprint)
    tensors = {}
    for name, factors in checked.modules.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = factors.a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = factors.b.contiguous()
    source = {"imported_from": str(folder.resolve()), "warnings": checked.warnings}
    if checked.forced_from:
        source["forced_from_base"] = checked.forced_from

    def write(tmp: Path) -> BrickCard:
        (tmp / CONFIG).write_text(json.dumps(checked.config, indent=2))
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
        return BrickCard(id=brick_id, title=title or own.get("title") or brick_id.replace("_", " ").title(),
                         description=description, examples=list(examples), kind="customized",
                         base_fingerprint=checked.base_fingerprint, base_architecture=architecture(base_model),
                         prompt_format=prompt_format, source=source)

    return library.commit(brick_id, write)
