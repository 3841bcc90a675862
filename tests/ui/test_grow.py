"""Grow requests the Trainer refuses before any training starts."""

import pytest

from composer import ComposerError, Workspace
from ui.grow import Trainer


@pytest.fixture()
def trainer(tmp_path):
    return Trainer(Workspace(tmp_path / "lib", create=True), max_bytes=64)


@pytest.mark.parametrize("content, brick_id, description, examples, steps, message", [
    (None, "x", "d", "e", 20, "upload a JSONL file"),
    ("x" * 65, "x", "d", "e", 20, "over the upload limit of 64 bytes"),
    ("{}", "x", " ", "e", 20, "needs an id, a description and at least one example"),
    ("{}", "x", "d", "\n \n", 20, "at least one example"),
    ("{}", "x", "d", "e", 0, "steps must be between 1 and"),
])
def test_bad_requests_are_refused_with_the_reason(trainer, tmp_path, content, brick_id, description, examples, steps,
                                                  message):
    path = None
    if content is not None:
        path = tmp_path / "data.jsonl"
        path.write_text(content)
    with pytest.raises(ComposerError, match=message):
        trainer.start(path and str(path), brick_id, description, examples, steps)
    assert trainer.job is None
