"""The retriever trained for bricks, on the default library's real cards and embedder."""

import json
import shutil

import pytest

from composer import retriever
from composer.index import BrickIndex, load_embedder
from composer.library import BrickLibrary
from composer.workspace import ROOT

BRICKS = ROOT / "bricks"
pytestmark = pytest.mark.skipif(not (BRICKS / "base" / "config.json").is_file(), reason="default not built")


@pytest.fixture(scope="module")
def base():
    return load_embedder()


@pytest.fixture(scope="module")
def library():
    return BrickLibrary(BRICKS)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base, library):
    """(folder, embedder, name): the default library's retriever, trained once for the module."""
    folder = tmp_path_factory.mktemp("retriever")
    return (folder, *retriever.brick_embedder(library, folder, base=base))


def test_trained_once_persisted_small_and_reloaded(trained, base, library):
    tmp_path, embedder, name = trained
    assert isinstance(embedder, retriever.ProjectedEmbedder) and "+bricks-" in name
    size = (tmp_path / retriever.WEIGHTS).stat().st_size
    assert 0 < size <= 5 * 2 ** 20
    meta = json.loads((tmp_path / retriever.META).read_text())
    assert meta["cards_sha256"] == retriever.cards_hash(library) and meta["texts"] > 100
    again, same = retriever.brick_embedder(library, tmp_path, base=base)
    assert same == name and (again.a == embedder.a).all()  # loaded, not retrained
    assert not retriever.is_stale(library, tmp_path)


def test_trained_retriever_separates_near_synonyms(tmp_path, trained, base, library):
    """Its own cards' texts retrieve their brick top-1 at least as often as with the untrained
    embedder, and the trained vectors keep unit norm (cosine scores)."""
    _, trained, name = trained
    plain = BrickIndex(library, tmp_path / "plain", base).build()
    tuned = BrickIndex(library, tmp_path / "idx", trained, name).build()
    pairs = [(c.id, e) for c in library.cards() for e in c.examples]
    right = {which: sum(hits[0].id == brick for (brick, _), hits in zip(pairs, index.search_many([t for _, t in pairs], 1)))
             for which, index in (("plain", plain), ("tuned", tuned))}
    assert right["tuned"] >= right["plain"] and right["tuned"] / len(pairs) >= 0.95
    v = trained.encode(["make it all caps"])
    assert abs(float((v ** 2).sum()) - 1) < 1e-4 and v.shape == (1, trained.get_embedding_dimension())


@pytest.mark.slow
def test_changed_cards_retrain_and_a_broken_file_falls_back_to_training(tmp_path, base):
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for brick in ("uppercase", "reverse", "capital"):
        shutil.copytree(BRICKS / brick, lib_dir / brick)
    library = BrickLibrary(lib_dir)
    _, first = retriever.brick_embedder(library, tmp_path / "idx", base=base)
    card = json.loads((lib_dir / "uppercase" / "brick.json").read_text())
    card["examples"].append("turn up the volume of the letters")
    (lib_dir / "uppercase" / "brick.json").write_text(json.dumps(card))
    library = BrickLibrary(lib_dir)
    assert retriever.is_stale(library, tmp_path / "idx")
    _, second = retriever.brick_embedder(library, tmp_path / "idx", base=base)
    assert second != first and not retriever.is_stale(library, tmp_path / "idx")
    (tmp_path / "idx" / retriever.WEIGHTS).write_bytes(b"not safetensors")
    embedder, third = retriever.brick_embedder(library, tmp_path / "idx", base=base)
    assert isinstance(embedder, retriever.ProjectedEmbedder) and third == second  # retrained, same seed


def test_one_brick_has_nothing_to_contrast_so_the_untrained_embedder_serves(tmp_path, base):
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    shutil.copytree(BRICKS / "uppercase", lib_dir / "uppercase")
    embedder, name = retriever.brick_embedder(BrickLibrary(lib_dir), tmp_path / "idx", "all-MiniLM-L6-v2", base=base)
    assert embedder.a is None and name == "all-MiniLM-L6-v2"  # no map: the untrained geometry
    assert (embedder.encode(["uppercase"]) == base.encode(["uppercase"], normalize_embeddings=True)).all()


def test_typos_read_as_the_card_word_they_are_one_edit_from(base, library):
    embedder = retriever.ProjectedEmbedder(base, None, None, retriever.vocabulary(library))
    assert embedder.correct("captial of it") == "capital of it"
    assert embedder.correct("revrese the letters") == "reverse the letters"
    assert embedder.correct("oposite of hot") == "opposite of hot"
    assert embedder.correct("the cat sat") == "the cat sat"  # short or known words stay


def test_a_query_is_embedded_once_per_half_and_a_bulk_call_bypasses_the_memo(base, library, monkeypatch):
    """The planner embeds a step's text untuned and the run embeds it tuned: the second time the
    projected half comes from the memo, the very same vector, and only the tuned half is
    computed. A bulk call (the index's card texts) is not remembered."""
    import numpy as np

    vocabulary = retriever.vocabulary(library)
    trained = retriever.ProjectedEmbedder(base, None, None, vocabulary, tuned=base)
    calls = []
    for name in ("_projected", "_tuned_vectors"):
        real = getattr(retriever.ProjectedEmbedder, name)
        monkeypatch.setattr(retriever.ProjectedEmbedder, name,
                            lambda self, texts, name=name, real=real: calls.append((name, list(texts))) or real(self, texts))
    first = trained.encode_untuned(["reverse it", "uppercase it", "reverse it"])
    again = trained.encode(["uppercase it", "plural of it"])
    assert calls == [("_projected", ["reverse it", "uppercase it"]), ("_projected", ["plural of it"]),
                     ("_tuned_vectors", ["uppercase it", "plural of it"])]
    d, share = base.get_embedding_dimension(), trained.share
    assert np.array_equal(first[0], first[2])
    assert np.allclose(first[1, :d] * (1 - share), again[0, :d], rtol=0, atol=1e-7)  # the same y, scaled
    fresh = retriever.ProjectedEmbedder(base, None, None, vocabulary, tuned=base)
    assert np.allclose(again, fresh.encode(["uppercase it", "plural of it"]), atol=1e-6)
    bulk = [f"text {n}" for n in range(retriever.MEMO_SIZE // 4 + 1)]
    trained.encode(bulk)
    assert calls[-2:] == [("_projected", bulk), ("_tuned_vectors", bulk)]
    assert "text 0" not in {t for _, t in trained._memo}


def test_out_of_scope_requests_leave_the_retriever_as_it_was(tmp_path):
    """The list is searched beside the cards, not trained on: recording it retrains nothing."""
    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for brick in ("uppercase", "french"):
        shutil.copytree(BRICKS / brick, lib_dir / brick)
    small = BrickLibrary(lib_dir)
    before = (retriever.cards_hash(small), retriever.training_texts(small))
    small.set_out_of_scope(["translate it into german", "tell me a joke"])
    assert (retriever.cards_hash(small), retriever.training_texts(small)) == before


def test_the_default_refuses_near_domain_requests_its_bricks_do_not_do():
    """Wordings of requests on none of the default's out-of-scope lines, each near a brick."""
    from composer import Composer
    from composer.modes import NoBrickError

    c = Composer.from_default()
    for request in ("What's the German word for milk?", "Give me the synonym of happy", "Summarise this: big cat",
                    "singular of mice"):
        with pytest.raises(NoBrickError, match="out-of-scope request|no brick matches"):
            c.run(request)
    assert c.run("Translate milk into French").output == "lait"


def test_the_trained_map_is_the_average_of_one_map_per_seed(base):
    """A side by side, B stacked over the seed count: x A B is the mean of each seed's x A_s B_s,
    and training the seeds together in one batched loop gives each the map it gets alone."""
    import numpy as np
    import torch

    pairs = [("up", "make it all caps"), ("up", "uppercase it"), ("up", "shout it"),
             ("rev", "spell it backwards"), ("rev", "reverse the letters"), ("rev", "mirror it")]
    a, b, _ = retriever.train_projection(base, pairs, rank=4, steps=5, seeds=3)
    assert a.shape == (base.get_embedding_dimension(), 12) and b.shape == (12, base.get_embedding_dimension())
    x = torch.tensor(base.encode([t for _, t in pairs], normalize_embeddings=True))
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    per_seed = [retriever._fit(x, y, [seed], 4, 5, retriever.LR, retriever.TEMPERATURE, retriever.IDENTITY_PULL,
                               retriever.PER_BRICK)[0][:2] for seed in range(3)]  # each seed trained alone
    assert np.allclose(a @ b, sum(sa @ sb for sa, sb in per_seed) / 3, atol=1e-6)
    assert not np.allclose(per_seed[0][0], per_seed[1][0])  # the seeds differ


def test_a_tuned_encoder_sits_beside_the_projection_and_leaves_the_base_alone(tmp_path, base, monkeypatch):
    """Opt-in LoRA on the embedder: persisted small, reloaded without training, and added as a
    second half of each vector; the untuned view scores exactly what the projection alone does,
    and the shared base (which the payload tagger reads) is unchanged."""
    import numpy as np

    from composer.tagger import PayloadTagger

    lib_dir = tmp_path / "lib"
    lib_dir.mkdir()
    for brick in ("uppercase", "capitalize", "reverse"):
        shutil.copytree(BRICKS / brick, lib_dir / brick)
    small = BrickLibrary(lib_dir)
    monkeypatch.setattr(retriever, "ENCODER_STEPS", 3)
    before = base.encode(["make it all caps"], normalize_embeddings=True)
    steps = []
    tuned, name = retriever.brick_embedder(small, tmp_path / "idx", base=base, tune_encoder=True,
                                           progress=lambda step, total, loss: steps.append((step, total)))
    assert steps[-1] == (3, 3) and "+encoder-" in name and tuned.tuned is not None
    assert 0 < (tmp_path / "idx" / retriever.ENCODER).stat().st_size <= 2 * 2 ** 20
    assert (base.encode(["make it all caps"], normalize_embeddings=True) == before).all()
    tagger = PayloadTagger.load(tuned)
    assert tagger is None or tagger.base is base

    again, same = retriever.brick_embedder(small, tmp_path / "idx", base=base)  # loaded, not tuned again
    assert same == name
    plain = retriever.ProjectedEmbedder(base, again.a, again.b, retriever.vocabulary(small))
    rows, queries = ["uppercase it", "capitalize each word", "spell it backwards"], ["shout it", "hello there"]
    v = again.encode(rows)
    assert v.shape == (3, 2 * base.get_embedding_dimension()) and np.allclose((v ** 2).sum(1), 1, atol=1e-5)
    assert np.allclose(again.encode_untuned(queries) @ v.T, plain.encode(queries) @ plain.encode(rows).T, atol=1e-5)
    index = BrickIndex(small, tmp_path / "idx", again, same).build()
    untuned = BrickIndex(small, tmp_path / "plain", plain, "plain").build()
    (viewed,), (alone,) = index.search_many(["shout it"], 3, tuned=False), untuned.search_many(["shout it"], 3)
    assert [h.id for h in viewed] == [h.id for h in alone]
    assert np.allclose([h.score for h in viewed], [h.score for h in alone], atol=2e-4)
