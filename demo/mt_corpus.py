"""A synthetic English->German corpus for the translation demo: small, but it needs reordering and agreement.

Sentences are drawn from a lexicon of a few hundred words and a small grammar whose German side
differs from the English one where a model must learn it:

- agreement: article + adjective + noun by gender, number and case (subject nominative, object
  accusative, "mit" dative; weak, mixed and strong adjective endings), verb + subject by number;
- order: the participle and the infinitive (past, "can", "will") go to the end of a German main
  clause; a fronted time word puts the finite verb before the subject (verb second); subordinate
  clauses ("dass", "weil", "obwohl") end with their finite verb.

Held out: a share of the adjective-noun pairs (--held-out) is kept out of training; every valid and
test sentence uses at least one of them, no training sentence does: the words are known, the pair
(and so the adjective's ending on that noun) is new.

    python -m demo.mt_corpus --out data/demo_mt/raw                  # 20000/500/500 pairs
    python -m demo.mt_corpus --out DIR --train-pairs 5000 --seed 2 --tokenize

writes DIR/{train,valid,test}.{en,de}, aligned line by line. The output is deterministic for a seed;
valid and test are drawn first (they do not change with --train-pairs), and no sentence repeats.
"""

import argparse
import random
import re
import sys
from pathlib import Path

# English singular, plural; gender; German singular, plural
NOUNS = """dog dogs m Hund Hunde|man men m Mann Männer|teacher teachers m Lehrer Lehrer|bird birds m Vogel Vögel
apple apples m Apfel Äpfel|table tables m Tisch Tische|chair chairs m Stuhl Stühle|letter letters m Brief Briefe
key keys m Schlüssel Schlüssel|ball balls m Ball Bälle|tree trees m Baum Bäume|garden gardens m Garten Gärten
cook cooks m Koch Köche|friend friends m Freund Freunde|king kings m König Könige|fish fish m Fisch Fische
hat hats m Hut Hüte|shoe shoes m Schuh Schuhe|train trains m Zug Züge|stone stones m Stein Steine
plate plates m Teller Teller|mirror mirrors m Spiegel Spiegel|doctor doctors m Arzt Ärzte|fox foxes m Fuchs Füchse
woman women f Frau Frauen|cat cats f Katze Katzen|flower flowers f Blume Blumen|door doors f Tür Türen
lamp lamps f Lampe Lampen|bag bags f Tasche Taschen|cow cows f Kuh Kühe|mouse mice f Maus Mäuse
city cities f Stadt Städte|bridge bridges f Brücke Brücken|clock clocks f Uhr Uhren|map maps f Karte Karten
bottle bottles f Flasche Flaschen|box boxes f Kiste Kisten|cup cups f Tasse Tassen|goat goats f Ziege Ziegen
sister sisters f Schwester Schwestern|queen queens f Königin Königinnen|jacket jackets f Jacke Jacken
newspaper newspapers f Zeitung Zeitungen|fork forks f Gabel Gabeln|pear pears f Birne Birnen
child children n Kind Kinder|horse horses n Pferd Pferde|house houses n Haus Häuser|book books n Buch Bücher
car cars n Auto Autos|window windows n Fenster Fenster|picture pictures n Bild Bilder|sheep sheep n Schaf Schafe
bed beds n Bett Betten|boat boats n Boot Boote|egg eggs n Ei Eier|glass glasses n Glas Gläser
knife knives n Messer Messer|pig pigs n Schwein Schweine|girl girls n Mädchen Mädchen|room rooms n Zimmer Zimmer
notebook notebooks n Heft Hefte|game games n Spiel Spiele|present presents n Geschenk Geschenke
ship ships n Schiff Schiffe"""
ADJECTIVES = """big groß|small klein|old alt|young jung|new neu|red rot|green grün|blue blau|black schwarz
white weiß|brown braun|yellow gelb|happy froh|sad traurig|fast schnell|slow langsam|beautiful schön|ugly hässlich
heavy schwer|light leicht|cheap billig|loud laut|clean sauber|dirty schmutzig|warm warm|cold kalt|long lang
short kurz|strong stark|wet nass|dry trocken|rich reich|poor arm|friendly freundlich|strange seltsam|hungry hungrig
clever klug|good gut|bad schlecht"""
# English base, third person singular, past; German infinitive, third person singular, participle
VERBS = """see sees saw sehen sieht gesehen|find finds found finden findet gefunden|buy buys bought kaufen kauft gekauft
sell sells sold verkaufen verkauft verkauft|carry carries carried tragen trägt getragen
wash washes washed waschen wäscht gewaschen|paint paints painted malen malt gemalt
visit visits visited besuchen besucht besucht|like likes liked mögen mag gemocht
need needs needed brauchen braucht gebraucht|build builds built bauen baut gebaut|hear hears heard hören hört gehört
hold holds held halten hält gehalten|take takes took nehmen nimmt genommen|bring brings brought bringen bringt gebracht
show shows showed zeigen zeigt gezeigt|catch catches caught fangen fängt gefangen
feed feeds fed füttern füttert gefüttert|count counts counted zählen zählt gezählt
open opens opened öffnen öffnet geöffnet|clean cleans cleaned putzen putzt geputzt
love loves loved lieben liebt geliebt|forget forgets forgot vergessen vergisst vergessen
meet meets met treffen trifft getroffen|call calls called rufen ruft gerufen|pull pulls pulled ziehen zieht gezogen
watch watches watched beobachten beobachtet beobachtet|describe describes described beschreiben beschreibt beschrieben
choose chooses chose wählen wählt gewählt|draw draws drew zeichnen zeichnet gezeichnet"""
# tense -> (English auxiliary or None, German auxiliary 3sg/3pl or None, time words English/German)
TENSES = {"present": (None, None, "today=heute|now=jetzt|every day=jeden Tag"),
          "past": (None, "hat haben", "yesterday=gestern|last week=letzte Woche|last year=letztes Jahr"),
          "can": ("can", "kann können", "today=heute|now=jetzt"),
          "future": ("will", "wird werden", "tomorrow=morgen|next week=nächste Woche|next year=nächstes Jahr")}
# the clause verbs take ("says that" ...), 3sg and 3pl on both sides; and the subordinating conjunctions
SAY = [("says say", "sagt sagen"), ("thinks think", "denkt denken"), ("knows know", "weiß wissen")]
CONJUNCTIONS = [("because", "weil"), ("although", "obwohl")]
GENDERS = ("m", "f", "n", "pl")  # the plural declines alike in every gender
ARTICLES = {"def": {"nom": "der die das die", "acc": "den die das die", "dat": "dem der dem den"},
            "indef": {"nom": "ein eine ein", "acc": "einen eine ein", "dat": "einem einer einem"}}
ENDINGS = {"def": {"nom": "e e e en", "acc": "en e e en", "dat": "en en en en"},  # weak
           "indef": {"nom": "er e es", "acc": "en e es", "dat": "en en en"},  # mixed
           "none": {"nom": "er e es e", "acc": "en e es e", "dat": "em er em en"}}  # strong (here: plural only)
PLURAL_DETERMINERS = [("", ""), ("two", "zwei"), ("three", "drei"), ("many", "viele")]  # no article: strong


def _table(text, width):
    rows = [tuple(item.split()) for item in re.split(r"[|\n]", text)]
    assert all(len(row) == width for row in rows), [row for row in rows if len(row) != width]
    return rows


NOUNS, ADJECTIVES, VERBS = _table(NOUNS, 5), _table(ADJECTIVES, 2), _table(VERBS, 6)
TIMES = {tense: [tuple(item.split("=")) for item in spec[2].split("|")] for tense, spec in TENSES.items()}


def dative_plural(noun: str) -> str:
    return noun if noun.endswith(("n", "s")) else noun + "n"


def noun_phrase(rng, case, adjective_rate=0.5):
    """(English words, German words, plural, (adjective, noun) or None) of a random noun phrase in a case."""
    en_sg, en_pl, gender, de_sg, de_pl = rng.choice(NOUNS)
    plural = rng.random() < 0.35
    kind = rng.choice(["def", "none"] if plural else ["def", "indef"])
    slot = GENDERS.index("pl" if plural else gender)
    if kind == "none":
        en, de = (list(filter(None, [word])) for word in rng.choice(PLURAL_DETERMINERS))
    else:
        en, de = ["the" if kind == "def" else "a"], [ARTICLES[kind][case].split()[slot]]
    pair = None
    if rng.random() < adjective_rate:
        en_adj, de_adj = rng.choice(ADJECTIVES)
        en, de, pair = en + [en_adj], de + [de_adj + ENDINGS[kind][case].split()[slot]], (en_adj, en_sg)
    en.append(en_pl if plural else en_sg)
    de.append((dative_plural(de_pl) if case == "dat" else de_pl) if plural else de_sg)
    if en[0] == "a" and en[1][0] in "aeiou":
        en[0] = "an"
    return en, de, plural, pair


def clause(rng, sub=False):
    """(English words, German words, adjective-noun pairs) of a clause: subject, verb, object, maybe
    "with" + dative and a time word; sub=True gives a verb-final subordinate clause."""
    en_base, en_3sg, en_past, de_inf, de_3sg, de_part = rng.choice(VERBS)
    tense = rng.choice(list(TENSES))
    en_aux, de_aux, _ = TENSES[tense]
    subj_en, subj_de, plural, pair1 = noun_phrase(rng, "nom")
    obj_en, obj_de, _, pair2 = noun_phrase(rng, "acc")
    pairs = [p for p in (pair1, pair2) if p]
    with_en, with_de = [], []
    if rng.random() < 0.3:
        np_en, np_de, _, pair3 = noun_phrase(rng, "dat")
        with_en, with_de, pairs = ["with", *np_en], ["mit", *np_de], pairs + [p for p in [pair3] if p]
    time_en, time_de = rng.choice(TIMES[tense]) if rng.random() < 0.5 else ("", "")
    time_en, time_de = time_en.split(), time_de.split()

    if de_aux:  # German: finite auxiliary second (or last), the participle or infinitive at the end
        finite, rest = de_aux.split()[plural], [de_part if tense == "past" else de_inf]
    else:
        finite, rest = de_inf if plural else de_3sg, []
    verb_en = [en_aux, en_base] if en_aux else [en_past] if tense == "past" else [en_base if plural else en_3sg]
    front = not sub and time_de and rng.random() < 0.5
    en = (time_en if front else []) + subj_en + verb_en + obj_en + with_en + ([] if front else time_en)
    if sub:
        de = subj_de + time_de + obj_de + with_de + rest + [finite]
    elif front:
        de = time_de + [finite] + subj_de + obj_de + with_de + rest
    else:
        de = subj_de + [finite] + time_de + obj_de + with_de + rest
    return en, de, pairs


def sentence(rng):
    """(English, German, adjective-noun pairs) of one sentence: a clause, a clause with "because" or
    "although" and a subordinate clause, or "X says that" and a subordinate clause."""
    form = rng.random()
    if form < 0.45:
        en, de, pairs = clause(rng)
    elif form < 0.75:
        main_en, main_de, main_pairs = clause(rng)
        sub_en, sub_de, sub_pairs = clause(rng, sub=True)
        conj_en, conj_de = rng.choice(CONJUNCTIONS)
        en, de = main_en + [",", conj_en] + sub_en, main_de + [",", conj_de] + sub_de
        pairs = main_pairs + sub_pairs
    else:
        subj_en, subj_de, plural, pair = noun_phrase(rng, "nom", adjective_rate=0.3)
        say_en, say_de = (forms.split()[plural] for forms in rng.choice(SAY))
        sub_en, sub_de, pairs = clause(rng, sub=True)
        en, de = subj_en + [say_en, "that"] + sub_en, subj_de + [say_de, ",", "dass"] + sub_de
        pairs += [pair] if pair else []
    return finish(en), finish(de), pairs


def finish(words):
    """Words -> a sentence: the first letter capitalised, commas attached, a full stop."""
    text = re.sub(r" ,", ",", " ".join(words)) + "."
    return text[0].upper() + text[1:]


def held_out_pairs(seed: int, share: float):
    """The adjective-noun pairs (English lemmas) kept out of training: a share of all, drawn by seed."""
    every = sorted((adj, noun[0]) for adj, _ in ADJECTIVES for noun in NOUNS)
    return set(random.Random(f"held-out {seed}").sample(every, round(share * len(every))))


def generate(train: int, valid: int, test: int, seed: int = 1, held_out: float = 0.1):
    """{split: [(English, German), ...]}; valid and test sentences use a held-out adjective-noun pair,
    training sentences none; no English or German sentence occurs twice."""
    rng, reserved, seen, splits = random.Random(seed), held_out_pairs(seed, held_out), set(), {}
    for split, size in (("valid", valid), ("test", test), ("train", train)):
        pairs, attempts = [], 0
        while len(pairs) < size:
            attempts += 1
            if attempts > 200 * size + 1000:
                sys.exit(f"could not draw {size} distinct {split} pairs (got {len(pairs)}); lower the size")
            en, de, used = sentence(rng)
            if (split == "train") == bool(reserved.intersection(used)) or en in seen or de in seen:
                continue
            seen.update((en, de))
            pairs.append((en, de))
        splits[split] = pairs
    return {split: splits[split] for split in ("train", "valid", "test")}


def tokenize(text: str):
    return re.findall(r"[^\s,.]+|[,.]", text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder for {train,valid,test}.{en,de}")
    parser.add_argument("--train-pairs", type=int, default=20_000)
    parser.add_argument("--valid-pairs", type=int, default=500)
    parser.add_argument("--test-pairs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--held-out", type=float, default=0.1,
                        help="share of the adjective-noun pairs kept for valid and test (default 0.1)")
    parser.add_argument("--tokenize", action="store_true", help="split punctuation off (Moses-style tokens)")
    args = parser.parse_args(argv)
    if not 0 < args.held_out < 1:
        parser.error(f"--held-out is a share between 0 and 1; got {args.held_out}")

    splits = generate(args.train_pairs, args.valid_pairs, args.test_pairs, args.seed, args.held_out)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for lang, index in (("en", 0), ("de", 1)):
            lines = [" ".join(tokenize(pair[index])) if args.tokenize else pair[index] for pair in pairs]
            (args.out / f"{split}.{lang}").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        words = sum(len(tokenize(de)) for _, de in pairs) / max(len(pairs), 1)
        print(f"{split}: {len(pairs)} pairs, {words:.1f} German tokens a sentence -> {args.out / split}.{{en,de}}")


if __name__ == "__main__":
    main()
