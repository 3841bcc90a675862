"""Brick Composer: an instruction-driven composer of LLM bricks over one resident base model."""

from composer.composer import Composer, Result, StepResult
from composer.errors import ComposerError
from composer.index import BrickHit
from composer.planner import Plan, Step

__all__ = ["Composer", "ComposerError", "Result", "StepResult", "BrickHit", "Plan", "Step"]
