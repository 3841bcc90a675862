"""Bricks tab: the library as a table, retrieval search, a card view with rollback.

Everything goes through the `Workspace` (list, show, rollback) and `Composer.retrieve`.
"""

from __future__ import annotations

from composer import ComposerError

TABLE_HEADERS = ["id", "kind", "version", "exact match", "base alone", "title / problem"]
SEARCH_HEADERS = ["brick", "score", "title"]


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def table(workspace) -> list[list]:
    """One row per brick folder; a broken one says BROKEN and why."""
    rows = []
    for entry in workspace.list():
        if not entry.ok:
            rows.append([entry.id, "BROKEN", "", "", "", entry.problem])
            continue
        card, m = entry.card, entry.card.metrics
        rows.append([card.id, card.kind, f"v{card.version}", _percent(m.exact_match if m else None),
                     _percent(m.base_exact_match if m else None), card.title])
    return rows


def brick_ids(workspace) -> list[str]:
    return [e.id for e in workspace.list() if e.ok]


def search(composer, query: str, k: int = 5) -> list[list]:
    """`retrieve()` hits with their scores and titles."""
    titles = {e.id: e.card.title for e in composer.workspace.list() if e.ok}
    return [[h.id, round(h.score, 3), titles.get(h.id, "")] for h in composer.retrieve(query, int(k))]


def card_view(workspace, brick_id: str | None) -> tuple[str, list[int]]:
    """(markdown card, versions kept) for one brick."""
    if not brick_id:
        return "Pick a brick to see its card.", []
    info = workspace.show(brick_id)
    card, m = info.card, info.card.metrics
    examples = "\n".join(f"- {e}" for e in card.examples)
    metrics = (f"exact match **{m.exact_match:.0%}** with the brick, {m.base_exact_match:.0%} with the base alone "
               f"({m.eval or f'{m.samples} samples'})" if m else "not measured")
    text = (f"### {card.title} (`{card.id}`, v{card.version}, {card.kind})\n\n{card.description}\n\n"
            f"**Examples**\n{examples}\n\n**Measured:** {metrics}\n\n"
            f"**Versions kept:** {', '.join(f'v{v}' for v in info.versions)} · **created** {card.created}")
    return text, info.versions


def rollback(workspace, brick_id: str | None, version) -> str:
    if not brick_id:
        raise ComposerError("pick a brick first")
    card = workspace.rollback(brick_id, None if version in (None, "") else int(version))
    return f"{card.id} is now at v{card.version}"
