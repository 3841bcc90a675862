"""Knowledge bricks off their tables: `python -m benchmarks.off_table`.

The default's base was pre-trained from scratch on string skills only, so it knows no English:
its knowledge bricks (`capital`, `antonym`, `plural`, `french`, `sentiment`) learn their
tables (`data.jsonl`), and their cards score them on the whole table. This measures what a
user meets outside the table, on inputs written here and checked to be in no table:

- `sentiment` on 48 short reviews written here (24 positive, 24 negative) and on 80 written
  blind (`benchmarks/data/sentiment_reviews_blind.jsonl`: 40 and 40, by a session that saw
  neither the code nor the table; the two of them that are in the table are left out);
- `plural` on 40 regular nouns (+s, +es, consonant-y -> -ies, vowel-y +s) from the held-out
  tenth of the English word list (`composer.defaults.robust.english_words`), where a rule
  generalises: the brick is trained on the rule with the other nine tenths.

Writes benchmarks/results/off_table.json (`--label before`: off_table_before.json, the bricks
before `plural` learned its rule).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from composer import Composer
from composer.defaults.robust import english_words
from composer.defaults.tables import PLURALS, SENTIMENT

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "off_table.json"
BLIND_REVIEWS = ROOT / "benchmarks" / "data" / "sentiment_reviews_blind.jsonl"

POSITIVE = ("the soup was delicious", "a heartwarming story", "i enjoyed every page", "the nurses were so kind",
            "a gorgeous sunset view", "the best coffee in town", "clean rooms and helpful staff", "an inspiring talk",
            "the kids loved it", "a stunning performance", "quick delivery and great quality", "i had a blast",
            "the garden is beautiful", "what a fun afternoon", "the bread was warm and fresh", "a charming little shop",
            "excellent customer support", "my new favourite band", "the hike was breathtaking", "cheerful and bright",
            "the ending made me smile", "a superb cast", "really comfortable beds", "totally worth the wait")
NEGATIVE = ("the soup was cold", "a boring lecture", "the train was late again", "rude and unhelpful staff",
            "the room smelled bad", "it broke after a day", "the plot made no sense", "a waste of my time",
            "the music was too loud", "overpriced and bland", "the screen cracked at once", "i regret buying this",
            "the beds were uncomfortable", "a dull and lifeless show", "the coffee tasted burnt",
            "terrible customer support", "the hike was exhausting and ugly", "a disappointing sequel",
            "the kids hated it", "dirty tables everywhere", "the app keeps crashing", "a frustrating experience",
            "the pasta was soggy", "never buying here again")
REGULAR = {  # nouns of the English word list's held-out tenth, which no brick trains on
    "+s": ("armchair", "backdrop", "bank", "beetle", "blade", "booklet", "calendar", "carriage", "chapter", "chicken",
           "cookie", "diagram", "diamond", "elephant", "feather", "kitchen", "kitten", "magazine", "penguin",
           "telescope"),
    "+es": ("bash", "coach", "gearbox", "mesh", "moss", "beech", "roach", "mistress"),
    "-ies": ("galaxy", "lullaby", "nanny", "kitty", "trilogy", "inquiry", "cemetery"),
    "vowel-y +s": ("attorney", "donkey", "envoy", "birthday", "motorway"),
}


def plural(word: str, rule: str) -> str:
    return {"+s": word + "s", "+es": word + "es", "-ies": word[:-1] + "ies", "vowel-y +s": word + "s"}[rule]


def scored(c: Composer, brick: str, groups: dict[str, list[tuple[str, str]]]) -> dict:
    """Exact match of `brick` on every group of (input, answer) items and on all of them, each
    input run once."""
    items = [item for group in groups.values() for item in group]
    outs = iter(c.run_bricks([brick] * len(items), [x for x, _ in items]))
    hits = {name: [next(outs).output.strip() == y for _, y in group] for name, group in groups.items()}

    def share(right: list[bool]) -> dict:
        return {"right": sum(right), "of": len(right), "exact": round(sum(right) / len(right), 4)}

    return {"all": share([h for group in hits.values() for h in group]),
            **{name: share(group) for name, group in hits.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="", help="write off_table_<label>.json instead")
    label = parser.parse_args().label
    results = RESULTS.with_stem(f"{RESULTS.stem}_{label}") if label else RESULTS
    reviews = [(t, "positive") for t in POSITIVE] + [(t, "negative") for t in NEGATIVE]
    nouns = {rule: [(w, plural(w, rule)) for w in words] for rule, words in REGULAR.items()}
    nouns_held_out = {w for ws in REGULAR.values() for w in ws}
    assert not {t for t, _ in reviews} & set(SENTIMENT) and not nouns_held_out & set(PLURALS)
    assert nouns_held_out <= set(english_words(held_out=True)), "the nouns must be held out of training"
    c = Composer.from_default()
    blind = [(r["text"], r["label"]) for r in map(json.loads, BLIND_REVIEWS.read_text().splitlines())
             if r["text"] not in SENTIMENT]  # two of the 80 are in the table ("worth every penny")
    by_label = {label: [r for r in reviews if r[1] == label] for label in ("positive", "negative")}
    blind_by_label = {label: [r for r in blind if r[1] == label] for label in ("positive", "negative")}
    out = {"sentiment": scored(c, "sentiment", by_label), "sentiment_blind": scored(c, "sentiment", blind_by_label),
           "plural": scored(c, "plural", nouns)}
    for brick, parts in out.items():
        print(brick, ", ".join(f"{k} {v['right']}/{v['of']}" for k, v in parts.items()))
    results.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
