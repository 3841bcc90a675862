"""The worked examples run end to end (slow; the real model's file must be present)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GGUF = ROOT / "examples" / "real-model" / "cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
@pytest.mark.skipif(not GGUF.is_file(), reason="the SmolLM2 GGUF is not in examples/real-model/cache (see its script)")
def test_the_real_model_example_trains_two_chat_bricks_that_compose(tmp_path):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(ROOT / "examples" / "real-model" / "real_model.py"),
                    "--library", str(tmp_path / "library"), "--out", str(out)], check=True, timeout=3600)
    result = json.loads(out.read_text())
    for brick in result["bricks"].values():
        assert brick["prompt_format"] == "chat" and brick["held_out"]["exact_match"] >= 0.9
        assert brick["card_exact_match"] >= 0.9 and brick["card_base_exact_match"] <= 0.2
    assert result["composition"]["bricks_in_order"] >= 0.9 and result["composition"]["exact_match"] >= 0.9
