"""Planner: instruction (+ optional payload) -> Plan, an ordered list of steps.

Step 1 reads the payload; every later step reads the previous step's output. The heuristic
planner is deterministic and explains itself in `Plan.explain`:

1. The payload: passed as `input`, else after `input=...`, `word=...`, `country=...` (an
   unquoted value that leaves no step ends at its line break or the next "key=", or where a
   piece that retrieves a brick starts: after a comma, arrow, pipe, ...) or in a call's
   parentheses ("rot13(hello world)"); else, with a tagger, its most
   probable span in the whole request when the tagger is at least TAG_CONFIDENCE sure of it
   ("for the escape room: get the capital of nepal" — a colon that marks no payload); else
   after a colon (up to a "then") or in quotes; else a first or last piece of its own ("happy cat -> upper",
   "strip the vowels - magic carpet") when it retrieves no brick and the payload tagger reads
   every word of it as payload; else, with a search function, written inline ("capital of
   Japan", "Spell paris backwards"): every span of the first step (up to a comma or "and" that
   starts another step) is scored as a payload — retrieval of what is left of the sentence, the
   tagger's log-probability of the split (`composer.tagger`, learned from annotated requests),
   a bonus when the span is a known input of the brick it retrieves (a table key), a cost for
   instruction-like words inside it and for payload-like words outside or right beside it (a
   word's own retrieval score for that brick says which it is) — and the best span wins, unless
   the step scores better whole. A possessive payload is its owner: "What is Kenya's capital?"
   reads Kenya, and "What is its capital". Neither the tagger nor the inline scoring reads as
   payload a span that holds, past its first word, an -ing verb of how to write the text before
   a word opening a clause ("coffee time starting with its last word" reads coffee time).
2. Steps: split on sequencing cues ("then", "and then", "after that", "followed by", "next",
   "finally", ";", sentence ends, numbered lists, arrows, pipes, spaced dashes) and put in the
   order they run ("before you X, Y" is Y, then X; "X after Ying Z" is "Ying Z", then X); then,
   with a search function, on commas, "and", "but", "+", after the payload's "it" ("capital of it
   backwards") and before a closing "in"/"with" ("spell it backwards in caps", not after a word
   naming parts of the text: "first letters in caps") when — and only when — every piece
   retrieves a brick with at least `split_score` (IT_CUT_MARGIN more without a comma or "and"),
   neighbouring pieces retrieve different bricks, the pieces retrieve on average no worse than
   the whole step does (less SPLIT_MARGIN) and the whole does not ask for one piece's brick
   more clearly than that piece alone (retrieval-guided segmentation: "remove the vowels and
   reverse it" splits; "uppercase salt and pepper", "Help me with my French homework,
   translate" and "write it the other way round, one letter at a time" do not; "reverse it, and
   reverse it again" does). A later piece that is no command on the result ("in caps", not
   "uppercase it") is a `Step.modifier`: the result folds it into the step before when it
   changes nothing ("initials of it, in caps"). Last, neighbouring steps whose best customized
   brick is the same, both retrieved at `payload_score` or more, become one ("put it in full
   uppercase. no lowercase anywhere"), unless the later says "again" or "twice", or reads as
   another brick once its words naming the earlier result are "it" ("write that French word
   backwards"). Pieces of glue words only ("And could you | then ...") are no step. A
   closing clause or sentence that says why or for what without the payload ("..., for a
   flashcard", "It's for the letterhead.") is no step either. A step nested in another ("rot13
   the capital of it") runs as two, the inner first, when each part retrieves its own brick
   surely and the whole reads worse than either (`_nested`).
   A piece of a message that no sequencing word, list number, arrow or semicolon sets in the
   sequence (only sentence ends, line breaks and dashes around it) and that no brick would run
   (best score under `aside_score`, the composer's threshold) is no step — a ticket number, an
   aside ("I need it for a poem") — nor is a short greeting first or sign-off last ("Dear
   assistant", "Kind regards, Marcus"); they are dropped when another step does retrieve a
   brick. So is a sentence that names neither the payload nor a result ("it", "that", "the
   result") beside a step that does, unless it retrieves a brick at CONTEXT_SCORE ("The kids
   keep forgetting capitals."); restated steps merge again once such asides are gone. An
   unknown command in the sequence ("then copy the text") stays, to fail as unknown.
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from typing import Callable, Literal, Mapping, Protocol, Sequence

from pydantic import BaseModel, Field

from composer.errors import ComposerError


class PlanError(ComposerError):
    """The instruction cannot be turned into a plan; the message says why."""


Mode = Literal["auto", "single", "mixture", "merge", "arrow", "sparse", "base"]


class Step(BaseModel):
    instruction: str = Field(description="the sub-instruction, also the retrieval query")
    mode: Mode = Field("auto", description="how the step's bricks combine; auto = decided from retrieval scores")
    modifier: bool = Field(False, description="split off the step before by retrieval (at a comma, 'and' or a "
                                              "closing phrase), no command on the result: when it changes nothing, "
                                              "the step before already did it ('initials, in caps'), and the result "
                                              "folds it in")


class Plan(BaseModel):
    instruction: str
    payload: str
    steps: list[Step] = Field(min_length=1)
    explain: list[str] = Field(default_factory=list, description="how the payload was found and why steps split")
    planner: str = Field("heuristic", description="which planner made it (e.g. heuristic, llm, llm->heuristic)")
    note: str = Field("", description="why the planner did what it did (e.g. why an LLM plan was refused)")


class Planner(Protocol):
    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan: ...


Search = Callable[[list[str], int], list[list]]  # BrickIndex.search_many: queries, k -> hits per query

_KEYS = "input|text|words?|phrase|term|noun|country|review|string|value|sentence|name|title|message"  # "input=red fox", "words=peru"
_INPUT_EQ = re.compile(rf"""\b({_KEYS})\s*=(?!>)\s*(?:"([^"]*)"|'([^']*)'|(.+))\s*$""", re.I | re.S)
_QUOTED = re.compile(r""""([^"]+)"|“([^”]+)”|(?<![a-z])'([^']+)'(?![a-z])|\[([^\[\]]+)\]""", re.I)  # [brackets] too
# arrows, pipes and spaced dashes: "happy cat -> upper", "calf → plural → caps", "rot13 it | caps it"
_ARROW = r"(?:->|=>|\|>|>{1,2}|\||-{1,2}|\u2013|\u2014|\u2192|\u21d2|\u279c)"
_NUMBERED = re.compile(r"(?:^|\s)(?:step\s*\d+\s*[:.)-]|\(?\d+[.)])\s+", re.I)  # "1.", "(2)", "Step 3:"
_TIMES = "week|weekend|month|year|time|day|door|morning|afternoon|evening|night|summer|winter|spring|autumn"  # "next month"
_CUES = re.compile(
    rf"\s*(?:;|\n+|(?<=[a-z0-9\"'])[.!?](?:\s+|$)|,?\s*\b(?:and\s+)?(?:then|after\s+that|afterwards|followed\s+by|next(?!\s+(?:{_TIMES})\b)|finally)\b,?"
    rf"|\s{_ARROW}\s)\s*", re.I)  # arrows and spaced dashes too: "happy cat -> upper"
_AFTER_COLON = re.compile(rf"[.,;]?\s+\b(?:and\s+)?(?:then|after\s+that|afterwards|followed\s+by|next|finally)\b[,]?\s*"
                          rf"|\s+{_ARROW}\s+", re.I)
_CALL = re.compile(r"\b([a-z][\w-]*)\(([^()]+)\)", re.I)  # rot13(hello world)
# where "input=..." may stop: a line break or another "key=" surely, a comma, sentence end, arrow,
# pipe or parenthesis when a step follows
_KEY = re.compile(r"[a-z_]+\s*=(?!>)", re.I)  # "op=", "lang ="
_VALUE_END = re.compile(rf"\s*\n\s*|\s*[,;]\s+|(?<=[a-z0-9])[.!?]\s+|\s+{_ARROW}\s+|\s+(?=\()|\s+(?={_KEY.pattern})", re.I)
_PURPOSE = (r"(?:for (?:a|an|my|our|the|his|her|their|your|this|that|some)"  # says why or for what
            r"|it'?s (?:for|going|a|an|the|my|our)|it is (?:for|going)|that'?s for)\b")
_ASIDE_CLAUSE = re.compile(rf"(?:,|\s-)\s*({_PURPOSE}[^,]*?)[.!?]*\s*$", re.I)  # closing a step
_PURPOSE_START = re.compile(_PURPOSE, re.I)  # a sentence of its own
_NESTED = re.compile(r"^((?:\S+\s+){0,4}?\S+)\s+((?:the|its)\s+(?:[a-z]+\s+){1,3}?(?:of|for)\s+it)$", re.I)
NESTED_HEAD, NESTED_INNER, NESTED_MARGIN = 0.7, 0.8, 0.05  # "rot13 the capital of it": see _nested
# "before you rot13 it, title-case it": the clause after the comma runs first
_BEFORE_YOU = re.compile(r"before\s+(?:you|u|we)\s+([^,;]+?)\s*,\s*(.+)", re.I | re.S)
# "initials of it after flipping the word order": the -ing step runs first ("before spelling it" runs last)
_NOT_VERBS = "thing|nothing|something|anything|everything|morning|evening|during|spring|string|king|ring|sing|bring|" \
             "wedding|building|meeting|ceiling|lightning|pudding|clothing|feeling|ending|beginning"
_BEFORE_AFTER_ING = re.compile(rf"(.+?),?\s+(before|after)\s+((?!(?:{_NOT_VERBS})\b)[a-z]{{2,}}ing\b.*)", re.I | re.S)
_LABEL = r"(?:[^\s:]+\s+){0,3}[^\s:]+"  # at most four words, no colon: what may be a heading
_HEADING = re.compile(rf"^\s*({_LABEL})\s*:\s+(\S.*)$", re.S)  # "tour poster: ..."; see HeuristicPlanner._heading
_LAST_ASIDE = re.compile(r"\s+\(([^()]+)\)\s*$")  # "purple rain (spelled backwards)": read as after a comma
_FILLER = re.compile(r"^(?:(?:and|but|plus|first|firstly|please|now|lastly|also)\b[,]?\s*)+", re.I)
# separators a step may split on, if retrieval agrees: commas, "and", the space after the
# payload's "it" ("plural of it in uppercase", "capital of it backwards") unless what follows
# says what it becomes ("abbreviate it to its initials", "turn it into an acronym"), and the
# space before a closing "in ..." or "with ..." ("spell it backwards in caps", "in uppercase with
# the vowels removed") unless it follows a word naming parts of the text, which it scopes ("first
# letters in caps", "its initials in capitals"), or says "with a ..." ("start with a capital");
# "and so on" is no cut
_PARTS = ("letter", "letters", "word", "words", "initial", "initials", "character", "characters", "only")
_WEAK = re.compile(r"\s*,\s*|\s+(?:and|but|\+)\s+(?!so\s+(?:on|forth)\b)|(?<=\bit)\s+(?!(?:to|into|so)\b)(?=[a-z])"
                   r"|(?<=[a-z])" + "".join(rf"(?<!\b{w})" for w in _PARTS)
                   + r"\s+(?=(?:in|with(?!\s+an?\b))\s+(?!(?:it|them|that|this)\b)[a-z])", re.I)
_WORD = re.compile(r"[a-z0-9']+")
_EDGE = " \"'.,;:?!()[]“”"  # punctuation around a payload that is not part of it
_SEP_END = re.compile(rf"\s*(?:[:,;.?!]|(?:^|\s){_ARROW})\s*$")  # what ends the text before a payload piece
_ASIDE_DASH = re.compile(r"^[ \t]*(?:-{1,2}|\u2013|\u2014)[ \t]+")  # a dash on the same line, not an arrow
_SEP_START = re.compile(rf"^\s*(?:[:;]|{_ARROW}(?:\s|$))\s*")  # what starts the text after one
_SOFT = re.compile(r"[\s.!?\-\u2013\u2014]*")  # a cut at a sentence end, line break or dash: no sequencing word
# A message's opening and closing lines ("Dear assistant", "Kind regards, Marcus") are no step
_SALUTATION = re.compile(r"(?:hi|hello|hey|hiya|dear|greetings|good (?:morning|afternoon|evening))\b", re.I)
_SIGN_OFF = re.compile(r"(?:thanks|thank you|ta|thx|cheers|regards|kind regards|best(?: regards| wishes)?|"
                       r"warm(?:est)? regards|many thanks|with thanks|sincerely|yours|much (?:appreciated|obliged))\b", re.I)
_AGAIN = frozenset(("again", "twice"))  # a step that repeats its neighbour on purpose
_REPEAT_ASK = frozenset("again repeat".split())  # "then do it again", "repeat that": see _repeats
_REPEAT_WORDS = _REPEAT_ASK | frozenset("do it that this the same thing step once more one time please then and".split())
_REFERENCES = frozenset(("that", "this", "those", "these"))  # "write that French word backwards"
_NAMES_RESULT = _REFERENCES | {"it", "them", "result", "answer", "output"}  # what a step acts on
# a verb, then the result as its object: "spell that from the end", "turn it into French" is a step of
# its own even where the whole reads its first brick better; a modifier ("one letter at a time") or a
# question about it ("what would that be", "can u do it") is not
_ACTS_ON_RESULT = re.compile(r"(?!(?:can|could|would|will|do|does|did|is|are|was|what|which|how|who|why|when|where|"
                             r"so|if|just|only|not)\b)[a-z]+\s+(?:it|that|this|them|the\s+(?:result|answer|output))\b",
                             re.I)
LATER_ASIDE_SCORE = 0.5  # the bar of `aside_score` for a piece after the first: "... Need it for the quiz round"
CONTEXT_SCORE = 0.7  # a sentence naming no payload, beside one that does, is a step only above this
_STATES_IT = re.compile(r"\b(?:is|are|was|were|reads|says)\s+(?:just\s+|simply\s+)?it\W*$", re.I)  # "My password hint is it"
_ONE_WORD_LABEL = re.compile(r"\b(?:the|this|that|my|following)\s+(?:word|term)(?:\s+it\b|\s*$)", re.I)  # see _unlabelled
_SLOT = frozenset(("input", "payload"))  # what names the payload without asking anything of it
_REFERS_ONLY = _NAMES_RESULT | frozenset("me you him her us we they i".split())  # see _only_refers
_COURTESY = frozenset("thanks thank you please pls plz thx ty cheers lol ok okay".split())  # "... thanks!" is no step
# Words that join an instruction to its payload, pad a request or ask for any operation at all
# (generic verbs): never a payload's first or last word (unless the span is a known input),
# never a cost inside or outside the payload.
_GLUE = frozenset("""a an the of in into to for from on at by with as through using via around is are be was
    it its this that these those me you your please can could would will do does did how what what's whats which
    who where when word words text phrase string term noun name say tell give get make put write turn then and or
    so just now here there every each all i we us need want like thing result something version form
    change convert transform print render produce create show display return output apply run take use provide
    generate rewrite type format express find compute help let keep bring written writing wrote made
    pls plz thx thanks thank kindly quick quickly asap gimme u ur
    am been being have has had having he she him they them were if but because until while about against
    between during before after above below up down out off over under again further once why whom both few
    more most other some such no nor not only same than too very should should've i'm i'd it's""".split())
# "Japan's capital", "hot’s opposite": the payload is the owner, and what is left asks about "its" capital
_POSSESSIVE = re.compile(r"(.*\w)['’]s", re.I | re.S)
_NOT_OWNERS = frozenset("it what that let he she there here who where how when why one".split())  # "what's", "let's"
_TRAILING = frozenset("of in into to for from on at by with as through using via the a an and please".split())
PAYLOAD_COST, REST_COST = 0.15, 0.05  # per instruction-like word inside a payload, per payload-like word outside
BOUNDARY_COST = 0.15  # per payload-like word right next to the span: "Abbreviate sun moon | star"
LINK_COST = 0.05  # per preposition inside a payload: "my old car in block" is rarely one
_ARTICLES = frozenset(("the", "a", "an"))  # may open a payload when the tagger reads them as one ("the old mill")
_LINKS = frozenset("of in into to for from on at by with through using via".split())
AFFINITY_LOW, AFFINITY_HIGH = 0.2, 0.55  # a word's retrieval score for a brick: payload-like .. instruction-like
SEARCH_K = 5      # hits kept per planner search (a word's affinity looks among them)
MEMO_SIZE = 4096  # planner searches remembered per library generation
MAX_SPAN = 6      # longest inline payload, in words
CANDIDATES = 10   # inline payload spans whose remainders are retrieved (best by the cheap score)
GLUE_TAG = 0.0  # glue opens or ends a payload only when the tagger reads it as payload ("game over")
_NEVER_LAST = frozenset("of in into to for from on at by with through using via and or please pls plz thanks thx".split())
# "Read out coffee time starting with its last word": an -ing verb saying how to write the text,
# after a payload's first word and before a word that opens a clause about the task, is not part
# of the payload; the tagger learned few such requests. A list of verbs, as many -ing words are
# nouns in payloads ("spring cleaning with every letter capitalized")
_CLAUSE_ING = re.compile(r"(?:start|beginn|end|go|skipp|keep|leav|mak|dropp|turn|putt|swapp|switch|flipp|shift|"
                         r"rotat|us|apply|spell|chang|convert|remov|delet|tak|mov|plac|revers|mirror|capitaliz|"
                         r"capitalis|replac|omitt|cutt|stripp)ing")
_CLAUSE_OPENERS = frozenset("from with at only the its their through on".split())
_TEXT_PARTS = frozenset("letter letters word words character characters vowel vowels consonant consonants".split())
TAG_WEIGHT = 0.05  # per nat of the payload tagger's log-probability of a split
TAG_CONFIDENCE = 0.9  # the tagger's probability of its best span in the whole request above which it decides alone
IT_CUT_MARGIN = 0.1  # over split_score, for pieces of a cut after "it" (no comma or "and" marks it)
SPLIT_MARGIN = 0.05  # a split wins when its pieces retrieve, on average, no worse than this below the whole
Tagger = Callable[[str], list[float]]  # composer.tagger.PayloadTagger: text -> log-odds per word of being payload


def _strip_quotes(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and (text[0] == text[-1] and text[0] in "\"'" or text[0] + text[-1] == "[]"):
        return text[1:-1].strip()
    return text


def split_payload(instruction: str) -> tuple[str, str | None, str]:
    """(the instruction without its payload, the payload or None, how it was found)."""
    if m := _INPUT_EQ.search(instruction):
        payload = next(g for g in m.groups()[1:] if g is not None)
        return instruction[: m.start()].rstrip(" ,;:"), payload.strip(), f"payload after {m.group(1).lower()}="
    if ":" in instruction:
        head, _, tail = instruction.partition(":")
        if tail.strip():
            tail, *later = _AFTER_COLON.split(tail, maxsplit=1)  # "acronym: big cat. then backwards"
            return head + "".join(f" then {piece}" for piece in later), _strip_quotes(tail), "payload after the colon"
    if m := _call(instruction):
        return (instruction[: m.end(1)] + instruction[m.end():]).strip(), _strip_quotes(m.group(2)), \
            "payload in parentheses"
    if m := _QUOTED.search(instruction):
        payload = next(g for g in m.groups() if g is not None)
        before, after = instruction[: m.start()].rstrip(), instruction[m.end():].lstrip()
        rest = f"{before} it {after}" if before and after[:1].isalnum() else f"{before}{after}"  # "capital of it in reverse"
        return rest.strip(" ,;"), payload.strip(), "payload in quotes"
    return instruction, None, ""


def _call(instruction: str) -> re.Match | None:
    """`rot13(hello world)`: a skill written as a function call, unless quotes or a colon come
    before it (then the parentheses are part of a payload: 'uppercase: f(x) = y')."""
    m = _CALL.search(instruction)
    return m if m and not re.search(r"[\"'“:]", instruction[: m.start()]) else None


def _owner(token: str) -> str | None:
    """The owner in a possessive word ("Japan's" -> "Japan"), or None: "what's" and "let's"
    are contractions, and a word without 's owns nothing."""
    m = _POSSESSIVE.fullmatch(token.strip("\"“”.,;:?!()"))
    return m.group(1) if m and m.group(1).lower() not in _NOT_OWNERS else None


_PIECE_EDGE = " ,.;:?!|>\u2192"  # punctuation, a pipe or an arrow left at a step's end


def _clean(piece: str) -> str:
    return _FILLER.sub("", piece.strip(_PIECE_EDGE)).strip(_PIECE_EDGE)


def split_steps(text: str) -> list[str]:
    """Sub-instructions in order, split on numbered lists and sequencing cues."""
    return [piece for piece, _ in _marked_steps(text)]


def _in_order(piece: str) -> list[str]:
    """`piece` as steps in the order they run: "before you X, Y" is Y then X, "X after Ying Z"
    is "Ying Z" then X, "X before Ying Z" is X then "Ying Z"."""
    if m := _BEFORE_YOU.fullmatch(piece):
        return [*_in_order(m.group(2)), *_in_order(m.group(1))]
    if m := _BEFORE_AFTER_ING.fullmatch(piece):
        first, later = (m.group(1), m.group(3)) if m.group(2).lower() == "before" else (m.group(3), m.group(1))
        return [*_in_order(first), *_in_order(later)]
    return [piece]


def _marked_steps(text: str) -> list[tuple[str, bool]]:
    """(sub-instruction, whether a sequencing word, list number, arrow or semicolon sets it in
    the sequence) in order. A piece with only sentence ends, line breaks or dashes around it is
    not: in a message, it may be a greeting, a sign-off or an aside ("Kind regards, Marcus")."""
    text = _LAST_ASIDE.sub(r", \1", text)
    numbered = len(_NUMBERED.findall(text)) >= 2
    out = []
    for part in (_NUMBERED.split(text) if numbered else [text]):
        cuts = [(m.start(), m.end(), not _SOFT.fullmatch(m.group())) for m in _CUES.finditer(part)]
        for n, start in enumerate([0] + [b for _, b, _ in cuts]):
            # a "before"/"after" clause is no sequencing word: "after checking the spelling" may be an aside
            pieces = [_clean(p) for p in _in_order(part[start:cuts[n][0] if n < len(cuts) else len(part)])]
            marked = numbered or (n > 0 and cuts[n - 1][2]) or (n < len(cuts) and cuts[n][2])
            out += [(piece, marked) for piece in pieces if _is_step(piece)]
    # a piece of glue words only asks for nothing: "And could you | then write that backwards",
    # "input: ... | 1) reverse"; dropped when another piece is left
    kept = [(piece, seq) for piece, seq in out if not _no_content(piece)]
    return kept or out


def _no_content(piece: str) -> bool:
    """Only glue words, or the name of the payload's slot ("could you", "input", "text"); a
    piece asking for something "again" or "twice" is a step."""
    words = set(_words(piece))
    return words <= _GLUE | _SLOT and not words & _AGAIN


def _is_step(piece: str) -> bool:
    return bool(piece) and not set(_words(piece)) <= _COURTESY


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _clause_verbs(tokens: list[str]) -> list[int]:
    """Where in `tokens` (whitespace words) an -ing verb opens a clause (`_CLAUSE_ING`): read
    once per request, then checked for every candidate span by `_holds_clause`."""
    bare = [t.strip("\"'.,;:?!()").lower() for t in tokens]

    def opens(k: int) -> bool:  # "starting with", "dropping all the vowels", not "reading every day"
        after = [w for w in bare[k + 1:k + 5] if w not in ("the", "of")]
        return bare[k + 1] in _CLAUSE_OPENERS or (after[:1] in (["every"], ["each"], ["all"])
                                                 and after[1:2] and after[1] in _TEXT_PARTS)

    return [k for k in range(len(tokens) - 1)
            if tokens[k][-1:].isalpha() and _CLAUSE_ING.fullmatch(tokens[k].lower()) and opens(k)]


def _holds_clause(verbs: list[int], i: int, j: int) -> bool:
    """Words i..j-1 hold, past their first, one of `verbs` (`_clause_verbs`): never a payload."""
    return any(i < k < j for k in verbs)


def _bracket_pairs(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """(first, last) word of each matched pair of brackets; a bracket without its partner
    ("1) rot13 2) reverse", "hello :)") pairs with nothing."""
    pairs, open_at = [], []
    for n, token in enumerate(tokens):
        for ch in token:
            if ch in "([":
                open_at.append(n)
            elif ch in ")]" and open_at:
                pairs.append((open_at.pop(), n))
    return pairs


def _cuts_brackets(pairs: list[tuple[int, int]], i: int, j: int) -> bool:
    """Words i..j-1 hold one end of a pair of brackets but not the other: a payload never starts
    or ends inside brackets ("a sign text (no entry)" holds "no entry", not "entry")."""
    return any((i <= a < j) != (i <= b < j) for a, b in pairs)


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x


class HeuristicPlanner:
    """Rule-based and deterministic: the same instruction (and library) always gives the same plan.

    Without `search` it splits on sequencing cues only and needs a delimited payload; with
    `search` (BrickIndex.search_many) and `library` it also segments on commas and "and" and
    finds inline payloads, guided by retrieval.
    """

    def __init__(self, search: Search | None = None, library=None, split_score: float = 0.5,
                 payload_score: float = 0.35, tagger: Tagger | None = None, aside_score: float = 0.43):
        self.search, self.library, self.tagger = search, library, tagger
        self.split_score, self.payload_score, self.aside_score = split_score, payload_score, aside_score
        # what the planner remembers about the library, dropped together when it changes
        self._generation = None
        self._facts_memo: tuple[dict[str, Mapping[str, str]], frozenset[str]] | None = None  # see _facts
        self._memo: dict[str, list] = {}
        self._lock = threading.Lock()

    def plan(self, instruction: str, input: str | None = None, mode: Mode = "auto") -> Plan:
        if not instruction or not instruction.strip():
            raise PlanError("the instruction is empty")
        text, payload, explain = instruction.strip(), input, []
        if payload is not None:
            explain.append("payload passed separately")
        else:
            delimited = _INPUT_EQ.search(text) or _call(text)  # no reading needed: the delimiters say it
            text, payload, how = (self._tagged_payload(text) if self.tagger and self.search and not delimited
                                  else (text, None, ""))
            if payload is None:
                text, payload, how = split_payload(text)
                if how.endswith("=") and not set(_words(text)) - _GLUE and self.search:
                    text, payload, how = self._value_then_step(text, payload, how)
                elif how == "payload after the colon" and self.search:
                    text, payload, how = self._step_after_heading(text, payload, how)
            if how:
                explain.append(how)
        marked = _marked_steps(self._without_list_heading(text, explain) if self.search else text)
        if not marked:
            raise PlanError(f"no step found in {instruction!r}")
        if payload is None and self.search and len(marked) > 1:
            marked, payload = self._payload_piece(marked, explain)
        if payload is None and self.search:  # before splitting on "and": a payload may hold one
            first, payload = self._inline_payload(marked[0][0], explain)
            marked[0] = (first, marked[0][1])
        split, modifiers = [], set()  # later pieces of a segment split by retrieval: see Step.modifier
        for segment, seq in marked:
            pieces = self._segment(self._trim_heading(self._trim_aside(segment, explain), explain), explain) \
                if self.search else [segment]
            modifiers.update(p for p in pieces[1:] if not _ACTS_ON_RESULT.match(p))  # "uppercase it" is a command
            split += [(s, seq) for piece in pieces for s in (self._nested(piece, explain) if self.search else [piece])]
        marked = split
        if self.search and len(marked) > 1:
            # asides go first: a restatement merged into its step would hide that a piece named the payload
            # ("I'm making a poster. The headline is it. Could you capitalize every word?"), and restatements
            # merge once the asides between them are gone ("... spelled backwards. The town is it. Would you
            # mind reversing it?")
            marked = self._merge_restated(self._drop_asides(marked, explain), explain)
        if payload is None:
            raise PlanError("no input found: put it after a colon, in quotes, or pass input=..."
                            + (" (no part of the first step reads as one)" if self.search else ""))
        marked = self._repeats(marked, explain)
        steps = [self._unlabelled(s, explain) if len(payload.split()) == 1 else s for s, _ in marked]
        return Plan(instruction=instruction, payload=payload, explain=explain,
                    steps=[Step(instruction=s, mode=mode, modifier=n > 0 and s in modifiers) for n, s in enumerate(steps)])

    @staticmethod
    def _repeats(marked: list[tuple[str, bool]], explain: list[str]) -> list[tuple[str, bool]]:
        """A step that only asks to repeat ("then do it again", "repeat that") is the step before
        it once more: alone it names no brick, and retrieval would find a base skill (copy)."""
        out: list[tuple[str, bool]] = []
        for step, seq in marked:
            words = set(_words(step))
            if out and words & _REPEAT_ASK and words <= _REPEAT_WORDS:
                explain.append(f"{step!r} repeats the step before: {out[-1][0]!r}")
                step = out[-1][0]
            out.append((step, seq))
        return out

    def _value_then_step(self, text: str, payload: str, how: str) -> tuple[str, str, str]:
        """"input=welcome aboard, make it all caps": an unquoted value runs to the end and left
        no step. It ends at its first line break or next "key=" ("input=gold star op=backwards"),
        or at the first comma, semicolon, sentence end, arrow, pipe or parenthesis whose next
        piece retrieves a brick confidently ("make it all caps", "| rot13")."""
        for m in _VALUE_END.finditer(payload):
            head, rest = payload[: m.start()].strip(), payload[m.end():].strip()
            if rest.startswith("(") and rest.endswith(")"):  # "input=library (english to french)"
                rest = rest[1:-1]
            piece = _clean(_VALUE_END.split(rest, maxsplit=1)[0])
            sure = "\n" in m.group() or _KEY.match(rest)
            if head and rest and (sure or (piece and self._best([piece])[0][1] >= self.split_score)):
                return f"{text} {rest}".strip(), _strip_quotes(head), f"{how}, up to the step after it"
        return text, payload, how

    def _step_after_heading(self, text: str, payload: str, how: str) -> tuple[str, str, str]:
        """"team chant: go team go in all caps": the text before the colon is a heading
        (`_heading`; unlike in `_trim_heading` it may hold a reference word, since the colon
        already parted it from the payload), and the step is written after it, around its
        payload. Then the payload and the step are read inside the text after the colon, as for
        an inline payload, when what is left there retrieves a brick at `split_score`; else the
        colon delimits the payload as usual."""
        head = _clean(text)
        if self._heading(head) is None:
            return text, payload, how
        step, found = self._inline_payload(payload, [])
        if found is None or self._best([_clean(step)])[0][1] < self.split_score:
            return text, payload, how
        return step, found, f"{head!r} before the colon is a heading: the step and its payload follow it"

    def _without_list_heading(self, text: str, explain: list[str]) -> str:
        """`text` without the label that opens a numbered list ("Steps:", "Your tasks:"): a
        heading (`_heading`) before the first number asks for nothing, yet would be a step."""
        numbers = list(_NUMBERED.finditer(text))
        m = re.fullmatch(r"\s*([^:]+?)\s*:\s*", text[: numbers[0].start()]) if len(numbers) >= 2 else None
        if not m or (why := self._heading(m.group(1))) is None:
            return text
        explain.append(f"{m.group(1)!r} opens the numbered list: a heading, no step ({why})")
        return text[numbers[0].start():]

    def _trim_aside(self, step: str, explain: list[str]) -> str:
        """`step` without a closing clause that says why or for what ("capital of it please, for
        a flashcard", "title case for it, it's going on the shop sign"): split off, it retrieves
        some brick from words the cards share; left on, it pulls the step towards the wrong
        brick. Only when the clause holds no "it" (the payload) and the rest asks for a brick
        confidently by itself: "For my puzzle, I need it without vowels" is the request."""
        m = _ASIDE_CLAUSE.search(step)
        if not m or {"it"} & set(_words(m.group(1))) or ":" in m.group(1):
            return step
        rest = _clean(step[: m.start()])
        if not set(_words(rest)) - _GLUE or self._best([rest])[0][1] < self.split_score:
            return step
        explain.append(f"{m.group(1)!r} is no step: it says why or for what")
        return step[: m.start()]

    def _trim_heading(self, step: str, explain: list[str]) -> str:
        """`step` without an opening label before a colon that names the occasion, not a task
        ("tour poster: the capital of it in all caps"): a colon still in a step delimited no
        payload, and the label's words pull the step's retrieval off both of its parts. Only a
        label that reads as a heading (`_heading`) and names nothing the step acts on, before a
        rest that names the payload ("it")."""
        m = _HEADING.match(step)
        if not m or set(_words(m.group(1))) & _NAMES_RESULT or "it" not in _words(m.group(2)):
            return step
        if (why := self._heading(m.group(1))) is None:
            return step
        explain.append(f"{m.group(1)!r} is a heading, no step ({why})")
        return m.group(2)

    def _heading(self, label: str) -> str | None:
        """Why the text before a colon reads as a heading (its best brick and score), when it
        does: at most four words (`_LABEL`) that retrieve no brick at `split_score`; None when it
        may be a step."""
        label = _clean(label)
        if not re.fullmatch(_LABEL, label):
            return None
        brick, score = self._best([label])[0]
        return None if score >= self.split_score else f"best {brick} {score:.2f} < {self.split_score}"

    def _unlabelled(self, step: str, explain: list[str]) -> str:
        """"reverse the word it" is "reverse it" when the payload is one word: the label names the
        payload and asks nothing, yet its "word" pulls the step towards bricks about words. Only
        when the step without it still asks for a brick at `split_score`."""
        plain = _ONE_WORD_LABEL.sub("it", step)
        if plain == step or not self.search:
            return step
        brick, score = self._best([_clean(plain)])[0]
        if score < self.split_score:
            return step
        explain.append(f"{step!r} labels its one-word payload: read as {plain!r} ({brick} {score:.2f})")
        return plain

    def _nested(self, step: str, explain: list[str]) -> list[str]:
        """"rot13 the capital of it" is two steps, the inner one first: "the capital of it", then
        "rot13 it"; the outer step has up to five words ("remove all the vowels from"). Only when
        each part retrieves its own customized brick surely (the head at NESTED_HEAD, the inner
        part at NESTED_INNER) and the whole retrieves worse than either part by NESTED_MARGIN:
        "reverse the order of it" and "capitalize the first letter of it" read best whole and
        stay one step."""
        m = _NESTED.match(step)
        if not m:
            return [step]
        head, inner = f"{m.group(1)} it", m.group(2)
        (whole, w), (outer, a), (first, b) = self._best([_clean(step), head, inner])
        if (a >= NESTED_HEAD and b >= NESTED_INNER and outer != first and not {outer, first} & self._facts()[1]
                and w < max(a, b) - NESTED_MARGIN):
            explain.append(f"{step!r} nests two steps: {inner!r} ({first} {b:.2f}) first, then {head!r} "
                           f"({outer} {a:.2f}); whole it reads {whole} {w:.2f}")
            return [inner, head]
        return [step]

    # -- retrieval-guided segmentation ---------------------------------------------------
    def _search(self, queries: list[str]) -> list[list]:
        """The top SEARCH_K hits per query, remembered until the library changes: a plan asks
        about many short texts, and instruction words recur from one request to the next."""
        if self.library is None:
            return self.search(queries, SEARCH_K) if queries else []
        with self._lock:
            memo = self._current()
            missing = list(dict.fromkeys(q for q in queries if q not in memo))
        found = dict(zip(missing, self.search(missing, SEARCH_K))) if missing else {}
        with self._lock:
            memo.update(found)
        return [found[q] if q in found else memo[q] for q in queries]

    def _best(self, queries: list[str]) -> list[tuple[str, float]]:
        """(top brick, its score) per query; ("", 0) when nothing is indexed."""
        return [(h[0].id, h[0].score) if h else ("", 0.0) for h in self._search(queries)]

    def _segment(self, segment: str, explain: list[str]) -> list[str]:
        """`segment` whole, or split at commas, "and" or after "it" where every piece retrieves
        confidently and neighbours retrieve different bricks; among such splits the one with
        the most pieces, then the fewest cuts after "it" (no comma or "and" marks them), then
        the best mean score — unless the whole retrieves better: better
        than its pieces on average (a modifier after a comma, "one letter at a time", retrieves
        some brick well enough alone, but the step it belongs to reads better whole; not where every
        later piece is a verb acting on the result, "spell that from the end"), or its
        brick better than any piece alone does and no worse than the weakest piece its own (the
        pieces ask for it together)."""
        # at most four cuts, commas and "and" before the unmarked ones (after "it", before "in")
        seps = sorted(sorted(_WEAK.finditer(segment), key=lambda m: not m.group().strip())[:4], key=lambda m: m.start())
        if not seps:
            return [segment]
        options = []
        for cut in itertools.product((False, True), repeat=len(seps)):
            if not any(cut):
                continue
            pieces, start = [], 0
            for sep, on in zip(seps, cut):
                if on:
                    pieces.append(_clean(segment[start:sep.start()]))
                    start = sep.end()
            pieces.append(_clean(segment[start:]))
            if all(set(_words(p)) - _GLUE for p in pieces):  # a cut after "it" needs surer pieces
                unmarked = sum(on and not sep.group().strip() for sep, on in zip(seps, cut))
                options.append((pieces, self.split_score + (IT_CUT_MARGIN if unmarked else 0.0), unmarked))
        whole = _clean(segment)  # retrieved with the pieces: a split must read better than the whole
        queries = sorted({whole} | {p for pieces, _, _ in options for p in pieces})
        hits = dict(zip(queries, self._search(queries)))
        scores = {q: (h[0].id, h[0].score) if h else ("", 0.0) for q, h in hits.items()}
        # every piece confident, and no two neighbours asking for the same brick: that is one
        # step worded twice ("Help me with my French homework, translate") unless the second
        # says "again"
        confident = [(p, unmarked) for p, bar, unmarked in options if all(scores[q][1] >= bar for q in p)]
        good = [(len(p), -unmarked, sum(scores[q][1] for q in p) / len(p), p) for p, unmarked in confident
                if all(scores[a][0] != scores[b][0] or set(_words(b)) & _AGAIN for a, b in zip(p, p[1:]))]
        if not good:
            if confident:
                a, b = next((a, b) for a, b in zip(confident[0][0], confident[0][0][1:]) if scores[a][0] == scores[b][0])
                explain.append(f"{segment!r} stays one step: {a!r} and {b!r} both ask for {scores[a][0]}, "
                               "one step worded twice")
            return [segment]
        *_, mean, pieces = max(good, key=lambda g: g[:3])
        acts = all(_ACTS_ON_RESULT.match(p) and _words(p)[0] not in _GLUE for p in pieces[1:])
        if mean < scores[whole][1] - SPLIT_MARGIN and not acts:
            explain.append(f"{segment!r} stays one step: whole it retrieves {scores[whole][0]} {scores[whole][1]:.2f}, "
                           f"better than its pieces ({mean:.2f} on average)")
            return [segment]
        brick, score = scores[whole]
        alone = max(next((h.score for h in hits[q] if h.id == brick), 0.0) for q in pieces)
        if score > alone + SPLIT_MARGIN and score >= min(scores[q][1] for q in pieces):
            # the pieces ask for it together ("take the first letter of each word | capitalised"),
            # and the whole reads no less clearly than its weakest piece
            explain.append(f"{segment!r} stays one step: whole it retrieves {brick} {score:.2f}, better than any "
                           f"piece alone ({alone:.2f})")
            return [segment]
        explain.append(f"split {segment!r} at commas/'and': " + ", ".join(
            f"{q!r} -> {scores[q][0]} {scores[q][1]:.2f}" for q in pieces) + f" (each >= {self.split_score})")
        return pieces

    def _merge_restated(self, steps: list[tuple[str, bool]], explain: list[str]) -> list[tuple[str, bool]]:
        """Neighbouring steps whose best customized bricks are the same, both retrieved at
        `payload_score` or more, are one step worded twice ("put it in full uppercase. no
        lowercase anywhere", "capital of it? I always guess rio") unless the later one asks
        again; the wording that retrieves better stays. A step that retrieves nothing well
        stays, to fail as unknown. `steps`: (text, sequenced) as from `_marked_steps`."""
        emergent, out = self._facts()[1], []
        customized = [next(((h.id, h.score) for h in hits if h.id not in emergent), ("", 0.0))
                      for hits in self._search([step for step, _ in steps])]  # the lane a step runs in (composer.modes)
        for (step, seq), (brick, score) in zip(steps, customized):
            if (out and brick == out[-1][1] and min(score, out[-1][2]) >= self.payload_score
                    and not set(_words(step)) & _AGAIN):
                if plain := self._without_reference(step, brick, emergent):
                    explain.append(f"{step!r} names the result of {out[-1][0]!r}: read as {plain[0]!r}, "
                                   f"which retrieves {plain[1]} {plain[2]:.2f}")
                    out.append((plain[0], plain[1], plain[2], seq))
                    continue
                kept = max(out[-1], (step, brick, score, seq), key=lambda s: s[2])
                explain.append(f"{out[-1][0]!r} and {step!r} both retrieve {brick}: one step, {kept[0]!r}")
                out[-1] = (kept[0], brick, kept[2], seq or out[-1][3])
            else:
                out.append((step, brick, score, seq))
        return [(step, seq) for step, _, _, seq in out]

    def _without_reference(self, step: str, earlier: str, emergent: frozenset[str]) -> tuple[str, str, float] | None:
        """(`step` with its words naming the earlier step's result read as "it", the brick that
        retrieves, its score) when that is another customized brick than `earlier`, retrieved
        with `split_score` or more: "write that French word backwards" after a translation is
        no second translation. Each run of one to three words after "that", "this", "those" or
        "these" is tried; the longest that qualifies wins. None when none does."""
        tokens = step.split()
        options = []
        for i, token in enumerate(tokens):
            if token.lower() in _REFERENCES:
                for j in range(i + 2, min(len(tokens), i + 4) + 1):
                    option = " ".join(tokens[:i] + ["it" + tokens[j - 1][len(tokens[j - 1].rstrip(",.;:?!")):]]
                                      + tokens[j:])
                    if set(_words(option)) - _GLUE:
                        options.append(option)
        found = []
        for option, hits in zip(options, self._search(options)):
            brick, score = next(((h.id, h.score) for h in hits if h.id not in emergent), ("", 0.0))
            if brick and brick != earlier and score >= self.split_score:
                found.append((-len(option.split()), score, option, brick))
        if not found:
            return None
        _, score, option, brick = max(found)  # the longest reference ("that French word", not "that French")
        return option, brick, score

    def _drop_asides(self, steps: list[tuple[str, bool]], explain: list[str]) -> list[tuple[str, bool]]:
        """Without the pieces of a message that are no step: a short greeting first or
        sign-off last that retrieves under `split_score` ("Dear assistant", "Thanks, Juliette"),
        and pieces that no sequencing word sets in the sequence and no brick would run (best
        score under `aside_score`: "Ticket #4412", "I need it for a poem"; after the first piece
        under LATER_ASIDE_SCORE: a request opens with its ask, and what trails it unsequenced
        and weakly is commentary, "… Need it for the quiz round"), or that say why or
        for what without the payload ("It's for the letterhead", "For a hashtag"), or that name
        neither the payload nor a result ("it", "that", "the result") beside a step that does and
        retrieve under CONTEXT_SCORE ("Geography labels need capitals. Could you capitalize it?"
        — a sentence that only says what the payload is, "My password hint is blue horse.", names
        none either).
        Kept when no step would run, so that the request fails as unknown; "then copy the text"
        stays a step."""
        best = self._best([step for step, _ in steps])
        if max(score for _, score in best) < self.aside_score:
            return steps
        refers = [bool(set(_words(step)) & _NAMES_RESULT) for step, _ in steps]
        # "My password hint is it" says what the payload is, so the other pieces may be about it,
        # but names nothing for itself to act on
        names = [r and not _STATES_IT.search(step) for r, (step, _) in zip(refers, steps)]
        kept = []
        for n, ((step, seq), (brick, score)) in enumerate(zip(steps, best)):
            closing = (n == 0 and _SALUTATION.match(step)) or (n == len(steps) - 1 and _SIGN_OFF.match(step))
            if closing and len(_words(step)) <= 4 and score < self.split_score:
                explain.append(f"{step!r} is no step: a greeting or sign-off (best {brick} {score:.2f})")
            elif not seq and _PURPOSE_START.match(step) and "it" not in _words(step):
                explain.append(f"{step!r} is no step: it says why or for what")
            elif not seq and score < (bar := self.aside_score if n == 0 else max(self.aside_score, LATER_ASIDE_SCORE)):
                explain.append(f"{step!r} is no step: no sequencing word sets it in the sequence and it retrieves "
                               f"no brick to run (best {brick or 'none'} {score:.2f} < {bar})")
            elif not seq and not names[n] and score < CONTEXT_SCORE and any(refers[:n] + refers[n + 1:]):
                what = "only says what the payload is" if refers[n] else "names neither the payload nor a result"
                explain.append(f"{step!r} is no step: it {what}, another step names it, "
                               f"and it retrieves no brick surely (best {brick} {score:.2f} < {CONTEXT_SCORE})")
            else:
                kept.append((step, seq))
        return kept or steps

    # -- inline payloads ---------------------------------------------------------------
    def _tagged_payload(self, text: str) -> tuple[str, str | None, str]:
        """(the request with its payload replaced by "it", the payload, why) when the tagger's
        most probable payload span in the whole request has probability TAG_CONFIDENCE or more
        among the readings with one span or none;
        else (text, None, ""). Delimiters mislead when a request uses a colon for something
        else ("for the escape room: get the capital of nepal"); the tagger read them in
        context when it was trained."""
        original, text = text, _LAST_ASIDE.sub(r", \1", text)  # "purple rain (spelled backwards)"
        tokens = list(re.finditer(r"\S+", text))
        tags = self.tagger(text)
        if not tokens or len(tags) != len(tokens):
            return original, None, ""
        # A request has one payload span or none. Labelling words i..j-1 as payload weighs exp(their
        # log-odds' sum) times a factor shared by every labelling, and labelling none weighs exp(0), so
        # P(span) is a softmax over the spans and the empty reading: a stray word read as payload in a
        # long message ("We label every server in all caps. This one is blue falcon.") costs only its
        # own weight, and a request whose every word is no payload ("Make it all caps": "Make" at
        # log-odds -2.3; "caps please") has no likely span.
        prefix = list(itertools.accumulate(tags, initial=0.0))
        words = [t.group() for t in tokens]
        verbs, pairs = _clause_verbs(words), _bracket_pairs(words)
        spans = {(i, j): prefix[j] - prefix[i] for i in range(len(tags)) for j in range(i + 1, len(tags) + 1)
                 if not _holds_clause(verbs, i, j) and not _cuts_brackets(pairs, i, j)}
        if not spans:  # every span holds a clause or one bracket of a pair
            return original, None, ""
        (i, j), top = max(spans.items(), key=lambda s: s[1])
        log_p = -math.log(math.exp(-top) + sum(math.exp(v - top) for v in spans.values()))
        raw = text[tokens[i].start():tokens[j - 1].end()]
        payload = raw.strip(_EDGE)
        if math.exp(log_p) < TAG_CONFIDENCE or not _words(payload) or self._only_refers(payload):
            return original, None, ""
        start = tokens[i].start() + len(raw) - len(raw.lstrip(_EDGE))  # punctuation after the payload stays
        owner = _owner(payload.split()[-1]) if re.match(r"\s+\w", text[start + len(payload):]) else None
        if owner:  # "cold's opposite": cold, and what is left asks for "its opposite"
            payload = payload[:len(payload) - len(payload.split()[-1])] + owner
        after = text[start + len(payload):]
        if owner:  # the 's that followed the owner
            after = "its" + after[2:]
        before, after = text[:start].rstrip(" \"'“[("), after.lstrip(" \"'”])")
        sep, heading = _SEP_END.search(before), ""
        if not before or sep or owner:  # a piece of its own: "... backwards - magic carpet"
            head = before[:sep.start()] if sep else before
            if lead := _SEP_START.match(after):  # "never give up: words reversed"
                after = after[lead.end():]
                mark = lead.group().strip()
                if head.strip() and after.strip() and not _SOFT.fullmatch(mark) and mark != ":":
                    after = f"{mark} {after}"  # "french translation: sugar | reverse it": an arrow, pipe or ";" still sequences
            rest = f"{head} {after}"
            if sep and sep.group().strip() == ":" and set(_words(after)) - _GLUE and (why := self._heading(head)):
                rest, heading = after, f"; {_clean(head)!r} before the colon is a heading ({why})"  # "team chant: ..."
        else:  # the payload was an object of the sentence: "rot13 magic word, uppercase it", "opposite of wise -> rot13"
            after = _ASIDE_DASH.sub("", after)  # "the plural of church - it's for a brochure": an aside follows
            rest = f"{before} it{'' if after[:1] in (',', '.', ';', '?', '!') else ' '}{after}"
        if not set(_words(rest)) - _GLUE:  # no instruction left ("hi"): not a task the tagger can read
            return original, None, ""
        return rest.strip(" ,;"), payload, f"payload read by the tagger in the whole request (p={math.exp(log_p):.2f}){heading}"

    def _only_refers(self, payload: str) -> bool:
        """A lone pronoun or name of a result ("uppercase this", "capitalize me") refers to a
        payload the request does not hold, unless a brick knows it as an input ("answer")."""
        word = payload.strip(_EDGE).lower()
        return word in _REFERS_ONLY and not any(word in keys for keys in self._facts()[0].values())

    def _payload_piece(self, marked: list[tuple[str, bool]], explain: list[str]) -> tuple[list[tuple[str, bool]], str | None]:
        """The first or last piece as the payload when it reads as no step and the others all
        do: with the tagger, every word of it reads as payload and it retrieves worse than each
        other piece; without, it retrieves no brick with `payload_score` ("happy cat -> upper",
        "strip the vowels, then reverse it - magic carpet"). `marked`: as from `_marked_steps`."""
        segments = [segment for segment, _ in marked]
        best = dict(zip(segments, self._best(segments)))
        for n in (0, len(segments) - 1):
            piece, others = segments[n], segments[:n] + segments[n + 1:]
            words = [w for w in _words(piece) if w not in _GLUE]
            weakest = min(best[o][1] for o in others)
            if not words or weakest < self.payload_score or best[piece][1] >= (
                    weakest if self.tagger else self.payload_score):
                continue
            if self.tagger and any(t <= 0 for t, w in zip(self.tagger(piece), piece.split())
                                   if _words(w) and not set(_words(w)) <= _GLUE):
                continue  # some word of it reads as an instruction
            explain.append(f"payload {piece!r} is a piece of its own: it retrieves no brick "
                           f"(best {best[piece][0]} {best[piece][1]:.2f} < {self.payload_score})")
            return marked[:n] + marked[n + 1:], piece
        return marked, None

    def _current(self) -> dict[str, list]:
        """The search memo for the library as it is now (caller holds `_lock`); a changed
        library, or a full memo, drops the memo and the known inputs together."""
        generation = self.library.generation()
        if generation != self._generation or len(self._memo) > MEMO_SIZE:
            self._generation, self._memo, self._facts_memo = generation, {}, None
        return self._memo

    def _facts(self) -> tuple[dict[str, Mapping[str, str]], frozenset[str]]:
        """(known inputs per brick — the `input` of its data.jsonl rows —, the emergent bricks),
        re-read when the library changes."""
        if self.library is None:
            return {}, frozenset()
        with self._lock:
            self._current()
            if self._facts_memo is not None:
                return self._facts_memo
        keys = self.library.known_inputs()
        emergent = {card.id for card in self.library.cards() if card.kind == "emergent"}
        with self._lock:
            self._facts_memo = keys, frozenset(emergent)
        return self._facts_memo

    @staticmethod
    def _later_pieces(tokens: list[str]) -> list[tuple[int, str, str]]:
        """(where the payload would have to end, the text before, the text up to the next
        separator) for every comma or "and" in a step: each may be the start of another step."""
        seps = [n for n, t in enumerate(tokens) if t.lower() == "and" or (t.endswith(",") and n + 1 < len(tokens))]
        pieces = []
        for a, b in zip(seps, seps[1:] + [len(tokens)]):
            end = b if b == len(tokens) or tokens[b].lower() == "and" else b + 1
            limit = a if tokens[a].lower() == "and" else a + 1
            pieces.append((limit, _clean(" ".join(tokens[:limit])), _clean(" ".join(tokens[a + 1:end]))))
        return pieces

    def _affinity(self, words: list[str], hits: list[list]) -> Callable[[str, str], float]:
        """How much a word reads as an instruction for `brick`, 0..1: the word's own retrieval
        score for that brick (`hits`: the words' searches), between AFFINITY_LOW (a payload word)
        and AFFINITY_HIGH. Relative to the brick, so "good" is payload for uppercase though it
        retrieves sentiment, and "encrypt" is instruction for rot13 though no card says it."""
        scores = {(w, h.id): h.score for w, found in zip(words, hits) for h in found}

        def affinity(word: str, brick: str) -> float:
            score = scores.get((word, brick), 0.0)  # not among the word's top hits: unrelated
            return min(1.0, max(0.0, (score - AFFINITY_LOW) / (AFFINITY_HIGH - AFFINITY_LOW)))

        return affinity

    def _inline_payload(self, step: str, explain: list[str]) -> tuple[str, str | None]:
        """(the step without its payload, the payload), or (step, None).

        From a comma or "and" whose piece retrieves a brick confidently the text is a later
        step ("Title-case big red dog and reverse it"); "salt and pepper" may be a payload. Of
        several, the first whose text before still reads as a step ("Write bread and butter
        with no vowels and ..."), else the first. The payload is looked for before it, then,
        if nothing there reads as one, in the whole step ("I'm going to Finland, what's its
        capital?").
        """
        tokens = step.split()
        later = self._later_pieces(tokens)
        # one embedding call for the pieces, the words and (usually) the whole first step
        self._search([t for _, head, piece in later for t in (head, piece)] + sorted(set(_words(step)) - _GLUE)
                     + [step.strip(" ,.;:?!")])
        confident = [(end, head) for end, head, piece in later if self._best([piece])[0][1] >= self.split_score]
        limit = next((end for end, head in confident if self._best([head])[0][1] >= self.payload_score),
                     confident[0][0] if confident else len(tokens))
        tags = self.tagger(step) if self.tagger else [0.0] * len(tokens)
        if limit < len(tokens):
            rest, payload = self._payload_span(tokens[:limit], tags[:limit], explain)
            if payload is not None:
                return rest + ("," if tokens[limit - 1].endswith(",") else "") + " " + " ".join(tokens[limit:]), payload
        return self._payload_span(tokens, tags, explain)

    def _payload_span(self, head: list[str], tags: list[float], explain: list[str]) -> tuple[str, str | None]:
        """The best-scoring span of `head` (a step's tokens) as its payload, or (head, None).

        A span's score: retrieval of what is left, minus PAYLOAD_COST per instruction-like word
        inside the span and REST_COST per payload-like word left outside (both by `_affinity`
        to the retrieved brick), plus a bonus for a table brick's known input. Leaving the step
        whole is scored the same way and wins ties.
        """
        step = " ".join(head)
        whole = step.strip(" ,.;:?!")
        bare = [t.strip("\"'.,;:?!()").lower() for t in head]
        keys = self._facts()[0]
        known = set().union(*keys.values()) if keys else set()
        spans, verbs, pairs = [], _clause_verbs(head), _bracket_pairs(head)
        for i in range(len(head)):
            for j in range(i + 1, min(len(head), i + MAX_SPAN) + 1):
                owner = _owner(head[j - 1]) if j < len(head) else None  # "Japan's capital": Japan
                last = owner.lower() if owner else bare[j - 1]
                span = " ".join(bare[i:j - 1] + [last])
                if (i, j) == (0, len(head)) or not span.strip():
                    continue
                if span not in known and ((bare[i] in _GLUE and tags[i] <= GLUE_TAG) or last in _NEVER_LAST
                                          or (last in _GLUE and tags[j - 1] <= GLUE_TAG)
                                          or set(_words(span)) <= _GLUE or _holds_clause(verbs, i, j)) \
                        or _cuts_brackets(pairs, i, j):
                    continue
                left, right = head[:i], head[j:]
                while left and left[-1].strip(",.;:?!").lower() in _TRAILING and not right:
                    left = left[:-1]  # "capital of" -> "capital"
                it = "its" if owner else "it" + head[j - 1][len(head[j - 1].rstrip(",;")):]  # keep a comma ending the span
                rest = " ".join(left + ([it] if right and (left or owner) else []) + right).strip(" ,.;:?!")
                if set(_words(rest)) - _GLUE:
                    words = [t.strip("\"'.,;:?!()") for t in head[i:j - 1]] + [owner or head[j - 1].strip("\"'.,;:?!()")]
                    spans.append((i, j, rest, " ".join(words)))
        if not spans:
            return step, None
        words = sorted(set(_words(whole)) - _GLUE)
        affinity = self._affinity(words, self._search(words))

        def tagged(i: int, j: int) -> float:
            """TAG_WEIGHT times the tagger's log-probability that exactly words i..j-1 are payload."""
            return TAG_WEIGHT * sum(_log_sigmoid(t if i <= n < j else -t) for n, t in enumerate(tags))

        def cost(i: int, j: int, rest: str, brick: str) -> float:
            """Instruction-like words inside the span, payload-like words left outside it, and
            payload-like words right next to it (a payload ends at the step's edge, at glue or
            at the step's first word, its verb: "Abbreviate sun moon | star" is cut short)."""
            inside = [w for t in bare[i:j] for w in _words(t)]
            beside = [w for n in (i - 1, j) if 0 < n < len(bare) for w in _words(bare[n])]
            return PAYLOAD_COST * sum(affinity(w, brick) for w in inside if w not in _GLUE) + \
                LINK_COST * sum(w in _LINKS for w in inside) + \
                REST_COST * sum(1 - affinity(w, brick) for w in _words(rest) if w not in _GLUE) + \
                BOUNDARY_COST * sum(1 - affinity(w, brick) for w in beside if w not in _GLUE)

        guess = self._best([whole])[0][0]
        cheap = sorted(spans, key=lambda s: (0.3 if s[3].lower() in known else 0.0) - cost(s[0], s[1], s[2], guess)
                       + tagged(s[0], s[1]),
                       reverse=True)[:CANDIDATES]  # the cheap score picks what to retrieve
        queries = list(dict.fromkeys([whole, *(s[2] for s in cheap)]))
        best = dict(zip(queries, self._best(queries)))
        scored = []
        for i, j, rest, payload in cheap:
            brick, score = best[rest]
            fits = payload.lower() in keys.get(brick, ())  # a table brick's known input
            total = score - cost(i, j, rest, brick) + tagged(i, j) + (0.2 if fits else 0.0) - \
                (0.3 if brick in keys and not fits else 0.0)
            scored.append((round(total, 4), score, j - i, -i, rest, payload, brick, fits))
        total, score, _, _, rest, payload, brick, fits = max(scored)
        if score < self.payload_score:
            return step, None
        brick0, score0 = best[whole]
        total0 = round(score0 - cost(0, 0, whole, brick0) + tagged(0, 0), 4)
        if total0 >= total and not fits:
            explain.append(f"no payload inside {step!r}: as a whole it scores {total0:.2f} ({brick0}), "
                           f"no worse than {total:.2f} without {payload!r}")
            return step, None
        why = f"; {payload.lower()!r} is a known input of {brick}" if fits else ""
        explain.append(f"payload {payload!r} found inline in {step!r}: the rest, {rest!r}, retrieves {brick} "
                       f"{score:.2f} (score {total:.2f} against {total0:.2f} whole){why}")
        return rest, payload
