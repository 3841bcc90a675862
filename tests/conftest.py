"""Shared fixtures. Tests never reach a hub: HF_HUB_OFFLINE is set before anything imports."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
