"""The Gradio UI: chat with the composer, manage and grow bricks, see the analysis figures."""

from ui.app import build_app, launch

__all__ = ["build_app", "launch"]
