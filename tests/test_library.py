import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from composer.library import BrickCard, BrickLibrary, LibraryError, check_id, fingerprint
from tests.helpers import write_brick


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))


def card(brick_id="upper", **kw):
    fields = dict(id=brick_id, title="Upper", description="all caps", examples=["shout it"],
                  base_fingerprint="0" * 16)
    return BrickCard(**{**fields, **kw})


def test_fingerprint_tracks_weights_not_dtype():
    a, b = tiny_llama(0), tiny_llama(1)
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint(tiny_llama(0))
    half = tiny_llama(0).half().float()
    assert fingerprint(half) == fingerprint(half.to(torch.float16))


def test_cards_round_trip_and_fingerprint_changes(tmp_path):
    library = BrickLibrary(tmp_path)
    write_brick(library, card())
    before = library.fingerprint()
    assert library.ids() == ["upper"] and library.card("upper").examples == ["shout it"]
    library.write_card(card(description="changed"))
    assert library.fingerprint() != before


def test_known_inputs_are_each_bricks_table_keys_reread_when_the_library_changes(tmp_path):
    library = BrickLibrary(tmp_path)
    folder = write_brick(library, card("antonym"))
    write_brick(library, card("upper"))  # no data.jsonl: knows nothing
    (folder / "data.jsonl").write_text('{"input": "Hot", "output": "cold"}\n\n{"input": "up", "output": "down"}\n')
    write_brick(library, card("capital"))  # a write: the library changed
    assert library.known_inputs() == {"antonym": {"hot": "Hot", "up": "up"}}  # lowercased: as spelled
    assert library.known_inputs() is library.known_inputs()  # cached while nothing changes
    (folder / "data.jsonl").write_text('{"input": "Turkey", "output": "x"}\n{"input": "turkey", "output": "y"}\n')
    write_brick(library, card("upper"))
    assert library.known_inputs() == {"antonym": {"turkey": ""}}  # spelled two ways: no one spelling
    library.remove("antonym")
    assert library.known_inputs() == {}


def test_base_folder_and_hidden_folders_are_not_bricks(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / ".index").mkdir()
    write_brick(BrickLibrary(tmp_path), card())
    assert BrickLibrary(tmp_path).ids() == ["upper"]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "UPPER", "-x", "x" * 65, "a b"])
def test_ids_that_could_escape_or_break_are_refused(bad):
    with pytest.raises(LibraryError, match="invalid brick id"):
        check_id(bad)


def test_missing_library_and_unknown_and_corrupt_cards(tmp_path):
    with pytest.raises(LibraryError, match="not found"):
        BrickLibrary(tmp_path / "nope")
    library = BrickLibrary(tmp_path)
    with pytest.raises(LibraryError, match="unknown brick 'ghost'"):
        library.card("ghost")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "brick.json").write_text('{"id": "broken"')
    with pytest.raises(LibraryError, match="corrupt brick card"):
        library.card("broken")


def _write(text):
    def write(folder):
        (folder / "adapter_model.safetensors").write_text(text)
        (folder / "adapter_config.json").write_text("{}")
        return card(description=text)

    return write


def test_versions_update_and_rollback(tmp_path):
    library = BrickLibrary(tmp_path)
    assert library.commit("upper", _write("one")).version == 1
    with pytest.raises(LibraryError, match="already exists"):
        library.commit("upper", _write("again"))
    assert library.commit("upper", _write("two"), new_version=True).version == 2
    assert library.commit("upper", _write("three"), new_version=True).version == 3
    assert library.versions("upper") == [1, 2, 3]
    assert library.card("upper").description == "three"

    assert library.rollback("upper").version == 2
    assert (library.path("upper") / "adapter_model.safetensors").read_text() == "two"
    assert library.rollback("upper", to=1).description == "one"
    assert library.versions("upper") == [1, 2, 3]
    assert library.rollback("upper", to=3).description == "three"
    with pytest.raises(LibraryError, match="no version 7"):
        library.rollback("upper", to=7)
    with pytest.raises(LibraryError, match="nothing to update"):
        library.commit("ghost", _write("x"), new_version=True)


def test_remove(tmp_path):
    library = BrickLibrary(tmp_path)
    library.commit("upper", _write("one"))
    library.remove("upper")
    assert library.ids() == [] and _entries(tmp_path) == []
    with pytest.raises(LibraryError, match="unknown brick"):
        library.remove("upper")


def test_a_failing_write_changes_nothing(tmp_path):
    library = BrickLibrary(tmp_path)
    library.commit("upper", _write("one"))
    before = library.fingerprint()

    def broken(folder):
        (folder / "adapter_model.safetensors").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        library.commit("upper", broken, new_version=True)
    assert library.fingerprint() == before and library.versions("upper") == [1]
    assert _entries(tmp_path) == ["upper"]


def _entries(root):
    """What is in a library folder besides its lock, generation and library.json files."""
    return sorted(p.name for p in root.iterdir() if p.name not in (".library.lock", ".generation", "library.json"))


def test_out_of_scope_requests_are_recorded_beside_the_prompt_format(tmp_path):
    library = BrickLibrary(tmp_path, create=True)
    assert library.out_of_scope == [] and library.prompt_format is None
    kept = library.set_out_of_scope(["translate it into  german", "Translate it into German", "tell me a joke"])
    assert kept == ["translate it into german", "tell me a joke"] == BrickLibrary(tmp_path).out_of_scope
    assert library.prompt_format is None  # recording the list records no format
    write_brick(library, BrickCard(id="shout", title="t", description="d", examples=["e"], base_fingerprint="f" * 16))
    assert library.prompt_format == "plain" and library.out_of_scope == kept  # the first brick's format keeps the list
    for bad, why in (([""], "non-empty"), (["x" * 201], "longer than 200"), ([f"t{i}" for i in range(1001)], "at most")):
        with pytest.raises(LibraryError, match=why):
            library.set_out_of_scope(bad)
    assert library.out_of_scope == kept  # a refused list changes nothing
    (tmp_path / "library.json").write_text('{"out_of_scope": "not a list"}')
    with pytest.raises(LibraryError, match="corrupt"):
        library.out_of_scope
