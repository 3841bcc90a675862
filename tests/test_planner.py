import pytest

from composer.planner import (HeuristicPlanner, PlanError, _bracket_pairs, _clause_verbs, _cuts_brackets,
                              _holds_clause, split_payload, split_steps)
from composer.composer import index_planner
from composer.workspace import ROOT, Workspace

planner = HeuristicPlanner()


def steps(text, **kw):
    plan = planner.plan(text, **kw)
    return plan.payload, [s.instruction for s in plan.steps]


@pytest.mark.parametrize("text, payload, expected", [
    ("Reverse the words, then uppercase: hello big world", "hello big world", ["Reverse the words", "uppercase"]),
    ("First reverse it, then make it uppercase. After that remove the vowels: \"good day\"", "good day",
     ["reverse it", "make it uppercase", "remove the vowels"]),
    ("1. reverse 2. uppercase 3) acronym input=big red dog", "big red dog", ["reverse", "uppercase", "acronym"]),
    ("Uppercase \"hello world\"; reverse it afterwards", "hello world", ["Uppercase", "reverse it"]),
    ("Give the capital and then uppercase it: france", "france", ["Give the capital", "uppercase it"]),
    ("translate to french. then reverse: cat", "cat", ["translate to french", "reverse"]),
    ("make it plural, next capitalize it, finally reverse: goose", "goose", ["make it plural", "capitalize it", "reverse"]),
    ("Remove the vowels; afterwards reverse the words input='red fox'", "red fox", ["Remove the vowels", "reverse the words"]),
    # pipelines written with arrows, pipes and "followed by"
    ("capital → backwards → caps: egypt", "egypt", ["capital", "backwards", "caps"]),
    ("rot13 it | uppercase it | input=late night radio", "late night radio", ["rot13 it", "uppercase it"]),
    ("caps > reverse the words: maple syrup", "maple syrup", ["caps", "reverse the words"]),
    ("make it plural followed by rot13: goose", "goose", ["make it plural", "rot13"]),
    ("french translation: sugar | reverse the letters", "sugar", ["french translation", "reverse the letters"]),
])
def test_splits_steps_and_finds_payload(text, payload, expected):
    assert steps(text) == (payload, expected)


def test_separate_input_is_the_payload():
    plan = planner.plan("reverse, then uppercase", input="ab")
    assert plan.payload == "ab"
    assert [s.instruction for s in plan.steps] == ["reverse", "uppercase"]
    assert plan.explain == ["payload passed separately"]


def test_separate_input_wins_over_colon():
    assert steps("Reverse it", input="hello") == ("hello", ["Reverse it"])


def test_deterministic():
    text = "reverse the words then uppercase: a b c"
    assert planner.plan(text) == planner.plan(text)


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_instruction(bad):
    with pytest.raises(PlanError, match="empty"):
        planner.plan(bad)


def test_missing_payload_is_explained():
    with pytest.raises(PlanError, match="no input found"):
        planner.plan("reverse the words")


def test_helpers():
    assert split_payload("uppercase 'big cat'") == ("uppercase", "big cat", "payload in quotes")
    assert split_payload("rot13(hello world) -> upper") == ("rot13 -> upper", "hello world", "payload in parentheses")
    assert split_payload('reverse_words("blue sky")') == ("reverse_words", "blue sky", "payload in parentheses")
    assert split_payload("uppercase: f(x) = y") == ("uppercase", "f(x) = y", "payload after the colon")
    # square brackets mark a payload like quotes (prompt templates: "backwards please [butterfly garden]")
    assert split_payload("backwards please [butterfly garden]") == ("backwards please", "butterfly garden",
                                                                    "payload in quotes")
    assert split_payload("sentiment: [smart and funny]")[1] == "smart and funny"
    assert split_steps("p then q; r. s") == ["p", "q", "r", "s"]
    assert split_steps("p -> q => r |> s - t -- v") == ["p", "q", "r", "s", "t", "v"]
    # a piece of glue words only asks for nothing ("could you"); "next month" is no cue
    assert split_steps("And could you then reverse it") == ["reverse it"]
    assert split_steps("Step 1: acronym. Step 2: reverse") == ["acronym", "reverse"]
    assert split_steps("I fly next month, then uppercase it") == ["I fly next month", "uppercase it"]
    assert split_steps("ice-cream (spelled backwards)") == ["ice-cream, spelled backwards"]
    assert split_steps("convert it to uppercase? thanks!") == ["convert it to uppercase"]
    # steps in the order they run: "before you X, Y" is Y first; "X after Ying" is Ying first
    assert split_steps("before you rot13 it, title-case it") == ["title-case it", "rot13 it"]
    assert split_steps("initials of it after flipping the word order") == ["flipping the word order", "initials of it"]
    assert split_steps("rot13 it before spelling it backwards") == ["rot13 it", "spelling it backwards"]
    assert split_steps("uppercase it before the meeting") == ["uppercase it before the meeting"]
    # a payload after a colon ends where an explicit "then" starts the next step
    assert split_payload("acronym: big red dog. then backwards") == ("acronym then backwards", "big red dog",
                                                                    "payload after the colon")
    assert split_payload("sentiment: great food. slow service")[1] == "great food. slow service"
    # a span of words cuts brackets when it holds one of a matched pair; a lone bracket pairs with nothing
    pairs = _bracket_pairs("a sign text (no entry) - caps :)".split())
    assert pairs == [(3, 4)]
    assert _cuts_brackets(pairs, 4, 5) and not _cuts_brackets(pairs, 3, 5) and not _cuts_brackets(pairs, 7, 8)


# -- retrieval-guided planning on the default library's real index --------------------------

needs_default = pytest.mark.skipif(not (ROOT / "bricks" / "base" / "config.json").is_file(), reason="default not built")


@pytest.fixture(scope="module")
def guided():
    return index_planner(Workspace.default().index)


@needs_default
@pytest.mark.parametrize("text, payload, first_step_words", [
    ("What's the capital of Japan?", "Japan", {"capital"}),
    ("Translate horse into French", "horse", {"translate", "french"}),
    ("Give me the opposite of early", "early", {"opposite"}),
    ("uppercase good night", "good night", {"uppercase"}),
    ("Reverse the order of the words in red green blue", "red green blue", {"reverse", "words"}),
    ("Spell paris backwards", "paris", {"spell", "backwards"}),
    ("plural of tooth", "tooth", {"plural"}),
    # a verb no card uses stays outside (its retrieval score for the brick says "instruction"),
    # generic verbs are never payload, and payload words sharing a card word stay inside
    ("Encrypt happy cat with rot13", "happy cat", {"encrypt", "rot13"}),
    ("Change good night to all caps", "good night", {"caps"}),
    ("Erase every vowel from my old car", "my old car", {"erase", "vowel"}),
    ("Take the vowels out of open the door", "open the door", {"vowels"}),
])
def test_inline_payloads(guided, text, payload, first_step_words):
    plan = guided.plan(text)
    assert plan.payload == payload and len(plan.steps) == 1
    assert first_step_words <= set(plan.steps[0].instruction.lower().split())
    assert payload.lower() not in plan.steps[0].instruction.lower()
    assert any("found inline" in line or "read by the tagger" in line for line in plan.explain)


@needs_default
def test_inline_payload_composes_with_a_chain(guided):
    plan = guided.plan("Translate milk to French and then uppercase it")
    assert plan.payload == "milk" and [s.instruction for s in plan.steps] == ["Translate it to French", "uppercase it"]


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("Capitalize every word of new york and spell it backwards", "new york",
     ["Capitalize every word of it", "spell it backwards"]),
    ("Uppercase rock and roll and reverse it", "rock and roll", ["Uppercase it", "reverse it"]),
    ("Strip the vowels from river stone, reverse the order of the words and shout it", "river stone",
     ["Strip the vowels from it", "reverse the order of the words", "shout it"]),
])
def test_an_inline_payload_stops_where_the_next_step_starts(guided, text, payload, steps):
    """A comma or "and" followed by a piece that retrieves a brick ends the payload; one
    followed by a piece that retrieves nothing ("and roll") may sit inside it."""
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == steps


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("What is Kenya's capital city?", "Kenya", ["What is its capital city"]),
    ("cold's opposite please", "cold", ["its opposite please"]),
    ("Tell me Chile's capital and then reverse it", "Chile", ["Tell me its capital", "reverse it"]),
    # an 's inside the payload, or at its end with nothing after, is the payload's own
    ("uppercase the dog's bowl", "the dog's bowl", ["uppercase it"]),
    ("Reverse the words in today's weather report", "today's weather report", ["Reverse the words in it"]),
])
def test_a_possessive_payload_is_its_owner(guided, text, payload, steps):
    """"Kenya's capital" asks for the capital of Kenya: the payload is the owner, and what is
    left asks for "its capital"; "what's" and "let's" are no owners."""
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == steps


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    # a step after the payload's "it", when each piece retrieves surely and differently
    ("capital of peru backwards", "peru", ["capital of it", "backwards"]),
    ("the plural of mouse in capital letters", "mouse", ["the plural of it", "in capital letters"]),
    # ... but not what it becomes
    ("Get the capital of chile, then abbreviate it to its initials in caps", "chile",
     ["Get the capital of it", "abbreviate it to its initials in caps"]),
    # an arrow or semicolon after an inline payload still separates steps
    ("opposite of brave -> rot13", "brave", ["opposite of it", "rot13"]),
    ("rot13 quiet night; strip the vowels from the result", "quiet night", ["rot13 it", "strip the vowels from the result"]),
    # a later step naming the earlier result ("that acronym") is no second acronym
    ("Step 1: acronym from frequently asked questions. Step 2: write that acronym backwards.",
     "frequently asked questions", ["acronym from it", "write it backwards"]),
    # "text =" names the payload like "input="; a piece of glue words asks for nothing
    ("uppercase it and then reverse it. text = night owl", "night owl", ["uppercase it", "reverse it"]),
    ("Translate bread to French. And could you then uppercase it?", "bread", ["Translate it to French", "uppercase it"]),
    # a payload that reads as an instruction (the tagger saw such payloads in training, not this one)
    ("uppercase turn off the lights", "turn off the lights", ["uppercase it"]),
    # a function call delimits its payload: the tagger is not asked
    ("toUpper(red balloon)", "red balloon", ["toUpper"]),
    # an unquoted "input=" value that left no step ends at a line break, or where a step starts
    ("input=pink flamingo party, make it all caps", "pink flamingo party", ["make it all caps"]),
    ("input=brave. antonym, no vowels", "brave", ["antonym", "no vowels"]),
    ("input=salt, pepper and vinegar; uppercase it", "salt, pepper and vinegar", ["uppercase it"]),
    ("input=graphics processing unit\nwhat's the acronym?", "graphics processing unit", ["what's the acronym"]),
    # a closing clause that says why or for what is no step, and no part of the step's query
    ("capital of india please, for a flashcard", "india", ["capital of it please"]),
    ("title case for maple street bakery, it's going on the shop sign", "maple street bakery", ["title case for it"]),
    ("opposite of hot, for a poem, then reverse it", "hot", ["opposite of it", "reverse it"]),
    ("Could you give me the plural of goose? It's for a crossword clue.", "goose", ["Could you give me the plural of it"]),
    # a step nested in another runs first; a whole that reads best whole stays one step
    ("rot13 the capital of peru", "peru", ["the capital of it", "rot13 it"]),
    ("please uppercase the antonym of hot", "hot", ["the antonym of it", "uppercase it"]),
    ("remove all the vowels from the capital of italy", "italy", ["the capital of it", "remove all the vowels from it"]),
    ("reverse the order of red green blue", "red green blue", ["reverse the order of it"]),
    ("capitalize the first letter of dog", "dog", ["capitalize the first letter of it"]),
    # the whole reads as the inner brick, but worse than the inner part alone: the head is a step
    ("shout the plural of goose", "goose", ["the plural of it", "shout it"]),
    # a label before a colon that asks for no brick is a heading, no step and no part of one
    ("shop sign: the plural of mouse in capital letters", "mouse", ["the plural of it", "in capital letters"]),
    ("quiz night: capitl of chile", "chile", ["capitl of it"]),
    # a cut after "it" may fall before "as" where the pieces ask for different bricks
    ("capital of peru as an acronym", "peru", ["capital of it", "as an acronym"]),
    # a heading before a colon that delimits no payload: the step and its payload come after it
    ("team chant: go team go in all caps", "go team go", ["in all caps"]),
    # a label naming a one-word payload asks nothing: "the word" is no ask about words
    ("reverse the word love", "love", ["reverse it"]),
    ("spell the word level backwards, then uppercase it", "level", ["spell it backwards", "uppercase it"]),
    ("reverse the word order of red fox", "red fox", ["reverse the word order of it"]),
    # a label opening a numbered list asks for no brick: a heading, no step
    ("Steps:\n1) plural\n2) uppercase\ninput=baby", "baby", ["plural", "uppercase"]),
    # "+" joins steps as "and" does, where retrieval agrees
    ('uppercase + remove vowels for "night shift"', "night shift", ["uppercase", "remove vowels for it"]),
])
def test_steps_around_an_inline_payload(guided, text, payload, steps):
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == steps


@needs_default
def test_one_step_worded_twice_is_one_step(guided):
    plan = guided.plan("Help me with my French homework, translate: morning")
    assert plan.payload == "morning" and len(plan.steps) == 1
    plan = guided.plan("reverse it, and reverse it again: abc")
    assert [s.instruction for s in plan.steps] == ["reverse it", "reverse it again"]


@needs_default
def test_a_payload_before_the_instruction(guided):
    """Nothing before the next step reads as a payload: the whole step is searched."""
    plan = guided.plan("I'm travelling to Finland, what's its capital?")
    assert plan.payload == "Finland" and len(plan.steps) == 1
    plan = guided.plan("Write bread and butter with no vowels and switch that over to upper case")
    assert plan.payload == "bread and butter" and len(plan.steps) == 2


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("input=silver moon op=backwards", "silver moon", ["op=backwards"]),  # another key= ends the value
    ("input=night market | rot13", "night market", ["rot13"]),
    ("input=paper plane -> acronym", "paper plane", ["acronym"]),
    ("word='friend' -> french", "friend", ["french"]),  # a quoted value cut at the arrow loses its quotes
    ("no vowels, then capitalise each word => sandy beach", "sandy beach",  # "word =>" is an arrow, no key=
     ["no vowels", "capitalise each word"]),
    ("word=mouse (plural)", "mouse", ["plural"]),
    ("country=kenya, capital please", "kenya", ["capital please"]),
    ("sentence=back in black; op=reverse the word order", "back in black", ["op=reverse the word order"]),
])
def test_a_key_value_payload_ends_where_a_step_starts(guided, text, payload, steps):
    plan = guided.plan(text)
    assert (plan.payload, [s.instruction for s in plan.steps]) == (payload, steps)


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("happy cat -> upper", "happy cat", ["upper"]),
    ("strip the vowels, then spell it backwards - magic carpet", "magic carpet",
     ["strip the vowels", "spell it backwards"]),
    ("Norway - what's the capital city?", "Norway", ["what's the capital city"]),
])
def test_a_payload_piece_of_its_own(guided, text, payload, steps):
    """A first or last piece that reads as payload is the payload, its separator no step."""
    plan = guided.plan(text)
    assert (plan.payload, [s.instruction for s in plan.steps]) == (payload, steps)
    assert any("piece of its own" in line or "read by the tagger" in line for line in plan.explain)


@needs_default
def test_a_closing_aside_reads_as_after_a_comma(guided):
    assert steps_of(guided.plan("purple rain (spelled end to start)")) == ("purple rain", ["spelled end to start"])
    assert steps_of(guided.plan("cipher (rot13): wooden horse")) == ("wooden horse", ["cipher, rot13"])


def steps_of(plan):
    return plan.payload, [s.instruction for s in plan.steps]


@needs_default
def test_a_step_with_its_payload_inline_is_not_a_payload_piece(guided):
    plan = guided.plan("rot13 moon walk, then caps")
    assert plan.payload == "moon walk" and len(plan.steps) == 2


@needs_default
def test_commas_and_and_split_only_when_every_piece_retrieves(guided):
    plan = guided.plan("Strip the vowels, flip the word order, then shout it: big cat")
    assert [s.instruction for s in plan.steps] == ["Strip the vowels", "flip the word order", "shout it"]
    assert any(line.startswith("split ") for line in plan.explain)
    plan = guided.plan("remove the vowels and reverse it: abc")
    assert [s.instruction for s in plan.steps] == ["remove the vowels", "reverse it"]
    plan = guided.plan("Uppercase salt and pepper")
    assert plan.payload == "salt and pepper" and [s.instruction for s in plan.steps] == ["Uppercase it"]


@needs_default
def test_and_so_on_is_no_cut(guided):
    plan = guided.plan("Drop the vowels, put the last word of that first and so on, switch that to capitals: hot tea pot")
    assert [s.instruction for s in plan.steps] == ["Drop the vowels", "put the last word of that first and so on",
                                                   "switch that to capitals"]


@needs_default
def test_but_splits_like_and_when_both_pieces_retrieve(guided):
    plan = guided.plan("antonym of early but in uppercase")
    assert plan.payload == "early" and [s.instruction for s in plan.steps] == ["antonym of it", "in uppercase"]


@needs_default
def test_a_modifier_after_a_comma_stays_with_its_step(guided):
    """"one letter at a time" retrieves some brick alone, but the step reads better whole."""
    plan = guided.plan("Spell sea breeze backwards, one letter at a time")
    assert plan.payload == "sea breeze" and len(plan.steps) == 1
    assert any("stays one step" in line for line in plan.explain)


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("spell owl backwards in caps", "owl", ["spell it backwards", "in caps"]),
    ("the opposite of strong in capital letters", "strong", ["the opposite of it", "in capital letters"]),
    # "in ..." after a word naming parts of the text says which parts: no cut
    ("Initials in capitals: late bus", "late bus", ["Initials in capitals"]),
    ("first letters in caps: the great lakes", "the great lakes", ["letters in caps"]),  # "first" opens a list
    # a step that reads best whole stays whole
    ("write tree in french", "tree", ["write it in french"]),
    ("put good morning in capital letters", "good morning", ["put it in capital letters"]),
])
def test_a_closing_in_phrase_is_a_step_when_retrieval_agrees(guided, text, payload, steps):
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == steps


@needs_default
def test_a_before_or_after_clause_runs_in_order_or_is_an_aside(guided):
    """"before you X, Y" runs Y first; a clause no brick would run ("after checking the
    spelling") is an aside, not a step that fails."""
    plan = guided.plan("before you rot13 it, title-case the capital of ireland")
    assert plan.payload == "ireland"
    assert [s.instruction for s in plan.steps] == ["the capital of it", "title-case it", "rot13 it"]
    plan = guided.plan("Uppercase good morning after checking the spelling")
    assert plan.payload == "good morning" and [s.instruction for s in plan.steps] == ["Uppercase it"]


def test_an_ing_clause_after_the_payload_is_not_part_of_it():
    def holds(text: str, i: int, j: int) -> bool:
        return _holds_clause(_clause_verbs(text.split()), i, j)

    words = "Read out coffee time starting with its last word"
    assert holds(words, 2, 5)          # "coffee time starting"
    assert not holds(words, 2, 4)      # "coffee time"
    assert not holds("spell running with caps", 1, 2)  # a one-word payload is any word
    # a noun in -ing, and a clause word that may follow a payload ("grand opening in capitals"), keep the span
    assert not holds("write good morning from the team", 1, 3)
    assert not holds("print spring cleaning with every letter capitalized", 1, 3)
    assert not holds("every letter of grand opening in capitals", 3, 5)
    assert not holds("acronym of keep reading every day", 2, 6)
    assert holds("type green tea skipping every vowel", 1, 4)
    assert holds("rewrite cold coffee dropping all the vowels", 1, 4)


@needs_default
@pytest.mark.parametrize("text, payload", [
    ("Read out coffee time starting with its last word", "coffee time"),
    ("Convert happy hour making every letter uppercase", "happy hour"),
    ("Type out green tea skipping every vowel", "green tea"),
])
def test_an_ing_clause_after_an_inline_payload_stays_in_the_step(guided, text, payload):
    assert guided.plan(text).payload == payload


@needs_default
def test_a_payload_read_between_two_steps_leaves_them_two(guided):
    """The tagger reads the payload out of "french translation: sugar | reverse the letters";
    the pipe after it still separates the steps (they were joined into one). A dash sets no
    sequence: the label before it stays part of the step."""
    for text, steps in (("french translation: sugar | reverse the letters", ["french translation", "reverse the letters"]),
                        ("Translate to French: milk -> reverse", ["Translate to French", "reverse"]),
                        ("Flashcard back side: norway — which city is the capital?",
                         ["Flashcard back side which city is the capital"])):
        plan = guided.plan(text)
        assert plan.payload in ("sugar", "milk", "norway") and [s.instruction for s in plan.steps] == steps


@needs_default
def test_a_piece_that_acts_on_the_result_is_a_step_even_where_the_whole_reads_better(guided):
    """The whole retrieves antonym better than its pieces do on average, but "spell that ..."
    is a verb with the result as its object: a step of its own, not a modifier."""
    plan = guided.plan("Come up with the antonym of cheap and spell that from the end")
    assert plan.payload == "cheap"
    assert [s.instruction for s in plan.steps] == ["Come up with the antonym of it", "spell that from the end"]


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    # a colon that marks no payload, and a payload before the colon
    ("for the pub quiz: what is the capital of peru", "peru", 1),
    ("midnight train: rot13 first, then all caps", "midnight train", 2),
    # a chatty request whose payload sits mid-sentence, its comma kept for the next step
    ("my sister wants lazy sunday morning without vowels, then flip the word order", "lazy sunday morning", 2),
    # context first: a word of it the tagger half reads as payload does not unsettle the span
    ("Server names here are always written in full caps. The new one is blue falcon. Uppercase it, please.",
     "blue falcon", 1),
])
def test_a_confident_tagger_finds_the_payload_in_the_whole_request(guided, text, payload, steps):
    plan = guided.plan(text)
    assert (plan.payload, len(plan.steps)) == (payload, steps)
    assert any("read by the tagger" in line for line in plan.explain)


def test_the_tagged_payload_is_replaced_by_it_and_its_punctuation_kept():
    """The planner's mechanics around a tagger's span, with fixed log-odds per word."""
    def tagger_for(payload_words):
        return lambda text: [6.0 if w.strip(",:'[]") in payload_words else -6.0 for w in text.split()]

    def plan(text, words):
        planner = HeuristicPlanner(lambda queries, k: [[] for _ in queries], tagger=tagger_for(words))
        return planner._tagged_payload(text)

    assert plan("rot13 magic word, uppercase it", {"magic", "word"})[:2] == ("rot13 it, uppercase it", "magic word")
    assert plan("never give up: words reversed", {"never", "give", "up"})[:2] == ("words reversed", "never give up")
    assert plan("put 'do not disturb' in caps", {"do", "not", "disturb"})[:2] == ("put it in caps", "do not disturb")
    assert plan("uppercase happy cat", {"happy", "cat"})[:2] == ("uppercase it", "happy cat")
    assert plan("the plural of [hero] in rot13", {"hero"})[:2] == ("the plural of it in rot13", "hero")  # brackets go
    assert plan("is this positive? great food", {"great", "food"})[:2] == ("is this positive", "great food")
    # a span that is the whole request leaves no instruction: the rules decide ("hi" is no task)
    assert plan("hi there", {"hi", "there"})[1] is None
    # two separate runs of payload-like words: no span is probable enough, the rules decide
    assert plan("uppercase happy and reverse cat", {"happy", "cat"})[1] is None


@needs_default
def test_a_split_at_commas_and_and_beats_one_after_it(guided):
    """Two readings with two pieces each: "Flip it | around word by word, make ..." (a cut after
    "it", which nothing marks; its pieces score better on average) loses to the comma's."""
    plan = guided.plan("Flip salt and pepper around word by word, make the result title case")
    assert plan.payload == "salt and pepper"
    assert [s.instruction for s in plan.steps] == ["Flip it around word by word", "make the result title case"]


@needs_default
def test_a_restated_step_is_one_step(guided):
    """A sentence that asks for the same brick again is an aside, unless it says "again"."""
    plan = guided.plan("put sunny day in full uppercase. no lowercase anywhere")
    assert plan.payload == "sunny day" and len(plan.steps) == 1
    assert any("one step" in line for line in plan.explain)
    assert len(guided.plan("reverse it, and reverse it again: abc").steps) == 2


@needs_default
def test_a_restated_step_merges_across_a_dropped_aside(guided):
    """Context that asks for the brick, then an aside naming the payload, then the request:
    once the aside is gone the two neighbours are one step worded twice."""
    plan = guided.plan("We write every server name in all capital letters. This one is blue falcon. Uppercase it, please.")
    assert plan.payload == "blue falcon" and [s.instruction for s in plan.steps] == ["Uppercase it, please"]
    assert any("is no step" in line for line in plan.explain) and any("one step" in line for line in plan.explain)


@needs_default
@pytest.mark.parametrize("text, payload, step", [
    ("spell rocket ship backwards. my nephew thinks it's hilarious", "rocket ship", "spell it backwards"),
    ("what's the opposite of brave? we're writing a story", "brave", "what's the opposite of it"),
    ("I'm writing a card. capitalize every word of happy anniversary", "happy anniversary",
     "capitalize every word of it"),
    ("Ref 2291 - please pluralize goose", "goose", "pluralize it"),
])
def test_a_sentence_that_retrieves_no_brick_is_no_step(guided, text, payload, step):
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == [step]
    assert any("no sequencing word sets it in the sequence" in line for line in plan.explain)


@needs_default
@pytest.mark.parametrize("text, payload, step", [
    ("The kids keep forgetting capitals. Please capitalize each word of maple leaf avenue.", "maple leaf avenue",
     "capitalize each word of it"),
    ("Flashcards for French club tonight. What is apple in French? Just one word.", "apple", "What is it in French"),
    # the sentence naming the payload is a restatement of the ask; it counts before the two merge
    ("I'm making a poster. The headline is save the whales. Could you capitalize every word?", "save the whales",
     "Could you capitalize every word"),
])
def test_context_that_names_no_payload_is_no_step(guided, text, payload, step):
    """A sentence naming neither the payload nor a result, beside a step that does, is context
    unless it retrieves a brick surely; "Translate dog into French. Uppercase the result." keeps both."""
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == [step]
    assert any("names neither the payload nor a result" in line for line in plan.explain)
    assert len(guided.plan("Translate dog into French. Uppercase the result.").steps) == 2


@needs_default
def test_a_sentence_saying_what_the_payload_is_is_no_step(guided):
    """"My password hint is it" names the payload but asks nothing of it: context beside the ask
    (it retrieved reverse 0.51 and was kept to fail as out of scope, "generate a password")."""
    plan = guided.plan("My password hint is blue horse. Can you rot13 it?")
    assert plan.payload == "blue horse" and [s.instruction for s in plan.steps] == ["Can you rot13 it"]
    assert any("only says what the payload is" in line for line in plan.explain)


@needs_default
@pytest.mark.parametrize("text, payload, steps", [
    ("here's a sign text (no entry) - make it all uppercase", "no entry", ["make it all uppercase"]),
    ("Reverse the words of (big red dog) please", "big red dog", ["Reverse the words of it please"]),
    ("uppercase hello)", "hello", ["uppercase it"]),
])
def test_a_payload_never_starts_or_ends_inside_brackets(guided, text, payload, steps):
    """"(no entry)" is read whole or not at all, and brackets around the payload go with it."""
    plan = guided.plan(text)
    assert plan.payload == payload and [s.instruction for s in plan.steps] == steps


@needs_default
def test_a_greeting_and_a_sign_off_are_no_steps(guided):
    plan = guided.plan("Dear assistant,\n\ncould you reverse the word order of slow and steady, then uppercase it?"
                       "\n\nThanks, Ingrid")
    assert plan.payload == "slow and steady" and len(plan.steps) == 2
    assert sum("a greeting or sign-off" in line for line in plan.explain) == 2


@needs_default
def test_an_unknown_command_in_the_sequence_stays_a_step_to_fail_as_unknown(guided):
    plan = guided.plan("uppercase sea breeze, then summarize it")
    assert [s.instruction for s in plan.steps] == ["uppercase it", "summarize it"]


@needs_default
def test_guided_plans_are_deterministic_and_explain_themselves(guided):
    text = "Give me the opposite of early, then uppercase it"
    first = guided.plan(text)
    assert first == guided.plan(text)
    assert first.explain and all(isinstance(line, str) for line in first.explain)


@needs_default
def test_no_payload_anywhere_is_a_clear_error(guided):
    """Reading no payload at all competes with every span the tagger could pick: "Make" in "Make it
    all caps" and "please" in "caps please" are the least unlikely words, not payloads."""
    for text in ("reverse the words", "Make it all caps", "could you reverse them for me", "caps please",
                 "reverse the letters please", "now do the plural"):
        with pytest.raises(PlanError, match="no input found"):
            guided.plan(text)


@needs_default
def test_a_lone_pronoun_is_no_payload_unless_delimited_or_known(guided):
    """"uppercase this" (tagger p 0.92 for "this") and "capitalize me" refer to a text they do not
    hold; quoted or after a colon a pronoun is the payload, and so is a brick's known input."""
    for text in ("uppercase this", "capitalize me"):
        with pytest.raises(PlanError, match="no input found"):
            guided.plan(text)
    assert guided.plan("uppercase: this").payload == "this" and guided.plan("reverse 'me'").payload == "me"
    assert guided.plan("what is the opposite of answer").payload == "answer"


@needs_default
def test_a_step_asking_to_repeat_is_the_step_before(guided):
    """"then do it again" names no brick (it retrieved a base skill, copy): it runs the step before."""
    plan = guided.plan("Do rot13 on 'abc xyz', then do it again")
    assert [s.instruction for s in plan.steps] == ["Do rot13 on it", "Do rot13 on it"]
    assert any("repeats the step before" in line for line in plan.explain)
    assert [s.instruction for s in guided.plan("rot13 hello. Do the same again.").steps] == ["rot13", "rot13"]


def test_searches_are_remembered_until_the_library_changes(tmp_path):
    """Instruction words recur from request to request: a planner asks the index once per text
    and library generation (a brick folder added or removed starts afresh)."""
    from composer.library import BrickLibrary

    library = BrickLibrary(tmp_path / "lib", create=True)
    calls = []

    def search(queries, k):
        calls.append(list(queries))
        return [[] for _ in queries]

    p = HeuristicPlanner(search, library)
    p._search(["encrypt", "happy"])
    p._search(["happy", "cat", "cat"])
    assert calls == [["encrypt", "happy"], ["cat"]]
    (library.root / "new-brick").mkdir()
    p._search(["happy"])
    assert calls[-1] == ["happy"]


@needs_default
def test_a_weak_piece_after_the_ask_is_commentary(guided):
    """After the first piece, an unsequenced piece must retrieve a brick at LATER_ASIDE_SCORE."""
    plan = guided.plan("Hi Jo, quick one before the meeting - can you give me the backwards spelling of kingfisher? "
                       "Need it for the quiz round. Ta")
    assert plan.payload == "kingfisher" and len(plan.steps) == 1
    assert any("'Need it for the quiz round' is no step" in line for line in plan.explain)
