"""demo/mt_corpus.py: the synthetic English->German corpus of the translation demo. Its files and
determinism, and four properties checked on generated text against tables written here: German
noun phrases agree (article, adjective ending, noun), German word order differs from English (verb
second after a fronted time word, participle and infinitive last, subordinate clauses verb-final),
and valid and test sentences use adjective-noun pairs that training never shows."""

import functools
import re

import pytest

from demo import mt_corpus

SPLITS = ("train", "valid", "test")
# (determiner, gender or pl) -> the adjective ending after it, over every case the determiner can be
# ("" no determiner, as before a plural noun); written here from a German grammar, not from the generator
ENDINGS = {("der", "m"): {"e"}, ("der", "f"): {"en"}, ("die", "f"): {"e"}, ("die", "pl"): {"en"},
           ("das", "n"): {"e"}, ("den", "m"): {"en"}, ("den", "pl"): {"en"}, ("dem", "m"): {"en"}, ("dem", "n"): {"en"},
           ("ein", "m"): {"er"}, ("ein", "n"): {"es"}, ("eine", "f"): {"e"}, ("einen", "m"): {"en"},
           ("einem", "m"): {"en"}, ("einem", "n"): {"en"}, ("einer", "f"): {"en"},
           **{(det, "pl"): {"e", "en"} for det in ("", "zwei", "drei", "viele")}}
GERMAN_AUXILIARIES = {"hat", "haben", "kann", "können", "wird", "werden"}


@pytest.fixture(scope="module")
def corpus():
    return mt_corpus.generate(3000, 300, 300, seed=3)


@functools.lru_cache(maxsize=None)
def lexicon():
    """German noun form -> {(lemma, gender or pl)} (Fenster: singular and plural), adjective stems, and every
    German verb form."""
    nouns = {}
    for _, _, gender, singular, plural in mt_corpus.NOUNS:
        nouns.setdefault(singular, set()).add((singular, gender))
        for form in {plural, mt_corpus.dative_plural(plural)}:
            nouns.setdefault(form, set()).add((singular, "pl"))
    verbs = {form for row in mt_corpus.VERBS for form in row[3:]} | GERMAN_AUXILIARIES
    return nouns, {german for _, german in mt_corpus.ADJECTIVES}, verbs


def adjective_phrases(german: str):
    """(determiner, adjective stem, ending, noun lemma, {gender or pl}) of each adjective + noun in a sentence."""
    nouns, stems, _ = lexicon()
    words = mt_corpus.tokenize(german)
    found = []
    for i, word in enumerate(words[:-1]):
        word = word.lower()  # an adjective may start the sentence
        stem = next((s for s in stems if word.startswith(s) and word[len(s):] in ("e", "en", "er", "es")), None)
        if stem and words[i + 1] in nouns:
            determiner = words[i - 1].lower() if i and words[i - 1].lower() in {d for d, _ in ENDINGS} else ""
            lemma = next(iter(nouns[words[i + 1]]))[0]
            found.append((determiner, stem, word[len(stem):], lemma, {g for _, g in nouns[words[i + 1]]}))
    return found


def test_files_and_determinism(tmp_path):
    mt_corpus.main(["--out", str(tmp_path / "a"), "--train-pairs", "200", "--valid-pairs", "20", "--test-pairs",
                    "20", "--seed", "3"])
    for split, size in zip(SPLITS, (200, 20, 20)):
        en, de = ((tmp_path / "a" / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()
                  for lang in ("en", "de"))
        assert len(en) == len(de) == size and all(line[0].isupper() and line.endswith(".") for line in en + de)
    again = mt_corpus.generate(200, 20, 20, seed=3)
    assert (tmp_path / "a" / "test.de").read_text(encoding="utf-8").splitlines() == [de for _, de in again["test"]]
    larger = mt_corpus.generate(400, 20, 20, seed=3)  # valid and test are drawn first
    assert larger["test"] == again["test"] and larger["train"][:200] == again["train"]
    assert mt_corpus.generate(200, 20, 20, seed=4)["test"] != again["test"]
    mt_corpus.main(["--out", str(tmp_path / "t"), "--train-pairs", "20", "--valid-pairs", "5", "--test-pairs", "5",
                    "--tokenize"])
    assert all(line.endswith(" .") for line in (tmp_path / "t" / "train.de").read_text(encoding="utf-8").splitlines())


def test_no_sentence_repeats(corpus):
    for index in (0, 1):
        sentences = [pair[index] for split in SPLITS for pair in corpus[split]]
        assert len(sentences) == len(set(sentences))


def test_german_noun_phrases_agree(corpus):
    phrases = [p for split in SPLITS for _, de in corpus[split] for p in adjective_phrases(de)]
    assert len(phrases) > 3000
    wrong = [p for p in phrases if not any(p[2] in ENDINGS.get((p[0], gender), ()) for gender in p[4])]
    assert not wrong, wrong[:10]
    assert {p[0] for p in phrases} == {d for d, _ in ENDINGS}  # every determiner occurs


def test_german_word_order_differs(corpus):
    _, _, verbs = lexicon()
    english_verbs = {form for row in mt_corpus.VERBS for form in row[:3]} | {"can", "will"}
    pairs = corpus["train"]
    subordinate = [de for _, de in pairs if re.search(r", (weil|obwohl|dass) ", de)]
    assert len(subordinate) > len(pairs) / 3
    assert all(mt_corpus.tokenize(de)[-2] in verbs for de in subordinate)  # the finite verb ends the clause
    fronted = [de for en, de in pairs if en.startswith(("Yesterday", "Tomorrow", "Today", "Now"))]
    assert fronted and all(mt_corpus.tokenize(de)[1] in verbs for de in fronted)  # verb second
    # the participle or infinitive of a German main clause comes last, after the object
    modal = [de for en, de in pairs if re.fullmatch(r"\w+ \w+ (can|will) \w+ \w+ \w+\.", en)]
    assert modal and all(mt_corpus.tokenize(de)[-2] in verbs for de in modal)
    verb_last = sum(mt_corpus.tokenize(de)[-2] in verbs for _, de in pairs)
    english_verb_last = sum(mt_corpus.tokenize(en)[-2] in english_verbs for en, _ in pairs)
    assert verb_last > 0.6 * len(pairs) and english_verb_last < 0.1 * len(pairs), (verb_last, english_verb_last)


def test_held_out_adjective_noun_pairs(corpus):
    seen = {(stem, noun) for _, de in corpus["train"] for _, stem, _, noun, _ in adjective_phrases(de)}
    for split in ("valid", "test"):
        for _, de in corpus[split]:
            assert {(stem, noun) for _, stem, _, noun, _ in adjective_phrases(de)} - seen, de
    train_words = {w for _, de in corpus["train"] for w in mt_corpus.tokenize(de)}
    test_words = [w for _, de in corpus["test"] for w in mt_corpus.tokenize(de)]
    assert sum(w in train_words for w in test_words) > 0.99 * len(test_words)  # new pairs, known words
