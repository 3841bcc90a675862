"""The composition benchmark's items: `python -m benchmarks.composition_data` writes benchmarks/data/.

Instructions are worded freshly by hand (never a card's example: checked here), in the ways
people write: imperatives, questions, polite requests, terse commands, synonyms, typos; the
payload after a colon, in quotes, via `input=` or written inline in the sentence. Chains join
2-3 step phrasings with "then", commas, "and", numbered lists and sentence breaks, and put
case-changing steps (uppercase, capitalize, acronym) first. Every phrasing, step phrasing and
payload belongs to one split: `dev` (tuned on) or `test` (held out), so nothing of the test
split's wording is ever seen while tuning. `fresh` is a third split, written blind (without
looking at the planner or any results) and measured once before its failures were read and
tuned on. `blind` is a fourth split, written blind like fresh after fresh had been looked at;
its requests are never read or tuned on. `holdout` is a fifth split with blind's counts and mix, written
later without looking at the planner, the retriever or any results; it too is never read or tuned on.
`unseen` is a sixth, written by a helper session that read nothing of the repository, only a
description of the twelve skills (`data/phrasings_unseen.json`, merged in below); its phrasings
are read by this script only. Expected outputs come from the skills' truth.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

from composer.defaults import tables
from composer.defaults.skills import BENCHMARK_WORDINGS, BRICK_SKILLS, SKILLS, card_examples, wording_hash

DATA = Path(__file__).resolve().parent / "data"
SPLITS = ("dev", "test", "fresh", "blind", "holdout", "unseen")

# {x}: the payload as is; {X}: the payload title-cased (people capitalise names). A phrasing
# without a placeholder takes its payload through input=.
SINGLE: dict[str, dict[str, list[str]]] = {
    "uppercase": {
        "dev": ["Put this in all capital letters: {x}", "CAPS LOCK this: {x}", 'Could you make "{x}" all uppercase?',
                "upper-case {x}", "Convert {x} to capitals", "Write {x} in block letters", "shout {x}",
                "Make every letter big", "Upper case this one: {x}", "uppercse this: {x}"],
        "test": ["Please write the following in uppercase letters: {x}", 'Turn "{x}" into all caps', "all caps {x}",
                 "Change {x} to upper case", "Can you put {x} in uppercase?", "Make the text fully uppercase",
                 "Upcase: {x}", "I need {x} in capital letters", "Convert the whole thing to uppercase letters: {x}",
                 "capitalise every letter of {x}"],
        "fresh": ["I'd like {x} written entirely in upper case", "Retype {x} as if the caps lock key were stuck",
                  "uppercase letters only for {x} please",
                  "Hey, could you change {x} so that every letter is a capital?",
                  "pls make evrything uppercase in {x}", "Everything in caps, please: {x}",
                  "Need this in ALL CAPS: {x}", 'How would "{x}" look in all capital letters?',
                  'Rewrite "{x}" using only uppercase', "Switch the whole text to upper case for me"],
        "blind": ["gimme {x} in full caps", "Would you mind typing {x} in upper-case letters only?",
                  "I'd like {x} with no lowercase letters left in it", "{x} -> UPPERCASE",
                  "Raise every letter in {x} to its capital form, thanks", "Set {x} in uper case letters",
                  "Shift everything to capital letters: {x}", "Text to upper case, thanks: {x}",
                  'What does "{x}" become in caps?', "Could you make all the letters in this capitals? Thanks"],
        "holdout": ["Could {x} be converted so every character is upper case?", "yo make {x} loud, like all-caps loud",
                    "For a banner I'm printing I need {x} in uppercase", "uppercase version of {x}?",
                    "Please set {x} entirely in capitals, if you don't mind", "i need {x} in uppper case for a sign",
                    "Turn on caps for this text: {x}", "Header text, needs to be uppercase: {x}",
                    'Can I see "{x}" printed in big capitals?', "Make the text I pasted all upper-case, nothing small"],
    },
    "reverse": {
        "dev": ["Write {x} backwards", "Mirror this text: {x}", 'Flip the letters of "{x}" around', "Spell {x} in reverse",
                "Reverse the letters: {x}", "Read this back to front: {x}", "Backwards please",
                "reverse every character in {x}", "Turn the string around character by character: {x}",
                "revrese the letters: {x}"],
        "test": ["Spell {x} backwards", "Write the characters in reverse order: {x}", 'Could you reverse "{x}" letter by letter?',
                 "Flip the string: {x}", "Mirror the text", "Reverse the letters in {x}", "backwards spelling of {x}",
                 "Invert the character order: {x}", "Reverse the spelling: {x}", "write it back to front: {x}"],
        "fresh": ["Show me {x} spelled from the last letter to the first",
                  "What does {x} look like written right to left?", "give me {x} with its letter order flipped",
                  "Could you write {x} in mirror image, last character first?",
                  "turn {x} bakwards letter for letter", "Put the letters in opposite order: {x}",
                  "Quick one, reverse this string for me: {x}", 'What is "{x}" when read from the end?',
                  'Please write "{x}" the other way round, one letter at a time',
                  "Write it out with the letters running the other way"],
        "blind": ["Can you spell {x} starting from its final letter?", "gimme {x} reversed, char by char",
                  "I'd like {x} turned around so the last character comes first", "reverse-spell {x}",
                  "Run the letters of {x} in the opposite direction, thanks",
                  "Wirte {x} from the end to the start, character-wise", "Character order flipped, please: {x}",
                  "Make the last letter first and the first letter last: {x}",
                  'What comes out if "{x}" is spelled end to beginning?',
                  "Could you write what I sent letter by letter, but starting at the end?"],
        "holdout": ["How would {x} be spelled if you started at the very last character?", "do {x} backwardz lol",
                    "I'm making a puzzle for my kid, so I need {x} with its characters reversed", "{x}, char-reversed",
                    "Kindly reverse the character sequence of {x}, thank you",
                    "can u flip {x} so it's spelt bakcwards", "Riddle needs this spelled end-first: {x}",
                    "Flip each letter's position end to end: {x}",
                    'Is "{x}" still readable when written backwards? Show me',
                    "Take my string and output it with the characters in reverse"],
    },
    "rot13": {
        "dev": ["ROT-13 this: {x}", "Encrypt {x} with rot13", 'Apply the rot 13 substitution to "{x}"', "rot13 {x}",
                "Shift every letter thirteen places: {x}", "Encode this using rot-13", "Use the ROT13 cipher on {x}",
                "Run {x} through rot13", "Obfuscate with rot13: {x}", "rto13 this: {x}"],
        "test": ["Please rot13 the following: {x}", "Encode {x} in rot13", 'What is "{x}" in ROT13?', "rot-13 {x}",
                 "Rotate the alphabet by 13 for {x}", "Cipher this with rot13", "Translate {x} to rot13",
                 "Give me the rot13 version of {x}", "Apply a rot13 transform: {x}", "ROT13 encode: {x}"],
        "fresh": ["What do I get if I rot13 {x}?", "hide {x} with rot 13", "Turn {x} into rot13 gibberish",
                  "Please do a rot13 on {x} for me", "rot 13 encyrpt {x}", "Secret message time, rot13 it: {x}",
                  "Caesar cipher with a key of 13: {x}", 'How does "{x}" read after rot13?',
                  'Convert "{x}" with the rot-13 trick', "Mind doing a rot13 pass on this text?"],
        "blind": ["Would you run a rot-13 shift over {x}?", "yo, scramble {x} using rot13 real quick",
                  "I'd like {x} encoded by moving each letter 13 spots along the alphabet", "{x} -> rot13",
                  "Put {x} through the ROT13 letter swap, thanks", "conver {x} using the rot13 substitution cipher",
                  "Thirteen-letter alphabet rotation on this: {x}", "Quick rot-13 job: {x}",
                  'Encode "{x}" so that a becomes n, b becomes o and so on', "Rot13 the message I'm sending, please"],
        "holdout": ["What would {x} turn into under ROT13?", "lemme get {x} in rot13",
                    "My puzzle hunt clue needs {x} rot13'd before I post it", "{x} in rot-13 form",
                    "Please put {x} through a ROT-13 transformation, cheers", "cud you rot-thirteen {x}",
                    "Forum spoiler, hide it with rot13: {x}", "Do the usual a-to-n letter swap on this: {x}",
                    'Encode or decode "{x}" with rot13, same thing',
                    "Spoiler-tag what I wrote by running rot13 over it"],
    },
    "remove_vowels": {
        "dev": ["Get rid of the vowels: {x}", "Remove every vowel from {x}", 'Strip the vowels out of "{x}"',
                "no vowels: {x}", "Delete the vowels in {x}", "Write only the consonants of {x}", "Drop all vowels please",
                "Cut out the vowels: {x}", "disemvowel {x}", "remove teh vowels: {x}"],
        "test": ["Please take all the vowels out: {x}", "Erase the vowels from {x}", 'Remove vowels from "{x}"',
                 "vowels gone: {x}", "Can you strip every vowel from {x}?", "Leave out the vowels",
                 "Eliminate the vowels in {x}", "Write {x} without any vowels", "Get the vowels out of this: {x}",
                 "Delete each a, e, i, o, u: {x}"],
        "fresh": ["What's left of {x} once you take away a, e, i, o and u?",
                  "Could you spell {x} with no vowels at all?", "Make {x} vowelless for me",
                  "I want {x} minus its vowels", "wipe out the vowles in {x}", "Consonants only please: {x}",
                  "Vowel-free version of this: {x}", 'Can "{x}" lose all its vowels?',
                  'Please return "{x}" without its vowels', "Could you delete any vowels you find in the text?"],
        "blind": ["Could you take {x} and leave out the letters a, e, i, o and u?",
                  "strip {x} down to consonants pls", "I'd like the vowels removed from {x}, spaces kept",
                  "{x} sans vowels", "Scrub out any vowel letters in {x}, thanks",
                  "Remoev all vowels in {x} but leave everything else", "Consonant skeleton of this phrase: {x}",
                  "Kill the vowels: {x}", 'How does "{x}" look with the vowels deleted?',
                  "Can you filter out the vowels from my text?"],
        "holdout": ["Can you show me {x} once every vowel is gone?", "yeet the a's e's i's o's and u's outta {x}",
                    "For a text-speak joke I want {x} without a, e, i, o or u", "{x} but no aeiou",
                    "Kindly drop every vowel from {x}, keeping the rest untouched", "chop out evry vowel in {x}",
                    "Vowels out, consonants stay: {x}", "License plate style, no vowels: {x}",
                    'What\'s "{x}" after stripping a/e/i/o/u?', "Scrub the vowels from whatever I just sent"],
    },
    "capitalize": {
        "dev": ["Capitalise the words: {x}", "Make every word start with an uppercase letter: {x}",
                'Title-case "{x}"', "title case {x}", "Capitalize the start of each word in {x}", "Put it in title case",
                "Give each word a capital first letter: {x}", "Make the initial letter of each word big: {x}",
                "capitalize every word of {x}", "titel case this: {x}"],
        "test": ["Please capitalize each word: {x}", "Write {x} in title case", 'Capitalize every word in "{x}"',
                 "title-case {x}", "Can you capitalise the first letter of each word in {x}?",
                 "Start every word with a capital letter", "Convert to title case: {x}", "Headline style: {x}",
                 "Make {x} title case", "Capitalise each word's first letter: {x}"],
        "fresh": ["Each word of {x} should begin with a capital, please",
                  "Could you uppercase just the first letter of every word in {x}?",
                  "{x} with each word capitalized, please", "Can I get {x} in Title Case?",
                  "make each wrod in {x} start uppercase", "First letter of each word big, rest unchanged: {x}",
                  "Fix the capitalization so every word starts uppercase: {x}",
                  'How would "{x}" be written in title case?', 'Capital letter on every word of "{x}", please',
                  "Bump up the first letter of each word"],
        "blind": ["Can {x} be written like a book title, each word starting with a capital?", "title caps on {x} pls",
                  "I'd like {x} formatted the way names are, with a capital at the start of each word",
                  "Proper-case {x}",
                  "Uppercase the initial letter of every word in {x} and leave the rest alone, thanks",
                  "make sure every word of {x} beigns with a capital",
                  "Make it look like a headline, each word capitalised: {x}", "Initial caps on every word: {x}",
                  'What does "{x}" look like with every word capitalized?',
                  "Name-style capitals on each word of my text, please"],
        "holdout": ["Would you mind giving every word in {x} an initial capital?",
                    "big first letters on all the words in {x} pls",
                    "It's a song title, so I need {x} with each word capitalised", "initial-cap {x}",
                    "Kindly start each word of {x} with a capital, leaving the other letters alone",
                    "every word in {x} shoud start with a captal",
                    "Fix the casing for my essay heading, every word capitalised: {x}",
                    "Word-initial capitals only: {x}", 'Give each word in "{x}" an upper-case first character',
                    "Can the words in my message each get a capital first letter?"],
    },
    "reverse_words": {
        "dev": ["Put the words of {x} in reverse order", "Reverse the order of the words in {x}",
                'Flip the word order of "{x}"', "words backwards: {x}", "Swap the word order around: {x}",
                "Reverse the word sequence", "Read the words from last to first: {x}", "Invert the order of words: {x}",
                "Write the words of {x} in the opposite order", "revers the word order: {x}"],
        "test": ["Please reverse the order of the words: {x}", "Reverse the words in {x}", 'Flip the words of "{x}"',
                 "word order reversed: {x}", "Can you put the words of {x} back to front?", "Reverse the list of words",
                 "Order the words last to first: {x}", "Turn the word order around: {x}", "Mirror the word order of {x}",
                 "Rearrange the words in reverse: {x}"],
        "fresh": ["Read out {x} starting with its last word",
                  "Can you list the words of {x} from the end to the beginning?",
                  "reverse {x} word by word, not letter by letter",
                  "What's {x} with its words in the opposite sequence?",
                  "backward the wrods in {x}, keep each word as is",
                  "Keep the words intact but reverse their order: {x}", "Word order, end to start: {x}",
                  'Rearrange "{x}" so it runs from the final word to the first',
                  'Could you write "{x}" with the word sequence reversed?',
                  "Please turn the sentence around at the word level"],
        "blind": ["Could you say {x} with the last word first and the first word last?", "flip {x} word-wise pls",
                  "I'd like the words of {x} to run from the back to the front", "words of {x}, end first",
                  "Start with the final word of {x} and work backwards to the first, thanks",
                  "Reorder {x} so the words go from end to begining",
                  "Backwards at the word level, letters untouched: {x}", "Word-by-word reversal please: {x}",
                  'What do you get if you read the words of "{x}" from right to left?',
                  "Can you reverse how my words are ordered, keeping each word spelled normally?"],
        "holdout": ["Could you rearrange {x} so the final word leads and the opening word trails?",
                    "switch up the word order of {x}, back to front lol",
                    "For a poem I'm writing, I need the words of {x} flipped so the last one comes first",
                    "{x}, words flipped end to start",
                    "Please list the words of {x} starting from the end; don't touch the letters",
                    "reorder teh words in {x} so the lsat one's first", "Final word first, opening word last: {x}",
                    "Swap the sentence around by words (not letters): {x}",
                    'If "{x}" were read word by word from the end, how would it go?',
                    "Reverse where each word sits in my sentence, leave the spelling"],
    },
    "acronym": {
        "dev": ["Make an acronym from {x}", "What's the acronym for {x}?", 'Abbreviate "{x}" with its initials in caps',
                "acronym of {x}", "Shorten to an acronym: {x}", "Turn the phrase into capital initials",
                "Give the upper-case initialism of {x}", "Build an acronym out of this: {x}",
                "Initials in capitals: {x}", "acronm for {x}"],
        "test": ["Please create an acronym: {x}", "What would {x} be as an acronym?", 'Make "{x}" into an acronym',
                 "acronym for {x}", "Convert {x} into an acronym", "Abbreviate it to capital initials",
                 "Form an initialism from {x}", "Compress the phrase into an acronym: {x}",
                 "Capital first letters joined: {x}", "The acronym of this phrase: {x}"],
        "fresh": ["What letters would {x} shorten to as an acronym?", "Boil {x} down to its capitalized initials",
                  "Turn {x} into a short uppercase abbreviation from its first letters",
                  "If {x} were an organisation, what would its acronym be?", "acroynm out of {x} please",
                  "Take the first letter of each word, capitalised, and join them: {x}",
                  "Abbreviation from the initials, in caps: {x}", 'Spell out the acronym of "{x}"',
                  'Initial letters of "{x}" in upper case, run together',
                  "Reduce the wording to its uppercase initials"],
        "blind": ["If I shorten {x} to capital initials, what do I get?",
                  "gimme the caps initials of {x} squished together",
                  "I'd like {x} shortened into an all-caps acronym", "acronymize {x}",
                  "Write {x} as the kind of all-caps abbreviation companies use, thanks",
                  "Squash {x} into an acronim", "Acronym time: {x}",
                  "Help me abbreviate this to capital letters, one per word: {x}",
                  'Which capital letters stand for "{x}"?',
                  "Could you abbreviate my phrase into an acronym in capitals?"],
        "holdout": ["What would the initials of {x} spell, in capitals?", "{x} as an acronym, go",
                    "We're naming a project {x}, so what's the all-caps short form from the first letters?",
                    "{x} acronym'd", "Please condense {x} into uppercase initials, much obliged",
                    "shrink {x} to its first leters in caps", "Team name needs an acronym: {x}",
                    "First letters, capitalised, smushed together: {x}",
                    'Shorten "{x}" the way NASA or FBI are shortened', "What acronym do my words form?"],
    },
    "capital": {
        "dev": ["What's the capital of {X}?", "Tell me the capital city of {X}", 'Which city is the capital of "{x}"?',
                "capital of {x}", "Name the capital city of {X}", "In which city is the government of {X}?",
                "Capital city please", "What city is the capital: {x}", "Give me the capital of {X}",
                "captial of {X}"],
        "test": ["Which city is the capital of {X}?", "What is the capital city of {X}", 'Capital of "{X}"?',
                 "capital city of {x}", "Name the capital of {X}", "Which city serves as the capital",
                 "Tell me the capital of this country: {X}", "Where is the capital of {X} located?", "Please name the capital of {X}",
                 "What's the capitol of {X}?"],
        "fresh": ["Remind me what {X} has as its capital", "Do you know the capital of {X}?", "{X} capital city?",
                  "I'm travelling to {X}, what's its capital?", "quick q: capitl of {X}", "Capital city lookup: {X}",
                  "Country to capital: {X}", 'Name the city that "{X}" calls its capital',
                  'Tell me what city "{X}" is governed from', "What's the capital of the country I give you?"],
        "blind": ["What city would I visit to see the government of {X}?", "gimme {X}'s capital",
                  "I'd like to find out which city {X} is run from", "{X} -> capital",
                  "Name the main city where {X}'s government sits, thanks", "What's {X}'s capital citty?",
                  "Help me with a quiz answer, capital city of: {X}",
                  "Geography question, what's the capital here: {X}", 'Seat of power for "{X}", which city?',
                  "I've got a country here, which city is its capital?"],
        "holdout": ["Do you happen to know where {X}'s government is based?", "yo which city runs {X}",
                    "Our pub quiz team is stumped on the capital of {X}, help", "{X} - where's the capital at",
                    "Would you kindly name the city that is {X}'s capital? Many thanks",
                    "were is {X}'s goverment, wich city",
                    "Flashcard check, country on the front, capital on the back: {X}",
                    "Map quiz, main government city of: {X}", 'Where does "{X}" keep its parliament, which city?',
                    "Tell me which city is the capital of the country in my message"],
    },
    "antonym": {
        "dev": ["Give me the opposite of {x}", "What's the opposite of {x}?", 'What word means the opposite of "{x}"?',
                "opposite of {x}", "antonym for {x} please", "What is the contrary word", "Name the antonym of {x}",
                "Opposite meaning: {x}", "What's the reverse meaning of {x}?", "oposite of {x}"],
        "test": ["What is the opposite of {x}?", "Give the opposite word for {x}", 'Antonym of "{x}"?',
                 "the opposite of {x}", "Tell me a word that means the opposite of {x}", "Find a word of contrary meaning",
                 "Which word is the opposite of {x}?", "What's the antonym of {x}?", "Opposite word please: {x}",
                 "Antonym for this word: {x}"],
        "fresh": ["Could you tell me the antonym to {x}?", "{x} is the opposite of which word?",
                  "If you flipped the meaning of {x}, what word would you get?",
                  "Suggest a word opposite in meaning to {x}", "antonim to {x} pls",
                  "Word with the reverse sense: {x}", "Swap this word for its opposite: {x}",
                  'What would be the opposite of saying "{x}"?', 'Counterpart of "{x}" with the opposite meaning?',
                  "Turn the word into its opposite"],
        "blind": ["Is there a word that's the exact opposite of {x}?", "{x} but opposite, pls",
                  "I'd like a word meaning the contrary of {x}", "{x}'s opposite",
                  "Find me the word that contrasts directly with {x}, thanks", "Need the antonm of {x}",
                  "One-word opposite for this: {x}", "Help me find an antonym for my essay: {x}",
                  'Give me the word on the other end of the scale from "{x}"',
                  "Please reply with the opposite of the word I give you"],
        "holdout": ["What would you say is the flip side of {x}, as a single word?", "opp of {x}?",
                    "I'm writing a kids' worksheet on opposites, what goes with {x}?", "{x} flipped in meaning?",
                    "Please suggest the antonym that pairs with {x}, thanks so much",
                    "wat word cancels out {x}, like an oppsite", "Opposites game, your turn: {x}",
                    "Give me the contrasting word: {x}", 'If something is not "{x}", it is what? One word please',
                    "Counter my word with its antonym"],
    },
    "plural": {
        "dev": ["What's the plural of {x}?", "plural of {x}", 'Write "{x}" in the plural',
                "Pluralise {x}", "How do you say more than one {x}?", "Plural please", "Give the plural form of {x}",
                "Turn {x} into its plural", "Many of them: {x}", "plurl of {x}"],
        "test": ["What is the plural of {x}?", "Make {x} plural", 'Plural of "{x}"?', "plural form of {x}",
                 "How do you write {x} in the plural?", "Put the noun into the plural", "Give me the plural of {x}",
                 "Plural form of this noun: {x}", "Write the plural for {x}", "Pluralize {x} please"],
        "fresh": ["How do I say {x} when there are lots of them?", "Make the noun {x} refer to more than one",
                  "{x}, but plural?", "Spell the plural version of {x}", "{x} in pural form please",
                  "Noun to pluralize: {x}", "Give me the word for several of these: {x}",
                  'Change "{x}" from singular to plural', 'Two "{x}" would be two what?',
                  "Could you give me the word for more than one of these?"],
        "blind": ["Which form of {x} is used for two or more?", "plural-ify {x} pls",
                  "I'd like to know how {x} is written for multiple items", "{x} (pl.)",
                  "Write {x} the way you would after the word 'many', thanks",
                  "Put {x} into the plural form, with the corect spelling", "Several of these, what's the word: {x}",
                  "Need this noun for a group of them: {x}", 'How is "{x}" spelled once there are a few of them?',
                  "Please give me the plural spelling of the word I send"],
        "holdout": ["If I have a bunch of {x}, what's the correct word?", "many {x}, how's that spelled lol",
                    "I'm labeling bins in my classroom and each holds several {x}; what's the plural?",
                    "{x} pluralized", "Would you write out how {x} looks when it's plural? Cheers",
                    "how do u spell {x} when its more then one", "Singular in, plural out: {x}",
                    "Grammar homework, plural needed: {x}",
                    'Is the plural of "{x}" irregular? Just give me the plural',
                    "What's the plural of the noun I just sent?"],
    },
    "french": {
        "dev": ["Translate {x} into French", "How do you say {x} in French?", 'French for "{x}"?',
                "{x} in french", "What's {x} in French?", "In French, please", "Give me the French for {x}",
                "Say {x} in French", "Put this into French: {x}", "translate to frech: {x}"],
        "test": ["Translate {x} to French", "What is the French word for {x}?", 'How is "{x}" said in French?',
                 "french for {x}", "How would a French person say {x}?", "Render it in French",
                 "Translate the word {x} into French", "What's the French for {x}?", "French please: {x}",
                 "English to French: {x}"],
        "fresh": ["What do the French call {x}?", "If I'm in Paris, how do I say {x}?", "{x} en francais?",
                  "Can you give me the French translation of the word {x}?",
                  "My French friend needs the word {x}, how do you say it in her langauge?",
                  "In French this would be what: {x}", "Help me with my French homework, translate: {x}",
                  'What is "{x}" in the French language?', 'I need "{x}" translated from English to French',
                  "How do French speakers say this word?"],
        "blind": ["Any idea how to write {x} in French?", "frenchify {x} pls",
                  "I'd like to learn the French word that means {x}", "EN->FR {x}",
                  "Say {x} the way they would in France, thanks", "Traslate {x} for a French speaker",
                  "French vocabulary check: {x}", "French word needed for my crossword: {x}",
                  'Which word would a French dictionary give for "{x}"?',
                  "Give me this English word's French counterpart"],
        "holdout": ["How would I say {x} if I were talking to someone in French?", "how do the frenchies say {x}",
                    "I'm labeling my fridge in French for practice, what is {x}?", "{x} (fr)",
                    "Could you kindly tell me the French term for {x}? Merci",
                    "my pen pal is french, wat would {x} be for her?", "Bilingual menu, French side please: {x}",
                    "Practicing for my trip to Lyon, in French: {x}", 'Any idea what "{x}" is called in French?',
                    "Give me my word back in French, nothing else"],
    },
    "sentiment": {
        "dev": ['Is this review good or bad: {x}', 'Does the reviewer like it? "{x}"', "How does the reviewer feel: {x}",
                "positive or negative: {x}", 'Is "{x}" a positive review?', "Was the customer pleased",
                "Rate the mood of this review: {x}", 'Happy or unhappy customer: "{x}"', "Tone of this review: {x}",
                "sentimnet of: {x}"],
        "test": ["Is the following review positive or negative: {x}", 'Did the customer enjoy it? "{x}"',
                 "What's the sentiment here: {x}", "good or bad review: {x}", 'Is "{x}" praise or a complaint?',
                 "Tell me if the reviewer was satisfied", "What is the tone of this review: {x}",
                 "Was this feedback favourable: {x}", 'Judge the opinion in "{x}"', "Review mood: {x}"],
        "fresh": ["Someone wrote {x} in a review, was that positive or negative?",
                  "A customer said {x}. Are they happy?", "Does {x} sound like a good or a bad review to you?",
                  "Label {x} as a positive or negative opinion",
                  "Classify the feeling in {x} as positve or negative",
                  "Review to classify as positive or negative: {x}", "Thumbs up or thumbs down: {x}",
                  'Was the person who wrote "{x}" satisfied or not?',
                  'Read "{x}" and tell me the overall feeling, positive or negative',
                  "Is the attitude in this customer review upbeat or critical?"],
        "blind": ["Does {x} read as praise or as criticism?", "{x} - good vibes or bad vibes?",
                  "I'd like a positive/negative verdict on {x}", "{x} -> pos or neg",
                  "Tell me whether {x} leans positive or negative, thanks",
                  "Does {x} come across as negativ or positive?", "Did they love it or hate it: {x}",
                  "Sort this review into the good pile or the bad pile: {x}",
                  'Reading "{x}", is the writer pleased or annoyed?',
                  "Glowing or scathing, what's the verdict on this review?"],
        "holdout": ["Would you call {x} a positive or a negative review?", "{x} - is that a W or an L review?",
                    "Going through customer feedback and one says {x}; positive or negative?",
                    "{x} (liked it or not?)", "Please let me know if {x} expresses approval or disapproval, thank you",
                    "is {x} a postive reveiw or a negitive one", "Star rating sanity check, upbeat or negative: {x}",
                    "Comment box entry, pleased or displeased: {x}",
                    'My friend texted "{x}" about the place, did they like it?',
                    "Does the review I pasted sound positive or negative overall?"],
    },
}

# Step phrasings for chains (no payload); later steps often say "it".
STEP: dict[str, dict[str, list[str]]] = {
    "uppercase": {"dev": ["put it in capitals", "make everything uppercase", "shout it", "caps it"],
                  "test": ["convert it to uppercase", "write it all in capitals", "make it upper case", "all caps"],
                  "fresh": ["switch that over to upper case", "make the result all uppercase letters",
                            "caps lock the whole thing"],
                  "blind": ["put the whole thing in upper case", "go all caps on it", "make it uppercase throughout"],
                  "holdout": ["flip it to caps", "bump every letter of that up to uppercase",
                              "turn the output into all-capital text"]},
    "reverse": {"dev": ["write it backwards", "mirror its letters", "flip the characters", "spell it in reverse"],
                "test": ["spell the thing backwards", "reverse the letters", "reverse the characters of it", "write it back to front"],
                "fresh": ["spell that from the end", "flip the result letter by letter",
                          "turn it around character for character"],
                "blind": ["read that out from the final letter", "spell it out last letter first",
                          "spell the result in reverse order"],
                "holdout": ["write that with its characters in backward order", "run it back letter by letter",
                            "flip that around so the last character leads"]},
    "rot13": {"dev": ["rot13 encode it", "apply rot-13", "encrypt it with rot13"],
              "test": ["encode it in rot13", "run rot13 on it", "rot-13 it"],
              "fresh": ["scramble that with rot13", "put the result through rot-13", "garble it with rot13"],
              "blind": ["shift that by 13 letters", "run it through the rot 13 cipher",
                        "encode the result with a rot13 shift"],
              "holdout": ["rot13 the outcome", "apply the thirteen-letter rotation to it", "put a rot13 spin on that"]},
    "remove_vowels": {"dev": ["strip the vowels", "get rid of the vowels", "delete every vowel"],
                      "test": ["remove all the vowels", "take out all vowels", "erase the vowels"],
                      "fresh": ["drop every a e i o u from that", "knock out the vowels",
                                "leave only consonants in the result"],
                      "blind": ["lose all the vowels in it", "strip it down to consonants",
                                "cut every vowel out of the result"],
                      "holdout": ["throw away every vowel in that", "ditch the vowels from the output",
                                  "scrap any vowels in it"]},
    "capitalize": {"dev": ["title-case it", "capitalise each word", "start each word with a capital"],
                   "test": ["capitalize every word", "put it in title case", "capitalise the first letter of each word"],
                   "fresh": ["give each word of that a capital initial", "make the result title case",
                             "bump each word's first letter to a capital"],
                   "blind": ["proper-case it", "give every word an uppercase opening letter",
                             "give it title-style capitals"],
                   "holdout": ["have every word of that begin in uppercase", "put that into headline-style capitals",
                               "raise the first letter of every word to a capital"]},
    "reverse_words": {"dev": ["flip the word order", "reverse the order of the words", "put the words in reverse"],
                      "test": ["reverse all the words", "swap the word order around", "put the words last to first"],
                      "fresh": ["put the last word of that first and so on", "reverse it word by word",
                                "flip the sequence of the words in the result"],
                      "blind": ["turn the words around so the last comes first", "reverse that at the word level",
                                "start that from its final word"],
                      "holdout": ["have the last word lead, the rest following backwards",
                                  "have the words of that run in reverse", "turn that around one word at a time"]},
    "acronym": {"dev": ["make an acronym of it", "turn that into an acronym", "abbreviate it to its initials in caps"],
                "test": ["form an acronym", "make it an acronym", "acronym it"],
                "fresh": ["shrink that to its capital initials", "condense the result into an acronym",
                          "abbreviate it to an uppercase acronym"],
                "blind": ["collapse it into an acronym", "acronymize it", "shorten it into an all-caps acronym"],
                "holdout": ["reduce it to its acronym", "squish it into uppercase initials",
                            "turn the words into a capital-letter acronym"]},
    "capital": {"dev": ["find the capital city", "name its capital"],
                "test": ["give its capital", "get the capital city"],
                "fresh": ["look up its capital", "swap the country for its capital",
                          "get me the capital of that country"],
                "blind": ["say which city is its capital", "go from the country to its capital",
                          "find out what its capital is"],
                "holdout": ["say which city governs that country", "tell me where that place's capital is",
                            "replace the country with its capital city"]},
    "antonym": {"dev": ["give the opposite", "find the opposite word"],
                "test": ["take the opposite", "give its antonym"],
                "fresh": ["flip it to its opposite", "find the word that means the opposite of that",
                          "replace it with its antonym"],
                "blind": ["switch it to a word with the opposite meaning", "find the contrary of that",
                          "get the antonym"],
                "holdout": ["find a word that contradicts it", "go to the other extreme of that word",
                            "look up the antonym for it"]},
    "plural": {"dev": ["turn it plural", "pluralise it"], "test": ["put it in the plural", "give the plural form"],
               "fresh": ["turn that noun into its plural", "switch it to the plural",
                         "give me the plural of the result"],
               "blind": ["make that word plural", "give whatever the plural of it is", "pluralize the result"],
               "holdout": ["spell it as a plural", "give that noun its plural ending", "pluralise whatever came out"]},
    "french": {"dev": ["translate it into French", "say that in French"], "test": ["translate it to French", "put it in French"],
               "fresh": ["render that word in French", "switch it to French", "find the French for that word"],
               "blind": ["work out its French translation", "look up its French word", "write that in French instead"],
               "holdout": ["convert that to French", "French-translate the result", "give it to me in French"]},
    "sentiment": {"dev": ["classify its sentiment", "say if it is positive or negative"],
                  "test": ["judge the sentiment", "tell me if the review is positive or negative"],
                  "fresh": ["tell me whether that review is good or bad", "say how the reviewer felt about it",
                            "figure out the review's sentiment"],
                  "blind": ["rate that review as positive or negative", "decide if it's a good or bad review",
                            "work out whether the reviewer liked it"],
                  "holdout": ["decide whether the writer was pleased", "grade that review good or bad",
                              "was that review glowing or harsh"]},
}

# A first step that names its payload inline ({x}); the rest of the chain follows.
INLINE_FIRST: dict[str, dict[str, list[str]]] = {
    "capital": {"dev": ["find the capital of {X}"], "test": ["take the capital of {X}"],
               "fresh": ["work out where {X} has its capital"],
               "blind": ["find the city that serves as {X}'s capital"],
               "holdout": ["figure out {X}'s capital city"]},
    "french": {"dev": ["translate {x} to French"], "test": ["translate {x} into French"],
              "fresh": ["give me the French word for {x}"],
              "blind": ["switch {x} from English to French"],
              "holdout": ["check an English-French dictionary for {x}"]},
    "antonym": {"dev": ["give the opposite of {x}"], "test": ["take the opposite of {x}"],
               "fresh": ["come up with the antonym of {x}"],
               "blind": ["flip the meaning of {x}"],
               "holdout": ["find the antonym that matches {x}"]},
    "plural": {"dev": ["make {x} plural"], "test": ["give the plural of {x}"],
              "fresh": ["turn {x} into the plural"],
              "blind": ["write {x} as a plural noun"],
              "holdout": ["go from {x} to its plural"]},
    "uppercase": {"dev": ["upper-case {x}"], "test": ["put {x} in capitals"], "fresh": ["write {x} in all caps"],
                  "blind": ["type {x} with caps lock on"],
                  "holdout": ["put every letter of {x} in caps"]},
    "reverse_words": {"dev": ["flip the word order of {x}"], "test": ["reverse the words in {x}"],
                     "fresh": ["flip {x} around word by word"],
                     "blind": ["take {x} and reverse its word order"],
                     "holdout": ["swap {x} around so its words go backwards"]},
    "capitalize": {"dev": ["title-case {x}"], "test": ["capitalize each word of {x}"],
                  "fresh": ["put {x} into title case"],
                  "blind": ["make {x} look like a title, capital on each word"],
                  "holdout": ["give {x} a capital at the start of each word"]},
    "remove_vowels": {"dev": ["strip the vowels from {x}"], "test": ["remove the vowels from {x}"],
                     "fresh": ["write {x} with no vowels"],
                     "blind": ["take {x} and lose the vowels"],
                     "holdout": ["pull every vowel out of {x}"]},
    "rot13": {"fresh": ["rot13 the phrase {x}"], "blind": ["encipher {x} with rot13"],
              "holdout": ["encode {x} the rot13 way"]},
    "reverse": {"fresh": ["spell {x} from right to left"], "blind": ["write {x} letter by letter from the end"],
                "holdout": ["write out {x} in reverse character order"]},
    "acronym": {"fresh": ["abbreviate {x} to an acronym"], "blind": ["squeeze {x} into an acronym"],
                "holdout": ["get the acronym that {x} makes"]},
    "sentiment": {"fresh": ["decide whether {x} is positive or negative"],
                  "blind": ["check if {x} is a good or bad review"],
                  "holdout": ["work out if {x} is a thumbs-up review or not"]},
}

STRING_PAYLOADS = {
    "dev": ["hello big world", "good night", "red green blue", "paris", "open the door", "salt and pepper",
            "quick brown fox", "happy cat", "sun moon star", "blue sky", "cold tea", "jump high", "lucky day",
            "river stone", "green apple", "my old car", "late bus", "new york", "tiny bird", "soft rain"],
    "test": ["good morning", "black cat", "one two three", "dark forest", "sweet home", "pink gum", "fresh milk",
             "big red dog", "we love code", "oak tree", "snow day", "warm soup", "hot sand", "lost key", "fast car",
             "gold ring", "little lamb", "wild west", "rock and roll", "tall grass"],
    "fresh": ["bread and butter", "walk to the park", "the blue door", "coffee time", "summer rain", "lemon cake",
              "paper boat", "window seat", "kind words", "back to school", "night train", "garden gate",
              "silver spoon", "apple pie", "quiet street", "rainy monday", "pick up the phone", "orange juice",
              "fish and chips", "music box"],
    "blind": ["turn off the lights", "cup of tea", "salt and vinegar", "yellow taxi", "morning walk",
              "cheese sandwich", "go to bed", "broken clock", "birthday card", "sunny beach", "ice cream truck",
              "the last page", "spring flowers", "tomato soup", "open window", "umbrella", "heavy box",
              "train station", "read a book", "peanut butter"],
    "holdout": ["feed the goldfish", "rubber band", "hot chocolate", "pack your bags", "lost and found",
                "wooden fence", "call me later", "pizza party", "empty fridge", "winter coat", "pencil sharpener",
                "mountain trail", "mashed potatoes", "dinner is ready", "purple socks", "jigsaw puzzle",
                "wash the dishes", "old photo album", "fireworks", "sleepy puppy"],
}

# Chain shapes: (step skills, joiner). Joiners: then, comma, and, numbered, sentences, and-then.
TWO_STEP = [("reverse_words", "uppercase"), ("uppercase", "reverse"), ("capitalize", "reverse_words"),
            ("acronym", "rot13"), ("uppercase", "reverse_words"), ("capitalize", "reverse"),
            ("remove_vowels", "uppercase"), ("french", "uppercase"), ("capital", "capitalize"),
            ("antonym", "reverse"), ("plural", "uppercase"), ("sentiment", "antonym"), ("capital", "acronym"),
            ("uppercase", "remove_vowels"), ("rot13", "reverse_words"), ("capitalize", "rot13")]
THREE_STEP = [("remove_vowels", "reverse_words", "uppercase"), ("capitalize", "reverse_words", "reverse"),
              ("uppercase", "remove_vowels", "reverse"), ("capital", "uppercase", "reverse"),
              ("french", "capitalize", "reverse"), ("reverse_words", "capitalize", "rot13"),
              ("acronym", "reverse", "rot13"), ("antonym", "uppercase", "reverse")]
JOINERS = ["then", "comma", "and", "numbered", "sentences", "and-then"]
CASE_CHANGING = {"uppercase", "capitalize", "acronym"}
TABLE = {s.id for s in BRICK_SKILLS if s.table is not None}
# the skills as the splits were drawn from them, with their tables as they were then: antonym's
# one way (the brick has since learned each pair backwards too), capital's and french's first
# entries (more came later)
DRAWN_FROM = SKILLS | {skill: dataclasses.replace(SKILLS[skill], table=table) for skill, table in (
    ("antonym", tables.ANTONYMS), ("capital", tables.CAPITALS), ("french", tables.FRENCH))}
TABLE_HALF = {"dev": 0, "test": 1, "fresh": 1, "blind": 1, "holdout": 1, "unseen": 1}  # later splits: test's keys, none of dev's
SINGLE_OFFSET = {"fresh": 3, "blind": 5, "holdout": 8, "unseen": 2}  # where a split starts in its payloads (0 unless named):
# fresh's, blind's and holdout's singles skip the table keys of the earlier splits' singles (holdout's capitals,
# whose half is nearly used up, as far as it goes)
CHAIN_SEED = {"holdout": "chains:holdout:99"}  # a chain seed other than f"chains:{split}": holdout's is the first
# whose colon/quotes/input mix of chains equals blind's


def _card_examples() -> set[str]:
    return {e.lower() for s in BRICK_SKILLS for e in card_examples(s)}


def _bare(phrasing: str) -> str:
    """A phrasing as a card example would read it: no payload placeholder, quotes or colon."""
    return phrasing.replace("{x}", "").replace("{X}", "").strip(' :"?').lower()


def _merge_json_split(split: str, singles: int = 10) -> None:
    """Add a split written apart as JSON ({"single", "step", "inline_first": {skill: [phrasing]},
    "string_payloads": [...]}) to the tables above. Its writer could not see the cards, so the
    phrasings that repeated a card example when it was merged are skipped (the writer gave
    spares; `phrasings_<split>_skipped.json`, frozen then, so that later cards cannot change the
    split: `check` fails on a new repeat, and its wording goes into the cards' kept-off list),
    and a payload another split holds is skipped too."""
    data = json.loads((DATA / f"phrasings_{split}.json").read_text())
    skipped = json.loads((DATA / f"phrasings_{split}_skipped.json").read_text())

    def fresh(phrasings: list[str], key: str) -> list[str]:
        return [p for p in phrasings if p not in skipped[key]]

    for table, key, limit in ((SINGLE, "single", singles), (STEP, "step", None), (INLINE_FIRST, "inline_first", None)):
        for skill, phrasings in data[key].items():
            table.setdefault(skill, {})[split] = fresh(phrasings, key)[:limit]
    taken = {p for payloads in STRING_PAYLOADS.values() for p in payloads}
    STRING_PAYLOADS[split] = [p for p in data["string_payloads"] if p not in taken]


_merge_json_split("unseen")


def _fill(template: str, x: str) -> dict:
    """(instruction, input or None, style) for a phrasing and its payload."""
    if "{x}" not in template and "{X}" not in template:
        return {"instruction": template, "input": x, "style": "input"}
    text = template.replace("{x}", x).replace("{X}", x.title())
    if ": {x}" in template or ": {X}" in template:
        style = "colon"
    elif '"{x}"' in template or '"{X}"' in template:
        style = "quotes"
    else:
        style = "inline"
    return {"instruction": text, "input": None, "style": style}


def _payload_of(item: dict) -> str:
    return item["input"] if item["input"] is not None else item["payload"]


def _answer(skills: list[str], x: str) -> str | None:
    for skill in skills:
        try:
            x = DRAWN_FROM[skill].answer(x)
        except KeyError:
            return None
    return x


def _payloads(skill: str, split: str, rng: random.Random) -> list[str]:
    """Inputs of `skill` for a split: string payloads, or the split's half of the table keys."""
    if skill not in TABLE:
        return list(STRING_PAYLOADS[split])
    keys = sorted(k for k in DRAWN_FROM[skill].table if len(k) <= 20)
    random.Random(skill).shuffle(keys)
    half = keys[: len(keys) // 2] if TABLE_HALF[split] == 0 else keys[len(keys) // 2:]
    return half


def single_items(split: str) -> list[dict]:
    rng = random.Random(f"single:{split}")
    items = []
    for skill, phrasings in SINGLE.items():
        payloads = _payloads(skill, split, rng)
        for n, template in enumerate(phrasings[split]):
            x = payloads[(n * 7 + SINGLE_OFFSET.get(split, 0)) % len(payloads)]
            filled = _fill(template, x)
            payload = filled["input"] or (x.title() if "{X}" in template else x)
            items.append({"kind": "single", "skills": [skill], **filled,
                          "expected": DRAWN_FROM[skill].answer(payload), "payload": payload})
    return items


def _join(steps: list[str], joiner: str) -> str:
    if joiner == "then":
        return ", then ".join(steps)
    if joiner == "and-then":
        return " and then ".join(steps)
    if joiner == "comma":
        return ", ".join(steps)
    if joiner == "and":
        return ", ".join(steps[:-1]) + " and " + steps[-1]
    if joiner == "numbered":
        return " ".join(f"{i}. {s}" for i, s in enumerate(steps, 1))
    return ". ".join(s[0].upper() + s[1:] for s in steps) + "."


def chain_items(split: str) -> list[dict]:
    rng = random.Random(CHAIN_SEED.get(split, f"chains:{split}"))
    items = []
    shapes = [list(s) for s in TWO_STEP + THREE_STEP]
    for n, ((s, skills), (j, joiner)) in enumerate(itertools.product(enumerate(shapes), enumerate(JOINERS))):
        if ((s + j) % 3 == 0) != (split == "dev"):  # a third of every shape and joiner for dev
            continue
        payload = rng.choice(_payloads(skills[0], split, rng))
        if skills[0] in TABLE and _answer(skills, payload) is None:
            payload = next(p for p in _payloads(skills[0], split, rng) if _answer(skills, p) is not None)
        expected = _answer(skills, payload)
        if expected is None:
            continue
        steps = [rng.choice(STEP[s][split]) for s in skills]
        inline = split in INLINE_FIRST.get(skills[0], {}) and n % 2 == 0
        if inline:
            first = rng.choice(INLINE_FIRST[skills[0]][split])
            payload = payload.title() if "{X}" in first else payload
            steps[0] = first.replace("{x}", payload).replace("{X}", payload)
            expected = _answer(skills, payload)
        text = _join(steps, joiner)
        text = text[0].upper() + text[1:]
        style = "inline" if inline else rng.choice(["colon", "quotes", "input"])
        if style == "colon":
            text = f"{text.rstrip('.')}: {payload}"
        elif style == "quotes":
            text = f'{text.rstrip(".")} "{payload}"'
        items.append({"kind": "chain", "skills": skills, "instruction": text,
                      "input": payload if style == "input" else None, "style": style, "joiner": joiner,
                      "payload": payload, "expected": expected})
    return items


def classes(item: dict) -> list[str]:
    """The classes an item is scored under (besides overall)."""
    out = [f"payload:{item['style']}"]
    if item["kind"] == "single":
        out.append(f"skill:{item['skills'][0]}")
        return out
    skills = item["skills"]
    out += [f"{len(skills)}-step", f"join:{item['joiner']}"]
    if any(s in CASE_CHANGING for s in skills[:-1]):
        out.append("case-changing")
    if len(skills) == 3 or item["joiner"] == "comma" or "case-changing" in out:
        out.append("hard")
    return out


def check(items: list[dict]) -> None:
    """No instruction repeats a card example; every payload fits the default's input rules."""
    examples = _card_examples()
    for phrasing in _phrasings():
        assert _bare(phrasing) not in examples, f"{phrasing!r} repeats a card example"
    for item in items:
        assert item["instruction"].lower() not in examples, item
        payload = _payload_of(item)
        assert payload and len(payload) <= 32 and payload.isascii(), item


def build() -> dict[str, list[dict]]:
    out = {}
    for split in SPLITS:
        items = single_items(split) + chain_items(split)
        check(items)
        for n, item in enumerate(items):
            item["id"] = f"{split}-{n:03d}"
            item["split"] = split
            item["classes"] = classes(item)
        out[split] = items
    return out


def _phrasings() -> list[str]:
    return [p for table in (SINGLE, STEP, INLINE_FIRST) for by_split in table.values()
            for split in by_split.values() for p in split]


def wording_hashes() -> list[str]:
    """The phrasings as the card build keeps them off the cards: hashed (composer.defaults.skills)."""
    return sorted({wording_hash(_bare(p)) for p in _phrasings()})


def write_wording_hashes() -> None:
    BENCHMARK_WORDINGS.write_text(json.dumps({"about": "sha256 (first 16 hex) of the composition benchmark's "
                                              "phrasings, lower-cased: never card examples",
                                              "sha256": wording_hashes()}, indent=0) + "\n")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    write_wording_hashes()
    for split, items in build().items():
        path = DATA / f"composition_{split}.jsonl"
        path.write_text("".join(json.dumps(i) + "\n" for i in items))
        singles = [i for i in items if i["kind"] == "single"]
        chains = [i for i in items if i["kind"] == "chain"]
        inline = sum(i["style"] == "inline" for i in items)
        print(f"{path}: {len(singles)} single, {len(chains)} chains, {inline / len(items):.0%} inline")


if __name__ == "__main__":
    main()
