"""The embedded synthetic language pair: Ulami (`ul`) to Zerak (`zk`), the offline default corpus.

Both languages were invented for this project. A small synchronous grammar derives a source sentence and its
translation together, so the translation is a deterministic, word-for-word function of the source: every
source word becomes exactly one target word, and the two sentences have the same length.

Ulami (source) is SVO everywhere: determiner, adjectives, noun; prepositions; relative clauses after the noun
("ke" + clause); complement clauses after verbs of saying ("sa" + clause); coordination with "ni". Nouns and
verbs mark number (plural nouns end in -s, plural verbs in -n); there is no gender.

Zerak (target) differs in three ways that a translation model has to learn:

- local reordering: adjectives follow the noun ("ta bilo tavo" -> "dy drek gruno");
- long-distance reordering: in every subordinate clause (relative or complement) the verb is
  clause-final, after its object and prepositional phrases, however long they are (a complement clause of
  its own stays after it);
- agreement: every noun has a gender (masculine or feminine) that Ulami does not show. Determiners,
  adjectives and relative pronouns agree with their noun in gender and number, and verbs with their subject,
  which may be a relative clause's antecedent far to the left. Coordinated subjects are plural, and feminine
  only when every conjunct is.

Each sentence draws a length budget (uniform over the short range or the full range), and the derivation
spends it on adjectives, prepositional phrases, relative and complement clauses (nested up to
`Grammar.max_depth`) and clause coordination. The grammar only places a subordinate clause where what follows
it (a verb, "ni" + clause, or the final period) cannot be read as part of it, so that a source sentence has a
single derivation and a single translation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

SOURCE_LANG = "ul"  # Ulami
TARGET_LANG = "zk"  # Zerak


class Category(Enum):
    NOUN = "noun"
    ADJECTIVE = "adjective"
    VERB = "verb"
    DETERMINER = "determiner"
    PREPOSITION = "preposition"
    RELATIVE = "relative"  # the relative pronoun (ul "ke")
    COMPLEMENTIZER = "complementizer"  # "that" after verbs of saying (ul "sa")
    CONJUNCTION = "conjunction"
    PERIOD = "period"


@dataclass(frozen=True)
class WordInfo:
    """What a word form is: its category and lemma, and the agreement features it carries (None: unmarked)."""

    category: Category
    lemma: str
    feminine: bool | None = None
    plural: bool | None = None


# The lexicon. Each line: Ulami stem, Zerak stem (and, for nouns, the Zerak gender).
_NOUNS = """
tavo drek m   mira fyln f   selu gorm m   karo hazt f   nipa jyrt m   lume krob m   vosa lymb f   tiro mozg m
pela nerk f   rumi plyt f   sako rusk m   belo snag m   fina tvom m   goru vyrd f   hila zolk m   juna brag f
kemo dyst m   lasi gneb f   mopu hyrk m   nori kelv f   pavi lorn m   rela myrk f   sonu nosp m   tuka prag f
vimo stog m   bari tryx f   doka vesk f   femi zand m   gala bolk f   hoto dreg m   kiru fost f   lomi grav m
mesa hulm f   nuvo jask m   pura kryn f   roka lusk m   silo morv f   tema nyd m    vola pesk f   zuri rogd m
bemo skel f   kala torb m   dipo vult f   foka zerg m   guli bysk f   kava dorv m   lepo gelk f   muna hovt m
"""
_ADJECTIVES = """
bilo grun   kesa tolv   mure brask  tani dyrm   lopa felk   vire hask   sumi kyrv   noke lomb
ralu mirk   fesi nolt   gani prest  poru ryng   dume sylv   lika tyrk   ture vask   boni zelt
seka bryd   rimo dolk   vatu fynd   kine gast   molu holm   pise jurv   ladu krest  fore lynd
"""
_TRANSITIVE_VERBS = """
mita brok   paso skav   rike dreln  lova gulp   sune hest   tepa jork   kodi klav   bavi murd
nelo nysk   fupa pralt  gesi rhom   hune stav   damo tusk   vike vorg   loti zeld   rapu bulk
sefo dwar   tulo fryt   kime grod   pade hyld   zoka kemp   molo lurg   nisa mosk   veku prund
"""
_INTRANSITIVE_VERBS = """
dulo snor   safi glyp   kepu drav   rova hurk   tine tyv    balu blon   fiko skyr   mesu varp
lade zumr   gopi frok
"""
_SAYING_VERBS = """
soke kvel   tari dromp  vunu yst    pemi halv   kolu sprek  risa toln
"""
_PREPOSITIONS = """
pe hal   nu bez   vi gor   ro tyk   dal vorn   kon zat   mi pryg   tu lud
"""

# Zerak inflections, indexed by agreement class: 2 * plural + feminine (m.sg, f.sg, m.pl, f.pl).
_ADJECTIVE_ENDINGS = ("o", "a", "on", "an")
_VERB_ENDINGS = ("et", "it", "en", "in")
_RELATIVE_PRONOUNS = ("vy", "va", "vyr", "var")
# Ulami determiner (singular, plural) -> Zerak forms by agreement class.
_DETERMINERS = (
    (("ta", "ta"), ("dy", "da", "dyr", "dar")),  # definite
    (("un", "som"), ("ek", "ak", "hem", "ham")),  # indefinite
    (("eso", "esi"), ("zog", "zag", "zogr", "zagr")),  # demonstrative
)
_DETERMINER_WEIGHTS = (5, 3, 2)
_RELATIVE = ("ke", _RELATIVE_PRONOUNS)
_COMPLEMENTIZER = ("sa", "dak")
_CONJUNCTION = ("ni", "ug")
_PERIOD = (".", ".")


def _table(text: str, width: int) -> list[tuple[str, ...]]:
    words = text.split()
    return [tuple(words[i : i + width]) for i in range(0, len(words), width)]


@dataclass(frozen=True)
class _Noun:
    source: tuple[str, str]  # singular, plural
    target: tuple[str, str]
    feminine: bool


@dataclass(frozen=True)
class _Inflected:
    """An adjective or verb: Ulami forms (singular, plural) and Zerak forms by agreement class."""

    source: tuple[str, str]
    target: tuple[str, str, str, str]


def _nouns() -> list[_Noun]:
    return [_Noun((s, s + "s"), (t, t + "ar"), g == "f") for s, t, g in _table(_NOUNS, 3)]


def _inflected(text: str, endings: tuple[str, ...], plural_suffix: str) -> list[_Inflected]:
    return [_Inflected((s, s + plural_suffix), tuple(t + e for e in endings)) for s, t in _table(text, 2)]


_NOUN_LEXICON = _nouns()
_ADJECTIVE_LEXICON = _inflected(_ADJECTIVES, _ADJECTIVE_ENDINGS, "")  # Ulami adjectives do not inflect
_TRANSITIVE_LEXICON = _inflected(_TRANSITIVE_VERBS, _VERB_ENDINGS, "n")
_INTRANSITIVE_LEXICON = _inflected(_INTRANSITIVE_VERBS, _VERB_ENDINGS, "n")
_SAYING_LEXICON = _inflected(_SAYING_VERBS, _VERB_ENDINGS, "n")
_PREPOSITION_LEXICON = _table(_PREPOSITIONS, 2)


def _word_tables() -> tuple[dict[str, WordInfo], dict[str, WordInfo]]:
    source: dict[str, WordInfo] = {}
    target: dict[str, WordInfo] = {}

    def add(table: dict[str, WordInfo], word: str, info: WordInfo) -> None:
        if word in table:
            raise ValueError(f"synthetic lexicon: {word!r} is spelled twice")
        table[word] = info

    def classes(forms, category, lemma):
        for index, form in enumerate(forms):
            add(target, form, WordInfo(category, lemma, bool(index & 1), bool(index & 2)))

    for noun in _NOUN_LEXICON:
        lemma = noun.source[0]
        for plural in (False, True):
            add(source, noun.source[plural], WordInfo(Category.NOUN, lemma, None, plural))
            add(target, noun.target[plural], WordInfo(Category.NOUN, lemma, noun.feminine, plural))
    for adjective in _ADJECTIVE_LEXICON:
        add(source, adjective.source[0], WordInfo(Category.ADJECTIVE, adjective.source[0]))
        classes(adjective.target, Category.ADJECTIVE, adjective.source[0])
    for verb in _TRANSITIVE_LEXICON + _INTRANSITIVE_LEXICON + _SAYING_LEXICON:
        for plural in (False, True):
            add(source, verb.source[plural], WordInfo(Category.VERB, verb.source[0], None, plural))
        classes(verb.target, Category.VERB, verb.source[0])
    for (singular, plural), forms in _DETERMINERS:
        add(
            source,
            singular,
            WordInfo(Category.DETERMINER, singular, None, None if singular == plural else False),
        )
        if plural != singular:
            add(source, plural, WordInfo(Category.DETERMINER, singular, None, True))
        classes(forms, Category.DETERMINER, singular)
    for source_word, target_word in _PREPOSITION_LEXICON:
        add(source, source_word, WordInfo(Category.PREPOSITION, source_word))
        add(target, target_word, WordInfo(Category.PREPOSITION, source_word))
    add(source, _RELATIVE[0], WordInfo(Category.RELATIVE, _RELATIVE[0]))
    classes(_RELATIVE[1], Category.RELATIVE, _RELATIVE[0])
    for (source_word, target_word), category in (
        (_COMPLEMENTIZER, Category.COMPLEMENTIZER),
        (_CONJUNCTION, Category.CONJUNCTION),
        (_PERIOD, Category.PERIOD),
    ):
        add(source, source_word, WordInfo(category, source_word))
        add(target, target_word, WordInfo(category, source_word))
    return source, target


SOURCE_WORDS, TARGET_WORDS = _word_tables()
"""Every word form of each language (the period included) and what it is."""


@dataclass(frozen=True)
class Grammar:
    """The settings that define the synthetic pair. The defaults are the language of `generate_pairs`;
    other values (a smaller lexicon, shorter sentences) serve tests and experiments."""

    min_length: int = 4  # the length budget of a sentence, in words, period included
    max_length: int = 72
    long_share: float = 0.5  # share of budgets drawn from [min, max]; the rest from [min, (min + max) // 2]
    max_clauses: int = 3  # main clauses joined by "ni"
    clause_coordination: float = 0.3  # chance of one more main clause, when the budget allows it
    subject_coordination: float = 0.12  # chance that a subject is "NP ni NP"
    max_depth: int = 3  # nesting of subordinate (relative and complement) clauses
    relative_clause: float = (
        0.55  # chance that an NP with words to spare (if allowed) takes a relative clause
    )
    object_relative: float = 0.4  # share of relative clauses whose gap is the object
    saying_verb: float = 0.25  # chance of a verb of saying (and its complement clause), budget allowing
    transitive_verb: float = 0.65
    prepositional_phrase: float = 0.35  # chance of each of up to two prepositional phrases in a clause
    plural: float = 0.35
    lexicon_size: int | None = None  # use only the first N entries of each word class (None: all)


DEFAULT_GRAMMAR = Grammar()

# A target token: the Zerak word and the position of the Ulami word it translates.
_Token = tuple[str, int]


@dataclass(frozen=True)
class AlignedPair:
    """A generated pair with its word alignment: `alignment[j]` is the source position of target word j."""

    source: str
    target: str
    alignment: tuple[int, ...]

    def links(self) -> list[tuple[int, int]]:
        """The alignment as (source position, target position) links, in source order: the pairs of the
        Pharaoh format ("i-j"), one per word of either side, since the translation is word for word."""
        return sorted((i, j) for j, i in enumerate(self.alignment))


class _Derivation:
    """Derives one sentence pair at a time. Source words are emitted in source order into `self.source`;
    each constituent returns its target tokens, which its parent arranges in Zerak order."""

    def __init__(self, rng: random.Random, grammar: Grammar):
        self.rng = rng
        self.grammar = grammar
        size = grammar.lexicon_size
        self.nouns = _NOUN_LEXICON[:size]
        self.adjectives = _ADJECTIVE_LEXICON[:size]
        self.transitive = _TRANSITIVE_LEXICON[:size]
        self.intransitive = _INTRANSITIVE_LEXICON[:size]
        self.saying = _SAYING_LEXICON[:size]
        self.prepositions = _PREPOSITION_LEXICON[:size]
        self.source: list[str] = []

    def emit(self, source_word: str, target_word: str) -> _Token:
        self.source.append(source_word)
        return target_word, len(self.source) - 1

    def split(self, extra: int, weights: list[float]) -> list[int]:
        """Share `extra` words among parts at random, in proportion to the weights on average."""
        draws = [w * self.rng.random() for w in weights]
        total = sum(draws) or 1.0
        shares = [int(extra * d / total) for d in draws]
        shares[max(range(len(draws)), key=draws.__getitem__)] += extra - sum(shares)  # rounding losses
        return shares

    def sentence(self, budget: int) -> list[_Token]:
        self.source = []
        g, rng = self.grammar, self.rng
        budget -= 1  # the period
        clauses = 1
        while (
            clauses < g.max_clauses and budget >= 9 * (clauses + 1) and rng.random() < g.clause_coordination
        ):
            clauses += 1
        spare = max(budget - (clauses - 1) - 3 * clauses, 0)
        budgets = [3 + share for share in self.split(spare, [1.0] * clauses)]
        target: list[_Token] = []
        for index, clause_budget in enumerate(budgets):
            if index:
                target.append(self.emit(*_CONJUNCTION))
            # A main clause may end in a subordinate clause: what follows ("ni" + clause, or the period)
            # cannot continue it.
            target += self.clause(clause_budget, depth=0, open_right=True, subordinate=False)
        target.append(self.emit(*_PERIOD))
        return target

    def clause(
        self,
        budget: int,
        depth: int,
        open_right: bool,
        subordinate: bool,
        subject_gap: int | None = None,
        object_gap: bool = False,
    ) -> list[_Token]:
        """A clause of about `budget` words. `subject_gap` is the agreement class of a relative clause's
        antecedent when the gap is the subject; `object_gap` marks an object relative. `open_right`: whether
        the clause may end in a subordinate clause (what follows it cannot be read as its continuation)."""
        g, rng = self.grammar, self.rng
        has_subject = subject_gap is None
        extra = budget - 1 - (2 if has_subject else 0)  # beyond the verb and a bare subject
        if object_gap:
            kind = self.transitive
        elif depth < g.max_depth and extra >= 5 and rng.random() < g.saying_verb:
            kind = self.saying
            extra -= 4  # "sa" and a three-word clause
        elif extra >= 2 and rng.random() < g.transitive_verb:
            kind = self.transitive
            extra -= 2
        else:
            kind = self.intransitive
        has_object = kind is self.transitive and not object_gap
        prepositional_phrases = 0
        while prepositional_phrases < 2 and extra >= 3 and rng.random() < g.prepositional_phrase:
            prepositional_phrases += 1
            extra -= 3
        # Parts that can grow: subject, object, each prepositional phrase, the complement clause.
        weights = [1.0 if has_subject else 0.0, 1.5 if has_object else 0.0]
        weights += [1.0] * prepositional_phrases + [3.0 if kind is self.saying else 0.0]
        shares = self.split(max(extra, 0), weights)

        if has_subject:
            # The subject is followed by its verb, so it may end in a relative clause.
            subject, agreement = self.subject(2 + shares[0], depth)
        else:
            subject, agreement = [], subject_gap
        verb_entry = rng.choice(kind)
        verb = [self.emit(verb_entry.source[agreement >> 1], verb_entry.target[agreement])]
        ends_here = prepositional_phrases == 0 and kind is not self.saying
        obj = self.noun_phrase(2 + shares[1], depth, open_right and ends_here)[0] if has_object else []
        phrases: list[_Token] = []
        for index in range(prepositional_phrases):
            last = index == prepositional_phrases - 1 and kind is not self.saying
            phrases += self.prepositional_phrase(3 + shares[2 + index], depth, open_right and last)
        complement: list[_Token] = []
        if kind is self.saying:
            complement.append(self.emit(*_COMPLEMENTIZER))
            complement += self.clause(3 + shares[-1], depth + 1, open_right, subordinate=True)
        if subordinate:  # Zerak: the verb of a subordinate clause is final, before an extraposed complement
            return subject + obj + phrases + verb + complement
        return subject + verb + obj + phrases + complement

    def subject(self, budget: int, depth: int) -> tuple[list[_Token], int]:
        """A subject NP, or two coordinated ones: plural, and feminine only when both conjuncts are."""
        if budget >= 5 and self.rng.random() < self.grammar.subject_coordination:
            first_budget = 2 + self.split(budget - 5, [1.0, 1.0])[0]
            # The first conjunct is followed by "ni", which a relative clause inside it could swallow.
            first, first_agreement = self.noun_phrase(first_budget, depth, open_right=False)
            conjunction = self.emit(*_CONJUNCTION)
            second, second_agreement = self.noun_phrase(budget - first_budget - 1, depth, open_right=True)
            agreement = 2 | (first_agreement & second_agreement & 1)
            return [*first, conjunction, *second], agreement
        return self.noun_phrase(budget, depth, open_right=True)

    def noun_phrase(self, budget: int, depth: int, open_right: bool) -> tuple[list[_Token], int]:
        """Determiner, adjectives, noun, then a prepositional phrase or a relative clause (not both: a
        relative clause after a prepositional phrase could attach to either noun). Returns the target tokens
        and the agreement class."""
        g, rng = self.grammar, self.rng
        noun = rng.choice(self.nouns)
        plural = rng.random() < g.plural
        agreement = 2 * plural + noun.feminine
        extra = budget - 2
        adjectives = min(extra, rng.choice((0, 0, 0, 1, 1, 1, 2, 2)))
        extra -= adjectives
        relative = extra >= 2 and open_right and depth < g.max_depth and rng.random() < g.relative_clause
        if extra >= 3 and not relative:
            phrase = True
        else:
            phrase = False
            if not relative:  # too few words for a phrase: spend them on adjectives
                adjectives = min(2, adjectives + extra)

        determiner_forms = rng.choices(_DETERMINERS, _DETERMINER_WEIGHTS)[0]
        determiner = self.emit(determiner_forms[0][plural], determiner_forms[1][agreement])
        adjective_tokens = []
        for entry in rng.choices(self.adjectives, k=adjectives):
            adjective_tokens.append(self.emit(entry.source[0], entry.target[agreement]))
        tokens = [determiner, self.emit(noun.source[plural], noun.target[plural]), *adjective_tokens]
        if phrase:
            tokens += self.prepositional_phrase(extra, depth, open_right)
        elif relative:
            tokens.append(self.emit(_RELATIVE[0], _RELATIVE[1][agreement]))
            if extra >= 4 and rng.random() < g.object_relative:
                tokens += self.clause(extra - 1, depth + 1, open_right, subordinate=True, object_gap=True)
            else:
                tokens += self.clause(
                    extra - 1, depth + 1, open_right, subordinate=True, subject_gap=agreement
                )
        return tokens, agreement

    def prepositional_phrase(self, budget: int, depth: int, open_right: bool) -> list[_Token]:
        preposition = self.emit(*self.rng.choice(self.prepositions))
        return [preposition, *self.noun_phrase(budget - 1, depth, open_right)[0]]


def _derive(n: int, seed: int, grammar: Grammar):
    rng = random.Random(seed)
    derivation = _Derivation(rng, grammar)
    low, high = grammar.min_length, grammar.max_length
    for _ in range(n):
        top = high if rng.random() < grammar.long_share else (low + high) // 2
        target = derivation.sentence(rng.randint(low, top))
        yield derivation.source, target


def generate_pairs(n: int, seed: int, grammar: Grammar = DEFAULT_GRAMMAR) -> list[tuple[str, str]]:
    """`n` (Ulami, Zerak) sentence pairs, the same for the same seed (and grammar)."""
    return [
        (" ".join(source), " ".join(word for word, _ in target))
        for source, target in _derive(n, seed, grammar)
    ]


def generate_aligned(n: int, seed: int, grammar: Grammar = DEFAULT_GRAMMAR) -> list[AlignedPair]:
    """The pairs of `generate_pairs(n, seed, grammar)` with their word alignments."""
    return list(iter_aligned(n, seed, grammar))


def iter_aligned(n: int, seed: int, grammar: Grammar = DEFAULT_GRAMMAR) -> Iterator[AlignedPair]:
    """`generate_aligned(n, seed, grammar)` one pair at a time, for corpora too large to hold."""
    for source, target in _derive(n, seed, grammar):
        yield AlignedPair(" ".join(source), " ".join(word for word, _ in target), tuple(i for _, i in target))


def describe() -> str:
    """A paragraph for the README: what the synthetic pair is and what it tests."""
    return " ".join(
        [
            "The default corpus is a synthetic language pair generated offline by `nmt/data/synthetic.py`:",
            f"Ulami ({SOURCE_LANG}) to Zerak ({TARGET_LANG}), two languages invented for this project,",
            f"with {len(SOURCE_WORDS)} and {len(TARGET_WORDS)} word forms.",
            "A small synchronous grammar derives both sentences together, so the translation is a",
            "deterministic word-for-word function of the source.",
            "It has recursion (prepositional phrases, relative and complement clauses, coordination),",
            "a local reordering (adjectives follow the noun in Zerak), a long-distance one (the verb of",
            "every subordinate clause moves to the end of its clause) and agreement (Zerak determiners,",
            "adjectives, relative pronouns and verbs agree in gender and number with their noun or subject;",
            "Ulami shows no gender).",
            f"Sentence lengths spread from {DEFAULT_GRAMMAR.min_length} to about",
            f"{DEFAULT_GRAMMAR.max_length} words.",
        ]
    )
