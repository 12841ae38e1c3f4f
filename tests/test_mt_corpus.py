"""scripts/make_mt_corpus.py: the synthetic English->German corpus for the translation demo.

Files and splits (aligned, no empty lines, deterministic for a seed, splits disjoint), the German
inflection functions on chosen inputs, whole clauses built by hand (verb second, verb final,
separable verbs, negation, pronoun order), and a scan of a generated sample with paradigm tables
written out here independently of the script: every determiner + adjective + noun agrees in
gender, case and number (and with the case its preposition governs), subordinate and relative
clauses end with their finite verb, yes/no questions start with it.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_mt_corpus.py"


def load():
    spec = importlib.util.spec_from_file_location("make_mt_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_mt_corpus"] = module
    spec.loader.exec_module(module)
    return module


mt = load()
SPLITS = ("train", "valid", "test")


def make(out, *args, hashseed="0"):
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def read(folder, split, lang):
    return (folder / f"{split}.{lang}").read_text(encoding="utf-8").split("\n")[:-1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("mt")
    stdout = make(out / "a", "--train-pairs", "1500", "--valid-pairs", "120", "--test-pairs", "120", "--seed", "3")
    return out, stdout


@pytest.fixture(scope="module")
def sample():
    """Pairs straight from the generator (no files), for the grammar scans."""
    return [pair for pairs in mt.generate(3000, 0, 0, seed=5).values() for pair in pairs]


# ---------------------------------------------------------------------------------------------
# files and splits


def test_files_aligned_nonempty_and_summary(corpus):
    out, stdout = corpus
    sizes = {"train": 1500, "valid": 120, "test": 120}
    for split in SPLITS:
        en, de = read(out / "a", split, "en"), read(out / "a", split, "de")
        assert len(en) == len(de) == sizes[split]
        assert all(line.strip() and line == line.strip() for line in en + de)
        for line in en + de:
            assert 4 <= mt.count_words(line) <= 20, line
            assert line[0].isupper() and line[-1] in ".?", line
        assert f"{split}: {sizes[split]} pairs" in stdout
    assert re.search(r"vocabulary \(train, tokens incl\. punctuation\): en \d+, de \d+", stdout)
    assert re.search(r"mean length en \d+\.\d / de \d+\.\d words", stdout)


def test_splits_disjoint_and_deduplicated(corpus):
    out, _ = corpus
    for lang in ("en", "de"):
        lines = [line for split in SPLITS for line in read(out / "a", split, lang)]
        assert len(lines) == len(set(lines)), f"repeated {lang} sentences"


def test_deterministic_for_a_seed(corpus, tmp_path):
    out, _ = corpus
    # same seed, another hash seed (set iteration order must not matter)
    make(tmp_path / "b", "--train-pairs", "1500", "--valid-pairs", "120", "--test-pairs", "120", "--seed", "3",
         hashseed="12345")
    for split in SPLITS:
        for lang in ("en", "de"):
            assert read(out / "a", split, lang) == read(tmp_path / "b", split, lang)
    # valid and test are drawn first: they do not depend on the training size
    make(tmp_path / "c", "--train-pairs", "300", "--valid-pairs", "120", "--test-pairs", "120", "--seed", "3")
    assert read(tmp_path / "c", "test", "de") == read(out / "a", "test", "de")
    assert read(tmp_path / "c", "train", "en") == read(out / "a", "train", "en")[:300]
    # another seed, another corpus
    make(tmp_path / "d", "--train-pairs", "300", "--valid-pairs", "120", "--test-pairs", "120", "--seed", "4")
    assert read(tmp_path / "d", "test", "en") != read(out / "a", "test", "en")


def test_tokenize_option(tmp_path):
    make(tmp_path, "--train-pairs", "50", "--valid-pairs", "10", "--test-pairs", "10", "--tokenize")
    for line in read(tmp_path, "train", "de") + read(tmp_path, "train", "en"):
        assert line.endswith((" .", " ?")) and not re.search(r"\S[,.?]", line), line


def test_word_order_differs(sample):
    """German often ends with a verb (participle, infinitive, separable prefix, verb-final clause)
    where English does not: the model has to learn to reorder."""
    verbs = set(finite_forms())
    for verb in mt.VERBS + [mt.BE, mt.BECOME, mt.LIVE, mt.GO_BY]:
        verbs.update({verb.pp, verb.de, verb.sep} - {""})
    english = {form for verb in mt.VERBS for form in verb.en}
    de_final = sum(mt.tokenize(de)[-2] in verbs for _, de in sample) / len(sample)
    en_final = sum(mt.tokenize(en)[-2] in english for en, _ in sample) / len(sample)
    assert de_final > 0.4 and de_final > 3 * en_final, (de_final, en_final)


# ---------------------------------------------------------------------------------------------
# inflection functions on chosen inputs

N, A = mt.NOUN, mt.ADJECTIVE


def np(noun, det="def", adj=None, plural=False, **kw):
    return mt.NP(N[noun], plural, det, A[adj] if adj else None, **kw)


@pytest.mark.parametrize("phrase, case, expected", [
    (dict(noun="dog", adj="old"), "nom", "der alte Hund"),
    (dict(noun="dog", adj="old"), "acc", "den alten Hund"),
    (dict(noun="dog", adj="old"), "dat", "dem alten Hund"),
    (dict(noun="house", det="indef", adj="old"), "nom", "ein altes Haus"),
    (dict(noun="house", det="indef", adj="old"), "dat", "einem alten Haus"),
    (dict(noun="woman", det="indef", adj="young"), "dat", "einer jungen Frau"),
    (dict(noun="man", det="indef", adj="tired"), "nom", "ein müder Mann"),
    (dict(noun="man", det="indef", adj="tired"), "acc", "einen müden Mann"),
    (dict(noun="child", det="num", adj="small", plural=True, num=2), "dat", "zwei kleinen Kindern"),
    (dict(noun="child", det="num", adj="small", plural=True, num=2), "nom", "zwei kleine Kinder"),
    (dict(noun="apple", det="poss", adj="red", plural=True, poss="our"), "acc", "unsere roten Äpfel"),
    (dict(noun="apple", det="poss", adj="red", plural=True, poss="our"), "dat", "unseren roten Äpfeln"),
    (dict(noun="car", det="dem", plural=True), "dat", "diesen Autos"),
    (dict(noun="car", det="dem"), "nom", "dieses Auto"),
    (dict(noun="water", det="bare", adj="cold"), "acc", "kaltes Wasser"),
    (dict(noun="milk", det="bare", adj="cold"), "dat", "kalter Milch"),
    (dict(noun="coffee", det="bare", adj="hot"), "dat", "heißem Kaffee"),
    (dict(noun="book", det="kein", adj="new"), "acc", "kein neues Buch"),
    (dict(noun="book", det="kein", adj="new", plural=True), "nom", "keine neuen Bücher"),
    (dict(noun="dog", det="gen", adj="old", poss="Anna"), "nom", "Annas alter Hund"),
    (dict(noun="dog", det="gen", adj="old", poss="Anna"), "dat", "Annas altem Hund"),
    (dict(noun="boy"), "nom", "der Junge"),
    (dict(noun="boy"), "acc", "den Jungen"),
    (dict(noun="student", det="poss", poss="my"), "dat", "meinem Studenten"),
    (dict(noun="forest", adj="dark"), "nom", "der dunkle Wald"),
    (dict(noun="hotel", det="indef", adj="expensive"), "nom", "ein teures Hotel"),
    (dict(noun="mountain", det="indef", adj="tall"), "nom", "ein hoher Berg"),
    (dict(noun="lemon", adj="sour"), "nom", "die saure Zitrone"),
    (dict(noun="dog", det="indef", adj="big", very=True), "nom", "ein sehr großer Hund"),
])
def test_german_noun_phrases(phrase, case, expected):
    assert np(**phrase).de(case) == expected


@pytest.mark.parametrize("phrase, expected", [
    (dict(noun="apple", det="indef"), "an apple"),
    (dict(noun="apple", det="indef", adj="red"), "a red apple"),
    (dict(noun="umbrella", det="indef"), "an umbrella"),
    (dict(noun="e-mail", det="indef", adj="long"), "a long e-mail"),
    (dict(noun="house", det="indef", adj="old"), "an old house"),
    (dict(noun="mouse", det="dem", plural=True), "these mice"),
    (dict(noun="water", det="kein"), "water"),
    (dict(noun="dog", det="no"), "no dog"),
    (dict(noun="dog", det="gen", poss="Anna"), "Anna's dog"),
])
def test_english_noun_phrases(phrase, expected):
    assert np(**phrase).en() == expected


def test_determiners_and_adjective_tables():
    # the full paradigm of the definite article, der-words and ein-words, written out here
    assert [mt.DEF_ARTICLE[c][g] for c in ("nom", "acc", "dat") for g in ("m", "f", "n", "pl")] == \
        "der die das die den die das die dem der dem den".split()
    assert [mt.determiner("dem", c, g)[0] for c in ("nom", "acc", "dat") for g in ("m", "f", "n", "pl")] == \
        "dieser diese dieses diese diesen diese dieses diese diesem dieser diesem diesen".split()
    assert [mt.determiner("poss", c, g, "mein")[0] for c in ("nom", "acc", "dat") for g in ("m", "f", "n", "pl")] == \
        "mein meine mein meine meinen meine mein meine meinem meiner meinem meinen".split()
    assert mt.determiner("indef", "acc", "pl") == (None, "strong")
    endings = {decl: [mt.adjective_form("", decl, c, g) for c in ("nom", "acc", "dat") for g in ("m", "f", "n", "pl")]
               for decl in ("weak", "mixed", "strong")}
    assert endings["weak"] == "e e e en en e e en en en en en".split()
    assert endings["mixed"] == "er e es en en e es en en en en en".split()
    assert endings["strong"] == "er e es e en e es e em er em en".split()
    assert [mt.RELATIVE["dat"][g] for g in ("m", "f", "n", "pl")] == ["dem", "der", "dem", "denen"]


@pytest.mark.parametrize("prep, phrase, case, expected", [
    ("in", dict(noun="garden"), "dat", "im Garten"),
    ("in", dict(noun="cinema"), "acc", "ins Kino"),
    ("in", dict(noun="kitchen"), "acc", "in die Küche"),
    ("zu", dict(noun="school"), "dat", "zur Schule"),
    ("zu", dict(noun="station"), "dat", "zum Bahnhof"),
    ("an", dict(noun="sea"), "acc", "ans Meer"),
    ("an", dict(noun="lake"), "dat", "am See"),
    ("von", dict(noun="doctor"), None, "vom Arzt"),
    ("in", dict(noun="garden", det="poss", poss="my"), "dat", "in meinem Garten"),   # contracts only der-article
    ("in", dict(noun="garden", plural=True), "dat", "in den Gärten"),
    ("auf", dict(noun="table"), "acc", "auf den Tisch"),
    ("auf", dict(noun="table"), "dat", "auf dem Tisch"),
    ("mit", dict(noun="friend", plural=True, det="poss", poss="his"), None, "mit seinen Freunden"),
    ("für", dict(noun="mother", det="poss", poss="her"), None, "für ihre Mutter"),
])
def test_prepositional_phrases(prep, phrase, case, expected):
    assert mt.de_pp(prep, np(**phrase), case) == expected


@pytest.mark.parametrize("infinitive, person, expected, du, er", [
    ("spielen", "1sg", "spiele", None, None), ("spielen", "2sg", "spielst", None, None),
    ("spielen", "3sg", "spielt", None, None), ("spielen", "2pl", "spielt", None, None),
    ("spielen", "3pl", "spielen", None, None),
    ("arbeiten", "3sg", "arbeitet", None, None), ("arbeiten", "2sg", "arbeitest", None, None),
    ("finden", "2pl", "findet", None, None), ("öffnen", "2sg", "öffnest", None, None),
    ("zeichnen", "3sg", "zeichnet", None, None), ("regnen", "3sg", "regnet", None, None),
    ("wohnen", "2sg", "wohnst", None, None), ("lernen", "3sg", "lernt", None, None),
    ("tanzen", "2sg", "tanzt", None, None), ("reisen", "2sg", "reist", None, None),
    ("schließen", "2sg", "schließt", None, None),
    ("sammeln", "1sg", "sammle", None, None), ("sammeln", "3sg", "sammelt", None, None),
    ("füttern", "1sg", "füttere", None, None), ("füttern", "2sg", "fütterst", None, None),
    ("lesen", "2sg", "liest", "liest", "liest"), ("lesen", "2pl", "lest", "liest", "liest"),
    ("fahren", "3sg", "fährt", "fährst", "fährt"), ("fahren", "2pl", "fahrt", "fährst", "fährt"),
    ("laden", "2pl", "ladet", "lädst", "lädt"),
    ("sein", "2pl", "seid", None, None), ("haben", "3sg", "hat", None, None), ("werden", "2sg", "wirst", None, None),
    ("wissen", "1sg", "weiß", None, None), ("können", "3sg", "kann", None, None), ("mögen", "2sg", "magst", None, None),
    ("wollen", "1sg", "will", None, None), ("dürfen", "2pl", "dürft", None, None),
])
def test_conjugation(infinitive, person, expected, du, er):
    assert mt.conjugate(infinitive, person, du, er) == expected


def test_english_verb_forms():
    assert [mt.en_third_person(v) for v in ("read", "watch", "go", "carry", "play", "have", "wash")] == \
        ["reads", "watches", "goes", "carries", "plays", "has", "washes"]
    assert [mt.en_ing(v) for v in ("read", "dance", "see", "tie", "study")] == \
        ["reading", "dancing", "seeing", "tying", "studying"]
    assert mt.VERB["swim"].en == ("swim", "swims", "swam", "swimming")


# ---------------------------------------------------------------------------------------------
# clauses built by hand


def clause(subj, verb, tense="pres", args=(), **kw):
    return mt.Clause(subj, mt.VERB[verb], tense, args=list(args), **kw)


def obj(phrase, case="acc"):
    slot = mt.S_DAT if case == "dat" else mt.S_ACC
    return mt.Arg(phrase.en(), phrase.de(case), slot)


def sentence(cl, form="main", punct=".", **kw):
    return mt.finish(*mt.realize(cl, form, **kw), punct)


YESTERDAY = mt.Time("yesterday", "gestern", "past")


def test_verb_second_with_fronted_time_and_perfect():
    cl = clause(np("man", adj="old"), "read", "past", [obj(np("book", "indef", "new"))], time=YESTERDAY)
    assert sentence(cl, front="time") == ("Yesterday the old man read a new book.",
                                          "Gestern hat der alte Mann ein neues Buch gelesen.")
    assert sentence(cl) == ("The old man read a new book yesterday.",
                            "Der alte Mann hat gestern ein neues Buch gelesen.")
    assert sentence(cl, "question", "?") == ("Did the old man read a new book yesterday?",
                                             "Hat der alte Mann gestern ein neues Buch gelesen?")


def test_sein_perfect_future_modal_progressive():
    go = clause(mt.Pron("we"), "go", "past", [mt.Arg("to the cinema", mt.de_pp("in", np("cinema"), "acc"), mt.S_PP)])
    assert sentence(go) == ("We went to the cinema.", "Wir sind ins Kino gegangen.")
    go.tense = "fut"
    assert sentence(go) == ("We will go to the cinema.", "Wir werden ins Kino gehen.")
    go.tense, go.modal = "modal", "want"
    assert sentence(go) == ("We want to go to the cinema.", "Wir wollen ins Kino gehen.")
    go.subj = mt.Pron("he")
    assert sentence(go, "question", "?") == ("Does he want to go to the cinema?", "Will er ins Kino gehen?")
    read = clause(mt.Pron("you"), "read", "prog", [obj(np("newspaper"))])
    assert sentence(read) == ("You are reading the newspaper.", "Du liest die Zeitung.")


def test_separable_verb_in_main_subordinate_and_nonfinite_positions():
    mother = np("mother", "poss", poss="her")
    call = clause(np("woman"), "call", args=[obj(mother)])
    assert sentence(call) == ("The woman calls her mother.", "Die Frau ruft ihre Mutter an.")
    en, de = mt.realize(call, "sub")
    assert de == ["die Frau", "ihre Mutter", "anruft"] and en == ["the woman", "calls", "her mother"]
    call.tense = "past"
    assert sentence(call)[1] == "Die Frau hat ihre Mutter angerufen."
    call.tense, call.modal = "modal", "can"
    assert sentence(call)[1] == "Die Frau kann ihre Mutter anrufen."
    pick = clause(np("father"), "pick_up", args=[mt.Arg("him", "ihn", mt.S_PRON, pron=True)])
    assert sentence(pick) == ("The father picks him up.", "Der Vater holt ihn ab.")


def test_subordinate_clause_is_verb_final():
    main = mt.Clause(mt.Pron("I"), mt.SAY_VERBS[0])
    inner = clause(np("man"), "read", args=[obj(np("book"))])
    m_en, m_de = mt.realize(main, "main")
    s_en, s_de = mt.realize(inner, "sub")
    assert mt.finish(m_en + ["that"] + s_en, m_de + [",", "dass"] + s_de, ".") == (
        "I know that the man reads the book.", "Ich weiß, dass der Mann das Buch liest.")
    inner.tense = "past"
    assert mt.realize(inner, "sub")[1][-2:] == ["gelesen", "hat"]


def test_negation_nicht_and_kein():
    neg = clause(np("man"), "read", args=[obj(np("book"))], neg=True)
    assert sentence(neg) == ("The man does not read the book.", "Der Mann liest das Buch nicht.")
    neg = clause(np("man"), "read", "past", args=[obj(np("book", "kein"))], neg=True, kein=True)
    assert sentence(neg) == ("The man did not read a book.", "Der Mann hat kein Buch gelesen.")
    tv = clause(mt.Pron("she"), "watch_tv", neg=True)
    assert sentence(tv) == ("She does not watch TV.", "Sie sieht nicht fern.")


def test_dative_objects_and_pronoun_order():
    help_ = clause(np("child"), "help", args=[obj(np("teacher", adj="old"), "dat")])
    assert sentence(help_)[1] == "Das Kind hilft dem alten Lehrer."
    give = clause(np("woman"), "give", args=[obj(np("child", plural=True), "dat"), obj(np("apple", "indef"))])
    assert sentence(give) == ("The woman gives the children an apple.", "Die Frau gibt den Kindern einen Apfel.")
    see = clause(np("man"), "see", "past", [mt.Arg("him", "ihn", mt.S_PRON, pron=True)], time=YESTERDAY)
    # pronoun objects come before a full subject after the verb, and before the time adverb
    assert sentence(see, front="time")[1] == "Gestern hat ihn der Mann gesehen."
    assert sentence(see)[1] == "Der Mann hat ihn gestern gesehen."


def test_pronoun_for_grammatical_gender():
    it = mt.pronoun_for(np("dog"))
    assert (it.en(), it.de()) == ("it", "er")
    girl = mt.pronoun_for(np("girl"))
    assert (girl.en(), girl.de()) == ("she", "es")
    assert mt.pronoun_for(np("child")) is None
    assert mt.pronoun_for(np("child", plural=True)).de() == "sie"


# ---------------------------------------------------------------------------------------------
# a generated sample checked against paradigms written out here

CASES_GN = [(c, g) for c in ("nom", "acc", "dat") for g in ("m", "f", "n", "pl")]
DEF = {"der": {("nom", "m"), ("dat", "f")}, "die": {("nom", "f"), ("acc", "f"), ("nom", "pl"), ("acc", "pl")},
       "das": {("nom", "n"), ("acc", "n")}, "den": {("acc", "m"), ("dat", "pl")},
       "dem": {("dat", "m"), ("dat", "n")}}
DER_WORD = {"er": {("nom", "m"), ("dat", "f")}, "e": {("nom", "f"), ("acc", "f"), ("nom", "pl"), ("acc", "pl")},
            "es": {("nom", "n"), ("acc", "n")}, "en": {("acc", "m"), ("dat", "pl")},
            "em": {("dat", "m"), ("dat", "n")}}
EIN_WORD = {"": {("nom", "m"), ("nom", "n"), ("acc", "n")},
            "e": {("nom", "f"), ("acc", "f"), ("nom", "pl"), ("acc", "pl")},
            "en": {("acc", "m"), ("dat", "pl")}, "em": {("dat", "m"), ("dat", "n")}, "er": {("dat", "f")}}
CONTRACTED = {"im": {("dat", "m"), ("dat", "n")}, "am": {("dat", "m"), ("dat", "n")},
              "zum": {("dat", "m"), ("dat", "n")}, "vom": {("dat", "m"), ("dat", "n")},
              "beim": {("dat", "m"), ("dat", "n")}, "zur": {("dat", "f")},
              "ins": {("acc", "n")}, "ans": {("acc", "n")}}
DATIVE_PREPS, ACCUSATIVE_PREPS = {"mit", "von", "aus", "zu", "bei"}, {"für", "ohne", "durch"}
NUMBERS = {"zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun", "zehn", "elf", "zwölf"}


def expected_ending(declension, case, gn):
    if declension == "weak":
        return "e" if (case == "nom" and gn != "pl") or (case == "acc" and gn in ("f", "n")) else "en"
    if declension == "mixed":
        return {("nom", "m"): "er", ("nom", "n"): "es", ("acc", "n"): "es", ("nom", "f"): "e",
                ("acc", "f"): "e"}.get((case, gn), "en")
    return {"nom": dict(m="er", f="e", n="es", pl="e"), "acc": dict(m="en", f="e", n="es", pl="e"),
            "dat": dict(m="em", f="er", n="em", pl="en")}[case][gn]


def noun_readings(token):
    """(case, gn) readings of a noun form, from the lexicon's forms (n-declension, dative plural -n)."""
    readings = set()
    for noun in mt.NOUNS:
        for case in ("nom", "acc", "dat"):
            weak = "weak" in noun.tags and case != "nom"
            if token == (noun.de_pl if weak else noun.de):
                readings.add((case, noun.gender))
            if noun.de_pl:
                plural = noun.de_pl + ("n" if case == "dat" and not noun.de_pl.endswith(("n", "s")) else "")
                if token == plural:
                    readings.add((case, "pl"))
    return readings


def determiner_readings(token, prev):
    """(readings, declension) of a determiner token, or None. Right after a comma der/die/... is a
    relative pronoun."""
    low = token.lower()
    if low in CONTRACTED:
        return CONTRACTED[low], "weak"
    if prev == ",":
        return None
    if low in DEF:
        return DEF[low], "weak"
    if low.startswith("dies") and low[4:] in DER_WORD:
        return DER_WORD[low[4:]], "weak"
    for stem in ("ein", "kein", "mein", "dein", "sein", "ihr", "unser"):
        if low.startswith(stem) and low[len(stem):] in EIN_WORD:
            readings = EIN_WORD[low[len(stem):]]
            if stem == "ein":
                readings = {r for r in readings if r[1] != "pl"}
            return readings, "mixed"
    if low in NUMBERS:
        return {(c, "pl") for c in ("nom", "acc", "dat")}, "strong"
    if token[:-1] in mt.NAMES and token.endswith("s"):
        return set(CASES_GN), "strong"
    return None


def adjective_reading(token):
    for adj in mt.ADJECTIVES:
        if token.startswith(adj.stem) and token[len(adj.stem):] in ("e", "en", "er", "es", "em"):
            return token[len(adj.stem):]
    return None


def check_noun_phrases(de):
    """Every determiner (+ sehr) (+ adjective) + lexicon noun agrees; returns the number checked."""
    tokens = mt.tokenize(de)
    checked = 0
    for i, token in enumerate(tokens):
        prev = tokens[i - 1] if i else ""
        found = determiner_readings(token, prev)
        j = i + 1
        if found is None:  # a bare adjective + noun: strong declension
            if prev.lower() in ("sehr",) or (i and determiner_readings(prev, tokens[i - 2] if i > 1 else "")):
                continue
            if not (adjective_reading(token.lower()) and token.islower()):
                continue
            found, j = (set(CASES_GN), "strong"), i
        readings, declension = found
        if j < len(tokens) and tokens[j] == "sehr":
            j += 1
        ending = None
        if j < len(tokens) and tokens[j].islower():
            ending = adjective_reading(tokens[j])
            if ending is None:
                continue
            j += 1
        if j >= len(tokens) or not tokens[j][:1].isupper():
            continue
        nouns = noun_readings(tokens[j])
        if not nouns or (tokens[j] == "Uhr" and prev.lower() == "um"):  # um drei Uhr: time of day
            continue
        options = readings & nouns
        governing = prev.lower()
        if token.lower() in CONTRACTED:
            governing = ""
        if governing in DATIVE_PREPS:
            options = {r for r in options if r[0] == "dat"}
        elif governing in ACCUSATIVE_PREPS:
            options = {r for r in options if r[0] == "acc"}
        if ending is not None:
            options = {r for r in options if expected_ending(declension, *r) == ending}
        if not options and token.lower() == "ihr":   # ihr can be a pronoun before a bare noun phrase
            continue
        assert options, f"no agreement in {' '.join(tokens[i:j + 1])!r}: {de}"
        checked += 1
    return checked


def finite_forms():
    forms = {"war", "warst", "waren", "wart"}
    for verb in mt.VERBS + [mt.BE, mt.LIE, mt.STAND, mt.BECOME, mt.RAIN, mt.SNOW, mt.SHINE, mt.LIVE, mt.GO_BY,
                            mt.ASK] + mt.SAY_VERBS:
        for person in mt.PERSONS:
            forms.update({verb.sep + verb.present(person), verb.present(person)})
    for aux in ("haben", "sein", "werden", "können", "müssen", "wollen", "sollen", "dürfen"):
        forms.update(mt.conjugate(aux, person) for person in mt.PERSONS)
    return forms


def test_generated_noun_phrases_agree(sample):
    checked = sum(check_noun_phrases(de) for _, de in sample)
    assert checked > len(sample)   # more than one agreement checked per sentence on average


def test_generated_clauses_put_verbs_in_place(sample):
    finite = finite_forms()
    subordinate = relative = questions = 0
    for en, de in sample:
        tokens = mt.tokenize(de)
        # subordinate clauses (dass, weil, ob, wenn) and relative clauses end with a finite verb
        for i, token in enumerate(tokens):
            starts_clause = (token.lower() in ("dass", "weil", "ob", "wenn") and (i == 0 or tokens[i - 1] == ",")) or (
                i and tokens[i - 1] == "," and token in ("der", "die", "das", "den", "dem", "denen"))
            if not starts_clause:
                continue
            end = next(k for k in range(i + 1, len(tokens)) if tokens[k] in ",.?")
            assert tokens[end - 1] in finite, f"clause without final finite verb: {de}"
            if token.lower() in ("dass", "weil", "ob", "wenn"):
                subordinate += 1
            else:
                relative += 1
            if i == 0:  # Wenn ..., then the main clause's finite verb
                assert tokens[end + 1] in finite, de
        if de.endswith("?") and tokens[0].lower() not in ("wer", "wen", "wem", "was", "wo", "wohin"):
            assert tokens[0].lower() in finite, f"yes/no question not verb first: {de}"
            assert en.split()[0] in ("Do", "Does", "Did", "Is", "Are", "Am", "Was", "Were", "Will", "Can", "Must",
                                     "Should", "May"), en
            questions += 1
    assert subordinate > 200 and relative > 50 and questions > 100


def test_generated_english_articles(sample):
    for en, _ in sample:
        words = en.lower().replace(",", "").split()
        for article, nxt in zip(words, words[1:]):
            if article in ("a", "an"):
                assert article == ("an" if nxt[0] in "aeiou" else "a"), en


def test_lexicon_size_and_consistency():
    assert len(mt.NOUNS) >= 150 and len(mt.ADJECTIVES) >= 50 and len(mt.VERBS) >= 70
    assert len({n.en for n in mt.NOUNS}) == len(mt.NOUNS)
    for noun in mt.NOUNS:
        assert noun.gender in ("m", "f", "n") and noun.de[0].isupper()
        if "weak" in noun.tags:
            assert noun.gender == "m" and noun.de_pl.endswith("n")
        if "job" in noun.tags:
            assert noun.fem.endswith("in")
    for verb in mt.VERBS:
        assert verb.de.startswith(verb.sep) and verb.aux in ("haben", "sein")
