import json

import numpy as np
import pytest

from composer import tagger
from composer.defaults.build import request_examples
from composer.index import load_embedder
from composer.tagger import PayloadTagger, label


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


def test_label_marks_the_payload_words():
    assert label("Spell paris backwards", "paris") == [0, 1, 0]
    assert label("uppercase (all letters) - quiet river.", "quiet river") == [0, 0, 0, 0, 1, 1]
    assert label("uppercase good night", "bad") is None
    assert label("what is turkey's capital", "turkey") == [0, 0, 1, 0]  # the planner reads the owner
    assert label("what is turkeys capital", "turkey") is None
    assert label("backwards please [butterfly garden]", "butterfly garden") == [0, 0, 1, 1]  # brackets delimit


def test_string_requests_also_train_on_payloads_that_read_as_instructions():
    """"uppercase turn off the lights": the tagger must see payloads that open with a verb."""
    from composer.defaults.build import command_payloads

    commands = command_payloads()
    assert len(commands) >= 100 and all(c == c.strip() and not c.startswith("#") for c in commands)
    texts = [text for text, _ in request_examples()]
    assert sum(any(c in t for c in commands) for t in texts) >= 1000


def test_requests_also_train_with_words_after_the_payload():
    """"apply rot13 to hidden door quickly": copies of requests whose payload closes them end in
    words people add ("for my notes"), labelled as no payload, so the tagger stops before them."""
    from composer.defaults.build import REQUEST_TRAILERS, text_lines

    trailers = text_lines(REQUEST_TRAILERS)
    assert len(trailers) >= 30 and not {"thank you", "too", "now"} & set(trailers)  # these also close payloads
    closing = [(text, labels) for text, labels in request_examples()
               if any(text.endswith(f" {t}") for t in trailers) and labels[-1] == 0]
    after_payload = [labels[-len(next(t for t in trailers if text.endswith(f" {t}")).split()) - 1] == 1
                     for text, labels in closing]  # not all: a request may close on "... it properly"
    assert len(closing) >= 2000 and sum(after_payload) >= 0.9 * len(closing)


def test_the_annotated_requests_are_sound():
    """Every row names known skills and a payload written in its instruction; most are inline."""
    from composer.defaults.skills import BRICK_SKILLS, annotated_requests

    skills = {s.id for s in BRICK_SKILLS}
    rows = [row for rows in annotated_requests() for row in rows]
    assert len(rows) >= 1000
    for row in rows:
        assert set(row["skills"]) <= skills and 1 <= len(row["skills"]) <= 3
        assert row["instruction"].count(row["payload"]) == 1
    assert len(request_examples(variants=0)) >= 0.65 * len(rows)


def test_the_shipped_tagger_reads_fresh_requests(embedder):
    """Wordings in none of the annotated requests: payload words get positive log-odds,
    instruction words negative."""
    tag = PayloadTagger.load(embedder)
    assert tag is not None
    for text, payload in [("Please spell walnut cookie backwards", {"walnut", "cookie"}),
                          ("could you tell me what the plural of wolf is", {"wolf"}),
                          ("sunny meadow in capitals, thank you", {"sunny", "meadow"}),
                          ("uppercase garden party by friday", {"garden", "party"})]:  # "friday" +3.1 before trailers
        logits = tag(text)
        assert len(logits) == len(text.split())
        for word, logit in zip(text.split(), logits):
            assert (logit > 0) == (word.strip(",") in payload), (text, word, logit)


def test_loading_refuses_other_embedders_and_damaged_weights(tmp_path, embedder):
    weights = tmp_path / "t.safetensors"
    weights.write_bytes(tagger.WEIGHTS.read_bytes())
    meta = json.loads(tagger.WEIGHTS.with_suffix(".json").read_text())
    weights.with_suffix(".json").write_text(json.dumps(meta))
    assert PayloadTagger.load(embedder, weights) is not None
    weights.with_suffix(".json").write_text(json.dumps({**meta, "base": "other/model"}))
    assert PayloadTagger.load(embedder, weights) is None
    weights.with_suffix(".json").write_text(json.dumps(meta))
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    assert PayloadTagger.load(embedder, weights) is None
    assert PayloadTagger.load(object(), tagger.WEIGHTS) is None  # no tokenizer: not a sentence embedder


def test_training_learns_which_words_are_payload(embedder, tmp_path):
    """LoRA on the embedder's attention and the MLP learn together; the shared embedder, which
    the retriever uses too, is left exactly as it was."""
    before = embedder.encode(["uppercase happy cat"])
    examples = [("uppercase happy cat", [0, 1, 1]), ("reverse green tea", [0, 1, 1]),
                ("make blue sky loud", [0, 1, 1, 0]), ("shout red fox", [0, 1, 1])]
    weights, loss = tagger.train(embedder, examples, epochs=60, lr=3e-3)
    assert loss < 0.1
    assert {f"lora.encoder.layer.0.attention.self.{m}.{f}" for m in tagger.TARGETS for f in "ab"} <= weights.keys()
    tagger.save(weights, {"base": tagger.base_id(embedder.tokenizer.name_or_path)}, tmp_path / "w.safetensors")
    trained = PayloadTagger.load(embedder, tmp_path / "w.safetensors")
    assert np.allclose(trained("uppercase happy cat"), PayloadTagger(embedder, weights)("uppercase happy cat"))
    assert [x > 0 for x in trained("reverse green tea")] == [False, True, True]
    assert np.array_equal(embedder.encode(["uppercase happy cat"]), before)
