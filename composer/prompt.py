"""Prompt formats, shared by training and inference.

A brick learns the text around its answers as much as the answers: one trained on
`Task: …\nIn: …\nOut: ` rambles when the engine hands it a chat turn, and an instruct base
asked in a format it never saw looks worse than it is. So a library records one format
(`BrickLibrary.prompt_format`), every brick's card records the format it was trained in, and
training, measuring and running all render through the same `PromptFormat`:

* `plain`: `Task: {instruction}\nIn: {input}\nOut: ` — for bases without a chat template
  (the shipped default);
* `chat`: the base tokenizer's own chat template, instruction and input as the user turn,
  the answer as the assistant turn — the default for any base that has a template.

An answer ends with the token that closes the assistant turn (`answer_end`), which the
engine also stops at (`stop_ids`).
"""

from __future__ import annotations

import functools
from typing import Literal

from composer.errors import ComposerError

Format = Literal["plain", "chat"]
TEMPLATE = "Task: {instruction}\nIn: {input}\nOut: "
_MARK = "\x1eANSWER\x1e"  # a stand-in answer, to find what the chat template puts after one


def render(instruction: str, input: str) -> str:
    """The plain prompt for one step; the model continues it with the answer and then EOS."""
    return TEMPLATE.format(instruction=instruction.strip(), input=input.strip())


class PlainFormat:
    name: Format = "plain"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def render(self, instruction: str, input: str) -> str:
        return render(instruction, input)

    @property
    def answer_end(self) -> int:
        return self.tokenizer.eos_token_id


class ChatFormat:
    """The tokenizer's chat template with one user turn (instruction, blank line, input)."""

    name: Format = "chat"

    def __init__(self, tokenizer):
        if not getattr(tokenizer, "chat_template", None):
            raise ComposerError("the base model's tokenizer has no chat template; use the plain prompt format")
        self.tokenizer = tokenizer
        self._end = _turn_end(tokenizer)

    def render(self, instruction: str, input: str) -> str:
        return self.tokenizer.apply_chat_template(self._user(instruction, input), tokenize=False,
                                                  add_generation_prompt=True)

    @property
    def answer_end(self) -> int:
        return self._end

    @staticmethod
    def _user(instruction: str, input: str) -> list[dict]:
        return [{"role": "user", "content": f"{instruction.strip()}\n\n{input.strip()}"}]


FORMATS = {"plain": PlainFormat, "chat": ChatFormat}
PromptFormat = PlainFormat | ChatFormat


def prompt_format(name: str, tokenizer) -> PromptFormat:
    """The format `name` over `tokenizer`; a clear error for an unknown name."""
    if name not in FORMATS:
        raise ComposerError(f"unknown prompt format {name!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[name](tokenizer)


def default_format(tokenizer) -> Format:
    """`chat` for a base whose tokenizer has a chat template, else `plain`."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "plain"


def resolve_format(recorded: str | None, has_bricks: bool, tokenizer) -> Format:
    """A library's format: the one it recorded; `plain` for a library that has bricks but no
    record (every library made before formats existed); else the base's default."""
    if recorded:
        return recorded  # type: ignore[return-value]
    return "plain" if has_bricks else default_format(tokenizer)


def library_format(library, tokenizer) -> PromptFormat:
    """The format a `BrickLibrary`'s bricks train and run in, over `tokenizer`."""
    return prompt_format(resolve_format(library.prompt_format, bool(library.ids()), tokenizer), tokenizer)


def stop_ids(tokenizer) -> list[int]:
    """Token ids that end an answer: EOS, and the end-of-turn token of a chat template."""
    ids = [tokenizer.eos_token_id]
    if getattr(tokenizer, "chat_template", None):
        end = _turn_end(tokenizer)
        if end not in ids:
            ids.append(end)
    return [i for i in ids if i is not None]


def _turn_end(tokenizer) -> int:
    """The special token the template writes right after an assistant answer (ChatML's
    `<|im_end|>`, Llama 3's `<|eot_id|>`); EOS when the template writes none. Worked out
    once per tokenizer and template: every `generate` call asks."""
    return _template_turn_end(tokenizer, tokenizer.chat_template)


@functools.lru_cache(maxsize=16)
def _template_turn_end(tokenizer, template: str) -> int:
    turn = [*ChatFormat._user("x", "y"), {"role": "assistant", "content": _MARK}]
    try:
        text = tokenizer.apply_chat_template(turn, tokenize=False)
    except Exception:  # jinja's own errors: a template may refuse this role order
        return tokenizer.eos_token_id
    after = text[text.find(_MARK) + len(_MARK):] if _MARK in text else ""
    ids = tokenizer.encode(after.lstrip(" "), add_special_tokens=False) if after else []
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if token.special}
    return ids[0] if ids and ids[0] in special else tokenizer.eos_token_id
