"""`composer base import`: turn the model a user brings into a base folder the composer loads.

Users arrive with a Hugging Face folder or a GGUF file (llama.cpp's format). transformers reads
GGUF (it dequantizes the weights) but refuses to save a model it loaded that way, so we rebuild a
plain model from the config, copy the weights in, and save a safetensors folder in one dtype
(bf16 by default: half the size of float32, and what the engine runs on a GPU).

A Hugging Face folder goes the same way. A pickle-only `.bin` checkpoint comes out as safetensors:
loading a pickle can run code, which is acceptable only because the user imports their own model
here, on purpose; everything after loads the safetensors copy.

The folder is built beside `dest` and renamed into place only once it reloads through
`composer.models.load_base` and gives the same logits and token ids as the model we read, so a
failed import leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import torch
from pydantic import BaseModel

from composer.errors import ComposerError
from composer.storage import atomic_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Largest |logit difference| between the model read and the folder reloaded, as a share of the
# largest |logit|. Rounding weights to 8 (bf16) or 11 (fp16) mantissa bits moves logits by well
# under this; a reload that lost or mis-tied weights moves them by about the logits' whole size.
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.1, "float16": 0.05}
PROBE = "The quick brown fox jumps over the lazy dog. 0123456789"


class BaseReport(BaseModel):
    source: str
    dest: str
    format: str  # "gguf" or "hf"
    architecture: str
    parameters: int
    layers: int | None
    max_positions: int | None
    has_chat_template: bool
    dtype: str
    bytes: int
    seconds: float
    max_logit_diff: float

    def summary(self) -> str:
        return (f"imported {self.architecture} ({_count(self.parameters)} params, {self.layers} layers, "
                f"{self.max_positions} positions, chat template: {'yes' if self.has_chat_template else 'no'}) "
                f"to {self.dest} as {self.dtype}: {self.bytes / 2**20:.1f} MiB in {self.seconds:.1f}s "
                f"(max logit diff {self.max_logit_diff:.2g})")


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def import_base(source: str | Path, dest: str | Path, dtype: str = "bfloat16", progress: bool = True) -> BaseReport:
    """Import a `.gguf` file, a folder holding one, or a Hugging Face folder into `dest`, a new
    safetensors folder (model + tokenizer) in `dtype`. `progress=False` silences the loaders' bars."""
    start = time.monotonic()
    folder, gguf_file = _resolve(Path(source))
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ComposerError(f"{dest} already exists and is not an empty folder: choose a new one")
    if dtype not in DTYPES:
        raise ComposerError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")

    with _quiet(not progress):
        report = _import(folder, gguf_file, dest, dtype)
    return report.model_copy(update={"seconds": round(time.monotonic() - start, 2)})


def _import(folder: Path, gguf_file: str | None, dest: Path, dtype: str) -> BaseReport:
    model, tokenizer = _load(folder, gguf_file)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # what load_base does, written down for every other loader
    probe = tokenizer(PROBE, return_tensors="pt").input_ids[:, :32]
    with torch.no_grad():
        reference = model(probe).logits.float()
    plain = _plain_copy(model, DTYPES[dtype])
    del model  # only the copy is needed now: a big model should not sit in memory twice

    with atomic_dir(dest) as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del plain
        for file in tmp.iterdir():  # transformers writes the weights 0600: readable like the rest instead
            file.chmod((tmp / "config.json").stat().st_mode & 0o777)
        diff, model, tokenizer = _verify(tmp, probe, reference, tokenizer, TOLERANCE[dtype])
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
    config = model.config
    return BaseReport(
        source=str(folder / (gguf_file or "")), dest=str(dest), format="gguf" if gguf_file else "hf",
        architecture=(config.architectures or [type(model).__name__])[0],
        parameters=sum(p.numel() for p in model.parameters()),  # a tied matrix counts once
        layers=getattr(config, "num_hidden_layers", None),
        max_positions=getattr(config, "max_position_embeddings", None),
        has_chat_template=bool(tokenizer.chat_template), dtype=dtype, bytes=size, seconds=0.0,
        max_logit_diff=diff)


def _resolve(source: Path) -> tuple[Path, str | None]:
    """(folder, gguf file name or None): the arguments `from_pretrained` takes for this source."""
    if not source.exists():
        raise ComposerError(f"no model at {source}: the path does not exist")
    if source.is_file():
        if source.suffix.lower() != ".gguf":
            raise ComposerError(f"{source} is not a .gguf file: pass a .gguf file or a model folder")
        return source.parent, source.name
    if (source / "config.json").is_file():
        return source, None
    ggufs = sorted(p.name for p in source.glob("*.gguf"))
    if len(ggufs) > 1:
        raise ComposerError(f"{source} holds several GGUF files ({', '.join(ggufs)}): pass the one to import")
    if not ggufs:
        raise ComposerError(f"no model in {source}: it has neither config.json nor a .gguf file")
    return source, ggufs[0]


def _load(folder: Path, gguf_file: str | None):
    """(model in float32 on the CPU, tokenizer); transformers' errors become one line."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from composer.models import load_tokenizer

    name = folder / gguf_file if gguf_file else folder
    if gguf_file:
        try:
            import gguf  # noqa: F401  (an optional extra: only GGUF import needs it)
        except ImportError:
            raise ComposerError("reading GGUF needs the gguf package: install the gguf extra: "
                                "pip install 'brick-composer[gguf]'") from None
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=gguf_file)
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ComposerError(f"{name} is not a causal language model (model type {config.model_type!r})")
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32).eval()
        tokenizer = (AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file) if gguf_file
                     else load_tokenizer(folder))
    except ComposerError:
        raise
    except (OSError, ValueError, KeyError, NotImplementedError, ImportError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ComposerError(f"cannot import {name}: {first}") from None
    return model, tokenizer


def _plain_copy(model, dtype: torch.dtype):
    """The same network as a plain model: no `quantization_config`, so `save_pretrained` works."""
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    try:
        plain.load_state_dict(model.state_dict())
    except RuntimeError as err:
        raise ComposerError(f"cannot rebuild {type(model).__name__}: {str(err).splitlines()[0]}") from None
    return plain


def _verify(folder: Path, probe, reference, tokenizer, tolerance: float):
    """(max |logit diff|, model, tokenizer): the saved folder reloaded as the composer will, checked
    against the model read."""
    from composer.models import load_base

    model, reloaded = load_base(folder, device="cpu")
    if reloaded(PROBE).input_ids != tokenizer(PROBE).input_ids:
        raise ComposerError("the saved tokenizer encodes text differently from the source's: import aborted")
    with torch.no_grad():
        logits = model(probe).logits.float()
    diff = (logits - reference).abs().max().item()
    scale = max(1.0, reference.abs().max().item())
    if not diff <= tolerance * scale:
        raise ComposerError(f"the saved model does not reproduce the source's logits (max diff {diff:.3g}, "
                            f"allowed {tolerance * scale:.3g}): import aborted")
    return diff, model, reloaded


@contextlib.contextmanager
def _quiet(enabled: bool):
    """Silence loading bars: transformers' own, and the GGUF reader's plain tqdm on stderr."""
    if not enabled:
        yield
        return
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
            yield
    finally:
        if was_on:
            logging.enable_progress_bar()
