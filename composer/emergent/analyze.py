"""The emergent-brick analysis of a base model: `analyze(base_path, out_dir) -> AnalysisReport`.

    python -m composer.emergent.analyze [--base bricks/base] [--out benchmarks/results/emergent]

Steps, on the generic skills the base was pre-trained on (`GENERIC_SKILLS`):
1. profile: mean |h| over prompt tokens per example (for scores), and over prompt + answer
   with a token sample (for masks, partitions and the router) (`profile.py`);
2. functionality scores (AP, one-vs-rest) per neuron and skill; their distribution, the best
   score per layer and skill, top-5 % sets per layer and their Jaccard overlap (`scores.py`);
3. pruning: zero a skill's top-5 % neurons per layer (or a random 5 %) and measure exact
   match and answer loss on every skill;
4. emergent bricks: MoEfication partitions (balanced k-means) and a router; exact match vs
   the share of FFN neurons active for per-instruction skill masks (neurons or whole
   experts, from the skill's profile: the mask an emergent brick retrieved for that
   instruction would carry; neurons ranked by mean contribution |h_i| · ||W_down[:, i]||
   over the skill's prompts and answers, layers budgeted by `partition.skill_masks`),
   per-token routing (MoEfication router) and random masks;
5. one emergent brick per skill (its mask at the sparsest per-instruction operating point
   that keeps >= 95 % of dense exact match) written to a library; JSON + PNG to `out_dir`.
Profiling and evaluation use different inputs (seeds); the skill of an evaluation row is
known (oracle retrieval: retrieval quality is the index's business, measured elsewhere).
Cost: about 31 greedy evaluations of 9 × 32 prompts, 1.5-2 minutes for the default base on
two busy CPU cores.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from composer.defaults.skills import GENERIC_SKILLS, Skill, eval_set
from composer.emergent import figures
from composer.emergent.partition import partition, save_emergent, skill_masks
from composer.emergent.profile import Example, Profile, TokenSample, ffn_layers, output_norms, record
from composer.emergent.scores import functionality_scores, jaccard, top_sets
from composer.emergent.sparse import Router, SparseFFN, expert_mass, train_router
from composer.generation import generate
from composer.errors import ComposerError
from composer.library import BrickCard, BrickLibrary, Metrics, fingerprint
from composer.ops.train import encode_batch
from composer.prompt import render
from composer.storage import write_json

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = ROOT / "bricks" / "base"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "emergent"
FRACTIONS = (0.125, 0.25, 0.3125, 0.375, 0.5)  # k / E for E = 16 experts
TARGET = 0.95  # share of dense exact match to keep
STATIC = ("skill neurons", "skill experts")  # per-instruction masks, what an emergent brick stores


class Accuracy(BaseModel):
    """Exact match and (where measured) mean answer-token loss per skill under one condition."""

    exact_match: dict[str, float]
    loss: dict[str, float] | None = None

    @property
    def mean(self) -> float:
        return sum(self.exact_match.values()) / len(self.exact_match)


class ScoreStats(BaseModel):
    base_rate: float  # AP of a skill-blind neuron: the share of each skill in the profile
    quantiles: dict[str, float]  # of all S · L · I scores
    histogram: list[int]  # counts over 20 bins on [0, 1]
    share_above: dict[str, float]  # share of neurons whose best score over skills exceeds t
    best_per_layer: list[list[float]]  # [L][S]


class PruneRow(BaseModel):
    pruned: str  # a skill id or "random"
    accuracy: Accuracy
    exact_match_change: dict[str, float]  # minus dense
    loss_change: dict[str, float]  # minus dense


class SparsePoint(BaseModel):
    method: str
    fraction: float  # the requested share: of neurons, of experts (k / E) or random neurons
    fraction_active: float  # measured share of FFN neurons a token may use
    accuracy: Accuracy
    ratio_to_dense: float  # mean exact match / dense mean exact match


class AnalysisReport(BaseModel):
    base: str
    base_fingerprint: str
    skills: list[str]
    layers: int
    neurons_per_layer: int
    profile_examples_per_skill: int
    eval_examples_per_skill: int
    natural_sparsity: float  # share of exactly-zero neurons per token in the dense base
    scores: ScoreStats
    top_fraction: float
    overlap: list[list[float]]  # [S][S] Jaccard of the top sets
    dense: Accuracy
    pruning: list[PruneRow]
    experts: int
    # held-out tokens: share of activation mass in the k = fraction · E heaviest experts per layer
    # ("weights" / "coactivation" partition), or in the k the router picks ("router")
    partition_coverage: dict[str, dict[str, float]]
    partition_features: str  # the better-covering partition, used by the router and "skill experts"
    sparsity: list[SparsePoint]
    best_point: SparsePoint | None  # sparsest point >= TARGET of dense at <= 40 % active
    target_met: bool
    bricks: list[str]
    seconds: float
    files: list[str]

    def summary(self) -> str:
        """A few lines for a terminal: what was measured and whether the sparsity goal was met."""
        diagonal = [row.loss_change[row.pruned] for row in self.pruning if row.pruned != "random"]
        off = [v for row in self.pruning if row.pruned != "random"
               for skill, v in row.loss_change.items() if skill != row.pruned]
        point = self.best_point
        return "\n".join([
            f"base {self.base} ({self.layers} FFN layers x {self.neurons_per_layer} neurons), {self.seconds:.0f}s",
            f"functionality scores: median {self.scores.quantiles['p50']:.2f} (base rate {self.scores.base_rate:.2f}), "
            f"{self.scores.share_above['0.8']:.0%} of neurons score > 0.8 for some skill",
            f"pruning a skill's top-{self.top_fraction:.0%}: its own answer loss {sum(diagonal) / len(diagonal):+.2f}, "
            f"other skills' {sum(off) / len(off):+.2f} (mean nats/token)",
            f"dense exact match {self.dense.mean:.3f}; >= 95% of it at <= 40% neurons active: "
            + (f"yes ({point.method}, {point.fraction_active:.0%} active, {point.ratio_to_dense:.0%} of dense)"
               if point else "no"),
            f"emergent bricks: {len(self.bricks)}; results in {Path(self.files[-1]).parent}"])


def skill_examples(skills: Sequence[Skill], per_skill: int, seed: int) -> tuple[list[Example], list[int]]:
    """per_skill random (instruction, input, output) of each skill, with the skill index."""
    rng = random.Random(seed)
    examples = [s.sample(rng) for s in skills for _ in range(per_skill)]
    return examples, [i for i in range(len(skills)) for _ in range(per_skill)]


@dataclass(frozen=True)
class Bench:
    """The model and the evaluation rows (with their skill index) every condition is run on."""

    model: torch.nn.Module
    tokenizer: object
    rows: list[Example]
    labels: list[int]
    skills: list[str]

    @torch.inference_mode()
    def run(self, sparse: SparseFFN, row_masks: torch.Tensor | None = None, *, loss: bool = False, chunk: int = 96,
            max_new_tokens: int = 40) -> Accuracy:
        """Greedy exact match (and teacher-forced answer loss if `loss`) per skill under `sparse`;
        `row_masks` `[N, L, I]` are set chunk by chunk (SparseFFN takes one mask per batch row)."""
        n = len(self.skills)
        right, losses, counts = [0.0] * n, [0.0] * n, [self.labels.count(s) for s in range(n)]
        with sparse:
            for start in range(0, len(self.rows), chunk):
                rows, marks = self.rows[start:start + chunk], self.labels[start:start + chunk]
                if row_masks is not None:
                    sparse.masks = row_masks[start:start + chunk]
                answers = generate(self.model, self.tokenizer, [render(i, x) for i, x, _ in rows],
                                   max_new_tokens=max_new_tokens, batch_size=len(rows))
                for answer, (_, _, want), label in zip(answers, rows, marks):
                    right[label] += answer.strip() == want.strip()
                if loss:
                    for label, value in zip(marks, answer_loss(self.model, self.tokenizer, rows).tolist()):
                        losses[label] += value
        return Accuracy(exact_match={s: right[i] / counts[i] for i, s in enumerate(self.skills)},
                        loss={s: round(losses[i] / counts[i], 4) for i, s in enumerate(self.skills)} if loss else None)


def prune(bench: Bench, tops: torch.Tensor, dense: Accuracy, fraction: float,
          generator: torch.Generator) -> list[PruneRow]:
    """Zero each skill's top set `tops` `[S, L, I]`, then a random `fraction` of every layer."""
    layers, width = tops.shape[1:]
    random_keep = torch.rand(layers, width, generator=generator).argsort(-1) >= round(fraction * width)
    out = []
    for name, keep in [*zip(bench.skills, ~tops), ("random", random_keep)]:
        acc = bench.run(SparseFFN(bench.model, keep), loss=True)
        out.append(PruneRow(
            pruned=name, accuracy=acc,
            exact_match_change={s: round(acc.exact_match[s] - dense.exact_match[s], 4) for s in bench.skills},
            loss_change={s: round(acc.loss[s] - dense.loss[s], 4) for s in bench.skills}))
    return out


def sparsity_curve(bench: Bench, dense: Accuracy, importance: torch.Tensor, assignment: torch.Tensor, router,
                   generator: torch.Generator, log=print) -> list[SparsePoint]:
    """Exact match at each of FRACTIONS for the four masking methods (module doc, step 4)."""
    layers, width = assignment.shape
    experts = int(assignment.max()) + 1
    row_skill = torch.tensor(bench.labels)
    curve = []
    for fraction in FRACTIONS:
        random_keep = torch.rand(layers, width, generator=generator).argsort(-1) < round(fraction * width)
        conditions = {
            "skill neurons": (SparseFFN(bench.model), skill_masks(importance, fraction)[row_skill]),
            "skill experts": (SparseFFN(bench.model), skill_masks(importance, fraction, assignment)[row_skill]),
            "router (per token)": (SparseFFN(bench.model, router=router, k=max(1, round(fraction * experts))), None),
            "random neurons": (SparseFFN(bench.model, random_keep), None),
        }
        for method, (sparse, rows) in conditions.items():
            acc = bench.run(sparse, rows)
            active = rows.float().mean().item() if rows is not None else sparse.active_fraction
            curve.append(SparsePoint(method=method, fraction=fraction, fraction_active=round(active, 4), accuracy=acc,
                                     ratio_to_dense=round(acc.mean / max(dense.mean, 1e-9), 4)))
        log(f"sparsity {fraction}: "
            + ", ".join(f"{p.method} {p.ratio_to_dense:.2f}" for p in curve[-len(conditions):]))
    return curve


def answer_loss(model, tokenizer, rows: Sequence[Example]) -> torch.Tensor:
    """Mean cross-entropy over each row's answer tokens + EOS, teacher-forced: `[rows]`."""
    batch = encode_batch(tokenizer, rows, next(model.parameters()).device)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    target = batch["labels"][:, 1:]
    token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
    return token_loss.sum(1) / (target != -100).sum(1)


def score_stats(scores: torch.Tensor, profile: Profile) -> ScoreStats:
    flat = scores.reshape(-1)
    best = scores.max(0).values  # [L, I] best skill per neuron
    q = (0.5, 0.9, 0.99, 1.0)
    return ScoreStats(
        base_rate=round(1 / len(profile.skills), 4),
        quantiles={f"p{int(p * 100)}": round(v, 4) for p, v in zip(q, flat.quantile(torch.tensor(q)).tolist())},
        histogram=torch.histc(flat, bins=20, min=0, max=1).long().tolist(),
        share_above={str(t): round((best > t).float().mean().item(), 4) for t in (0.5, 0.8, 0.95)},
        best_per_layer=[[round(v, 4) for v in row] for row in scores.amax(-1).T.tolist()])


@torch.no_grad()
def coverage(tokens: TokenSample, assignment: torch.Tensor, fractions: Sequence[float],
             router: Router | None = None) -> dict[str, float]:
    """Share of the per-token activation mass Σ|h| kept by k = fraction · E experts per layer:
    the k heaviest (an oracle router), or the k the `router` picks."""
    experts = int(assignment.max()) + 1
    out = {}
    for fraction in fractions:
        k = max(1, round(fraction * experts))
        kept = total = 0.0
        for layer in range(len(assignment)):
            mass = expert_mass(tokens.activations[:, layer], assignment[layer], experts)
            picks = (router(layer, tokens.inputs[:, layer]) if router is not None else mass).topk(k, -1).indices
            kept += mass.gather(-1, picks).sum().item()
            total += mass.sum().item()
        out[str(fraction)] = round(kept / total, 4)
    return out


def split(tokens: TokenSample, share: float, generator: torch.Generator) -> tuple[TokenSample, TokenSample]:
    """A random (share, 1 - share) split of a token sample: router training vs held-out rows."""
    order = torch.randperm(len(tokens.inputs), generator=generator)
    cut = int(share * len(order))
    return (TokenSample(tokens.inputs[order[:cut]], tokens.activations[order[:cut]]),
            TokenSample(tokens.inputs[order[cut:]], tokens.activations[order[cut:]]))


def analyze(base_path: str | Path | None = None, out_dir: str | Path | None = None, *,
            library: str | Path | None = None, profile_per_skill: int = 64, eval_per_skill: int = 32,
            experts: int = 16, top_fraction: float = 0.05, seed: int = 0, progress: bool = True) -> AnalysisReport:
    """Run the whole analysis (module doc) on the base at `base_path` and write results to `out_dir`.

    Emergent bricks go to `library` (default `out_dir/bricks`). Defaults: the shipped base and
    `benchmarks/results/emergent`.
    """
    start = time.time()
    base_path = Path(base_path or DEFAULT_BASE)
    out = Path(out_dir or DEFAULT_OUT)
    if not (base_path / "config.json").is_file():
        raise ComposerError(f"no base model at {base_path} (config.json missing)")
    log = print if progress else (lambda *a, **k: None)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    layers = ffn_layers(model)
    skills = [s.id for s in GENERIC_SKILLS]

    examples, labels = skill_examples(GENERIC_SKILLS, profile_per_skill, seed=seed + 1)
    profile = record(model, tokenizer, examples, labels, skills)
    answered = record(model, tokenizer, examples, labels, skills, answers=True, tokens_per_example=8, seed=seed)
    scores = functionality_scores(profile)
    tops = top_sets(scores, top_fraction)
    log(f"[{time.time() - start:.0f}s] profiled {len(examples)} prompts, scored {scores.numel()} neuron-skill pairs")

    evals = [eval_set(s, size=eval_per_skill)[:eval_per_skill] for s in GENERIC_SKILLS]
    bench = Bench(model, tokenizer, [e for rows in evals for e in rows],
                  [i for i, rows in enumerate(evals) for _ in rows], skills)
    dense = bench.run(SparseFFN(model), loss=True)
    log(f"[{time.time() - start:.0f}s] dense exact match {dense.mean:.3f}")
    generator = torch.Generator().manual_seed(seed)
    pruning = prune(bench, tops, dense, top_fraction, generator)
    log(f"[{time.time() - start:.0f}s] pruning done")

    train_tokens, held_out = split(answered.tokens, 0.8, generator)
    assignments = {f: partition(model, experts, features=f, tokens=train_tokens, seed=seed)
                   for f in ("weights", "coactivation")}
    cover = {f: coverage(held_out, a, FRACTIONS) for f, a in assignments.items()}
    features = max(cover, key=lambda f: sum(cover[f].values()))
    assignment = assignments[features]
    router = train_router(train_tokens, assignment, seed=seed)
    cover["router"] = coverage(held_out, assignment, FRACTIONS, router)
    importance = answered.mean_by_skill() * output_norms(model)  # [S, L, I] mean contribution
    curve = sparsity_curve(bench, dense, importance, assignment, router, generator, log=log)
    good = [p for p in curve if p.ratio_to_dense >= TARGET and p.fraction_active <= 0.4 + 1e-6]
    best = min(good, key=lambda p: (p.fraction_active, -p.ratio_to_dense)) if good else None

    static = [p for p in curve if p.method in STATIC]
    chosen = min([p for p in static if p.ratio_to_dense >= TARGET] or [max(static, key=lambda p: p.ratio_to_dense)],
                 key=lambda p: p.fraction_active)
    brick_ids = write_bricks(model, library or out / "bricks", importance, assignment, chosen, dense, eval_per_skill)
    out.mkdir(parents=True, exist_ok=True)
    files = figures.draw(out, skills=skills, best_per_layer=scores.amax(-1).T, all_scores=scores.reshape(-1),
                         base_rate=1 / len(skills), overlap=jaccard(tops), pruning=pruning, curve=curve,
                         coverage=cover, features=features, target=TARGET, top_fraction=top_fraction)
    report = AnalysisReport(
        base=str(base_path), base_fingerprint=fingerprint(model), skills=skills, layers=len(layers),
        neurons_per_layer=layers[0].width, profile_examples_per_skill=profile_per_skill,
        eval_examples_per_skill=eval_per_skill,
        natural_sparsity=round((answered.tokens.activations == 0).float().mean().item(), 4),
        scores=score_stats(scores, profile), top_fraction=top_fraction,
        overlap=[[round(v, 4) for v in row] for row in jaccard(tops).tolist()], dense=dense, pruning=pruning,
        experts=experts, partition_coverage=cover, partition_features=features, sparsity=curve, best_point=best,
        target_met=best is not None, bricks=brick_ids, seconds=round(time.time() - start, 1),
        files=[str(p) for p in [*files, out / "analysis.json"]])
    write_json(out / "analysis.json", report.model_dump())
    log(f"[{report.seconds:.0f}s] wrote {out / 'analysis.json'} and {len(files)} figures")
    return report


def write_bricks(model, library: str | Path, importance: torch.Tensor, assignment: torch.Tensor,
                 point: SparsePoint, dense: Accuracy, samples: int) -> list[str]:
    """One emergent brick per generic skill: its mask at `point` (a per-instruction method), measured there."""
    lib = BrickLibrary(library, create=True)
    by_experts = point.method == "skill experts"
    masks = skill_masks(importance, point.fraction, assignment if by_experts else None)
    fp, ids = fingerprint(model), []
    for skill, mask in zip(GENERIC_SKILLS, masks):
        card = BrickCard(
            id=f"emergent-{skill.id.replace('_', '-')}", kind="emergent", title=f"{skill.title} (emergent neurons)",
            description=f"{skill.description} The FFN neurons the base itself uses for this skill "
                        f"({mask.float().mean().item():.0%} of them); run the base with only these active.",
            examples=list(skill.instructions), base_fingerprint=fp,
            base_architecture=(model.config.architectures or [""])[0],
            metrics=Metrics(exact_match=point.accuracy.exact_match[skill.id],
                            base_exact_match=dense.exact_match[skill.id],
                            samples=samples, eval=f"{samples} fresh inputs, base with only these neurons"),
            source={"made_by": "composer.emergent.analyze", "method": point.method,
                    "fraction_active": round(mask.float().mean().item(), 4),
                    **({"experts_per_layer": int(assignment.max()) + 1} if by_experts else {})})
        save_emergent(lib, card, mask, model)
        ids.append(card.id)
    return ids


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--library", type=Path, default=None, help="where emergent bricks go (default OUT/bricks)")
    args = parser.parse_args(argv)
    print(analyze(args.base, args.out, library=args.library).summary())


if __name__ == "__main__":
    main()
