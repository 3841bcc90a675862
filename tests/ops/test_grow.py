import json

import pytest

from composer.errors import ComposerError
from composer.library import BrickLibrary
from composer.ops.grow import Budget, grow, read_jsonl, update
from tests.helpers import save_base, tiny_model

FAST = Budget(steps=20, lr=1e-2, rank=4)


def data(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def env(tmp_path):
    save_base(tiny_model("llama"), tmp_path / "lib" / "base")
    rows = [{"input": w, "output": w + w} for w in ["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st"]]
    return BrickLibrary(tmp_path / "lib"), data(tmp_path / "d.jsonl", rows)


def test_grow_update_rollback(env, tmp_path):
    library, path = env
    card = grow(library, library.base_path, "double", path, "Double the text", ["Say it twice"],
                budget=FAST, progress=False)
    assert card.version == 1 and card.metrics.samples == 2 and "held-out" in card.metrics.eval
    assert (library.path("double") / "data.jsonl").is_file() and card.source["steps"] == 20
    assert card.source["rank"] == 4 and card.source["targets"] == "all-linear" and card.source["seconds_per_step"] > 0
    assert card.prompt_format == "plain" and library.prompt_format == "plain"  # the base has no chat template
    with pytest.raises(ComposerError, match="already exists"):
        grow(library, library.base_path, "double", path, "x", ["y"], budget=FAST, progress=False)

    weights = (library.path("double") / "adapter_model.safetensors").read_bytes()
    v2 = update(library, library.base_path, "double", path, budget=FAST, progress=False)
    assert v2.version == 2 and v2.source["previous_version"] == 1
    assert (library.path("double") / "adapter_model.safetensors").read_bytes() != weights
    assert library.rollback("double").version == 1
    assert (library.path("double") / "adapter_model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("content, message", [
    ("", "no training rows"),
    ("{not json}\n", ":1: not valid JSON"),
    ('{"input": "a", "output": "b"}\n{"input": "a"}\n', ':2: each line needs'),
    ('["a", "b"]\n', ":1: each line needs"),
    ('{"input": "a", "output": "b", "instruction": 3}\n', '"instruction" must be a string'),
])
def test_bad_training_data_is_refused_before_training(env, tmp_path, content, message):
    library, _ = env
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(ComposerError, match=message):
        read_jsonl(tmp_path / "bad.jsonl")
    with pytest.raises(ComposerError, match=message):
        grow(library, library.base_path, "new", tmp_path / "bad.jsonl", "d", ["e"], budget=FAST, progress=False)
    assert library.ids() == []


def test_a_grown_brick_is_retrieved_by_composer_run(env):
    from composer import Composer
    from composer.index import default_embedder_path

    library, path = env
    grow(library, library.base_path, "double", path, "Write the text twice in a row", ["Say it twice", "Double it"],
         budget=FAST, progress=False)
    c = Composer.from_path(library.base_path, library.root, embedder=default_embedder_path())
    step = c.run("Say it twice: ab").steps[0]
    assert step.used == ["double"] and step.bricks[0].id == "double"


def test_max_minutes_stops_early_and_keeps_the_best_dev_checkpoint(tmp_path):
    save_base(tiny_model("llama"), tmp_path / "lib" / "base")
    library = BrickLibrary(tmp_path / "lib")
    rows = [{"input": f"w{i}", "output": f"w{i}w{i}"} for i in range(110)]
    card = grow(library, library.base_path, "double", data(tmp_path / "d.jsonl", rows), "Double", ["Say it twice"],
                budget=Budget(steps=100_000, max_minutes=0.05), progress=False)
    assert card.source["stopped_early"] and 0 < card.source["steps"] < 100_000
    best = card.source["best_checkpoint"]
    assert best["dev_rows"] == 8 and best["checks"] >= 1 and 0 <= best["dev_exact_match"] <= 1


def test_a_training_row_longer_than_the_base_takes_is_refused(env, tmp_path):
    library, _ = env
    rows = [{"input": "ab", "output": "abab"}, {"input": "x" * 300, "output": "y"}]  # the tiny base: 256 positions
    with pytest.raises(ComposerError, match="at most 256"):
        grow(library, library.base_path, "long", data(tmp_path / "long.jsonl", rows), "d", ["e"], budget=FAST,
             progress=False)
    assert library.ids() == []


@pytest.mark.parametrize("budget, message", [(dict(steps=0), "steps"), (dict(lr=-1.0), "lr"),
                                             (dict(rank=0), "rank"), (dict(max_minutes=0), "max_minutes")])
def test_bad_budgets_are_refused(budget, message):
    with pytest.raises(ComposerError, match=message):
        Budget(**budget)
