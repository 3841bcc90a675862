"""Skills of the embedded default: generic ones the base is pre-trained on, and brick skills.

The split is the whole point of the default: the base learns only the generic skills, so it
fails every brick skill on its own, and each brick adds exactly one skill on top of it.
Inputs of the string skills are 1-4 fresh pseudo-words (lowercase ASCII, <= 32 characters);
table skills map entries of `tables.py`, whose outputs are valid string-skill inputs, so
steps chain.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import itertools
import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from composer.defaults import tables
from composer.ops.train import Example

_ONSETS = "b c d f g h j k l m n p r s t v w z br ch dr fl gr pl sh st tr".split()
_VOWELS = "a e i o u ai ea oo".split()
_CODAS = ["", "", "", "n", "r", "s", "t", "ck", "nd", "st"]
MAX_CHARS = 32
Word = Callable[[random.Random], str]


def pseudo_word(rng: random.Random) -> str:
    """A pronounceable pseudo-word of one to three syllables: the base's first curriculum
    phase, where skills and format are easy to pick up from word-like strings."""
    n = rng.choice((1, 1, 2, 2, 3))
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n)) + rng.choice(_CODAS)


def random_word(rng: random.Random) -> str:
    """Two to seven uniformly random letters: the words of every brick skill and evaluation.

    Syllable words repeat the same few bigrams ("ko", "co"), so copying them by content is
    ambiguous and a small model loops ("cokokoko"); random letters force exact copying.
    """
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 7)))


def random_words(rng: random.Random, word: Word = random_word, max_words: int = 4, max_chars: int = MAX_CHARS) -> str:
    """1..max_words words joined by single spaces, at most max_chars long."""
    while True:
        text = " ".join(word(rng) for _ in range(rng.randint(1, max_words)))
        if len(text) <= max_chars:
            return text


def _mixed_case(rng: random.Random, word: Word) -> str:
    text = random_words(rng, word)
    style = rng.choice(("upper", "title", "random"))
    if style == "upper":
        return text.upper()
    if style == "title":
        return text.title()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in text)


@dataclass(frozen=True)
class Skill:
    """One skill: its instructions (the first five are a brick card's examples) and its truth."""

    id: str
    title: str
    description: str
    instructions: tuple[str, ...]
    fn: Callable[[str], str] | None = None
    table: dict[str, str] | None = None
    make_input: Callable[[random.Random, Word], str] = field(default=random_words)
    # a table skill's spelling rule for words off its table (None where it does not know): trained
    # on and measured with real words (composer.defaults.robust), never the truth of a table key
    rule: Callable[[str], str | None] | None = None

    @property
    def kind(self) -> str:
        return "table" if self.table is not None else "string"

    def answer(self, text: str) -> str:
        if self.table is not None:
            return self.table[text.lower()]  # a key in any case is the same key
        assert self.fn is not None
        return self.fn(text)

    def sample(self, rng: random.Random, word: Word = random_word) -> tuple[str, str, str]:
        """(instruction, input, output) drawn at random; string-skill inputs are made of `word`s."""
        text = rng.choice(list(self.table)) if self.table is not None else self.make_input(rng, word)
        return rng.choice(self.instructions), text, self.answer(text)


def _words(text: str) -> list[str]:
    return text.split()


def _at_least_two_words(rng: random.Random, word: Word) -> str:
    while len(_words(text := random_words(rng, word))) < 2:
        pass
    return text


GENERIC_SKILLS: tuple[Skill, ...] = (
    Skill("copy", "Copy", "Repeat the input unchanged.",
          ("Copy the text", "Repeat the input exactly", "Echo it", "Write the same text", "Say it back"), fn=lambda t: t),
    Skill("lowercase", "Lowercase", "All letters to lower case.",
          ("Make it lowercase", "Convert to lower case", "Lowercase the text", "Use small letters only",
           "Turn all capitals into small letters"), fn=str.lower, make_input=_mixed_case),
    Skill("first_word", "First word", "Only the first word.",
          ("Give the first word", "Keep only the first word", "What is the first word", "First word only",
           "Return the opening word"), fn=lambda t: _words(t)[0]),
    Skill("last_word", "Last word", "Only the last word.",
          ("Give the last word", "Keep only the last word", "What is the last word", "Last word only",
           "Return the final word"), fn=lambda t: _words(t)[-1]),
    Skill("count_words", "Count words", "Number of words as a digit.",
          ("Count the words", "How many words are there", "Number of words", "Give the word count",
           "Tell me how many words"), fn=lambda t: str(len(_words(t)))),
    Skill("repeat_twice", "Repeat twice", "The input twice, separated by a space.",
          ("Repeat it twice", "Say it two times", "Write the text twice", "Double the text",
           "Duplicate the input"), fn=lambda t: f"{t} {t}", make_input=lambda r, w: random_words(r, w, 2, 16)),
    Skill("drop_first_word", "Drop first word", "Everything but the first word.",
          ("Remove the first word", "Drop the first word", "Delete the opening word", "Skip the first word",
           "All but the first word"), fn=lambda t: " ".join(_words(t)[1:]),
          make_input=_at_least_two_words),
    Skill("drop_last_word", "Drop last word", "Everything but the last word.",
          ("Remove the last word", "Drop the last word", "Delete the final word", "Skip the last word",
           "All but the last word"), fn=lambda t: " ".join(_words(t)[:-1]),
          make_input=_at_least_two_words),
    Skill("initials", "Initials", "First letter of each word, in lower case, joined.",
          ("Give the initials", "First letter of every word", "Take each word's first letter",
           "Initial letters only", "Write the initials"), fn=lambda t: "".join(w[0] for w in _words(t))),
)


def _capitalize(text: str) -> str:
    return " ".join(w[0].upper() + w[1:] for w in _words(text))


def _remove_vowels(text: str) -> str:
    return "".join(c for c in text if c.lower() not in "aeiou")


BRICK_SKILLS: tuple[Skill, ...] = (
    Skill("uppercase", "Uppercase", "Convert every letter of the text to upper case (all caps).",
          ("Uppercase the text", "Make it all caps", "Convert to upper case", "Write it in capital letters",
           "Shout it in uppercase", "uppercase", "Turn every letter into a capital"), fn=str.upper),
    Skill("reverse", "Reverse characters", "Reverse the order of the characters, spelling the text backwards.",
          ("Reverse the characters", "Spell it backwards", "Write the text backwards letter by letter",
           "Reverse the string", "Mirror the letters", "Reverse it", "Read it from right to left"), fn=lambda t: t[::-1]),
    Skill("rot13", "ROT13", "Apply the ROT13 cipher: rotate each letter 13 places, leave other characters.",
          ("Apply rot13", "Encode with ROT13", "Rotate each letter by 13", "Caesar shift by 13 places",
           "Rot13 cipher the text", "rot13 it", "Scramble it with the rot13 code"),
          fn=lambda t: codecs.encode(t, "rot13")),
    Skill("remove_vowels", "Remove vowels", "Delete the vowels a, e, i, o and u, keep all other characters.",
          ("Remove the vowels", "Delete all vowels", "Strip out a e i o u", "Drop the vowels",
           "Keep only consonants and spaces", "Take out the vowels", "Write it without vowels"), fn=_remove_vowels),
    Skill("capitalize", "Capitalize words", "Capitalize the first letter of each word, rest unchanged (title case).",
          ("Capitalize each word", "Title case the text", "Capitalize the first letter of every word",
           "Make each word start with a capital", "Use title case", "capitalize", "Upper-case each initial"), fn=_capitalize),
    Skill("reverse_words", "Reverse words", "Reverse the order of the words, keeping each word intact.",
          ("Reverse the words", "Reverse the word order", "Put the words in reverse order",
           "Say the words backwards, last word first", "Flip the order of the words",
           "Words in opposite order", "Reverse the sequence of words"),
          fn=lambda t: " ".join(reversed(_words(t)))),
    Skill("acronym", "Acronym", "Make an acronym: the first letter of each word, upper case, joined.",
          ("Make an acronym", "Abbreviate it as an acronym", "Turn it into an acronym",
           "Uppercase initials joined together", "Form the acronym", "acronym", "Give the abbreviation"),
          fn=lambda t: "".join(w[0] for w in _words(t)).upper()),
    Skill("capital", "Capital city", "Name the capital city of the given country.",
          ("What is the capital", "Give the capital city", "Name the capital of this country",
           "Capital city of the country", "Which city is the capital", "capital", "Where is the seat of government"),
          table=tables.CAPITAL_CITIES),
    Skill("antonym", "Antonym", "Give the antonym, the word with the opposite meaning.",
          ("Give the antonym", "What is the opposite", "Opposite word", "Find the antonym",
           "Say the word with the opposite meaning", "antonym", "Give me its opposite"), table=tables.ANTONYM_PAIRS),
    Skill("plural", "Plural", "Give the plural form of the English noun, irregular plurals included.",
          ("Give the plural", "Make it plural", "Plural form of the noun", "Pluralize the word",
           "What is the plural", "plural", "More than one of it"), table=tables.PLURALS,
          rule=tables.regular_plural),
    Skill("french", "French translation", "Translate the English word into French.",
          ("Translate to French", "Say it in French", "French translation", "What is it in French",
           "Give the French word", "french", "Translate the word into French"), table=tables.FRENCH_WORDS),
    Skill("sentiment", "Sentiment", "Classify the sentiment of a short review as positive or negative.",
          ("Classify the sentiment", "Is this review positive or negative", "Sentiment of the review",
           "Detect the sentiment", "Was the reviewer happy or unhappy", "sentiment", "Label the review mood"),
          table=tables.SENTIMENT),
)

SKILLS: dict[str, Skill] = {s.id: s for s in GENERIC_SKILLS + BRICK_SKILLS}


EVAL_SIZE = 100


def eval_set(skill: Skill, seed: int = 12345, size: int = EVAL_SIZE, changed: bool = False) -> list[Example]:
    """Fresh inputs (another seed than training) or the whole table, instructions cycled.

    With `changed`, only inputs the skill changes: on one word `reverse_words` is the identity,
    on a word without vowels `remove_vowels` is, and a base that merely copies would score there.
    """
    said = skill.instructions
    if skill.table is not None:
        return [(said[i % len(said)], x, y) for i, (x, y) in enumerate(skill.table.items())]
    rng = random.Random(seed)
    inputs: list[str] = []
    for _ in range(100 * size):
        x = skill.make_input(rng, random_word)
        if not changed or skill.answer(x) != x:
            inputs.append(x)
        if len(inputs) == size:
            break
    else:
        raise ValueError(f"{skill.id} leaves nearly every input unchanged: evaluate it with changed=False")
    return [(said[i % len(said)], x, skill.answer(x)) for i, x in enumerate(inputs)]


CASES = ("lower", "upper", "title", "random")  # the cases an earlier step can hand a brick


def recase(text: str, case: str, rng: random.Random) -> str:
    """`text` in one of CASES; "random" flips each letter by a coin from `rng`."""
    if case == "lower":
        return text.lower()
    if case == "upper":
        return text.upper()
    if case == "title":
        return text.title()
    if case == "random":
        return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
    raise ValueError(f"unknown case {case!r}; choose one of {', '.join(CASES)}")


def case_eval_set(skill: Skill, case: str, size: int = EVAL_SIZE) -> list[Example]:
    """`eval_set` (inputs the skill changes, or the whole table) with every input in `case` and
    the skill's true output for that input: outputs of other steps come in any case."""
    rng = random.Random(f"{skill.id}:{case}")
    out = []
    for instruction, x, _ in eval_set(skill, size=size, changed=skill.table is None):
        x = recase(x, case, rng)
        out.append((instruction, x, skill.answer(x)))
    return out


# Rewordings a card's owner adds to the card (retrieval texts, not training prompts): the ways
# people ask for the skill that its first instructions miss — synonyms, terse forms, questions.
PARAPHRASES: dict[str, tuple[str, ...]] = {
    "uppercase": ("capital letters only", "all upper case", "block capitals", "caps lock on",
                  "make every letter upper case", "convert the letters to capitals", "loud caps", "yell it",
                  "big letters", "every letter capitalized", "capitalize all of the letters, not only the first",
                  "fully capitalised", "majuscule letters", "all letters as capitals"),
    "reverse": ("flip the letters around", "letters in reverse order", "mirror the characters",
                "characters from last to first", "reverse the spelling of the text", "backwards, letter by letter"),
    "rot13": ("the rot13 letter rotation", "rotate the letters by thirteen", "rot13 encryption", "encode using rot 13",
              "thirteen-place letter shift cipher", "rot 13 substitution"),
    "remove_vowels": ("consonants and spaces only", "only the consonants", "delete the letters a e i o u", "disemvowel the text",
                      "without any vowels", "vowels removed", "get rid of every vowel"),
    "capitalize": ("title-case words", "capitalise every word", "make every word begin with an uppercase letter",
                   "an initial capital on each word", "headline case", "capital first letter on each word",
                   "make the first letter of each word big"),
    "reverse_words": ("backwards word order", "last word first", "flip the words around", "words from last to first",
                      "invert the word order", "the same words in the opposite order"),
    "acronym": ("capital initials", "initials in upper case", "initialism", "abbreviate to capital first letters",
                "acronym of the phrase", "upper-case first letters joined", "the acronym"),
    "capital": ("capital city of the country", "main city of the nation", "capital of the country",
                "seat of government of the country", "the country's capital", "which city is its capital"),
    "antonym": ("a word meaning the opposite", "word of opposite meaning", "the opposite of the word", "contrary word",
                "opposite", "reverse meaning of the word", "what is the antonym of", "the word that means the reverse",
                "the flip side of the word", "a word meaning the contrary", "which word is its opposite"),
    "plural": ("plural form", "more than one", "plural version of the noun", "several of the thing", "the noun in the plural",
               "what do you call several"),
    "french": ("French equivalent", "the French word for it", "from English into French", "translate into the French language",
               "how do you say it in French", "French version of the word"),
    "sentiment": ("judge whether it is positive", "was the customer happy", "mood of the review", "tone of the review",
                  "is the review favourable", "did the reviewer like it", "review sentiment"),
}


REQUESTS = Path(__file__).resolve().parent / "requests"  # annotated requests, written blind to the planner
REQUEST_PARAPHRASES = 80  # per card: how users asked for the skill in the annotated requests
CHAIN_STEP_WORDINGS = 40  # per card: how the annotated chains word a step of the skill
# The composition benchmark's phrasings (written independently), as sha256 hashes of their
# lower-cased text: kept off the cards, as the benchmark must never repeat a card example
# (benchmarks/composition_data.py checks, and writes this file), and hashed so that the card
# code does not spell out a held-out benchmark's wordings.
BENCHMARK_WORDINGS = Path(__file__).resolve().parent / "benchmark_wordings.json"


@functools.cache
def _benchmark_hashes() -> frozenset[str]:
    return frozenset(json.loads(BENCHMARK_WORDINGS.read_text())["sha256"])


def wording_hash(text: str) -> str:
    return hashlib.sha256(text.lower().encode()).hexdigest()[:16]


def _fresh_wordings(candidates, limit: int) -> list[str]:
    """`candidates` deduplicated (any case), without "it" and the benchmark's phrasings, up to `limit`."""
    seen, out = {"it"}, []
    for text in candidates:
        if text.lower() not in seen and wording_hash(text) not in _benchmark_hashes():
            seen.add(text.lower())
            out.append(text)
    return out[:limit]


# The corpora whose wordings go onto the cards. The four written later (classroom, creators,
# curious, pipelines) train the payload tagger only: on the cards they did not help retrieval of
# the corpora's wordings no card holds (README, "Four more corpora"), and off the cards all their
# wordings measure it.
CARD_CORPORA = ("chat", "email", "hobby", "learner", "terse", "voice", "work")


def annotated_requests(folder: Path = REQUESTS, names: tuple[str, ...] | None = None) -> list[list[dict]]:
    """The annotated requests ({"instruction", "payload", "skills"}), one list per file, files in
    name order; only the files named in `names` (stems) when given."""
    return [[json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            for path in sorted(folder.glob("*.jsonl")) if names is None or path.stem in names]


def request_wording(row: dict) -> str:
    """An annotated request as the planner's retrieval query reads it: the payload replaced by
    "it", and dropped with its colon when it ends the request ("uppercase: it" -> "uppercase")."""
    text = re.sub(r"""["']?\b""" + re.escape(row["payload"]) + r"""\b["']?""", "it", row["instruction"], count=1)
    return " ".join(re.sub(r"\s*:\s*it\W*$", "", text).split()).strip(" ,.;:?!-")


def request_paraphrases(skill_id: str, limit: int = REQUEST_PARAPHRASES) -> list[str]:
    """How the annotated requests ask for one skill alone, with the payload replaced by "it"
    (as the planner's retrieval query reads): "gimme it in full caps"; a payload that ends the
    request after a colon is dropped with its colon ("uppercase: it" -> "uppercase"), an earlier
    colon kept ("Ticket 2291: please reverse the letters of"). In file order, the CARD_CORPORA
    taking turns, deduplicated."""
    per_file = [[request_wording(row) for row in rows if row["skills"] == [skill_id]]
                for rows in annotated_requests(names=CARD_CORPORA)]
    return _fresh_wordings((t for group in itertools.zip_longest(*per_file) for t in group if t), limit)


_COMMA_AND = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+", re.I)
# a piece that greets, signs off, files or thanks: the chain's pieces do not line up with its steps
_NOT_A_STEP = re.compile(r"(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|thanks|thank you|many thanks|"
                         r"best|regards|kind regards|cheers|ticket|sincerely)\b", re.I)


def chain_step_wordings(skill_id: str, limit: int = CHAIN_STEP_WORDINGS) -> list[str]:
    """How the annotated chains of the CARD_CORPORA word a step of this skill, the payload read
    as "it" ("in capitals", "with a capital first letter", "then spell it backwards"): a chain
    whose wording splits at sequencing cues, then at commas and "and", into exactly one piece
    per skill, each of at most eight words and none a greeting or sign-off, gives each piece to
    its skill. Single-skill requests word a whole task; a chain's step is often a modifier, a
    wording no single request uses. In file order, deduplicated."""
    from composer.planner import split_steps

    def pieces(row: dict) -> list[str]:
        out = split_steps(request_wording(row))
        if len(out) < len(row["skills"]):
            out = [p.strip(" ,.;:?!-") for s in out for p in _COMMA_AND.split(s) if p.strip(" ,.;:?!-")]
        if len(out) != len(row["skills"]) or any(not 0 < len(p.split()) <= 8 or _NOT_A_STEP.match(p) for p in out):
            return []
        return [p for p, skill in zip(out, row["skills"]) if skill == skill_id]

    chains = (row for rows in annotated_requests(names=CARD_CORPORA) for row in rows
              if len(row["skills"]) > 1 and skill_id in row["skills"])
    return _fresh_wordings((p for row in chains for p in pieces(row)), limit)


def card_examples(skill: Skill) -> list[str]:
    """A brick card's examples: the skill's instructions, then its owner's rewordings, then the
    annotated requests' wordings, then their chains' step wordings."""
    out: dict[str, str] = {}  # by lower case: a wording twice would count twice in a pooled score
    for wording in [*skill.instructions, *PARAPHRASES.get(skill.id, ()), *request_paraphrases(skill.id),
                    *chain_step_wordings(skill.id)]:
        out.setdefault(wording.lower(), wording)
    return list(out.values())
