import pytest
import torch
from peft import PeftModel

from composer.errors import ComposerError
from composer.index import BrickIndex, load_embedder
from composer.library import BrickLibrary, fingerprint
from composer.ops.add import add_brick
from tests.helpers import add_random_brick, tiny_model


@pytest.fixture()
def setup(tmp_path):
    base = tiny_model("llama")
    outside = BrickLibrary(tmp_path / "outside", create=True)
    folder = add_random_brick(outside, base, "shout", "upper case", ["Make it all caps"])
    (folder / "brick.json").unlink()  # a plain peft folder, as users have them
    return base, folder, BrickLibrary(tmp_path / "lib", create=True)


def test_add_plain_peft_folder_and_peft_reads_it_back(setup):
    base, folder, library = setup
    card = add_brick(library, folder, base, brick_id="caps", description="Upper case everything",
                     examples=["shout it"])
    assert card.base_fingerprint == fingerprint(base) and library.ids() == ["caps"]
    ours = PeftModel.from_pretrained(tiny_model("llama"), str(library.path("caps")))
    theirs = PeftModel.from_pretrained(tiny_model("llama"), str(folder))
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.allclose(ours(ids).logits, theirs(ids).logits, atol=1e-6)


def test_refusals_leave_library_and_index_untouched(setup, tmp_path):
    base, folder, library = setup
    add_brick(library, folder, base, brick_id="caps", description="Upper case", examples=["shout it"])
    index = BrickIndex(library, tmp_path / "idx", load_embedder()).load_or_build()
    before = (library.fingerprint(), sorted(p.name for p in library.root.rglob("*")))
    other = tiny_model("gpt2")
    cases = [
        (dict(brick_id="caps"), "already exists"),
        (dict(brick_id="../x"), "invalid brick id"),
        (dict(brick_id="nodesc", description=None), "needs a description"),
    ]
    for kwargs, message in cases:
        args = {"description": "d", "examples": ["e"], **kwargs}
        with pytest.raises(ComposerError, match=message):
            add_brick(library, folder, base, **args)
    with pytest.raises(ComposerError, match="do not exist|not linear"):
        add_brick(library, folder, other, brick_id="gpt", description="d", examples=["e"])
    with pytest.raises(ComposerError, match="no adapter folder"):
        add_brick(library, tmp_path / "missing", base, description="d", examples=["e"])
    assert (library.fingerprint(), sorted(p.name for p in library.root.rglob("*"))) == before
    assert index.fresh().search("shout it", k=1)[0].id == "caps"
