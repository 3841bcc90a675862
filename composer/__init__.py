"""Brick Composer: an instruction-driven composer of LLM bricks over one resident base model."""

from composer.composer import Composer, ItemError, Result, StepResult
from composer.errors import ComposerError
from composer.index import BrickHit
from composer.modes import NoBrickError
from composer.planner import Plan, Step
from composer.workspace import Workspace

__all__ = ["Composer", "ComposerError", "ItemError", "NoBrickError", "Result", "StepResult", "BrickHit", "Plan",
           "Step", "Workspace"]
