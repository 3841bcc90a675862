"""The whole analysis end to end on a tiny random base (numbers meaningless, plumbing checked)."""

from __future__ import annotations

import json

import pytest

from composer.emergent.analyze import AnalysisReport, analyze
from composer.emergent.partition import load_masks
from composer.errors import ComposerError
from composer.library import BrickLibrary


def test_analyze_writes_report_figures_and_bricks(tiny, tmp_path):
    model = tiny.make()
    model.save_pretrained(tmp_path / "base")
    tiny.tokenizer.save_pretrained(tmp_path / "base")
    report = analyze(tmp_path / "base", tmp_path / "out", profile_per_skill=4, eval_per_skill=2, experts=4,
                     progress=False)
    assert isinstance(report, AnalysisReport)
    assert AnalysisReport.model_validate(json.loads((tmp_path / "out" / "analysis.json").read_text())) == report
    for name in ("scores.png", "overlap.png", "pruning.png", "sparsity.png"):
        assert (tmp_path / "out" / name).stat().st_size > 1000
    skills = report.skills
    assert len(report.scores.best_per_layer) == 2 and len(report.scores.best_per_layer[0]) == len(skills)
    assert len(report.overlap) == len(skills) and all(row[i] == 1.0 for i, row in enumerate(report.overlap))
    assert [row.pruned for row in report.pruning] == [*skills, "random"]
    assert {p.method for p in report.sparsity} == {"skill neurons", "skill experts", "router (per token)",
                                                    "random neurons"}
    library = BrickLibrary(tmp_path / "out" / "bricks")
    assert library.ids() == sorted(report.bricks) and len(report.bricks) == len(skills)
    card = library.card(report.bricks[0])
    assert card.kind == "emergent" and card.examples
    assert load_masks(library.path(card.id), model).shape == (2, 64)


def test_missing_base_is_a_clear_error(tmp_path):
    with pytest.raises(ComposerError, match="no base model"):
        analyze(tmp_path / "nowhere", tmp_path / "out")
