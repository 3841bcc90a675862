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

A map on pooled sentence vectors cannot separate what pooling already blurred ("every letter
capitalised" vs "each word capitalised"). So the embedder itself can be fine-tuned too, on
request (`tune_encoder`: LoRA on its attention and feed-forward maps, the same loss; minutes on
CPU; `encoder.safetensors`, 1.2 MB). The tuned copy scores beside the projection, not instead:
a step's score is 0.7 x the projected cosine + 0.3 x the tuned one (`ENCODER_SHARE`). Trained on
brick texts only, the tuned encoder finds a brick in any sentence, so the planner reads a
request's structure (splits, asides) from the projected part alone (`encode_untuned`).
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
ENCODER = "encoder.safetensors"  # LoRA of the embedder's transformer, tuned on the cards (opt-in)
ENCODER_FORMAT = 1
MEMO_SIZE = 4096  # query vectors remembered per embedder: the planner and the run embed a step's text twice
ENCODER_SHARE = 0.3  # of a query's score that comes from the tuned encoder (see ProjectedEmbedder)
ENCODER_TARGETS = ("query", "value", "dense")
ENCODER_RANK, ENCODER_STEPS, ENCODER_LR, ENCODER_TEMPERATURE, ENCODER_PER_BRICK = 8, 150, 1e-3, 0.1, 12
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

    def __init__(self, base, a: np.ndarray | None, b: np.ndarray | None, vocabulary=(), tuned=None,
                 share: float = ENCODER_SHARE):
        self.base = base  # frozen: the payload tagger reads it too
        self.tuned, self.share = tuned, share  # the base's copy tuned on the cards (`tune_encoder`), if any
        self.a = None if a is None else a.astype(np.float32)
        self.b = None if b is None else b.astype(np.float32)
        self.vocabulary = frozenset(w for w in vocabulary if len(w) >= 4)
        self._fixed: dict[str, str] = {}
        self._memo: dict[tuple[str, str], np.ndarray] = {}  # ("projected" or "tuned", corrected text) -> vector

    def _fix(self, word: str) -> str:
        low = word.lower()
        if len(low) < 4 or low in self.vocabulary or not low.isalpha():
            return word
        if low not in self._fixed:
            self._fixed[low] = min((v for v in self.vocabulary if _one_edit(low, v)), default=word)
        return self._fixed[low]

    def correct(self, text: str) -> str:
        return _WORD.sub(lambda m: self._fix(m.group()), text)

    def _corrected(self, texts) -> list[str]:
        return [self.correct(t) for t in ([texts] if isinstance(texts, str) else texts)]

    def _projected(self, texts: list[str]) -> np.ndarray:
        x = np.asarray(self.base.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)
        y = x if self.a is None else x + (x @ self.a) @ self.b
        return y / (np.linalg.norm(y, axis=-1, keepdims=True) + 1e-12)

    def encode(self, texts, normalize_embeddings: bool = True, convert_to_numpy: bool = True, **options):
        """Unit vectors; with a tuned encoder, the projected and the tuned vector side by side,
        weighted so that a cosine is (1 - share) * projected cosine + share * tuned cosine."""
        return self._remembered(True, self._corrected(texts))

    def _remembered(self, tuned: bool, texts: list[str]) -> np.ndarray:
        """The projected vectors of `texts`, with `tuned` and a tuned encoder the tuned ones beside
        them. Each half is remembered on its own: a step text the planner read untuned needs
        only the tuned pass when the step runs."""
        y = self._once("projected", texts, self._projected)
        if self.tuned is None:
            return y
        if not tuned:
            return np.concatenate([y / np.sqrt(1 - self.share), np.zeros_like(y)], axis=1)
        t = self._once("tuned", texts, self._tuned_vectors)
        return np.concatenate([np.sqrt(1 - self.share) * y, np.sqrt(self.share) * t], axis=1)

    def _once(self, kind: str, texts: list[str], compute) -> np.ndarray:
        """`compute(texts)`, a query text embedded once while it stays in the memo (a bulk call,
        such as the index's card texts, goes straight through)."""
        if not texts or len(texts) > MEMO_SIZE // 4:
            return compute(texts)
        memo = self._memo  # read once: another thread may start a new memo meanwhile
        found = {t: memo.get((kind, t)) for t in texts}
        if new := [t for t, v in found.items() if v is None]:
            found.update(zip(new, compute(new)))
            if len(memo) + len(new) > MEMO_SIZE:
                memo = self._memo = {}
            memo.update(((kind, t), found[t]) for t in new)
        return np.stack([found[t] for t in texts])

    def _tuned_vectors(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.tuned.encode(texts, normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)

    def encode_untuned(self, texts) -> np.ndarray:
        """Query vectors whose inner product with `encode`'s rows is the projected cosine alone.
        The planner reads a request's structure (where steps split, what is an aside) with these:
        the tuned encoder learned brick texts only, so it finds a brick in any sentence ("just
        curious", "how's that look?"), while the projection keeps the base's sense of what is
        not an instruction."""
        return self._remembered(False, self._corrected(texts))

    def get_embedding_dimension(self) -> int:
        return self.base.get_embedding_dimension() * (1 if self.tuned is None else 2)


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


def _labels(pairs: list[tuple[str, str]]):
    """Each (brick id, text) pair's brick as an index into the sorted brick ids (a tensor)."""
    import torch

    bricks = sorted({b for b, _ in pairs})
    return torch.tensor([bricks.index(b) for b, _ in pairs])


def _members(y) -> list:
    """Per brick label 0..max, the rows of `y` that carry it."""
    import torch

    return [torch.nonzero(y == k).flatten() for k in range(int(y.max()) + 1)]


def _batch(members, generator, per_brick: int):
    """Rows of a training batch: up to `per_brick` texts of every brick, drawn afresh."""
    import torch

    return torch.cat([m[torch.randperm(len(m), generator=generator)[:per_brick]] for m in members])


def _contrast(z, y, temperature: float):
    """Supervised contrastive loss of L2-normalised rows `z` (..., batch, dim) labelled `y`
    (..., batch): InfoNCE with every other text of the same brick as a positive."""
    import torch

    eye = torch.eye(z.shape[-2], dtype=torch.bool)
    same = (y[..., :, None] == y[..., None, :]) & ~eye
    logits = ((z @ z.transpose(-1, -2)) / temperature).masked_fill(eye, -1e9)
    log_prob = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    pos = (log_prob * same).sum(-1) / same.sum(-1).clamp(min=1)
    has = same.any(-1)
    return -(pos * has).sum(-1) / has.sum(-1).clamp(min=1)


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
    members = _members(y)
    losses = torch.zeros(len(seeds))
    for _ in range(steps):
        rows = torch.stack([_batch(members, g, per_brick) for g in gens])
        xb = x[rows]  # (seeds, batch, dim)
        z = torch.nn.functional.normalize(xb + (xb @ a) @ b, dim=-1)
        losses = _contrast(z, y[rows], temperature) + pull * ((a @ b) ** 2).sum((1, 2))
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

    y = _labels(pairs)
    x = torch.tensor(np.asarray(base.encode([t for _, t in pairs], normalize_embeddings=True,
                                            convert_to_numpy=True), dtype=np.float32))
    return x, y


def average(maps: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the mean of linear maps x A_s B_s: A side by side, B stacked over their count."""
    return np.concatenate([a for a, _ in maps], axis=1), np.concatenate([b for _, b in maps], axis=0) / len(maps)


def tune_encoder(base, pairs: list[tuple[str, str]], steps: int | None = None, seed: int = 0,
                 progress=None) -> tuple[dict[str, np.ndarray], float]:
    """(LoRA factors, last step's loss): the embedder's own transformer fine-tuned with the
    projection's supervised contrast (`_contrast`, texts of `ENCODER_PER_BRICK` per brick a step).

    A map on the pooled sentence vector cannot tell "every letter capitalised" from "each word
    capitalised": the pooled vectors barely differ. Tuning the attention and feed-forward maps
    lets the cue words steer the pooling. Slow on CPU (minutes for the default's 6,452 texts,
    about 6 s a step on 2 cores), so it runs only when asked (`composer index build
    --tune-encoder`, the default's build); the fast projection is still trained on top and
    retrained whenever the cards change."""
    import copy

    import torch

    from composer.encoder_lora import factors, with_lora

    steps = steps or ENCODER_STEPS
    torch.manual_seed(seed)  # the LoRA's start
    gen = torch.Generator().manual_seed(seed)
    tuned = copy.deepcopy(base)  # trained through its own tokenizer, pooling and normalisation
    model = with_lora(tuned[0].auto_model, ENCODER_RANK, ENCODER_TARGETS)
    y = _labels(pairs)
    members = _members(y)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=ENCODER_LR)
    loss = torch.tensor(0.0)
    tuned.train()
    for step in range(steps):
        rows = _batch(members, gen, ENCODER_PER_BRICK)
        features = getattr(tuned, "preprocess", tuned.tokenize)([pairs[i][1] for i in rows])
        z = torch.nn.functional.normalize(tuned(features)["sentence_embedding"], dim=-1)
        loss = _contrast(z, y[rows], ENCODER_TEMPERATURE)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress:
            progress(step + 1, steps, float(loss.detach()))
    return factors(model), float(loss.detach())


def tuned_copy(base, weights: dict[str, np.ndarray]):
    """The sentence embedder with `tune_encoder`'s LoRA merged into a copy of its transformer;
    every other tensor is shared with `base`, which stays as it was."""
    from composer.encoder_lora import adapted

    return adapted(base, weights, root=base[0].auto_model)


def _encoder(library, pairs: list[tuple[str, str]], folder: Path, base, base_name: str, tune: bool,
             progress=None) -> tuple[object, str | None]:
    """(the base's copy tuned on the cards, the digest of its LoRA), or (None, None): the LoRA
    persisted in `folder` for the same base embedder (trained now on `pairs`, the library's
    `training_texts`, when `tune`). A LoRA tuned on earlier cards is still used when the cards
    change: it learned how requests to bricks are worded, and the projection beside it is
    retrained on the new cards."""
    want = {"format": ENCODER_FORMAT, "base": Path(base_name).name}
    if tune:
        weights, loss = tune_encoder(base, pairs, progress=progress)
        write_checked(folder / ENCODER, weights, {**want, "cards_sha256": cards_hash(library), "rank": ENCODER_RANK,
                                                  "steps": ENCODER_STEPS, "final_loss": round(loss, 4)})
    else:
        weights = read_checked(folder / ENCODER, want)
    if not weights:
        return None, None
    digest = hashlib.sha256(b"".join(weights[k].tobytes() for k in sorted(weights))).hexdigest()[:12]
    return tuned_copy(base, weights), digest


def _load(folder: Path, want: dict) -> tuple[np.ndarray, np.ndarray] | None:
    tensors = read_checked(folder / WEIGHTS, want)
    return (tensors["a"], tensors["b"]) if tensors and {"a", "b"} <= tensors.keys() else None


def brick_embedder(library, folder: str | Path, base_name: str | None = None, base=None,
                   retrain: bool = False, tune_encoder: bool = False, progress=None) -> tuple[object, str]:
    """(embedder, embedder name) for `library`'s index in `folder`: the persisted trained
    retriever when it matches the cards, else one trained now and saved; the untrained
    embedder (and its own name) when training is impossible or fails. The encoder LoRA
    persisted in `folder`, if any, scores beside the projection (`tune_encoder`: train it first;
    `progress` sees its steps). The name changes with either's weights, so an index embedded
    with other weights is rebuilt."""
    from composer.index import default_embedder_path, load_embedder

    folder = Path(folder)
    base_name = base_name or default_embedder_path()
    base = base if base is not None else load_embedder(base_name)
    pairs = training_texts(library)
    if len({b for b, _ in pairs}) < 2:  # nothing to contrast: one brick or none
        return ProjectedEmbedder(base, None, None, vocabulary(library)), base_name
    try:
        tuned, digest_tuned = _encoder(library, pairs, folder, base, base_name, tune_encoder, progress)
    except (OSError, RuntimeError, ValueError, AttributeError) as err:  # AttributeError: no transformer inside
        if tune_encoder:
            raise
        log.warning("encoder LoRA not used (%s)", err)
        tuned, digest_tuned = None, None
    want = {"format": FORMAT, "base": Path(base_name).name, "cards_sha256": cards_hash(library), "rank": RANK,
            "seeds": SEEDS}
    found = None if retrain else _load(folder, want)
    try:
        if found is None:
            a, b, loss = train_projection(base, pairs)
            write_checked(folder / WEIGHTS, {"a": a, "b": b},
                          {**want, "texts": len(pairs), "steps": STEPS, "final_loss": round(loss, 4)})
            found = (a, b)
    except (OSError, RuntimeError, ValueError) as err:
        log.warning("brick retriever not trained (%s); using the untrained embedder", err)
        return ProjectedEmbedder(base, None, None, vocabulary(library)), base_name
    digest = hashlib.sha256(found[0].tobytes() + found[1].tobytes()).hexdigest()[:12]
    name = f"{Path(base_name).name}+bricks-{digest}{f'+encoder-{digest_tuned}' if tuned is not None else ''}"
    return ProjectedEmbedder(base, *found, vocabulary(library), tuned=tuned), name


def is_stale(library, folder: str | Path, base_name: str | None = None) -> bool:
    """Whether the persisted retriever was trained on other cards than the library's now."""
    try:
        meta = json.loads((Path(folder) / META).read_text())
        return meta.get("cards_sha256") != cards_hash(library)
    except (OSError, ValueError, AttributeError):
        return True
