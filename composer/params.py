"""Parameters declared as data (name, type, default, rule), as mergekit declares its merge
methods' parameters: merge methods and Arrow routing check their options through one type."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable

from composer.errors import ComposerError


@dataclass(frozen=True)
class Param:
    """One declared parameter: `check(value)` must hold, `rule` says what it demands."""

    name: str
    type: type
    default: Any = None
    required: bool = False
    check: Callable[[Any], bool] = lambda _: True
    rule: str = ""
    help: str = ""

    def coerce(self, value: Any, method: str) -> Any:
        """`value` as `type` (any integral number for int, any real for float), or raise."""
        kind = {int: numbers.Integral, float: numbers.Real}.get(self.type, self.type)
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and kind is not self.type:
            value = self.type(value)
        if not ok or not self.check(value):
            want = self.rule or f"a {self.type.__name__}"
            raise ComposerError(f"merge method {method!r}: {self.name}={value!r} is invalid; it must be {want}")
        return value
