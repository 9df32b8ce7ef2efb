"""The synthetic pair: deterministic, broad in length, a few hundred types, unambiguous, and with the local
reordering, the long-distance reordering and the agreement it claims."""

from __future__ import annotations

from collections import defaultdict

import pytest

from nmt.data.synthetic import (
    SOURCE_LANG,
    SOURCE_WORDS,
    TARGET_LANG,
    TARGET_WORDS,
    Category,
    Grammar,
    describe,
    generate_aligned,
    generate_pairs,
)


@pytest.fixture(scope="module")
def aligned():
    return generate_aligned(5000, seed=7)


def test_same_seed_same_pairs_and_other_seed_other_pairs():
    assert generate_pairs(300, seed=11) == generate_pairs(300, seed=11)
    assert generate_pairs(300, seed=11) != generate_pairs(300, seed=12)
    assert generate_pairs(100, seed=11) == generate_pairs(300, seed=11)[:100]


def test_aligned_pairs_are_the_generated_pairs(aligned):
    assert [(p.source, p.target) for p in aligned] == generate_pairs(len(aligned), seed=7)


def test_language_codes_and_description():
    assert SOURCE_LANG != TARGET_LANG
    assert all(code.isascii() and code.isalpha() and code.islower() for code in (SOURCE_LANG, TARGET_LANG))
    assert SOURCE_LANG in describe() and TARGET_LANG in describe()


def test_lengths_spread_from_short_to_over_sixty(aligned):
    lengths = [len(p.source.split()) for p in aligned]
    assert min(lengths) <= 5
    assert max(lengths) >= 60
    assert sum(n > 30 for n in lengths) / len(lengths) >= 0.25
    assert sum(n > 50 for n in lengths) / len(lengths) >= 0.05
    # Every 10-word bucket of an evaluation by length gets sentences.
    buckets = {min(n // 10, 6) for n in lengths}
    assert buckets == set(range(7))


def test_a_few_hundred_lowercase_types_per_side_with_distinct_spellings(aligned):
    source_types = {w for p in aligned for w in p.source.split()}
    target_types = {w for p in aligned for w in p.target.split()}
    for types, lexicon in ((source_types, SOURCE_WORDS), (target_types, TARGET_WORDS)):
        assert 150 <= len(types) <= 500
        assert types <= set(lexicon)
        assert all(w == "." or (w.isascii() and w.isalpha() and w.islower()) for w in types)
    assert source_types & target_types == {"."}


def test_translation_is_word_for_word_and_a_function_of_the_source():
    # A two-word lexicon and short sentences make equal source sentences frequent: each must have one
    # translation, which fails if the grammar lets a phrase attach inside or outside a relative clause.
    grammar = Grammar(lexicon_size=2, max_length=14, long_share=1.0)
    translations = defaultdict(set)
    for source, target in generate_pairs(20000, seed=3, grammar=grammar):
        translations[source].add(target)
    assert len(translations) < 20000  # the check has repeats to compare
    assert all(len(targets) == 1 for targets in translations.values())


def test_alignment_is_one_to_one_and_lemma_preserving(aligned):
    for pair in aligned:
        source, target = pair.source.split(), pair.target.split()
        assert sorted(pair.alignment) == list(range(len(source)))
        for j, i in enumerate(pair.alignment):
            assert TARGET_WORDS[target[j]].category == SOURCE_WORDS[source[i]].category
            assert TARGET_WORDS[target[j]].lemma == SOURCE_WORDS[source[i]].lemma


def test_links_are_the_alignment_as_source_target_pairs_in_source_order(aligned):
    for pair in aligned[:500]:
        links = pair.links()
        assert links == sorted(links)
        assert [i for i, _ in links] == list(range(len(pair.source.split())))  # every source word once
        assert sorted(j for _, j in links) == list(range(len(pair.target.split())))  # every target word once
        assert all(pair.alignment[j] == i for i, j in links)


def test_adjectives_follow_the_noun_in_the_target(aligned):
    swapped = 0
    for pair in aligned:
        source, target = pair.source.split(), pair.target.split()
        position = {i: j for j, i in enumerate(pair.alignment)}
        for i, word in enumerate(source):
            if SOURCE_WORDS[word].category is Category.ADJECTIVE:
                noun = next(
                    k for k in range(i + 1, len(source)) if SOURCE_WORDS[source[k]].category is Category.NOUN
                )
                assert position[noun] < position[i]
                assert TARGET_WORDS[target[position[noun]]].category is Category.NOUN
                swapped += 1
    assert swapped > 1000


def _category(words, lexicon, index):
    return lexicon[words[index]].category if index < len(words) else None


def test_subordinate_verbs_move_to_the_end_of_their_clause(aligned):
    """A subject relative "ke V O ..." becomes "rel O ... V": the verb moves right past its object, far in
    long clauses; a main clause keeps the source order."""
    moves = []
    for pair in aligned:
        source = pair.source.split()
        position = {i: j for j, i in enumerate(pair.alignment)}
        for i, word in enumerate(source[:-2]):
            # "ke" + transitive verb + determiner: a subject relative with its object.
            if (
                SOURCE_WORDS[word].category is Category.RELATIVE
                and SOURCE_WORDS[source[i + 1]].category is Category.VERB
                and SOURCE_WORDS[source[i + 2]].category is Category.DETERMINER
            ):
                verb, obj = i + 1, i + 2
                assert position[obj] == position[i] + 1  # the object now follows the relative pronoun
                assert position[verb] > position[obj]
                moves.append(position[verb] - verb)
        # The verb of a plain main clause ("det noun verb ...") stays in place.
        if [_category(source, SOURCE_WORDS, k) for k in range(3)] == [
            Category.DETERMINER,
            Category.NOUN,
            Category.VERB,
        ]:
            assert position[2] == 2
    assert len(moves) > 500
    assert max(moves) >= 15  # long-distance: the verb crosses a long object
    assert sum(m >= 5 for m in moves) / len(moves) > 0.2


def test_a_complement_clause_ends_with_its_verb_in_the_target(aligned):
    """ "S V sa S' V' O' PP' ." becomes "S V dak S' O' PP' V' .": in a sentence of one main clause and one
    complement clause (no relative clause or coordination), the target's last word before the period is the
    complement clause's verb."""
    moved = 0
    for pair in aligned:
        source = pair.source.split()
        if source.count("sa") != 1 or "ke" in source or "ni" in source:
            continue
        clause = [SOURCE_WORDS[w].category for w in source[source.index("sa") + 1 :]]
        verb = source.index("sa") + 1 + clause.index(Category.VERB)
        assert pair.alignment[-2] == verb
        moved += verb != len(source) - 2
    assert moved > 100


def _features(word):
    info = TARGET_WORDS[word]
    return info.feminine, info.plural


def test_determiners_and_adjectives_agree_with_their_noun(aligned):
    checked = 0
    for pair in aligned:
        target = pair.target.split()
        for j, word in enumerate(target):
            if TARGET_WORDS[word].category is not Category.NOUN:
                continue
            assert TARGET_WORDS[target[j - 1]].category is Category.DETERMINER
            assert _features(target[j - 1]) == _features(word)
            k = j + 1
            while k < len(target) and TARGET_WORDS[target[k]].category is Category.ADJECTIVE:
                assert _features(target[k]) == _features(word)
                checked += 1
                k += 1
            if k < len(target) and TARGET_WORDS[target[k]].category is Category.RELATIVE:
                assert _features(target[k]) == _features(
                    word
                )  # the relative pronoun agrees with its antecedent
    assert checked > 1000


NOUN_PHRASE = {Category.DETERMINER, Category.ADJECTIVE, Category.NOUN}


def test_verbs_agree_with_their_subject(aligned):
    simple = coordinated = relative = 0
    for pair in aligned:
        source, target = pair.source.split(), pair.target.split()
        position = {i: j for j, i in enumerate(pair.alignment)}
        categories = [SOURCE_WORDS[w].category for w in source]
        verb = categories.index(Category.VERB)
        head = categories[:verb]
        if Category.NOUN in head and set(head) <= NOUN_PHRASE:
            # "det adj* noun verb": the verb takes the noun's gender and number.
            noun = head.index(Category.NOUN)
            assert _features(target[position[verb]]) == _features(target[position[noun]])
            assert SOURCE_WORDS[source[verb]].plural == SOURCE_WORDS[source[noun]].plural
            simple += 1
        elif Category.CONJUNCTION in head and set(head) <= NOUN_PHRASE | {Category.CONJUNCTION}:
            # "det adj* noun ni det adj* noun verb": plural, feminine only when both nouns are.
            nouns = [position[i] for i, c in enumerate(head) if c is Category.NOUN]
            both_feminine = all(TARGET_WORDS[target[j]].feminine for j in nouns)
            assert _features(target[position[verb]]) == (both_feminine, True)
            coordinated += 1
        for i in range(len(source) - 1):
            # A subject relative: the verb agrees with the relative pronoun, that is, with the antecedent.
            if categories[i] is Category.RELATIVE and categories[i + 1] is Category.VERB:
                assert _features(target[position[i + 1]]) == _features(target[position[i]])
                relative += 1
    assert simple > 500 and coordinated > 50 and relative > 500
