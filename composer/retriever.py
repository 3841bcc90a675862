"""A retriever trained for the library's bricks: a learned projection on a frozen embedder.

Off-the-shelf sentence embeddings barely separate "upper" from "lower" or "capital letters"
from "capital city". LoraRetriever (arXiv 2402.09997) closes that gap by training the
retriever on instructions drawn from each adapter; here every card's texts (title +
description and examples, plus light rewordings a user would type: lowercase, "please ...",
"... it", "can you ...?") are the training queries of their brick and every other brick's
texts are its negatives. The base embedder stays frozen; on top of it a residual low-rank map
`x + (x A) B` (then L2-normalised) is trained with a supervised contrastive loss (InfoNCE with
all same-brick texts as positives, temperature `TEMPERATURE`) plus a pull towards identity, so
wordings the cards never saw keep the base's geometry.

The map is persisted beside the index as `retriever.safetensors` + `retriever.json` (770 KB
for the default), keyed by the hash of the cards' texts and the base embedder's name; a
library whose cards changed trains a new one (seconds on CPU). Anything unreadable or failing falls
back to the untrained embedder, never to an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import re

import numpy as np

from composer.storage import read_checked, write_checked

WEIGHTS, META = "retriever.safetensors", "retriever.json"
FORMAT = 2  # 2: A and B hold the average of SEEDS maps
RANK, STEPS, LR, TEMPERATURE, IDENTITY_PULL, SEEDS = 64, 200, 3e-3, 0.2, 1e-2, 4
PER_BRICK = 64  # texts of each brick in a training step's batch
log = logging.getLogger(__name__)
_WORD = re.compile(r"[A-Za-z]+")


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by one deletion, insertion, substitution or adjacent swap."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


class ProjectedEmbedder:
    """The frozen base embedder followed by the trained map; BrickIndex's embedder interface.

    Query words of four letters or more that are one typo away from a card word ("captial",
    "oposite", "revrese") are read as that word first: word-piece embeddings of a misspelling
    land far from the word."""

    def __init__(self, base, a: np.ndarray | None, b: np.ndarray | None, vocabulary=()):
        self.base = base
        self.a = None if a is None else a.astype(np.float32)
        self.b = None if b is None else b.astype(np.float32)
        self.vocabulary = frozenset(w for w in vocabulary if len(w) >= 4)
        self._fixed: dict[str, str] = {}

    def _fix(self, word: str) -> str:
        low = word.lower()
        if len(low) < 4 or low in self.vocabulary or not low.isalpha():
            return word
        if low not in self._fixed:
            self._fixed[low] = min((v for v in self.vocabulary if _one_edit(low, v)), default=word)
        return self._fixed[low]

    def correct(self, text: str) -> str:
        return _WORD.sub(lambda m: self._fix(m.group()), text)

    def encode(self, texts, normalize_embeddings: bool = True, convert_to_numpy: bool = True, **options):
        texts = [self.correct(t) for t in ([texts] if isinstance(texts, str) else texts)]
        x = np.asarray(self.base.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)
        y = x if self.a is None else x + (x @ self.a) @ self.b
        if normalize_embeddings:
            y /= np.linalg.norm(y, axis=-1, keepdims=True) + 1e-12
        return y

    def get_embedding_dimension(self) -> int:
        return self.base.get_embedding_dimension()


def vocabulary(library) -> set[str]:
    return {w.lower() for c in library.cards() for t in c.text_for_index() for w in _WORD.findall(t)}


def training_texts(library) -> list[tuple[str, str]]:
    """(brick id, text): each card's indexed texts and the rewordings users type, deduplicated."""
    out, seen = [], set()
    for card in sorted(library.cards(), key=lambda c: c.id):
        for text in card.text_for_index():
            low = text.strip().rstrip(".").lower()
            for variant in (text, low, f"please {low}", f"{low} it", f"can you {low}?"):
                if (card.id, variant) not in seen:
                    seen.add((card.id, variant))
                    out.append((card.id, variant))
    return out


def cards_hash(library) -> str:
    texts = sorted((c.id, c.text_for_index()) for c in library.cards())
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()


def _fit(x, y, seeds: list[int], rank: int, steps: int, lr: float, temperature: float, pull: float,
         per_brick: int) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(A, B, final loss) per seed: residual maps trained side by side on embedded texts `x` with
    labels `y`, each from its own generator (start and batches), in one batched loop."""
    import torch

    dim = x.shape[1]
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    a = torch.nn.Parameter(torch.stack([torch.randn(dim, rank, generator=g) / dim ** 0.5 for g in gens]))
    b = torch.nn.Parameter(torch.zeros(len(seeds), rank, dim))
    opt = torch.optim.Adam([a, b], lr=lr)
    members = [torch.nonzero(y == k).flatten() for k in range(int(y.max()) + 1)]
    losses = torch.zeros(len(seeds))
    for _ in range(steps):
        rows = torch.stack([torch.cat([m[torch.randperm(len(m), generator=g)[:per_brick]] for m in members])
                            for g in gens])
        xb, yb = x[rows], y[rows]  # (seeds, batch, dim), (seeds, batch)
        eye = torch.eye(rows.shape[1], dtype=torch.bool)
        same = (yb[:, :, None] == yb[:, None, :]) & ~eye
        z = torch.nn.functional.normalize(xb + (xb @ a) @ b, dim=-1)
        logits = ((z @ z.transpose(1, 2)) / temperature).masked_fill(eye, -1e9)
        log_prob = logits - torch.logsumexp(logits, dim=2, keepdim=True)
        pos = (log_prob * same).sum(2) / same.sum(2).clamp(min=1)
        has = same.any(2)
        losses = -(pos * has).sum(1) / has.sum(1).clamp(min=1) + pull * ((a @ b) ** 2).sum((1, 2))
        opt.zero_grad()
        losses.sum().backward()  # the maps share no parameter: each gets its own loss's gradient
        opt.step()
    return [(a[n].detach().numpy(), b[n].detach().numpy(), float(losses[n].detach())) for n in range(len(seeds))]


def train_projection(base, pairs: list[tuple[str, str]], rank: int = RANK, steps: int = STEPS,
                     lr: float = LR, temperature: float = TEMPERATURE, pull: float = IDENTITY_PULL,
                     per_brick: int = PER_BRICK, seeds: int = SEEDS) -> tuple[np.ndarray, np.ndarray, float]:
    """(A, B, mean final loss): the average of `seeds` maps trained with supervised contrast.

    Each step contrasts a batch of up to `per_brick` texts of every brick, drawn afresh: the
    loss is quadratic in the batch, so a full batch of all texts would make adding a brick to a
    library of a few thousand card texts cost a minute instead of seconds.

    One map's answers on wordings near a boundary depend on its seed (its start and its
    batches), and so on any change to the cards, which redraws the batches. The maps are
    linear, so the average of several is one map of rank `seeds * rank` (A side by side, B
    stacked and divided by `seeds`), and it moves less from one training to the next
    (`benchmarks/retrieval_choices.py --seeds`). The texts are embedded once and the maps
    trained together, one batched loop."""
    fits = _fit(*embed_pairs(base, pairs), list(range(seeds)), rank, steps, lr, temperature, pull, per_brick)
    return (*average([f[:2] for f in fits]), float(np.mean([f[2] for f in fits])))


def embed_pairs(base, pairs: list[tuple[str, str]]):
    """(x, y) tensors for `_fit`: the texts embedded by the frozen base, and their brick's label."""
    import torch

    labels = sorted({b for b, _ in pairs})
    y = torch.tensor([labels.index(b) for b, _ in pairs])
    x = torch.tensor(np.asarray(base.encode([t for _, t in pairs], normalize_embeddings=True,
                                            convert_to_numpy=True), dtype=np.float32))
    return x, y


def average(maps: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the mean of linear maps x A_s B_s: A side by side, B stacked over their count."""
    return np.concatenate([a for a, _ in maps], axis=1), np.concatenate([b for _, b in maps], axis=0) / len(maps)


def _load(folder: Path, want: dict) -> tuple[np.ndarray, np.ndarray] | None:
    tensors = read_checked(folder / WEIGHTS, want)
    return (tensors["a"], tensors["b"]) if tensors and {"a", "b"} <= tensors.keys() else None


def brick_embedder(library, folder: str | Path, base_name: str | None = None, base=None,
                   retrain: bool = False) -> tuple[object, str]:
    """(embedder, embedder name) for `library`'s index in `folder`: the persisted trained
    retriever when it matches the cards, else one trained now and saved; the untrained
    embedder (and its own name) when training is impossible or fails. The name changes with
    the trained weights, so an index embedded with other weights is rebuilt."""
    from composer.index import default_embedder_path, load_embedder

    folder = Path(folder)
    base_name = base_name or default_embedder_path()
    base = base if base is not None else load_embedder(base_name)
    want = {"format": FORMAT, "base": Path(base_name).name, "cards_sha256": cards_hash(library), "rank": RANK,
            "seeds": SEEDS}
    found = None if retrain else _load(folder, want)
    try:
        if found is None:
            pairs = training_texts(library)
            if len({b for b, _ in pairs}) < 2:  # nothing to contrast: one brick or none
                return ProjectedEmbedder(base, None, None, vocabulary(library)), base_name
            a, b, loss = train_projection(base, pairs)
            write_checked(folder / WEIGHTS, {"a": a, "b": b},
                          {**want, "texts": len(pairs), "steps": STEPS, "final_loss": round(loss, 4)})
            found = (a, b)
    except (OSError, RuntimeError, ValueError) as err:
        log.warning("brick retriever not trained (%s); using the untrained embedder", err)
        return ProjectedEmbedder(base, None, None, vocabulary(library)), base_name
    digest = hashlib.sha256(found[0].tobytes() + found[1].tobytes()).hexdigest()[:12]
    return ProjectedEmbedder(base, *found, vocabulary(library)), f"{Path(base_name).name}+bricks-{digest}"


def is_stale(library, folder: str | Path, base_name: str | None = None) -> bool:
    """Whether the persisted retriever was trained on other cards than the library's now."""
    try:
        meta = json.loads((Path(folder) / META).read_text())
        return meta.get("cards_sha256") != cards_hash(library)
    except (OSError, ValueError, AttributeError):
        return True
