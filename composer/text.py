"""Checks on user text, shared by every front end so each rejects bad text the same way and
before any model loads: empty, too long, non-ASCII (for byte-level models), control characters.
Typographic punctuation (’ “ ” – … and a no-break space), which phones and word processors put
where the user typed ' " - ..., is read as that ASCII rather than refused.

A newline is allowed in an instruction (it separates steps) but not in a payload: the prompt
template is line-based, so a payload newline would end the input early and silently cut the
answer.
"""

from __future__ import annotations

from composer.errors import ComposerError

_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"',
                              "\u201d": '"', "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...",
                              "\u00a0": " ", "\u2192": "->", "\u21d2": "=>"})  # arrows: "plural of tooth → caps"


def check_text(text, what: str, max_chars: int, ascii_only: bool = True, newlines: bool = False) -> str:
    """`text` (with typographic punctuation as ASCII when `ascii_only`), or a ComposerError
    naming the problem."""
    if not isinstance(text, str):
        raise ComposerError(f"the {what} must be text, got {type(text).__name__}")
    if not text.strip():
        raise ComposerError(f"the {what} is empty")
    if len(text) > max_chars:
        raise ComposerError(f"the {what} is {len(text)} characters; the limit is {max_chars}")
    for ch in text:
        if ch == "\n" and not newlines:
            raise ComposerError(f"the {what} has a line break; give it on one line")
        if (ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127:
            raise ComposerError(f"the {what} has a control character {ch!r}; remove it")
    if ascii_only:
        text = text.translate(_TYPOGRAPHIC)
    if ascii_only and not text.isascii():
        bad = next(c for c in text if not c.isascii())
        raise ComposerError(f"the {what} has a non-ASCII character {bad!r}; this model reads ASCII only")
    return text
