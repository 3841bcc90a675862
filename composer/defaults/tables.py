"""Lookup tables that are the ground truth for the default table (knowledge) bricks."""

import re

# Every key and value: lowercase ASCII letters and single spaces only,
# 1 to 4 words, at most 32 characters.  Run check_tables() to verify.

CAPITALS: dict[str, str] = {
    "france": "paris", "germany": "berlin", "italy": "rome", "spain": "madrid",
    "portugal": "lisbon", "united kingdom": "london", "ireland": "dublin",
    "netherlands": "amsterdam", "belgium": "brussels", "switzerland": "bern",
    "austria": "vienna", "poland": "warsaw", "czech republic": "prague",
    "hungary": "budapest", "greece": "athens", "sweden": "stockholm",
    "norway": "oslo", "denmark": "copenhagen", "finland": "helsinki",
    "iceland": "reykjavik", "russia": "moscow", "ukraine": "kyiv",
    "romania": "bucharest", "bulgaria": "sofia", "serbia": "belgrade",
    "croatia": "zagreb", "turkey": "ankara", "egypt": "cairo",
    "kenya": "nairobi", "nigeria": "abuja", "ghana": "accra",
    "morocco": "rabat", "ethiopia": "addis ababa", "south africa": "pretoria",
    "japan": "tokyo", "china": "beijing", "india": "new delhi",
    "south korea": "seoul", "thailand": "bangkok", "vietnam": "hanoi",
    "indonesia": "jakarta", "philippines": "manila", "malaysia": "kuala lumpur",
    "pakistan": "islamabad", "afghanistan": "kabul", "nepal": "kathmandu",
    "bangladesh": "dhaka", "iran": "tehran", "iraq": "baghdad",
    "saudi arabia": "riyadh", "australia": "canberra",
    "new zealand": "wellington", "canada": "ottawa",
    "united states": "washington", "mexico": "mexico city", "cuba": "havana",
    "brazil": "brasilia", "argentina": "buenos aires", "chile": "santiago",
    "peru": "lima", "colombia": "bogota", "venezuela": "caracas",
}

# Countries, and the names people use for them ("england", "uk", "usa"), added after the
# composition benchmark's splits were drawn from CAPITALS; the capital brick knows both.
MORE_CAPITALS: dict[str, str] = {
    "england": "london", "scotland": "edinburgh", "wales": "cardiff", "uk": "london",
    "britain": "london", "great britain": "london", "usa": "washington", "america": "washington",
    "united states of america": "washington", "holland": "amsterdam", "czechia": "prague",
    "slovakia": "bratislava", "slovenia": "ljubljana", "estonia": "tallinn", "latvia": "riga",
    "lithuania": "vilnius", "belarus": "minsk", "albania": "tirana", "cyprus": "nicosia",
    "malta": "valletta", "armenia": "yerevan", "azerbaijan": "baku", "kazakhstan": "astana",
    "uzbekistan": "tashkent", "mongolia": "ulaanbaatar", "north korea": "pyongyang",
    "cambodia": "phnom penh", "laos": "vientiane", "lebanon": "beirut", "syria": "damascus",
    "jordan": "amman", "qatar": "doha", "united arab emirates": "abu dhabi", "libya": "tripoli",
    "tunisia": "tunis", "algeria": "algiers", "sudan": "khartoum", "senegal": "dakar",
    "uganda": "kampala", "tanzania": "dodoma", "zimbabwe": "harare", "angola": "luanda",
    "jamaica": "kingston", "ecuador": "quito", "uruguay": "montevideo", "paraguay": "asuncion",
    "costa rica": "san jose", "honduras": "tegucigalpa", "dominican republic": "santo domingo",
}

# The capital brick's table.
CAPITAL_CITIES: dict[str, str] = CAPITALS | MORE_CAPITALS

ANTONYMS: dict[str, str] = {
    "hot": "cold", "big": "small", "tall": "short", "fast": "slow",
    "happy": "sad", "light": "dark", "up": "down", "left": "right",
    "open": "closed", "good": "bad", "young": "old", "early": "late",
    "rich": "poor", "strong": "weak", "hard": "soft", "wet": "dry",
    "full": "empty", "loud": "quiet", "clean": "dirty", "thick": "thin",
    "heavy": "light", "high": "low", "wide": "narrow", "deep": "shallow",
    "sharp": "dull", "sweet": "sour", "true": "false", "win": "lose",
    "buy": "sell", "give": "take", "push": "pull", "love": "hate",
    "friend": "enemy", "day": "night", "begin": "end", "start": "finish",
    "first": "last", "inside": "outside", "above": "below", "before": "after",
    "top": "bottom", "front": "back", "north": "south", "east": "west",
    "yes": "no", "always": "never", "all": "none", "more": "less",
    "many": "few", "most": "least", "laugh": "cry", "accept": "reject",
    "arrive": "leave", "remember": "forget", "increase": "decrease",
    "include": "exclude", "question": "answer", "success": "failure",
    "victory": "defeat", "brave": "cowardly", "kind": "cruel",
    "polite": "rude", "honest": "dishonest", "safe": "dangerous",
    "easy": "difficult", "cheap": "expensive", "smooth": "rough",
    "near": "far", "asleep": "awake", "alive": "dead", "male": "female",
    "king": "queen", "boy": "girl", "husband": "wife", "brother": "sister",
    "father": "mother", "uncle": "aunt", "summer": "winter",
    "spring": "autumn", "morning": "evening", "positive": "negative",
    "major": "minor", "maximum": "minimum", "import": "export",
    "inhale": "exhale", "entrance": "exit", "arrival": "departure",
    "ancient": "modern", "private": "public", "simple": "complex",
    "visible": "invisible", "present": "absent", "generous": "selfish",
    "calm": "anxious", "wise": "foolish", "lazy": "hardworking",
    "beautiful": "ugly", "fat": "skinny", "sick": "healthy",
    "hungry": "full", "tight": "loose", "rise": "fall", "come": "go",
    "send": "receive", "teach": "learn", "borrow": "lend", "parent": "child",
    "odd": "even", "together": "apart", "gain": "loss", "sunny": "cloudy",
}


def both_ways(pairs: dict[str, str]) -> dict[str, str]:
    """`pairs` and each pair read backwards, where that word has no entry of its own: being
    opposites goes both ways, and "opposite of cold" is as likely a request as "opposite of hot".
    A word that is the opposite of two words ("light": heavy, dark) keeps its own entry."""
    return pairs | {value: key for key, value in pairs.items() if value not in pairs}


# The antonym brick's table. ANTONYMS (one way) is kept: the composition benchmark's splits
# were drawn from it, before the brick learned each pair backwards too.
ANTONYM_PAIRS: dict[str, str] = both_ways(ANTONYMS)

# Endings where English often leaves the regular rule (leaf/leaves, potato/potatoes, cactus/cacti,
# crisis/crises, datum/data, index/indices, man/men), and a single s (most such words are plurals
# already): their plurals come from the table, not the rule.
_IRREGULAR_ENDINGS = re.compile(r"(?:f|fe|o|us|is|um|a|ex|ix|man|[^s]s|[aeiou]z)$")


def regular_plural(word: str) -> str | None:
    """The plural of one lowercase word by the regular rules of spelling (+es after s, x, z, ch,
    sh; consonant-y to -ies; else +s), or None where English often breaks them."""
    if not re.fullmatch(r"[a-z]{2,}", word) or _IRREGULAR_ENDINGS.search(word):
        return None
    if re.search(r"(?:s|x|z|ch|sh)$", word):
        return word + "es"
    if re.search(r"[^aeiou]y$", word):
        return word[:-1] + "ies"
    return word + "s"


PLURALS: dict[str, str] = {
    # irregular
    "child": "children", "mouse": "mice", "goose": "geese", "man": "men",
    "woman": "women", "foot": "feet", "tooth": "teeth", "person": "people",
    "ox": "oxen", "louse": "lice", "sheep": "sheep", "fish": "fish",
    "deer": "deer", "moose": "moose", "salmon": "salmon",
    "aircraft": "aircraft", "series": "series", "species": "species",
    "cactus": "cacti", "fungus": "fungi", "nucleus": "nuclei",
    "crisis": "crises", "analysis": "analyses", "thesis": "theses",
    "phenomenon": "phenomena", "criterion": "criteria",
    # -f / -fe -> -ves
    "knife": "knives", "leaf": "leaves", "wolf": "wolves", "half": "halves",
    "life": "lives", "wife": "wives", "loaf": "loaves", "shelf": "shelves",
    "calf": "calves", "elf": "elves", "thief": "thieves",
    # -o -> -oes
    "potato": "potatoes", "tomato": "tomatoes", "hero": "heroes",
    "echo": "echoes",
    # consonant + y -> -ies
    "city": "cities", "baby": "babies", "party": "parties",
    "story": "stories", "lady": "ladies", "family": "families",
    "country": "countries", "puppy": "puppies", "berry": "berries",
    "cherry": "cherries", "fly": "flies", "library": "libraries",
    # vowel + y -> -ys
    "boy": "boys", "day": "days", "key": "keys", "toy": "toys",
    "monkey": "monkeys", "valley": "valleys",
    # sibilant -> -es
    "box": "boxes", "bus": "buses", "church": "churches", "dish": "dishes",
    "glass": "glasses", "fox": "foxes", "watch": "watches",
    "brush": "brushes", "class": "classes", "wish": "wishes",
    "kiss": "kisses", "bench": "benches", "match": "matches", "tax": "taxes",
    # regular -s
    "cat": "cats", "dog": "dogs", "book": "books", "car": "cars",
    "tree": "trees", "house": "houses", "bird": "birds", "apple": "apples",
    "chair": "chairs", "table": "tables", "door": "doors",
    "window": "windows", "girl": "girls", "friend": "friends",
    "river": "rivers", "road": "roads", "song": "songs", "star": "stars",
    "cup": "cups", "pen": "pens", "hat": "hats", "shoe": "shoes",
    "horse": "horses", "flower": "flowers", "computer": "computers",
    "teacher": "teachers", "lamp": "lamps", "ship": "ships",
    "cloud": "clouds", "garden": "gardens", "photo": "photos",
    "piano": "pianos",
}

FRENCH: dict[str, str] = {
    "school": "ecole", "tea": "the", "coffee": "cafe", "water": "eau",
    "bread": "pain", "cheese": "fromage", "wine": "vin", "milk": "lait",
    "apple": "pomme", "house": "maison", "cat": "chat", "dog": "chien",
    "horse": "cheval", "bird": "oiseau", "fish": "poisson", "cow": "vache",
    "book": "livre", "car": "voiture", "tree": "arbre", "flower": "fleur",
    "sun": "soleil", "moon": "lune", "star": "etoile", "sky": "ciel",
    "sea": "mer", "river": "riviere", "mountain": "montagne",
    "city": "ville", "street": "rue", "door": "porte", "window": "fenetre",
    "chair": "chaise", "bed": "lit", "kitchen": "cuisine",
    "bedroom": "chambre", "friend": "ami", "mother": "mere",
    "father": "pere", "brother": "frere", "sister": "soeur", "son": "fils",
    "daughter": "fille", "boy": "garcon", "man": "homme", "woman": "femme",
    "child": "enfant", "red": "rouge", "blue": "bleu", "green": "vert",
    "yellow": "jaune", "black": "noir", "white": "blanc", "big": "grand",
    "small": "petit", "good": "bon", "bad": "mauvais", "new": "nouveau",
    "old": "vieux", "hot": "chaud", "cold": "froid", "happy": "heureux",
    "sad": "triste", "beautiful": "beau", "day": "jour", "night": "nuit",
    "morning": "matin", "evening": "soir", "week": "semaine",
    "year": "annee", "hello": "bonjour", "goodbye": "au revoir",
    "thank you": "merci", "yes": "oui", "no": "non", "love": "amour",
    "heart": "coeur", "hand": "main", "head": "tete", "eye": "oeil",
    "mouth": "bouche", "nose": "nez", "ear": "oreille", "money": "argent",
    "work": "travail", "music": "musique", "song": "chanson", "word": "mot",
    "country": "pays", "world": "monde", "rain": "pluie", "snow": "neige",
    "wind": "vent", "fire": "feu", "egg": "oeuf", "sugar": "sucre",
    "salt": "sel", "butter": "beurre", "meat": "viande",
    "chicken": "poulet", "rice": "riz", "cake": "gateau",
    "chocolate": "chocolat", "lemon": "citron", "strawberry": "fraise",
    "library": "bibliotheque", "hospital": "hopital", "church": "eglise",
    "shop": "magasin", "airport": "aeroport", "plane": "avion",
    "boat": "bateau", "bike": "velo", "shoe": "chaussure", "hat": "chapeau",
    "shirt": "chemise", "dress": "robe", "key": "cle", "pen": "stylo",
    "paper": "papier", "computer": "ordinateur", "teacher": "professeur",
    "doctor": "medecin", "king": "roi", "queen": "reine",
}

# Everyday words added after the composition benchmark's splits were drawn from FRENCH.
MORE_FRENCH: dict[str, str] = {
    "girl": "fille", "beer": "biere", "juice": "jus", "garden": "jardin", "cup": "tasse",
    "glass": "verre", "knife": "couteau", "fork": "fourchette", "spoon": "cuillere",
    "plate": "assiette", "dinner": "diner", "lunch": "dejeuner", "breakfast": "petit dejeuner",
    "face": "visage", "hair": "cheveux", "leg": "jambe", "arm": "bras", "foot": "pied",
    "baby": "bebe", "family": "famille", "husband": "mari", "potato": "pomme de terre",
    "tomato": "tomate", "carrot": "carotte", "banana": "banane", "pear": "poire",
    "cherry": "cerise", "cloud": "nuage", "beach": "plage", "forest": "foret", "island": "ile",
    "lake": "lac", "bridge": "pont", "clock": "horloge", "phone": "telephone", "life": "vie",
    "hour": "heure", "tomorrow": "demain", "yesterday": "hier", "good night": "bonne nuit",
    "mouse": "souris", "pig": "cochon", "sheep": "mouton", "duck": "canard", "rabbit": "lapin",
    "bear": "ours", "wolf": "loup", "fox": "renard", "snake": "serpent", "frog": "grenouille",
    "bee": "abeille", "butterfly": "papillon", "pink": "rose", "grey": "gris", "brown": "marron",
    "friday": "vendredi", "sunday": "dimanche", "monday": "lundi", "summer": "ete",
    "winter": "hiver", "spring": "printemps", "autumn": "automne", "food": "nourriture",
}

# The French brick's table.
FRENCH_WORDS: dict[str, str] = FRENCH | MORE_FRENCH


# --- sentiment --------------------------------------------------------------
# Hand-written reviews, then a deterministic selection of templated ones.

_POSITIVE_REVIEWS = (
    "a truly wonderful film", "the staff were friendly",
    "the staff were lovely", "highly recommended", "worth every penny",
    "loved every minute", "best meal ever", "i would come back",
    "five stars from me", "an absolute delight", "pure joy to watch",
    "such a cozy place", "great value for money", "a real page turner",
    "the waiter was charming", "fresh and tasty", "beautifully written",
    "smart and funny", "a perfect evening", "simply the best",
)

_NEGATIVE_REVIEWS = (
    "a total waste", "the staff were rude", "the staff were lazy",
    "never coming back", "not worth the money", "i want a refund",
    "boring from start", "worst meal ever", "i fell asleep",
    "cold and tasteless", "badly written", "a complete mess",
    "one star at most", "avoid this place", "too slow and dull",
    "the waiter was rude", "dirty and noisy", "what a letdown",
    "a painful evening", "simply the worst",
)

_SUBJECTS = (
    "food", "movie", "film", "service", "hotel", "book", "music", "show",
    "meal", "room", "ending", "acting", "plot", "concert", "game", "view",
    "album", "story", "trip", "pizza",
)

_POSITIVE_WORDS = (
    "great", "wonderful", "amazing", "excellent", "fantastic", "superb",
    "lovely", "brilliant", "perfect", "delightful",
)

_NEGATIVE_WORDS = (
    "awful", "terrible", "horrible", "dreadful", "poor", "bad",
    "disappointing", "mediocre", "lousy", "dull",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _templated(words: tuple[str, ...], love: str, hate_free: str) -> list[str]:
    """All templated reviews for one polarity, in a fixed order."""
    out = []
    for i, subject in enumerate(_SUBJECTS):
        for j, word in enumerate(words):
            form = (i + j) % 4
            if form == 0:
                out.append(f"the {subject} was {word}")
            elif form == 1:
                out.append(f"{_article(word)} {word} {subject}")
            elif form == 2:
                out.append(f"truly {word} {subject}")
            else:
                out.append(f"{word} {subject} overall")
        out.append(f"i {love} the {subject}")
        out.append(f"i {hate_free} the {subject}")
    return out


def _select(reviews: tuple[str, ...], pool: list[str], total: int) -> list[str]:
    """Hand-written reviews plus a fixed strided subset of the pool."""
    chosen = list(reviews)
    seen = set(chosen)
    step = 7  # coprime with the pool size, so the stride visits every item
    idx = 0
    while len(chosen) < total:
        candidate = pool[idx % len(pool)]
        idx += step
        if candidate not in seen:
            seen.add(candidate)
            chosen.append(candidate)
    return chosen


def _build_sentiment(per_label: int = 120) -> dict[str, str]:
    positive = _select(_POSITIVE_REVIEWS,
                       _templated(_POSITIVE_WORDS, "loved", "enjoyed"),
                       per_label)
    negative = _select(_NEGATIVE_REVIEWS,
                       _templated(_NEGATIVE_WORDS, "hated", "disliked"),
                       per_label)
    table: dict[str, str] = {}
    # Interleave the two labels so neither clusters at one end.
    for pos, neg in zip(positive, negative):
        for text, label in ((pos, "positive"), (neg, "negative")):
            if text in table:
                raise ValueError(f"SENTIMENT: duplicate review {text!r}")
            table[text] = label
    return table


SENTIMENT: dict[str, str] = _build_sentiment()


# --- self-check -------------------------------------------------------------

_MIN_SIZES = {
    "CAPITALS": 48, "ANTONYMS": 90, "PLURALS": 90, "FRENCH": 90,
    "SENTIMENT": 220,
}
_ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz ")


def _check_text(table: str, key: str, text: object) -> None:
    where = f"{table}[{key!r}]"
    if not isinstance(text, str) or not text:
        raise ValueError(f"{where}: empty or non-string entry {text!r}")
    if set(text) - _ALLOWED:
        raise ValueError(f"{where}: illegal characters in {text!r}")
    if text != text.strip() or "  " in text:
        raise ValueError(f"{where}: bad spacing in {text!r}")
    if not 1 <= len(text.split(" ")) <= 4:
        raise ValueError(f"{where}: {text!r} must have 1 to 4 words")
    if len(text) > 32:
        raise ValueError(f"{where}: {text!r} is longer than 32 characters")


def _literal_duplicates() -> list[str]:
    """Keys written twice in a dict literal (which a dict would hide)."""
    import ast
    with open(__file__, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    problems = []
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.value, ast.Dict):
            continue
        name = getattr(node.target, "id", "?")
        seen = set()
        for key in node.value.keys:
            if isinstance(key, ast.Constant):
                if key.value in seen:
                    problems.append(f"{name}[{key.value!r}]")
                seen.add(key.value)
    return problems


def check_tables() -> None:
    """Validate every table; raise ValueError naming the first bad entry."""
    tables = {
        "CAPITALS": CAPITAL_CITIES, "ANTONYMS": ANTONYM_PAIRS, "PLURALS": PLURALS,
        "FRENCH": FRENCH_WORDS, "SENTIMENT": SENTIMENT,
    }
    dupes = _literal_duplicates()
    if dupes:
        raise ValueError(f"duplicate key in literal: {dupes[0]}")
    for name, table in tables.items():
        if len(table) < _MIN_SIZES[name]:
            raise ValueError(f"{name}: only {len(table)} entries, "
                             f"need {_MIN_SIZES[name]}")
        for key, value in table.items():
            _check_text(name, key, key)
            _check_text(name, key, value)
            if name in ("CAPITALS", "ANTONYMS", "FRENCH") and key == value:
                raise ValueError(f"{name}[{key!r}]: key equals value")
            if name == "SENTIMENT" and value not in ("positive", "negative"):
                raise ValueError(f"SENTIMENT[{key!r}]: bad label {value!r}")
    n_pos = sum(v == "positive" for v in SENTIMENT.values())
    n_neg = len(SENTIMENT) - n_pos
    if min(n_pos, n_neg) < 110:
        raise ValueError(f"SENTIMENT: unbalanced ({n_pos} positive, "
                         f"{n_neg} negative)")
