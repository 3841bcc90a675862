"""Requests no brick does, decided with and without the library's out-of-scope list.

`python -m benchmarks.out_of_scope` retrieves with the embedded default's index and decides
every step as `Composer.run` does (`choose_step`, auto mode, the composer's settings) twice, in
the same run: as shipped (a step nearer to one of the `library.json` out-of-scope requests than
to any brick is refused) and with the threshold as the only guard (the list ignored). The
retriever is the same in both: the list is searched, not trained on. Queries:

- `benchmarks/data/out_of_scope_eval.txt`: 50 requests no default brick does, written apart
  from the shipped list (no line in common; many near a brick: other languages, synonyms,
  facts about a country, other text edits). Refused is right.
- the annotated corpora's single-skill requests whose wording (payload as "it") is on no card:
  in-domain steps, none of which should be refused.

Writes benchmarks/results/out_of_scope.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from composer import Composer, ComposerError
from composer.defaults.build import text_lines
from composer.defaults.skills import annotated_requests, request_wording
from composer.library import BrickLibrary
from composer.modes import choose_step

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "benchmarks" / "data" / "out_of_scope_eval.txt"
RESULTS = ROOT / "benchmarks" / "results" / "out_of_scope.json"


def in_domain(library: BrickLibrary) -> list[tuple[str, str]]:
    """(step, skill) for single-skill corpus requests whose wording is on no card."""
    on_cards = {c.id: {t.lower() for t in c.text_for_index()} for c in library.cards()}
    out = []
    for rows in annotated_requests():
        for row in rows:
            if len(row["skills"]) == 1:
                text = request_wording(row)
                if text.lower() not in on_cards[row["skills"][0]]:
                    out.append((text, row["skills"][0]))
    return out


def decide(c: Composer, queries: list[str], use_list: bool) -> list[str | None]:
    """Per query: the brick `Composer.run` would use first, or None when the step is refused."""
    k = max(3, c.settings.k)
    out = []
    for found in c.index.search_scoped(queries, k + c.index.count("emergent")):
        try:
            scope = found.out_of_scope if use_list else None
            out.append(choose_step(found.hits, "auto", c.settings, c, c.kind, k, scope).used[0])
        except ComposerError:
            out.append(None)
    return out


def main() -> None:
    c = Composer.from_default()
    ood = text_lines(EVAL)
    overlap = {t.lower() for t in ood} & {t.lower() for t in c.library.out_of_scope}
    assert not overlap, f"evaluation requests on the shipped list: {sorted(overlap)}"
    steps = in_domain(c.library)
    out = {"out_of_scope_requests": len(ood), "in_domain_steps": len(steps), "listed": len(c.library.out_of_scope)}
    for name, use_list in (("threshold only", False), ("with the list", True)):
        refused = sum(used is None for used in decide(c, ood, use_list))
        used = decide(c, [s for s, _ in steps], use_list)
        out[name] = {"out_of_scope_refused": refused, "in_domain_refused": sum(u is None for u in used),
                     "in_domain_right": sum(u == skill for u, (_, skill) in zip(used, steps))}
        print(f"{name:15s} out-of-scope requests refused: {refused} of {len(ood)}; in-domain steps refused: "
              f"{out[name]['in_domain_refused']}, right brick: {out[name]['in_domain_right']} of {len(steps)}",
              flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
