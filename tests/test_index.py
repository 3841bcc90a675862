import json

import pytest

from composer.index import META_FILE, BrickIndex, load_embedder
from composer.library import BrickCard, BrickLibrary
from tests.helpers import write_brick


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def make_library(root, cards):
    root.mkdir(exist_ok=True)
    library = BrickLibrary(root)
    for brick_id, description, examples in cards:
        write_brick(library, BrickCard(id=brick_id, title=brick_id, description=description, examples=examples,
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
    assert sorted(meta["texts"]) == ["french", "plural", "uppercase"]
    assert len(meta["rows"]) == 9  # 3 bricks x (description + 2 examples)

    make_library(tmp_path / "lib", [("reverse", "Spell the text backwards.", ["Reverse it"])])
    counting = Counting(embedder)
    index = BrickIndex(library, tmp_path / "idx", counting).load_or_build()
    assert index.search("spell it backwards", k=1)[0].id == "reverse"
    assert counting.texts == 2 + 1  # only the new card's 2 texts were embedded, then the query
    assert sorted(json.loads((tmp_path / "idx" / META_FILE).read_text())["texts"]) == \
        ["french", "plural", "reverse", "uppercase"]


def test_a_live_index_notices_library_changes(tmp_path, embedder):
    library = make_library(tmp_path / "lib", CARDS)
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    make_library(tmp_path / "lib", [("reverse", "Spell the text backwards.", ["Reverse it"])])
    assert index.search("spell it backwards", k=1)[0].id == "reverse"


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder):
        self.embedder, self.texts = embedder, 0

    def encode(self, texts, **kw):
        self.texts += len(texts)
        return self.embedder.encode(texts, **kw)

    def get_embedding_dimension(self):
        return self.embedder.get_embedding_dimension()


def test_writes_embed_only_what_changed(tmp_path, embedder):
    library = make_library(tmp_path / "lib", CARDS)
    counting = Counting(embedder)
    index = BrickIndex(library, tmp_path / "idx", counting).load_or_build()
    assert counting.texts == 9
    card = library.card("plural").model_copy(update={"examples": ["Make it plural", "More than one of it"]})
    library.write_card(card)
    assert index.search("more than one of it", k=1)[0].id == "plural"
    assert counting.texts == 9 + 3 + 1  # the changed card's 3 texts, then the query
    library.remove("french")
    assert [h.id for h in index.search("say it in french", k=3)] != [] and "french" not in index.rows
    assert counting.texts == 9 + 3 + 1 + 1


@pytest.mark.parametrize("damage", ["corrupt-meta", "corrupt-faiss", "foreign-meta", "edited-rows", "list-meta",
                                    "missing-brick-rows", "swapped-rows"])
def test_damaged_index_is_rebuilt(tmp_path, embedder, damage):
    library = make_library(tmp_path / "lib", CARDS)
    BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    if damage == "corrupt-meta":
        (tmp_path / "idx" / META_FILE).write_text("{not json")
    elif damage == "corrupt-faiss":
        (tmp_path / "idx" / "bricks.faiss").write_bytes(b"garbage")
    elif damage == "list-meta":
        (tmp_path / "idx" / META_FILE).write_text("[1, 2, 3]")
    else:
        meta = json.loads((tmp_path / "idx" / META_FILE).read_text())
        if damage == "foreign-meta":
            meta["rows"] = meta["rows"][:2]
        elif damage == "edited-rows":  # hand-edited so every plural vector says "uppercase"
            meta["rows"] = ["uppercase" if r == "plural" else r for r in meta["rows"]]
        elif damage == "swapped-rows":  # row hash recomputed by hand, but the texts no longer agree
            import hashlib
            meta["rows"] = ["uppercase" if r == "plural" else r for r in meta["rows"]]
            meta["rows_sha256"] = hashlib.sha256(json.dumps(meta["rows"]).encode()).hexdigest()
        else:
            meta["rows"] = ["ghost" if r == "plural" else r for r in meta["rows"]]
        (tmp_path / "idx" / META_FILE).write_text(json.dumps(meta))
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    assert index.search("make it plural", k=1)[0].id == "plural"
    assert sorted(set(index.rows)) == ["french", "plural", "uppercase"]


def test_out_of_scope_requests_are_indexed_but_never_a_hit(tmp_path, embedder):
    library = make_library(tmp_path / "lib", CARDS)
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    assert index.search_scoped(["say it in german"], k=3)[0].out_of_scope is None  # none listed
    library.set_out_of_scope(["translate it into german", "tell me a joke"])
    found = index.search_scoped(["say it in german", "make it all caps"], k=3)  # a live index notices
    assert found[0].out_of_scope.text == "translate it into german" and 0 < found[0].out_of_scope.score <= 1
    assert found[1].hits[0].id == "uppercase" and found[1].out_of_scope.score < found[1].hits[0].score
    assert all(len(f.hits) == 3 and "~" not in "".join(h.id for h in f.hits) for f in found)
    assert index.search_many(["say it in german"], 3) == [found[0].hits]
    assert index.rows.count("~out-of-scope") == 2 and index.count("customized") == 3
    counting = Counting(embedder)
    again = BrickIndex(library, tmp_path / "idx", counting).load_or_build()  # persisted as is
    assert again.search_scoped(["say it in german"])[0].out_of_scope == found[0].out_of_scope
    assert counting.texts == 1  # only the query was embedded
    library.set_out_of_scope([])
    assert index.search_scoped(["say it in german"])[0].out_of_scope is None and "~out-of-scope" not in index.rows


def test_a_brick_scores_the_mean_of_its_best_two_cosines(tmp_path, embedder):
    """Against brute force over every vector: the pooled scores and their order."""
    import numpy as np

    cards = CARDS + [("wide", "Count the letters.", [f"count letters of word {n}" for n in range(3)]),
                     ("reverse", "Spell the text backwards.", ["Mirror the letters"]),
                     ("capital", "Name the capital city of the country.", ["Its capital city"]),
                     ("antonym", "Give the word of opposite meaning.", ["Opposite of it"]),
                     ("rot13", "Encode the text with rot13.", ["Scramble it"]),
                     ("acronym", "Make an acronym of the words.", ["Initials of it"])]
    library = make_library(tmp_path / "lib", cards)
    index = BrickIndex(library, tmp_path / "idx", embedder).load_or_build()
    queries = ["write it in capital letters", "how many letters", "say it backwards", "the city that governs it"]
    q = embedder.encode(queries, normalize_embeddings=True)
    for k in (1, 2, 3, 8):
        for n, hits in enumerate(index.search_many(queries, k)):
            want = {}
            for card in library.cards():
                v = embedder.encode(card.text_for_index(), normalize_embeddings=True) @ q[n]
                want[card.id] = float(np.sort(v)[-2:].mean())
            ranked = sorted(want.items(), key=lambda item: -item[1])[:k]
            assert [h.id for h in hits] == [b for b, _ in ranked]
            assert [h.score for h in hits] == pytest.approx([s for _, s in ranked], abs=1e-4)
