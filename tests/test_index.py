import json

import pytest

from composer.index import META_FILE, BrickIndex, load_embedder
from composer.library import BrickCard, BrickLibrary


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def make_library(root, cards):
    root.mkdir(exist_ok=True)
    library = BrickLibrary(root)
    for brick_id, description, examples in cards:
        library.write_card(BrickCard(id=brick_id, title=brick_id, description=description, examples=examples,
                                     base_fingerprint="f" * 16))
    return library


CARDS = [
    ("uppercase", "Convert every letter to upper case.", ["Make it all caps", "Uppercase the text"]),
    ("french", "Translate the English word into French.", ["Say it in French", "French translation"]),
    ("plural", "Give the plural form of the noun.", ["Make it plural", "Pluralize the word"]),
]


def test_search_ranks_the_matching_brick_first(tmp_path, embedder):
    index = BrickIndex(make_library(tmp_path / "lib", CARDS), tmp_path / "idx", embedder).load_or_build()
    assert index.search("write it in capital letters", k=3)[0].id == "uppercase"
    assert index.search("how do you say this in french", k=1)[0].id == "french"
    hits = index.search("plural of goose", k=3)
    assert hits[0].id == "plural" and len(hits) == 3 and len({h.id for h in hits}) == 3
    assert hits[0].score >= hits[1].score >= hits[2].score


def test_persisted_index_is_reused_and_rebuilt_when_stale(tmp_path, embedder):
    library = make_library(tmp_path / "lib", CARDS)
    BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    meta = json.loads((tmp_path / "idx" / META_FILE).read_text())
    assert meta["library_fingerprint"] == library.fingerprint()
    assert len(meta["rows"]) == 9  # 3 bricks x (description + 2 examples)

    make_library(tmp_path / "lib", [("reverse", "Spell the text backwards.", ["Reverse it"])])
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    assert index.search("spell it backwards", k=1)[0].id == "reverse"
    assert json.loads((tmp_path / "idx" / META_FILE).read_text())["library_fingerprint"] == library.fingerprint()


def test_a_live_index_notices_library_changes(tmp_path, embedder):
    library = make_library(tmp_path / "lib", CARDS)
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    make_library(tmp_path / "lib", [("reverse", "Spell the text backwards.", ["Reverse it"])])
    assert index.search("spell it backwards", k=1)[0].id == "reverse"


@pytest.mark.parametrize("damage", ["corrupt-meta", "corrupt-faiss", "foreign-meta"])
def test_damaged_index_is_rebuilt(tmp_path, embedder, damage):
    library = make_library(tmp_path / "lib", CARDS)
    BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    if damage == "corrupt-meta":
        (tmp_path / "idx" / META_FILE).write_text("{not json")
    elif damage == "corrupt-faiss":
        (tmp_path / "idx" / "bricks.faiss").write_bytes(b"garbage")
    else:
        meta = json.loads((tmp_path / "idx" / META_FILE).read_text())
        meta["rows"] = meta["rows"][:2]
        (tmp_path / "idx" / META_FILE).write_text(json.dumps(meta))
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    assert index.search("make it plural", k=1)[0].id == "plural"
