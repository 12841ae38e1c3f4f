#!/usr/bin/env python
"""Build a small synthetic English->German parallel corpus for a CPU translation demo.

No download and no copied text: sentences are generated from a hand-written bilingual lexicon
(nouns with gender and plural, adjectives, verbs with their conjugation, numbers, prepositions
with the case they govern, time expressions, names and places) and a few dozen sentence
patterns that follow German grammar: articles, possessives and adjective endings by
gender/case/number (weak, mixed and strong declension), weak masculine nouns, dative plurals,
preposition + article contractions, verb-second order with fronted adverbials, verb-final
subordinate and relative clauses, separable verbs, the perfect with haben/sein, modal verbs and
the future with their infinitive at the end, negation with nicht/kein, questions. The English
side uses do-support, progressive and simple past, so word order differs between the two
languages and a model has to learn to reorder.

    python scripts/make_mt_corpus.py --out data/mt_demo        # 20000/500/500 pairs
    python scripts/make_mt_corpus.py --out DIR --train-pairs 5000 --seed 2 --tokenize

writes DIR/{train,valid,test}.{en,de}, one sentence per line, aligned line by line. The output
is deterministic for a seed; valid and test are drawn first (so they do not change with
--train-pairs) and no English or German sentence occurs in two splits or twice in one.
By default the text is natural (punctuation attached, as in raw WMT data); --tokenize writes it
Moses-style with punctuation split off, ready for a plain whitespace vocabulary.
"""

import argparse
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mega_fairseq.data.progress import progress


# ---------------------------------------------------------------------------------------------
# German inflection tables (case x gender/number; "pl" stands for the plural of every gender)

PERSONS = ("1sg", "2sg", "3sg", "1pl", "2pl", "3pl")

DEF_ARTICLE = {"nom": dict(m="der", f="die", n="das", pl="die"),
               "acc": dict(m="den", f="die", n="das", pl="die"),
               "dat": dict(m="dem", f="der", n="dem", pl="den")}
# endings of der-words (dieser) and of adjectives in the strong declension (no determiner)
STRONG = {"nom": dict(m="er", f="e", n="es", pl="e"),
          "acc": dict(m="en", f="e", n="es", pl="e"),
          "dat": dict(m="em", f="er", n="em", pl="en")}
# endings of ein-words: ein, kein and the possessives mein, dein, sein, ihr, unser
EIN_WORD = {"nom": dict(m="", f="e", n="", pl="e"),
            "acc": dict(m="en", f="e", n="", pl="e"),
            "dat": dict(m="em", f="er", n="em", pl="en")}
# adjective endings after a der-word (weak) and after an ein-word (mixed)
WEAK = {"nom": dict(m="e", f="e", n="e", pl="en"),
        "acc": dict(m="en", f="e", n="e", pl="en"),
        "dat": dict(m="en", f="en", n="en", pl="en")}
MIXED = {"nom": dict(m="er", f="e", n="es", pl="en"),
         "acc": dict(m="en", f="e", n="es", pl="en"),
         "dat": dict(m="en", f="en", n="en", pl="en")}
ADJ_ENDINGS = {"weak": WEAK, "mixed": MIXED, "strong": STRONG}
RELATIVE = {"nom": DEF_ARTICLE["nom"], "acc": DEF_ARTICLE["acc"],
            "dat": dict(m="dem", f="der", n="dem", pl="denen")}
# preposition + definite article (singular) -> the contracted form German uses
CONTRACTIONS = {("in", "dem"): "im", ("in", "das"): "ins", ("an", "dem"): "am", ("an", "das"): "ans",
                ("zu", "dem"): "zum", ("zu", "der"): "zur", ("von", "dem"): "vom", ("bei", "dem"): "beim"}
PREP_CASE = {"in": "dat", "an": "dat", "auf": "dat", "unter": "dat", "neben": "dat", "hinter": "dat", "vor": "dat",
             "zu": "dat", "mit": "dat", "von": "dat", "aus": "dat", "bei": "dat", "für": "acc", "ohne": "acc",
             "durch": "acc", "über": "acc"}

POSSESSIVES = {"my": "mein", "your": "dein", "his": "sein", "her": "ihr", "our": "unser", "their": "ihr"}
NUM_EN = dict(enumerate("one two three four five six seven eight nine ten eleven twelve".split(), 1))
NUM_DE = dict(enumerate("ein zwei drei vier fünf sechs sieben acht neun zehn elf zwölf".split(), 1))

IRREGULAR_PRESENT = {  # 1sg 2sg 3sg 1pl 2pl 3pl
    "sein": "bin bist ist sind seid sind", "haben": "habe hast hat haben habt haben",
    "werden": "werde wirst wird werden werdet werden", "wissen": "weiß weißt weiß wissen wisst wissen",
    "mögen": "mag magst mag mögen mögt mögen", "können": "kann kannst kann können könnt können",
    "müssen": "muss musst muss müssen müsst müssen", "wollen": "will willst will wollen wollt wollen",
    "sollen": "soll sollst soll sollen sollt sollen", "dürfen": "darf darfst darf dürfen dürft dürfen"}
IRREGULAR_PRESENT = {verb: dict(zip(PERSONS, forms.split())) for verb, forms in IRREGULAR_PRESENT.items()}
SEIN_PAST = dict(zip(PERSONS, "war warst war waren wart waren".split()))


def adjective_form(stem: str, declension: str, case: str, gn: str) -> str:
    """Attributive adjective: stem + ending of the weak, mixed or strong declension."""
    return stem + ADJ_ENDINGS[declension][case][gn]


def determiner(kind: str, case: str, gn: str, word: str = ""):
    """German determiner and the adjective declension it calls for.

    kind: def (der), dem (dieser), indef (ein; none in the plural), kein, poss (word = mein, dein,
    ...), num (word = a number), gen (word = a name with genitive s), bare (no determiner).
    """
    if kind == "def":
        return DEF_ARTICLE[case][gn], "weak"
    if kind == "dem":
        return "dies" + STRONG[case][gn], "weak"
    if kind in ("indef", "kein", "poss"):
        stem = {"indef": "ein", "kein": "kein"}.get(kind, word)
        if kind == "indef" and gn == "pl":
            return None, "strong"
        return stem + EIN_WORD[case][gn], "mixed"
    if kind in ("num", "gen"):
        return word, "strong"
    return None, "strong"


def contract(prep: str, article: str):
    return CONTRACTIONS.get((prep, article))


def _needs_e(stem: str) -> bool:
    """Stems in -t/-d or consonant + m/n (öffn-, zeichn-, atm-) take -est/-et."""
    if stem.endswith(("t", "d")):
        return True
    if stem[-1] in "mn" and len(stem) > 1:
        prev = stem[-2]
        if prev in "aeiouäöüylrmn" or (prev == "h" and not stem.endswith(("chn", "chm"))):
            return False
        return True
    return False


def conjugate(infinitive: str, person: str, du: str = None, er: str = None) -> str:
    """Present tense of a German verb (without a separable prefix).

    du/er: the 2sg and 3sg forms of stem-changing verbs (liest, fährt); 2pl uses the plain stem.
    """
    if infinitive in IRREGULAR_PRESENT:
        return IRREGULAR_PRESENT[infinitive][person]
    if person == "2sg" and du:
        return du
    if person == "3sg" and er:
        return er
    if person in ("1pl", "3pl"):
        return infinitive
    stem = infinitive[:-1] if infinitive.endswith(("eln", "ern")) else infinitive[:-2]
    if person == "1sg":
        return stem[:-2] + "le" if infinitive.endswith("eln") else stem + "e"
    e = _needs_e(stem)
    if person == "2sg":
        return stem + ("est" if e else "t" if stem.endswith(("s", "ß", "z", "x")) else "st")
    return stem + ("et" if e else "t")  # 3sg, 2pl


def a_or_an(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


def en_third_person(base: str) -> str:
    if base in ("have", "be"):
        return {"have": "has", "be": "is"}[base]
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


def en_ing(base: str) -> str:
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "ye", "oe")):
        return base[:-1] + "ing"
    return base + "ing"


# ---------------------------------------------------------------------------------------------
# Lexicon. Nouns: "english singular/plural | gender German singular/plural | tags".
# "-" marks no plural. Tags: semantic classes that verbs and adjectives select, plus
# weak (n-declension: den Jungen), mass (no indefinite article), sex=m/f (natural gender),
# fem=... (female form of a profession), lie/stand (liegen/stehen, legen/stellen), noposs (no
# "his woman").

NOUN_TABLE = """
man/men | m Mann/Männer | person sex=m noposs
woman/women | f Frau/Frauen | person sex=f noposs
child/children | n Kind/Kinder | person
boy/boys | m Junge/Jungen | person weak sex=m noposs
girl/girls | n Mädchen/Mädchen | person sex=f noposs
friend/friends | m Freund/Freunde | person
neighbour/neighbours | m Nachbar/Nachbarn | person weak
brother/brothers | m Bruder/Brüder | person family sex=m
sister/sisters | f Schwester/Schwestern | person family sex=f
father/fathers | m Vater/Väter | person family sex=m
mother/mothers | f Mutter/Mütter | person family sex=f
son/sons | m Sohn/Söhne | person family sex=m
daughter/daughters | f Tochter/Töchter | person family sex=f
uncle/uncles | m Onkel/Onkel | person family sex=m
aunt/aunts | f Tante/Tanten | person family sex=f
grandfather/grandfathers | m Großvater/Großväter | person family sex=m
grandmother/grandmothers | f Großmutter/Großmütter | person family sex=f
guest/guests | m Gast/Gäste | person
tourist/tourists | m Tourist/Touristen | person weak
colleague/colleagues | m Kollege/Kollegen | person weak
customer/customers | m Kunde/Kunden | person weak
king/kings | m König/Könige | person sex=m noposs
queen/queens | f Königin/Königinnen | person sex=f noposs
soldier/soldiers | m Soldat/Soldaten | person weak
teacher/teachers | m Lehrer/Lehrer | person job fem=Lehrerin
doctor/doctors | m Arzt/Ärzte | person job fem=Ärztin
student/students | m Student/Studenten | person job weak fem=Studentin
cook/cooks | m Koch/Köche | person job fem=Köchin
baker/bakers | m Bäcker/Bäcker | person job fem=Bäckerin
driver/drivers | m Fahrer/Fahrer | person job fem=Fahrerin
singer/singers | m Sänger/Sänger | person job fem=Sängerin
painter/painters | m Maler/Maler | person job fem=Malerin
police officer/police officers | m Polizist/Polizisten | person job weak fem=Polizistin
farmer/farmers | m Bauer/Bauern | person job weak fem=Bäuerin
musician/musicians | m Musiker/Musiker | person job fem=Musikerin
writer/writers | m Schriftsteller/Schriftsteller | person job fem=Schriftstellerin
waiter/waiters | m Kellner/Kellner | person

dog/dogs | m Hund/Hunde | animal pet swims
cat/cats | f Katze/Katzen | animal pet
horse/horses | n Pferd/Pferde | animal farm
bird/birds | m Vogel/Vögel | animal flies sings catch
mouse/mice | f Maus/Mäuse | animal catch
cow/cows | f Kuh/Kühe | animal farm
fish/fish | m Fisch/Fische | animal swims catch
bear/bears | m Bär/Bären | animal wild weak
lion/lions | m Löwe/Löwen | animal wild weak
elephant/elephants | m Elefant/Elefanten | animal wild weak
pig/pigs | n Schwein/Schweine | animal farm
sheep/sheep | n Schaf/Schafe | animal farm
rabbit/rabbits | n Kaninchen/Kaninchen | animal pet catch
monkey/monkeys | m Affe/Affen | animal wild weak
duck/ducks | f Ente/Enten | animal farm swims
chicken/chickens | n Huhn/Hühner | animal farm
donkey/donkeys | m Esel/Esel | animal farm
fox/foxes | m Fuchs/Füchse | animal wild
wolf/wolves | m Wolf/Wölfe | animal wild
goat/goats | f Ziege/Ziegen | animal farm
frog/frogs | m Frosch/Frösche | animal swims

apple/apples | m Apfel/Äpfel | food fruit feed cut
banana/bananas | f Banane/Bananen | food fruit feed
pear/pears | f Birne/Birnen | food fruit cut
cherry/cherries | f Kirsche/Kirschen | food fruit
strawberry/strawberries | f Erdbeere/Erdbeeren | food fruit
lemon/lemons | f Zitrone/Zitronen | food fruit cut sour
orange/oranges | f Orange/Orangen | food fruit cut
tomato/tomatoes | f Tomate/Tomaten | food cut
potato/potatoes | f Kartoffel/Kartoffeln | food cook
carrot/carrots | f Karotte/Karotten | food feed cook cut
egg/eggs | n Ei/Eier | food cook
sausage/sausages | f Wurst/Würste | food cut
cake/cakes | m Kuchen/Kuchen | food bake cut
pizza/pizzas | f Pizza/Pizzen | food bake cut
biscuit/biscuits | m Keks/Kekse | food bake
salad/salads | m Salat/Salate | food
ice cream/- | n Eis/- | food
bread/- | n Brot/- | food mass bake cut feed
soup/- | f Suppe/- | food mass cook
cheese/- | m Käse/- | food mass cut feed
meat/- | n Fleisch/- | food mass cook cut feed
rice/- | m Reis/- | food mass cook
fruit/- | n Obst/- | food mass
chocolate/- | f Schokolade/- | food mass
honey/- | m Honig/- | food mass

water/- | n Wasser/- | drink mass feed
milk/- | f Milch/- | drink mass feed
coffee/- | m Kaffee/- | drink mass cook
tea/- | m Tee/- | drink mass cook
juice/- | m Saft/- | drink mass
beer/- | n Bier/- | drink mass
wine/- | m Wein/- | drink mass
lemonade/- | f Limonade/- | drink mass

book/books | n Buch/Bücher | text lie
newspaper/newspapers | f Zeitung/Zeitungen | text lie
letter/letters | m Brief/Briefe | text lie send open
magazine/magazines | f Zeitschrift/Zeitschriften | text lie
story/stories | f Geschichte/Geschichten | text tell
novel/novels | m Roman/Romane | text lie
poem/poems | n Gedicht/Gedichte | text
e-mail/e-mails | f E-Mail/E-Mails | text send
report/reports | m Bericht/Berichte | text
song/songs | n Lied/Lieder | song

bag/bags | f Tasche/Taschen | thing portable open close lie container forget
key/keys | m Schlüssel/Schlüssel | thing portable small lie forget
lamp/lamps | f Lampe/Lampen | thing stand repair
clock/clocks | f Uhr/Uhren | thing repair
phone/phones | n Telefon/Telefone | thing portable lie repair forget
computer/computers | m Computer/Computer | thing stand repair
ball/balls | m Ball/Bälle | thing portable toy throw catch lie
picture/pictures | n Bild/Bilder | thing paint show
present/presents | n Geschenk/Geschenke | thing portable send lie
pen/pens | m Stift/Stifte | thing portable small lie forget
cup/cups | f Tasse/Tassen | thing portable stand dish container
glass/glasses | n Glas/Gläser | thing portable stand dish container
plate/plates | m Teller/Teller | thing portable stand dish
bottle/bottles | f Flasche/Flaschen | thing portable stand open close container
suitcase/suitcases | m Koffer/Koffer | thing portable heavy stand open close
toy/toys | n Spielzeug/Spielzeuge | thing portable toy lie
camera/cameras | f Kamera/Kameras | thing portable lie repair forget
umbrella/umbrellas | m Regenschirm/Regenschirme | thing portable lie forget
ticket/tickets | f Fahrkarte/Fahrkarten | thing portable small lie forget
map/maps | f Karte/Karten | thing portable lie show
box/boxes | f Kiste/Kisten | thing portable heavy stand open close container
stone/stones | m Stein/Steine | thing throw lie collect
stamp/stamps | f Briefmarke/Briefmarken | thing small collect
photo/photos | n Foto/Fotos | thing lie send show
flower/flowers | f Blume/Blumen | flower paint collect
hat/hats | m Hut/Hüte | cloth lie
coat/coats | m Mantel/Mäntel | cloth lie
shoe/shoes | m Schuh/Schuhe | cloth stand clean
dress/dresses | n Kleid/Kleider | cloth lie
shirt/shirts | n Hemd/Hemden | cloth lie
jacket/jackets | f Jacke/Jacken | cloth lie

table/tables | m Tisch/Tische | furniture
chair/chairs | m Stuhl/Stühle | furniture
bed/beds | n Bett/Betten | furniture
sofa/sofas | n Sofa/Sofas | furniture
cupboard/cupboards | m Schrank/Schränke | furniture
floor/floors | m Boden/Böden | ground
window/windows | n Fenster/Fenster | opening open close clean
door/doors | f Tür/Türen | opening open close
tree/trees | m Baum/Bäume | tree paint tall

car/cars | n Auto/Autos | vehicle road repair clean
bicycle/bicycles | n Fahrrad/Fahrräder | vehicle road repair clean
bus/buses | m Bus/Busse | vehicle public
train/trains | m Zug/Züge | vehicle public
boat/boats | n Boot/Boote | vehicle build
plane/planes | n Flugzeug/Flugzeuge | vehicle public
taxi/taxis | n Taxi/Taxis | vehicle public

garden/gardens | m Garten/Gärten | place home play read eat sleep work nature
kitchen/kitchens | f Küche/Küchen | place home cooking eat work tidy clean
house/houses | n Haus/Häuser | place home building build tidy clean live
room/rooms | n Zimmer/Zimmer | place home play read sleep study dance tidy clean write
park/parks | m Park/Parks | place town play read eat wait meet nature dance
city/cities | f Stadt/Städte | place town shop meet visit far live
village/villages | n Dorf/Dörfer | place town visit far live
street/streets | f Straße/Straßen | place town play wait dance live
forest/forests | m Wald/Wälder | place nature
library/libraries | f Bibliothek/Bibliotheken | place read study work building write
station/stations | m Bahnhof/Bahnhöfe | place wait meet building work
school/schools | f Schule/Schulen | place study work building wait
church/churches | f Kirche/Kirchen | place sing building visit
restaurant/restaurants | n Restaurant/Restaurants | place eat work building meet order
supermarket/supermarkets | m Supermarkt/Supermärkte | place shop work building
office/offices | n Büro/Büros | place work write tidy
hospital/hospitals | n Krankenhaus/Krankenhäuser | place work building
museum/museums | n Museum/Museen | place visit building work
hotel/hotels | n Hotel/Hotels | place sleep work building
market/markets | m Markt/Märkte | place shop meet
cinema/cinemas | n Kino/Kinos | place visit building meet
lake/lakes | m See/Seen | place water nature far
river/rivers | m Fluss/Flüsse | place water nature
beach/beaches | m Strand/Strände | place play nature far
sea/seas | n Meer/Meere | place water far
mountain/mountains | m Berg/Berge | place nature tall
bakery/bakeries | f Bäckerei/Bäckereien | place shop work building
airport/airports | m Flughafen/Flughäfen | place wait work building far
zoo/zoos | m Zoo/Zoos | place visit
"""

# places: English preposition "at rest", German one (+dative), English "to", German one
# (+accusative, or zu/nach + dative)
PLACE_PREPS = {"station": ("at", "an", "to", "zu"), "school": ("at", "in", "to", "zu"),
               "market": ("at", "auf", "to", "auf"), "lake": ("by", "an", "to", "an"),
               "river": ("by", "an", "to", "an"), "beach": ("on", "an", "to", "an"),
               "sea": ("by", "an", "to", "an"), "mountain": ("on", "auf", "up", "auf"),
               "airport": ("at", "an", "to", "zu"), "bakery": ("at", "in", "to", "zu"),
               "street": ("on", "auf", "onto", "auf"), "garden": ("in", "in", "into", "in"),
               "kitchen": ("in", "in", "into", "in"), "house": ("in", "in", "into", "in"),
               "room": ("in", "in", "into", "in"), "forest": ("in", "in", "into", "in")}
DEFAULT_PLACE_PREPS = ("in", "in", "to", "in")
SPATIAL_PREPS = {"on": "auf", "under": "unter", "next to": "neben", "behind": "hinter", "in front of": "vor",
                 "in": "in"}
SPATIAL = {"table": "on|under|next to", "chair": "on|under|next to", "bed": "on|under|next to",
           "sofa": "on|under|behind|next to", "cupboard": "in|on|next to", "floor": "on",
           "window": "next to|in front of", "door": "behind|next to|in front of", "tree": "under|next to|behind",
           "box": "in|next to", "bag": "in", "house": "behind|in front of|next to",
           "church": "behind|in front of|next to", "station": "in front of|next to",
           "school": "behind|in front of|next to", "hotel": "in front of|next to",
           "museum": "in front of|next to", "cinema": "in front of|next to"}

ADJECTIVE_TABLE = """
old | alt | person animal thing cloth vehicle text place furniture | older | älter
new | neu | thing cloth vehicle text place furniture | newer | neuer
big | groß | animal thing vehicle place furniture tree | bigger | größer
small | klein | person animal thing vehicle place furniture tree | smaller | kleiner
young | jung | person animal | younger | jünger
beautiful | schön | place cloth flower thing vehicle song | more beautiful | schöner
good | gut | text food drink person song | better | besser
bad | schlecht | text food drink song | worse | schlechter
warm | warm | drink cook cloth home | warmer | wärmer
cold | kalt | drink cook water home | colder | kälter
hot | heiß | drink cook | hotter | heißer
expensive | teuer/teur | thing cloth vehicle building drink | more expensive | teurer
cheap | billig | thing cloth vehicle drink | cheaper | billiger
long | lang | text song street river | longer | länger
short | kurz | text song | shorter | kürzer
dark | dunkel/dunkl | home nature cloth | darker | dunkler
quiet | ruhig | person animal place | quieter | ruhiger
loud | laut | person animal song building | louder | lauter
clever | klug | person animal | cleverer | klüger
friendly | freundlich | person animal | friendlier | freundlicher
tired | müde | person animal | more tired | müder
happy | glücklich | person | happier | glücklicher
sad | traurig | person song text | sadder | trauriger
hungry | hungrig | person animal | hungrier | hungriger
thirsty | durstig | person animal | thirstier | durstiger
fresh | frisch | food drink | fresher | frischer
sweet | süß | food drink | sweeter | süßer
sour | sauer/saur | sour drink | more sour | saurer
delicious | lecker | food drink | more delicious | leckerer
interesting | interessant | text person place | more interesting | interessanter
boring | langweilig | text person place | more boring | langweiliger
heavy | schwer | portable furniture | heavier | schwerer
clean | sauber | thing cloth vehicle home dish | cleaner | sauberer
dirty | schmutzig | thing cloth vehicle home dish animal | dirtier | schmutziger
strong | stark | person animal | stronger | stärker
fast | schnell | animal vehicle | faster | schneller
slow | langsam | animal vehicle | slower | langsamer
wild | wild | wild | wilder | wilder
tall | hoch/hoh | tall building | taller | höher
empty | leer | container | - | -
full | voll | container | - | -
famous | berühmt | person place | more famous | berühmter
rich | reich | person | richer | reicher
poor | arm | person | poorer | ärmer
sick | krank | person animal | - | -
modern | modern | building vehicle thing | more modern | moderner
comfortable | bequem | furniture cloth | more comfortable | bequemer
lazy | faul | person animal | lazier | fauler
brave | mutig | person | braver | mutiger
polite | höflich | person | more polite | höflicher
funny | lustig | person text song animal | funnier | lustiger
dangerous | gefährlich | wild street | more dangerous | gefährlicher
red | rot | thing cloth vehicle flower | - | -
blue | blau | thing cloth vehicle flower | - | -
green | grün | thing cloth vehicle | - | -
yellow | gelb | thing cloth vehicle flower | - | -
black | schwarz | thing cloth vehicle animal | - | -
white | weiß | thing cloth vehicle animal flower | - | -
brown | braun | cloth animal | - | -
grey | grau | cloth vehicle animal | - | -
"""

NAMES = {"Anna": "f", "Peter": "m", "Maria": "f", "Lisa": "f", "Paul": "m", "Julia": "f", "Jan": "m", "Tim": "m",
         "Laura": "f", "Lena": "f", "Michael": "m", "Sophie": "f", "Martin": "m", "Eva": "f", "David": "m"}
# (English, German, gender of a feminine country's article or "")
CITIES = [("Berlin", "Berlin"), ("Hamburg", "Hamburg"), ("Munich", "München"), ("Vienna", "Wien"),
          ("Cologne", "Köln"), ("Paris", "Paris"), ("London", "London"), ("Rome", "Rom"), ("Zurich", "Zürich"),
          ("Prague", "Prag"), ("Madrid", "Madrid"), ("Amsterdam", "Amsterdam")]
COUNTRIES = [("Germany", "Deutschland", ""), ("France", "Frankreich", ""), ("Italy", "Italien", ""),
             ("Spain", "Spanien", ""), ("Austria", "Österreich", ""), ("England", "England", ""),
             ("Switzerland", "Schweiz", "f"), ("Turkey", "Türkei", "f")]


@dataclass(frozen=True)
class Noun:
    en: str
    en_pl: str
    de: str
    de_pl: str
    gender: str
    tags: frozenset

    @property
    def mass(self):
        return "mass" in self.tags

    @property
    def has_plural(self):
        return self.de_pl is not None

    @property
    def sex(self):
        for tag in self.tags:
            if tag.startswith("sex="):
                return tag[4:]
        return None

    @property
    def fem(self):
        for tag in self.tags:
            if tag.startswith("fem="):
                return tag[4:]
        return None

    def de_form(self, case: str, plural: bool) -> str:
        """Singular or plural form; dative plural adds -n, weak masculines take -(e)n outside the nominative."""
        if plural:
            return self.de_pl + ("n" if case == "dat" and not self.de_pl.endswith(("n", "s")) else "")
        if "weak" in self.tags and case != "nom":
            return self.de_pl  # n-declension: every weak noun of the lexicon has its plural form here
        return self.de


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str
    stem: str
    tags: frozenset
    en_cmp: str
    de_cmp: str


def _parse_nouns(table):
    nouns = []
    for line in table.strip().splitlines():
        if not line.strip():
            continue
        en, de, tags = (part.strip() for part in line.split("|"))
        en_sg, en_pl = en.split("/")
        gender, forms = de.split(" ", 1)
        de_sg, de_pl = forms.split("/")
        nouns.append(Noun(en_sg, None if en_pl == "-" else en_pl, de_sg, None if de_pl == "-" else de_pl, gender,
                          frozenset(tags.split())))
    return nouns


def _parse_adjectives(table):
    adjectives = []
    for line in table.strip().splitlines():
        en, de, tags, en_cmp, de_cmp = (part.strip() for part in line.split("|"))
        de, _, stem = de.partition("/")
        stem = stem or (de[:-1] if de.endswith("e") else de)   # müde: müder, müden
        adjectives.append(Adjective(en, de, stem, frozenset(tags.split()), None if en_cmp == "-" else en_cmp,
                                    None if de_cmp == "-" else de_cmp))
    return adjectives


NOUNS = _parse_nouns(NOUN_TABLE)
NOUN = {noun.en: noun for noun in NOUNS}
SUN = Noun("sun", "suns", "Sonne", "Sonnen", "f", frozenset())
ADJECTIVES = _parse_adjectives(ADJECTIVE_TABLE)
ADJECTIVE = {adj.en: adj for adj in ADJECTIVES}


@dataclass(frozen=True)
class Verb:
    """A verb with its English forms, German forms and what it combines with.

    frame: intr, tr (accusative object), dat (dative object), ditr (dative + accusative),
    prep (prepositional object), motion (direction), put (object + place, accusative).
    """
    key: str
    frame: str
    en: tuple            # base, 3sg, past, -ing
    de: str              # infinitive, with a separable prefix if any
    pp: str              # German past participle
    du: str = None       # 2sg and 3sg of stem-changing verbs (without prefix)
    er: str = None
    aux: str = "haben"
    sep: str = ""        # separable prefix (an-rufen)
    en_prt: str = ""     # English particle after the verb, or after a pronoun object (pick him up)
    en_obj_prep: str = ""  # English preposition before the object (look for, listen to)
    subj: frozenset = frozenset({"person"})
    obj: frozenset = frozenset()
    rec: frozenset = frozenset()
    prep: tuple = None   # (English, German, case) of a prepositional object
    loc: frozenset = frozenset()   # place tags for an optional location
    spatial: bool = False          # takes "on the sofa"-like locations
    stative: bool = False          # no progressive
    tenses: tuple = ("pres", "prog", "past", "fut", "modal")

    @property
    def de_base(self):
        return self.de[len(self.sep):]

    def present(self, person):
        return conjugate(self.de_base, person, self.du, self.er)


def _verb(key, frame, en, de, pp, *, s=None, ing=None, **kw):
    base, past = en.split("/")
    for name in ("subj", "obj", "rec", "loc"):
        if name in kw:
            kw[name] = frozenset(kw[name].split())
    if kw.get("stative"):  # no progressive, and no modal unless listed (*can need)
        kw.setdefault("tenses", ("pres", "past", "fut"))
    return Verb(key, frame, (base, s or en_third_person(base), past, ing or en_ing(base)), de, pp, **kw)


VERBS = [
    # transitive: accusative object
    _verb("read", "tr", "read/read", "lesen", "gelesen", du="liest", er="liest", obj="text", loc="read"),
    _verb("write", "tr", "write/wrote", "schreiben", "geschrieben", obj="text song", loc="write"),
    _verb("buy", "tr", "buy/bought", "kaufen", "gekauft", obj="food drink thing cloth vehicle flower text",
          loc="shop"),
    _verb("sell", "tr", "sell/sold", "verkaufen", "verkauft", obj="food thing cloth vehicle flower", loc="shop"),
    _verb("eat", "tr", "eat/ate", "essen", "gegessen", du="isst", er="isst", subj="person animal", obj="food",
          loc="eat"),
    _verb("drink", "tr", "drink/drank", "trinken", "getrunken", subj="person animal", obj="drink", loc="eat"),
    _verb("see", "tr", "see/saw", "sehen", "gesehen", du="siehst", er="sieht", subj="person animal",
          obj="person animal thing vehicle building flower tree", loc="nature town", stative=True,
          tenses=("pres", "past", "fut", "modal")),
    _verb("hear", "tr", "hear/heard", "hören", "gehört", subj="person animal", obj="person animal song",
          stative=True, tenses=("pres", "past", "fut", "modal")),
    _verb("find", "tr", "find/found", "finden", "gefunden", obj="thing cloth text animal", loc="home town nature"),
    _verb("look_for", "tr", "look/looked", "suchen", "gesucht", en_obj_prep="for", subj="person animal",
          obj="thing cloth person animal", loc="home town"),
    _verb("need", "tr", "need/needed", "brauchen", "gebraucht", obj="thing cloth food drink vehicle", stative=True),
    _verb("lose", "tr", "lose/lost", "verlieren", "verloren", obj="small forget", loc="town nature"),
    _verb("have", "tr", "have/had", "haben", "gehabt", obj="thing pet vehicle cloth", stative=True,
          tenses=("pres", "fut")),
    _verb("carry", "tr", "carry/carried", "tragen", "getragen", du="trägst", er="trägt", obj="portable"),
    _verb("wash", "tr", "wash/washed", "waschen", "gewaschen", du="wäschst", er="wäscht", obj="cloth vehicle dish pet"),
    _verb("open", "tr", "open/opened", "öffnen", "geöffnet", obj="open"),
    _verb("close", "tr", "close/closed", "schließen", "geschlossen", obj="close"),
    _verb("paint", "tr", "paint/painted", "malen", "gemalt", obj="paint animal", loc="home nature"),
    _verb("draw", "tr", "draw/drew", "zeichnen", "gezeichnet", obj="paint animal", loc="home nature"),
    _verb("visit", "tr", "visit/visited", "besuchen", "besucht", obj="family visit"),
    _verb("ask", "tr", "ask/asked", "fragen", "gefragt", obj="person"),
    _verb("meet", "tr", "meet/met", "treffen", "getroffen", du="triffst", er="trifft", obj="person", loc="meet"),
    _verb("love", "tr", "love/loved", "lieben", "geliebt", obj="person animal", stative=True,
          tenses=("pres", "past")),
    _verb("know", "tr", "know/knew", "kennen", "gekannt", obj="person far", stative=True, tenses=("pres", "past")),
    _verb("like", "tr", "like/liked", "mögen", "gemocht", subj="person animal", obj="food drink animal person song",
          stative=True, tenses=("pres", "past")),
    _verb("catch", "tr", "catch/caught", "fangen", "gefangen", du="fängst", er="fängt", subj="person animal",
          obj="catch"),
    _verb("throw", "tr", "throw/threw", "werfen", "geworfen", du="wirfst", er="wirft", obj="throw"),
    _verb("cook", "tr", "cook/cooked", "kochen", "gekocht", obj="cook", loc="cooking"),
    _verb("bake", "tr", "bake/baked", "backen", "gebacken", obj="bake", loc="cooking"),
    _verb("build", "tr", "build/built", "bauen", "gebaut", obj="build"),
    _verb("repair", "tr", "repair/repaired", "reparieren", "repariert", obj="repair"),
    _verb("order", "tr", "order/ordered", "bestellen", "bestellt", obj="food drink", loc="order"),
    _verb("take", "tr", "take/took", "nehmen", "genommen", du="nimmst", er="nimmt", obj="portable food public"),
    _verb("miss", "tr", "miss/missed", "verpassen", "verpasst", obj="public"),
    _verb("use", "tr", "use/used", "benutzen", "benutzt", obj="repair vehicle"),
    _verb("forget", "tr", "forget/forgot", "vergessen", "vergessen", du="vergisst", er="vergisst", ing="forgetting",
          obj="forget"),
    _verb("call", "tr", "call/called", "anrufen", "angerufen", sep="an", obj="person"),
    _verb("pick_up", "tr", "pick/picked", "abholen", "abgeholt", sep="ab", en_prt="up", obj="person",
          loc="wait"),
    _verb("invite", "tr", "invite/invited", "einladen", "eingeladen", sep="ein", du="lädst", er="lädt",
          obj="person"),
    _verb("put_on", "tr", "put/put", "anziehen", "angezogen", sep="an", en_prt="on", ing="putting", obj="cloth"),
    _verb("tidy_up", "tr", "tidy/tidied", "aufräumen", "aufgeräumt", sep="auf", en_prt="up", obj="tidy"),
    _verb("watch", "tr", "watch/watched", "beobachten", "beobachtet", subj="person animal", obj="person animal",
          loc="nature town"),
    _verb("feed", "tr", "feed/fed", "füttern", "gefüttert", obj="animal"),
    _verb("collect", "tr", "collect/collected", "sammeln", "gesammelt", obj="collect"),
    _verb("stroke", "tr", "stroke/stroked", "streicheln", "gestreichelt", obj="pet farm"),
    _verb("cut", "tr", "cut/cut", "schneiden", "geschnitten", ing="cutting", obj="cut", loc="cooking"),
    _verb("clean", "tr", "clean/cleaned", "putzen", "geputzt", obj="clean dish"),
    # dative + accusative; the recipient is optional
    _verb("give", "ditr", "give/gave", "geben", "gegeben", du="gibst", er="gibt", obj="portable food flower text",
          rec="person"),
    _verb("bring", "ditr", "bring/brought", "bringen", "gebracht", obj="portable food drink flower text",
          rec="person"),
    _verb("show", "ditr", "show/showed", "zeigen", "gezeigt", obj="show text far", rec="person"),
    _verb("send", "ditr", "send/sent", "schicken", "geschickt", obj="send flower", rec="person"),
    _verb("tell", "ditr", "tell/told", "erzählen", "erzählt", obj="tell", rec="person"),
    # dative object
    _verb("help", "dat", "help/helped", "helfen", "geholfen", du="hilfst", er="hilft", obj="person"),
    _verb("thank", "dat", "thank/thanked", "danken", "gedankt", obj="person"),
    _verb("follow", "dat", "follow/followed", "folgen", "gefolgt", aux="sein", subj="person animal",
          obj="person animal"),
    _verb("answer", "dat", "answer/answered", "antworten", "geantwortet", obj="person"),
    _verb("believe", "dat", "believe/believed", "glauben", "geglaubt", obj="person", stative=True),
    _verb("listen", "dat", "listen/listened", "zuhören", "zugehört", sep="zu", en_obj_prep="to", obj="person"),
    _verb("belong", "dat", "belong/belonged", "gehören", "gehört", en_obj_prep="to",
          subj="thing cloth vehicle pet", obj="person", stative=True, tenses=("pres",)),
    # prepositional object
    _verb("wait_for", "prep", "wait/waited", "warten", "gewartet", prep=("for", "auf", "acc"), obj="person public",
          loc="wait"),
    _verb("think_of", "prep", "think/thought", "denken", "gedacht", prep=("about", "an", "acc"),
          obj="person animal far"),
    _verb("talk_to", "prep", "talk/talked", "sprechen", "gesprochen", du="sprichst", er="spricht",
          prep=("to", "mit", "dat"), obj="person"),
    _verb("talk_about", "prep", "talk/talked", "sprechen", "gesprochen", du="sprichst", er="spricht",
          prep=("about", "über", "acc"), obj="person animal text far"),
    _verb("play_with", "prep", "play/played", "spielen", "gespielt", prep=("with", "mit", "dat"),
          subj="person animal", obj="person pet toy"),
    _verb("dream_of", "prep", "dream/dreamed", "träumen", "geträumt", prep=("of", "von", "dat"),
          obj="person animal far vehicle"),
    _verb("laugh_at", "prep", "laugh/laughed", "lachen", "gelacht", prep=("at", "über", "acc"),
          obj="person animal"),
    # intransitive, with an optional location
    _verb("sleep", "intr", "sleep/slept", "schlafen", "geschlafen", du="schläfst", er="schläft",
          subj="person animal", loc="sleep", spatial=True),
    _verb("work", "intr", "work/worked", "arbeiten", "gearbeitet", loc="work"),
    _verb("play", "intr", "play/played", "spielen", "gespielt", subj="person animal", loc="play"),
    _verb("swim", "intr", "swim/swam", "schwimmen", "geschwommen", aux="sein", ing="swimming",
          subj="person swims", loc="water"),
    _verb("sing", "intr", "sing/sang", "singen", "gesungen", subj="person sings", loc="sing"),
    _verb("dance", "intr", "dance/danced", "tanzen", "getanzt", loc="dance"),
    _verb("laugh", "intr", "laugh/laughed", "lachen", "gelacht"),
    _verb("wait", "intr", "wait/waited", "warten", "gewartet", subj="person animal", loc="wait"),
    _verb("study", "intr", "study/studied", "lernen", "gelernt", loc="study"),
    _verb("cook_intr", "intr", "cook/cooked", "kochen", "gekocht", loc="cooking"),
    _verb("sit", "intr", "sit/sat", "sitzen", "gesessen", ing="sitting", subj="person animal", spatial=True),
    _verb("get_up", "intr", "get/got", "aufstehen", "aufgestanden", sep="auf", aux="sein", en_prt="up",
          ing="getting"),
    _verb("shop", "intr", "go/went", "einkaufen", "eingekauft", sep="ein", s="goes", en_prt="shopping",
          loc="shop"),
    _verb("watch_tv", "intr", "watch/watched", "fernsehen", "ferngesehen", sep="fern", du="siehst", er="sieht",
          en_prt="TV"),
    # motion with a direction
    _verb("go", "motion", "go/went", "gehen", "gegangen", s="goes", aux="sein"),
    _verb("run", "motion", "run/ran", "laufen", "gelaufen", du="läufst", er="läuft", aux="sein", ing="running",
          subj="person animal"),
    _verb("come", "motion", "come/came", "kommen", "gekommen", aux="sein", subj="person animal"),
    _verb("drive", "motion", "drive/drove", "fahren", "gefahren", du="fährst", er="fährt", aux="sein"),
    _verb("fly", "motion", "fly/flew", "fliegen", "geflogen", aux="sein", subj="person flies"),
    _verb("travel", "motion", "travel/travelled", "reisen", "gereist", aux="sein", ing="travelling"),
    # object + place (accusative): legen for things that lie, stellen for things that stand
    _verb("put_lie", "put", "put/put", "legen", "gelegt", ing="putting", obj="lie"),
    _verb("put_stand", "put", "put/put", "stellen", "gestellt", ing="putting", obj="stand"),
]
VERB = {verb.key: verb for verb in VERBS}
# "go ... by bus": German says fahren
GO_BY = _verb("go_by", "motion", "go/went", "fahren", "gefahren", s="goes", du="fährst", er="fährt", aux="sein")
BE = _verb("be", "cop", "be/was", "sein", "gewesen", aux="sein", subj="", tenses=("pres", "past", "fut", "modal"))
LIE = _verb("lie", "cop", "be/was", "liegen", "gelegen", subj="lie", tenses=("pres", "fut"))
STAND = _verb("stand", "cop", "be/was", "stehen", "gestanden", subj="stand", tenses=("pres", "fut"))
BECOME = _verb("become", "cop", "become/became", "werden", "geworden", aux="sein")
RAIN = _verb("rain", "weather", "rain/rained", "regnen", "geregnet")
SNOW = _verb("snow", "weather", "snow/snowed", "schneien", "geschneit")
SHINE = _verb("shine", "weather", "shine/shone", "scheinen", "geschienen")
LIVE = _verb("live", "intr", "live/lived", "wohnen", "gewohnt", stative=True, tenses=("pres", "past", "fut"))
SAY_VERBS = [  # verbs that take a "that" clause: English, German
    _verb("know_that", "that", "know/knew", "wissen", "gewusst", stative=True),
    _verb("think_that", "that", "think/thought", "denken", "gedacht", stative=True),
    _verb("believe_that", "that", "believe/believed", "glauben", "geglaubt", stative=True),
    _verb("say_that", "that", "say/said", "sagen", "gesagt"),
    _verb("hope_that", "that", "hope/hoped", "hoffen", "gehofft", stative=True),
]
ASK = _verb("ask_whether", "that", "ask/asked", "fragen", "gefragt")

# modal verbs: English affirmative, negative, question auxiliary; German infinitive
MODALS = {"can": ("can", "cannot", "can", "können"), "must": ("must", None, "must", "müssen"),
          "should": ("should", "should not", "should", "sollen"), "may": ("may", "may not", "may", "dürfen"),
          "want": ("want to", "not want to", "do", "wollen")}


@dataclass(frozen=True)
class Time:
    en: str
    de: str
    kind: str   # past, fut, habit, now, freq, any


def _times(spec, kind):
    return [Time(*pair.split(" = "), kind) for pair in spec.strip().split("\n")]


TIMES = (_times("""
yesterday = gestern
yesterday evening = gestern Abend
yesterday morning = gestern Morgen
last week = letzte Woche
last month = letzten Monat
last year = letztes Jahr
last summer = letzten Sommer
a week ago = vor einer Woche
this morning = heute Morgen""", "past") + _times("""
tomorrow = morgen
tomorrow evening = morgen Abend
tomorrow morning = morgen früh
next week = nächste Woche
next month = nächsten Monat
next year = nächstes Jahr
next summer = nächsten Sommer
soon = bald
later = später
tonight = heute Abend""", "fut") + _times("""
every day = jeden Tag
every morning = jeden Morgen
every evening = jeden Abend
every week = jede Woche
every year = jedes Jahr
on Sundays = sonntags
in the evening = abends
in the morning = morgens
in winter = im Winter
in summer = im Sommer""", "habit") + _times("""
now = jetzt
right now = gerade
at the moment = im Moment""", "now") + _times("""
often = oft
always = immer
sometimes = manchmal
usually = meistens
rarely = selten""", "freq") + _times("""
today = heute
at the weekend = am Wochenende
in the afternoon = am Nachmittag""", "any"))
DAYS = list(zip("Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split(),
                "Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag".split()))

# ---------------------------------------------------------------------------------------------
# Referring expressions: noun phrases, names, pronouns


@dataclass
class NP:
    noun: Noun
    plural: bool = False
    det: str = "def"      # def dem indef kein no poss num gen bare
    adj: Adjective = None
    very: bool = False
    poss: str = ""        # English possessive (my, your, ...) or a name for det == "gen"
    num: int = 0
    is_pron = False

    @property
    def gn(self):
        return "pl" if self.plural else self.noun.gender

    @property
    def person(self):
        return "3pl" if self.plural else "3sg"

    @property
    def tags(self):
        return self.noun.tags

    def en(self, role="nom"):
        noun = self.noun.en_pl if self.plural else self.noun.en
        mods = (["very"] if self.very else []) + ([self.adj.en] if self.adj else []) + [noun]
        if self.det == "def":
            det = ["the"]
        elif self.det == "dem":
            det = ["these" if self.plural else "this"]
        elif self.det in ("indef", "kein"):  # kein: "does not read a book"
            det = [] if self.plural or self.noun.mass else [a_or_an(mods[0])]
        elif self.det == "no":                # "there is no book"
            det = ["no"]
        elif self.det == "poss":
            det = [self.poss]
        elif self.det == "gen":
            det = [self.poss + "'s"]
        elif self.det == "num":
            det = [NUM_EN[self.num]]
        else:
            det = []
        return " ".join(det + mods)

    def de_parts(self, case):
        word = {"poss": POSSESSIVES.get(self.poss), "num": NUM_DE.get(self.num), "gen": self.poss + "s"}.get(self.det)
        det, declension = determiner("kein" if self.det == "no" else self.det, case, self.gn, word)
        rest = []
        if self.very:
            rest.append("sehr")
        if self.adj:
            rest.append(adjective_form(self.adj.stem, declension, case, self.gn))
        rest.append(self.noun.de_form(case, self.plural))
        return det, " ".join(rest)

    def de(self, case="nom"):
        det, rest = self.de_parts(case)
        return f"{det} {rest}" if det else rest


@dataclass
class Name:
    name: str
    de_name: str = None
    sex: str = None
    plural = False
    person = "3sg"
    is_pron = False
    tags = frozenset({"person", "name"})

    @property
    def gn(self):
        return self.sex

    def en(self, role="nom"):
        return self.name

    def de(self, case="nom"):
        return self.de_name or self.name


# English nominative, English object, German nominative, accusative, dative, person, gn
PRONOUNS = {
    "I": ("I", "me", "ich", "mich", "mir", "1sg", None),
    "you": ("you", "you", "du", "dich", "dir", "2sg", None),
    "he": ("he", "him", "er", "ihn", "ihm", "3sg", "m"),
    "she": ("she", "her", "sie", "sie", "ihr", "3sg", "f"),
    "we": ("we", "us", "wir", "uns", "uns", "1pl", None),
    "you all": ("you all", "you all", "ihr", "euch", "euch", "2pl", None),
    "they": ("they", "them", "sie", "sie", "ihnen", "3pl", "pl"),
}


@dataclass
class Pron:
    key: str
    de_gn: str = None    # for "it": the German gender it stands for (er/sie/es)
    en_forms: tuple = ("it", "it")   # for "it": the English forms (she/her for das Mädchen)
    is_pron = True
    tags = frozenset({"person"})

    def __post_init__(self):
        if self.key == "it":
            forms = {"m": ("er", "ihn", "ihm"), "f": ("sie", "sie", "ihr"), "n": ("es", "es", "ihm")}[self.de_gn]
            self.forms = (*self.en_forms, *forms, "3sg", self.de_gn)
        else:
            self.forms = PRONOUNS[self.key]

    @property
    def person(self):
        return self.forms[5]

    @property
    def plural(self):
        return self.person.endswith("pl")

    @property
    def gn(self):
        return self.forms[6]

    def en(self, role="nom"):
        return self.forms[0] if role == "nom" else self.forms[1]

    def de(self, case="nom"):
        return self.forms[{"nom": 2, "acc": 3, "dat": 4}[case]]


def pronoun_for(ref):
    """A pronoun that refers back to ref (English by natural gender, German by grammatical gender),
    or None where English has no natural choice (the child, a thing)."""
    if isinstance(ref, Pron):
        return ref if ref.key != "you all" else None
    if isinstance(ref, Name):
        return Pron("he" if ref.sex == "m" else "she")
    if ref.plural:
        return Pron("they")
    if "animal" in ref.tags:
        return Pron("it", ref.noun.gender)
    if "person" in ref.tags:
        sex = ref.noun.sex or ("m" if ref.noun.gender == "m" else None)
        if sex is None:
            return None
        if ref.noun.gender != sex:   # das Mädchen ... she ... es
            return Pron("it", ref.noun.gender, ("he", "him") if sex == "m" else ("she", "her"))
        return Pron("he" if sex == "m" else "she")
    return None


def de_pp(prep: str, ref, case: str = None) -> str:
    """German prepositional phrase with the case the preposition governs (or case for two-way ones)."""
    case = case or PREP_CASE[prep]
    if isinstance(ref, NP):
        det, rest = ref.de_parts(case)
        short = contract(prep, det) if ref.det == "def" and not ref.plural else None
        if short:
            return f"{short} {rest}"
    return f"{prep} {ref.de(case)}"


# ---------------------------------------------------------------------------------------------
# Clauses. German middle-field slots (TeKaMoLo order with pronouns first); English order is
# the order of the argument list.

S_PRON, S_TIME, S_DAT, S_ACC, S_NEG, S_INSTR, S_PP, S_PRED = range(8)


@dataclass
class Arg:
    en: str
    de: str
    slot: int
    pron: bool = False


@dataclass
class Clause:
    subj: object
    verb: Verb
    tense: str = "pres"       # pres prog past fut modal
    modal: str = None
    neg: bool = False
    time: Time = None
    args: list = field(default_factory=list)
    de_verb: Verb = None      # German verb when it differs (go by bus: fahren)
    kein: bool = False        # negated by kein in a noun phrase rather than by nicht
    obj: object = None        # referent of the first object

    @property
    def person(self):
        return self.subj.person


def de_verb_forms(cl: Clause):
    """(finite verb, right bracket in a main clause, verb cluster at the end of a subordinate clause)."""
    verb = cl.de_verb or cl.verb
    person = cl.person
    if cl.tense in ("pres", "prog"):
        finite = verb.present(person)
        if verb.sep:
            return finite, [verb.sep], [verb.sep + finite]
        return finite, [], [finite]
    if cl.tense == "past":
        if verb is BE:
            finite = SEIN_PAST[person]
            return finite, [], [finite]
        finite = conjugate(verb.aux, person)
        return finite, [verb.pp], [verb.pp, finite]
    aux = "werden" if cl.tense == "fut" else MODALS[cl.modal][3]
    finite = conjugate(aux, person)
    return finite, [verb.de], [verb.de, finite]


def en_verb_group(cl: Clause, question=False):
    """(auxiliary before the subject in a question or None, words after the subject)."""
    v = cl.verb
    base, s3, past, ing = v.en
    third = cl.person == "3sg"
    be_now = {"1sg": "am", "3sg": "is"}.get(cl.person, "are")
    be_past = "was" if cl.person in ("1sg", "3sg") else "were"
    neg = ["not"] if cl.neg else []
    if v.frame == "cop" and v.en[0] == "be":   # be, lie, stand: English "be"
        if cl.tense == "pres":
            return (be_now, neg) if question else (None, [be_now] + neg)
        if cl.tense == "past":
            return (be_past, neg) if question else (None, [be_past] + neg)
        base = "be"
    if cl.tense == "prog":
        return (be_now, neg + [ing]) if question else (None, [be_now] + neg + [ing])
    if cl.tense in ("pres", "past"):
        do = ("does" if third else "do") if cl.tense == "pres" else "did"
        if question:
            return do, neg + [base]
        if cl.neg:
            return None, [do, "not", base]
        return None, [s3 if third and cl.tense == "pres" else base if cl.tense == "pres" else past]
    if cl.tense == "fut":
        return ("will", neg + [base]) if question else (None, ["will"] + neg + [base])
    aff, negative, q, _ = MODALS[cl.modal]
    if cl.modal == "want":
        wants = "wants to" if third else "want to"
        do = "does" if third else "do"
        if question:
            return do, neg + ["want to", base]
        return None, ([do, "not want to"] if cl.neg else [wants]) + [base]
    if question:
        return q, neg + [base]
    return None, [negative if cl.neg else aff, base]


def en_args(cl: Clause, args):
    args = [a for a in args if a.en]
    words = [a.en for a in args]
    if cl.verb.en_prt:  # picks up the child / picks him up
        words.insert(1 if args and args[0].pron else 0, cl.verb.en_prt)
    return words


def realize(cl: Clause, form="main", front=None, wh=None, skip_subject=False):
    """English and German word lists of a clause.

    form: main (declarative; front = (English, German) of a fronted constituent, or "time"),
    question (yes/no), sub (verb-final, without the conjunction), wh (wh = (English, German,
    is_subject)).
    """
    finite, right, tail = de_verb_forms(cl)
    middle = [(a.slot, a.de) for a in cl.args if a.de]
    time_fronted = front == "time"
    if cl.time and not time_fronted:
        middle.append((S_TIME, cl.time.de))
    if cl.neg and not cl.kein:
        middle.append((S_NEG, "nicht"))
    middle = sorted(middle, key=lambda pair: pair[0])
    subj_de = [] if skip_subject else [cl.subj.de("nom")]
    pron_first = [de for slot, de in middle if slot == S_PRON] if not cl.subj.is_pron else []
    middle = [de for slot, de in middle if not (pron_first and slot == S_PRON)]
    inverted = pron_first + subj_de  # after the finite verb: Gestern hat ihn der Mann gesehen
    subj_en = [] if skip_subject else [cl.subj.en("nom")]

    # English
    freq = cl.time is not None and cl.time.kind == "freq"
    time_end = [cl.time.en] if cl.time and not freq and not time_fronted else []
    aux, group = en_verb_group(cl, question=form in ("question", "wh") and not (wh and wh[2]))
    if freq:  # often reads / is often tired
        at = 1 if group[0] in ("am", "is", "are", "was", "were", "will", "can", "must", "should", "may") else 0
        group = group[:at] + [cl.time.en] + group[at:]
    rest_en = en_args(cl, cl.args) + time_end

    if form == "main":
        if front is None:
            de = subj_de + [finite] + pron_first + middle + right
            en = subj_en + group + rest_en
        else:
            f_en, f_de = (cl.time.en, cl.time.de) if time_fronted else front
            de = [f_de, finite] + inverted + middle + right
            en = [f_en] + subj_en + group + rest_en
    elif form == "question":
        de = [finite] + inverted + middle + right
        en = [aux] + subj_en + group + rest_en
    elif form == "wh":
        w_en, w_de, is_subject = wh
        if is_subject:
            de = [w_de, finite] + pron_first + middle + right
            en = [w_en] + group + rest_en
        else:
            de = [w_de, finite] + inverted + middle + right
            en = [w_en, aux] + subj_en + group + rest_en
    else:  # sub
        de = subj_de + pron_first + middle + tail
        en = subj_en + group + rest_en
    return en, de


# ---------------------------------------------------------------------------------------------
# The generator


class Generator:
    """Draws sentence pairs; every choice comes from one random.Random(seed)."""

    TEMPLATES = {"t_statement": 34, "t_question": 8, "t_wh_question": 6, "t_copula": 8, "t_comparative": 4,
                 "t_profession": 3, "t_location": 5, "t_there_is": 3, "t_that": 8, "t_because": 6, "t_when": 5,
                 "t_relative": 7, "t_origin": 3, "t_weather": 1}
    TENSES_FOR_TIME = {"past": ["past"], "fut": ["fut", "modal"], "habit": ["pres", "pres", "modal"],
                       "now": ["prog", "prog", "modal"], "freq": ["pres"], "any": ["pres", "past", "fut", "modal"],
                       None: ["pres", "pres", "prog", "past", "past", "fut", "modal", "modal"]}
    PUT_PLACES = ("table", "chair", "bed", "sofa", "cupboard", "floor", "window", "door")
    REST_PLACES = ("sofa", "bed", "chair", "tree", "floor")

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    # -- small helpers
    def chance(self, p):
        return self.rng.random() < p

    def pick(self, seq, weights=None):
        seq = list(seq)
        return self.rng.choices(seq, weights)[0] if weights else self.rng.choice(seq)

    @staticmethod
    def nouns(tags, exclude=()):
        return [n for n in NOUNS if n.tags & set(tags) and not n.tags & set(exclude)]

    def adjective_for(self, noun):
        options = [a for a in ADJECTIVES if a.tags & noun.tags]
        return self.pick(options) if options else None

    def np(self, tags, plural_p=0.3, adj_p=0.35, dets=None, noun=None, exclude=()):
        """A noun phrase: a noun with one of tags, a determiner drawn from dets (kind: weight),
        maybe an adjective that fits the noun."""
        noun = noun or self.pick(self.nouns(tags, exclude))
        plural = noun.has_plural and self.chance(plural_p)
        choices = dets or {"def": 5, "indef": 3, "poss": 3, "dem": 1, "num": 1, "gen": 1}
        options = [d for d in choices if not (d == "num" and not plural)
                   and not (d in ("poss", "gen") and "noposs" in noun.tags)
                   and not (d == "indef" and noun.mass and not plural)
                   and not (d == "bare" and not (plural or noun.mass))]
        if not options:
            options = ["def"]
        det = self.pick(options, [choices.get(d, 1) for d in options])
        adj = self.adjective_for(noun) if self.chance(adj_p) else None
        np = NP(noun, plural, det, adj, very=adj is not None and adj.en_cmp is not None and self.chance(0.1))
        if det == "poss":
            np.poss = self.pick(POSSESSIVES)
        elif det == "gen":
            np.poss = self.pick(NAMES)
        elif det == "num":
            np.num = self.rng.randint(2, 12)
        return np

    def subject(self, tags, pron_p=0.3, name_p=0.15, **kw):
        if "person" in tags:
            r = self.rng.random()
            if r < pron_p:
                return Pron(self.pick(PRONOUNS, [10, 6, 8, 8, 6, 1, 6]))
            if r < pron_p + name_p:
                name = self.pick(NAMES)
                return Name(name, sex=NAMES[name])
        return self.np(tags, **kw)

    def person_object(self, subj, case, tags=frozenset({"person"}), pron_p=0.25, neg=False, **kw):
        """(Arg, referent) for a person or animal object: pronoun, name or noun phrase, not the subject.
        Under negation only definite ones (nicht), never ein (which would need kein)."""
        if neg:
            kw.setdefault("dets", {"def": 4, "poss": 3, "dem": 1, "gen": 1})
        slot = S_DAT if case == "dat" else S_ACC
        for _ in range(20):
            r = self.rng.random()
            if "person" in tags and r < pron_p:
                key = self.pick(["I", "you", "he", "she", "we", "they"])
                if isinstance(subj, Pron) and (key == subj.key or {key, subj.key} in ({"I", "we"}, {"you", "you all"})):
                    continue
                ref = Pron(key)
                return Arg(ref.en("obj"), ref.de(case), S_PRON, pron=True), ref
            if "person" in tags and r < pron_p + 0.12:
                name = self.pick(NAMES)
                if isinstance(subj, Name) and subj.name == name:
                    continue
                ref = Name(name, sex=NAMES[name])
            else:
                ref = self.np(tags, **kw)
                if isinstance(subj, NP) and subj.noun == ref.noun:
                    continue
            return Arg(ref.en("obj"), ref.de(case), slot), ref
        ref = self.np(tags, **kw)
        return Arg(ref.en("obj"), ref.de(case), slot), ref

    def thing_object(self, tags, neg=False, noun=None):
        """A noun phrase as accusative object; under negation ein/no article become kein."""
        dets = {"def": 5, "indef": 4, "poss": 3, "dem": 1, "num": 1, "gen": 1, "bare": 1}
        if neg:
            dets = {"def": 3, "poss": 2, "kein": 4}
        return self.np(tags, dets=dets, noun=noun)

    def time(self, kinds=("past", "fut", "habit", "now", "freq", "any")):
        kind = self.pick(kinds)
        if kind == "any" and self.chance(0.5):
            if self.chance(0.6):
                en, de = self.pick(DAYS)
                return Time(f"on {en}", f"am {de}", "any")
            n = self.rng.randint(1, 12)
            return Time(f"at {NUM_EN[n]} o'clock", f"um {NUM_DE[n]} Uhr", "any")
        if kind in ("past", "fut") and self.chance(0.3):
            n = self.rng.randint(2, 10)
            unit_en, unit_de = self.pick([("days", "Tagen"), ("weeks", "Wochen"), ("months", "Monaten"),
                                          ("years", "Jahren")])
            if kind == "past":
                return Time(f"{NUM_EN[n]} {unit_en} ago", f"vor {NUM_DE[n]} {unit_de}", "past")
            return Time(f"in {NUM_EN[n]} {unit_en}", f"in {NUM_DE[n]} {unit_de}", "fut")
        return self.pick([t for t in TIMES if t.kind == kind])

    def tense_for(self, verb, time, allowed=None):
        """(tense, time) that fit together and the verb; the time is dropped if nothing fits it."""
        kind = time.kind if time else None
        options = self.TENSES_FOR_TIME[kind]
        if kind == "now" and verb.stative:
            options = ["pres", "modal"]
        options = [t for t in options if t in verb.tenses and (allowed is None or t in allowed)]
        if options:
            return self.pick(options), time
        return self.tense_for(verb, None, allowed) if time else (None, None)

    def modal(self, neg):
        options = [m for m in MODALS if not (neg and MODALS[m][1] is None)]
        return self.pick(options, [4 if m in ("can", "want") else 2 for m in options])

    # -- locations and directions
    def place_phrase(self, tags, direction=False, dets=None):
        """(Arg, NP): in the garden / im Garten, or with direction into the garden / in den Garten."""
        nouns = [n for n in NOUNS if "place" in n.tags and n.tags & set(tags)
                 and not (direction and n.en == "street")]
        np = self.np({"place"}, plural_p=0, adj_p=0.2, noun=self.pick(nouns),
                     dets=dets or {"def": 8, "indef": 1, "poss": 1, "dem": 1})
        en_loc, de_loc, en_dir, de_dir = PLACE_PREPS.get(np.noun.en, DEFAULT_PLACE_PREPS)
        if direction:
            return Arg(f"{en_dir} {np.en()}", de_pp(de_dir, np, "dat" if de_dir == "zu" else "acc"), S_PP), np
        return Arg(f"{en_loc} {np.en()}", de_pp(de_loc, np, "dat"), S_PP), np

    def spatial_phrase(self, direction=False, places=None, exclude=None):
        """(Arg, NP): under the table / unter dem Tisch (dative), or unter den Tisch with direction."""
        noun = self.pick([NOUN[k] for k in (places or SPATIAL) if NOUN[k] is not exclude])
        prep = self.pick(SPATIAL[noun.en].split("|"))
        np = self.np(noun.tags, plural_p=0, adj_p=0.15, noun=noun, dets={"def": 8, "poss": 2, "dem": 1})
        return Arg(f"{prep} {np.en()}", de_pp(SPATIAL_PREPS[prep], np, "acc" if direction else "dat"), S_PP), np

    def direction(self, verb, subj):
        """Where a motion verb goes: a place, a person (zu + dative), home, a city or a country."""
        r = self.rng.random()
        person_subj = "person" in subj.tags
        if verb.key in ("fly", "travel") or (verb.key in ("drive", "go_by") and r < 0.3):
            if not person_subj:
                return self.place_phrase({"nature"}, direction=True)[0]
            if self.chance(0.6):
                en, de = self.pick(CITIES)
                return Arg(f"to {en}", f"nach {de}", S_PP)
            en, de, gender = self.pick(COUNTRIES)
            return Arg(f"to {en}", f"in die {de}" if gender else f"nach {de}", S_PP)
        if r < 0.15 and person_subj and verb.key in ("go", "come", "run", "drive", "go_by"):
            return Arg("home", "nach Hause", S_PP)
        if r < 0.3 and person_subj and verb.key in ("go", "come", "run"):
            arg, ref = self.person_object(subj, "dat", pron_p=0, plural_p=0.1, adj_p=0.1,
                                          dets={"def": 4, "poss": 4})
            return Arg(f"to {arg.en}", de_pp("zu", ref, "dat"), S_PP)
        if not person_subj:
            return self.place_phrase({"home", "nature"}, direction=True)[0]
        tags = {"far", "town"} if verb.key in ("drive", "go_by") else {"home", "town", "nature", "building"}
        return self.place_phrase(tags, direction=True)[0]

    # -- clauses
    def basic_clause(self, allow_neg=True, subj=None, tenses=None, frames=None, verb=None, time_p=0.45):
        """A simple clause: a verb of one of the frames with its arguments, maybe a place, a time and
        negation. Returns None when the draw does not fit (the caller draws again)."""
        if verb is None:
            weights = {"tr": 10, "ditr": 2, "dat": 2, "prep": 2, "intr": 3, "motion": 3, "put": 1}
            if frames:
                weights = {f: w for f, w in weights.items() if f in frames}
            frame = self.pick(weights, list(weights.values()))
            verb = self.pick([v for v in VERBS if v.frame == frame])
        if subj is None:
            subj = self.subject(verb.subj, plural_p=0.3)
        if not subj.tags & verb.subj:
            return None
        time = self.time() if self.chance(time_p) else None
        tense, time = self.tense_for(verb, time, tenses)
        if tense is None:
            return None
        neg = allow_neg and not (time and time.kind == "freq") and self.chance(0.15)
        cl = Clause(subj, verb, tense, self.modal(neg) if tense == "modal" else None, neg, time)
        args = cl.args
        if verb.frame in ("tr", "put"):
            person_tags = verb.obj & {"person", "family", "animal", "pet"}
            thing_tags = verb.obj - {"person", "family"}
            if person_tags & {"person", "family"} and (not thing_tags or self.chance(0.6)):
                arg, cl.obj = self.person_object(subj, "acc", tags=person_tags, neg=neg)
            else:
                noun = None
                if "animal" in subj.tags and verb.key in ("eat", "drink"):
                    noun = self.pick([n for n in NOUNS if "feed" in n.tags and n.tags & verb.obj])
                cl.obj = self.thing_object(thing_tags, neg=neg, noun=noun)
                cl.kein = cl.obj.det == "kein"
                arg = Arg(cl.obj.en(), cl.obj.de("acc"), S_ACC)
            if verb.en_obj_prep:
                arg.en = f"{verb.en_obj_prep} {arg.en}"
            args.append(arg)
            if verb.frame == "put":
                args.append(self.spatial_phrase(direction=True, places=self.PUT_PLACES)[0])
        elif verb.frame == "dat":
            arg, cl.obj = self.person_object(subj, "dat", tags=verb.obj, neg=neg)
            if verb.en_obj_prep:
                arg.en = f"{verb.en_obj_prep} {arg.en}"
            args.append(arg)
        elif verb.frame == "ditr":
            cl.obj = self.thing_object(verb.obj, neg=neg)
            cl.kein = cl.obj.det == "kein"
            obj = Arg(cl.obj.en(), cl.obj.de("acc"), S_ACC)
            if verb.key == "give" or self.chance(0.6):   # "gives a book" alone is odd; "sends a letter" is not
                rec, _ = self.person_object(subj, "dat", plural_p=0.2, neg=neg)
                if self.chance(0.3):  # gives a book to the child
                    args += [obj, Arg(f"to {rec.en}", rec.de, rec.slot, rec.pron)]
                else:                 # gives the child a book
                    args += [rec, obj]
            else:
                args.append(obj)
        elif verb.frame == "prep":
            en_p, de_p, case = verb.prep
            if "person" in verb.obj and self.chance(0.6):
                arg, ref = self.person_object(subj, case, tags=verb.obj & {"person", "animal", "pet"}, neg=neg)
                en = arg.en
            else:
                ref = self.np(verb.obj - {"person"} or verb.obj, dets={"def": 5, "poss": 3, "dem": 1} if neg else
                              {"def": 5, "indef": 2, "poss": 3, "dem": 1})
                en = ref.en("obj")
            args.append(Arg(f"{en_p} {en}", de_pp(de_p, ref, case), S_PP))
        elif verb.frame == "motion":
            if verb.key == "go" and "person" in subj.tags and self.chance(0.3):
                vehicle = self.pick(self.nouns({"vehicle"}))  # goes by bus: fährt mit dem Bus
                cl.de_verb = GO_BY
                args.append(Arg(None, de_pp("mit", NP(vehicle)), S_INSTR))
                args.append(self.direction(GO_BY, subj))
                args.append(Arg(f"by {vehicle.en}", None, S_INSTR))
            else:
                args.append(self.direction(verb, subj))
        if verb.frame in ("tr", "intr") and (verb.loc or verb.spatial) and (
                verb.key == "sit" or self.chance(0.35 if verb.frame == "tr" else 0.7)):
            if verb.spatial and (not verb.loc or self.chance(0.5)):
                args.append(self.spatial_phrase(places=self.REST_PLACES)[0])
            else:
                args.append(self.place_phrase(verb.loc)[0])
        return cl

    def weather_clause(self, tense="pres"):
        r = self.rng.random()
        if r < 0.5:
            return Clause(Pron("it", "n"), self.pick([RAIN, SNOW]), tense)
        if r < 0.7:
            return Clause(NP(SUN), SHINE, tense)
        cl = Clause(Pron("it", "n"), BE, "pres" if tense == "prog" else tense)
        adj = ADJECTIVE[self.pick(["cold", "warm", "hot"])]
        cl.args.append(Arg(adj.en, adj.de, S_PRED))
        return cl

    def relative_clause(self, head):
        """(English words, German words) of a relative clause on head, whose relative pronoun is the
        subject (der Mann, der ...), the accusative (den ...) or the dative object (dem ...)."""
        gn = head.gn
        person_head = "person" in head.tags
        verbs = [v for v in VERBS if v.subj & head.tags and v.frame in ("tr", "dat", "intr", "prep", "motion")
                 and "past" in v.tenses]
        if verbs and self.chance(0.6):
            cl = self.basic_clause(allow_neg=False, subj=head, tenses=("pres", "past"), verb=self.pick(verbs),
                                   time_p=0)
            if cl is None:
                return None
            en, de = realize(cl, "sub", skip_subject=True)
            return ["who" if person_head else "that"] + en, [RELATIVE["nom"][gn]] + de
        verbs = [v for v in VERBS if v.frame in ("tr", "dat") and v.obj & head.tags and not v.en_prt
                 and "past" in v.tenses]
        if not verbs:
            return None
        verb = self.pick(verbs)
        subj = self.subject(verb.subj, pron_p=0.3, plural_p=0.2, adj_p=0.1)
        if isinstance(subj, NP) and subj.noun == head.noun:
            return None
        cl = Clause(subj, verb, self.pick(["pres", "past"]))
        en, de = realize(cl, "sub")
        if verb.en_obj_prep:  # the man whom the children listen to
            en.append(verb.en_obj_prep)
        case = "dat" if verb.frame == "dat" else "acc"
        return ["whom" if person_head else "that"] + en, [RELATIVE[case][gn]] + de

    # -- sentence templates: each returns (English, German) or None
    def t_statement(self):
        cl = self.basic_clause()
        if cl is None:
            return None
        front = "time" if cl.time and cl.time.kind != "freq" and self.chance(0.4) else None
        return finish(*realize(cl, "main", front=front), ".")

    def t_question(self):
        cl = self.basic_clause(allow_neg=False)
        if cl is None or (cl.time and cl.time.kind == "freq"):
            return None
        return finish(*realize(cl, "question"), "?")

    def t_wh_question(self):
        """Who reads the book? What does the man read? Whom does he help? Where does she work?"""
        cl = self.basic_clause(allow_neg=False, frames=("tr", "dat", "intr", "motion"))
        if cl is None or (cl.time and cl.time.kind == "freq"):
            return None
        verb = cl.verb
        if self.chance(0.35) and "person" in cl.subj.tags and not cl.subj.is_pron:
            cl.subj = Pron("he")  # who: third person singular
            return finish(*realize(cl, "wh", wh=("who", "wer", True), skip_subject=True), "?")
        if verb.frame in ("tr", "dat") and cl.obj is not None:
            person = "person" in cl.obj.tags
            if verb.frame == "dat":
                if not person:
                    return None
                wh = ("who", "wem", False)
            else:
                wh = ("who", "wen", False) if person else ("what", "was", False)
            cl.args[0] = Arg(verb.en_obj_prep, "", S_ACC)   # what does he look for ...
            return finish(*realize(cl, "wh", wh=wh), "?")
        if verb.frame == "intr" and cl.args and verb.loc:
            cl.args = []
            return finish(*realize(cl, "wh", wh=("where", "wo", False)), "?")
        if verb.frame == "motion" and cl.de_verb is None:
            cl.args = []
            return finish(*realize(cl, "wh", wh=("where", "wohin", False)), "?")
        return None

    def t_copula(self):
        """The soup is (not/very/too) hot; the children were tired; the car will be expensive."""
        tag = self.pick(["person", "animal", "food", "drink", "thing", "cloth", "vehicle", "text", "place"],
                        [5, 3, 2, 2, 2, 1, 1, 1, 2])
        subj = self.subject({tag}, plural_p=0.3, adj_p=0.15)
        adj = self.pick([a for a in ADJECTIVES if a.tags & subj.tags])
        time = self.time(("past", "fut", "habit", "now", "any", "freq")) if self.chance(0.3) else None
        tense, time = self.tense_for(BE, time)
        neg = self.chance(0.2) and not (time and time.kind == "freq")
        modal = self.pick(["can", "must"] if not neg else ["can"]) if tense == "modal" else None
        cl = Clause(subj, BE, tense, modal, neg, time)
        mod_en, mod_de = self.pick([("", ""), ("very ", "sehr "), ("too ", "zu ")], [3, 1, 1]) if adj.en_cmp else ("", "")
        cl.args.append(Arg(mod_en + adj.en, mod_de + adj.de, S_PRED))
        front = "time" if time and time.kind != "freq" and self.chance(0.3) else None
        return finish(*realize(cl, "main", front=front), ".")

    def t_comparative(self):
        """The dog is bigger than the cat: Der Hund ist größer als die Katze."""
        tag = self.pick(["person", "animal", "vehicle", "thing", "place", "text"])
        adj = self.pick([a for a in ADJECTIVES if a.en_cmp and tag in a.tags])
        dets = {"def": 4, "poss": 3, "dem": 1, "gen": 1}
        first = self.np({tag}, adj_p=0, dets=dets, plural_p=0.25)
        second = self.np({tag}, adj_p=0, dets=dets, plural_p=0.25)
        if first.noun == second.noun or not (adj.tags & first.tags and adj.tags & second.tags):
            return None
        cl = Clause(first, BE, self.pick(["pres", "pres", "past"]))
        cl.args.append(Arg(f"{adj.en_cmp} than {second.en()}", f"{adj.de_cmp} als {second.de('nom')}", S_PRED))
        return finish(*realize(cl, "main"), ".")

    def t_profession(self):
        """My mother is a doctor: Meine Mutter ist Ärztin (no article; female form; kein under negation)."""
        job = self.pick(self.nouns({"job"}))
        subj = self.subject({"person"}, pron_p=0.3, name_p=0.3, plural_p=0.2, adj_p=0.1,
                            dets={"def": 3, "poss": 4, "gen": 1}, noun=self.pick(
                                [n for n in NOUNS if n.sex and "person" in n.tags]))
        if isinstance(subj, Pron):
            subj = Pron(self.pick(["he", "she", "they"]))
            sex = {"he": "m", "she": "f", "they": "m"}[subj.key]
        else:
            sex = subj.sex if isinstance(subj, Name) else subj.noun.sex
        female = sex == "f"
        if subj.plural:
            en, de = job.en_pl, (job.fem + "nen" if female else job.de_pl)
        else:
            en, de = f"{a_or_an(job.en)} {job.en}", (job.fem if female else job.de)
        if self.chance(0.25):  # wants to become a doctor: will Ärztin werden
            cl = Clause(subj, BECOME, "modal", "want")
        else:
            cl = Clause(subj, BE, self.pick(["pres", "pres", "past"]), neg=self.chance(0.2))
            if cl.neg:  # is not a teacher: ist kein Lehrer / keine Lehrerin / keine Lehrer
                cl.kein = True
                de = ("keine " if subj.plural or female else "kein ") + de
        cl.args.append(Arg(en, de, S_PRED))
        return finish(*realize(cl, "main"), ".")

    def t_location(self):
        """The book is on the table (liegt), the cup is on the table (steht), the man is in the garden."""
        if self.chance(0.5):
            noun = self.pick(self.nouns({"lie", "stand"}))
            verb = LIE if "lie" in noun.tags else STAND
            subj = self.np(noun.tags, noun=noun, adj_p=0.3, dets={"def": 5, "poss": 3, "dem": 1, "gen": 1})
            where = self.spatial_phrase(exclude=noun)[0]
        else:
            subj = self.subject({"person", "animal"}, plural_p=0.3, adj_p=0.2)
            verb = BE
            if "animal" in subj.tags or self.chance(0.3):
                where = self.spatial_phrase()[0]
            elif self.chance(0.15):
                where = Arg("at home", "zu Hause", S_PP)
            else:
                where = self.place_phrase({"place"})[0]
        time = self.time(("now", "any")) if self.chance(0.25) else None
        tense, time = self.tense_for(verb, time, ("pres", "fut"))
        cl = Clause(subj, verb, tense, time=time, neg=self.chance(0.1))
        cl.args.append(where)
        front = "time" if time and self.chance(0.4) else None
        return finish(*realize(cl, "main", front=front), ".")

    def t_there_is(self):
        """There is a museum in the city: In der Stadt gibt es ein Museum (accusative)."""
        where, place = self.place_phrase({"town", "home", "nature"}, dets={"def": 6, "poss": 2, "dem": 1})
        if place.noun.en in ("city", "village", "street"):
            tags, exclude = {"building", "person", "animal"}, ()
        elif "home" in place.noun.tags:
            tags, exclude = {"animal", "thing", "furniture", "flower"}, ("place",)
        else:
            tags, exclude = {"animal", "tree", "flower", "person"}, ("place",)
        what = self.np(tags, dets={"indef": 6, "num": 2}, plural_p=0.35, adj_p=0.4, exclude=exclude)
        if what.noun == place.noun or what.noun.mass:
            return None
        if what.det == "indef" and self.chance(0.1):
            what.det = "no"   # there is no dog: es gibt keinen Hund
        en = f"There {'are' if what.plural else 'is'} {what.en()} {where.en}."
        return en, f"{capitalize(where.de)} gibt es {what.de('acc')}."

    def t_that(self):
        """I know that the man reads a book: Ich weiß, dass der Mann ein Buch liest (also ob)."""
        subj = self.subject({"person"}, pron_p=0.45, plural_p=0.2)
        inner = self.basic_clause(allow_neg=True)
        if inner is None:
            return None
        if self.chance(0.2):  # does not know whether / asks whether
            main = Clause(subj, SAY_VERBS[0], "pres", neg=True) if self.chance(0.5) else Clause(subj, ASK)
            conj = ("whether", "ob")
        else:
            main = Clause(subj, self.pick(SAY_VERBS))
            conj = ("that", "dass")
        m_en, m_de = realize(main, "main")
        s_en, s_de = realize(inner, "sub")
        return finish(m_en + [conj[0]] + s_en, m_de + [",", conj[1]] + s_de, ".")

    def t_because(self):
        """Main clause + weil + verb-final clause (the subject's state, the weather or anything)."""
        main = self.basic_clause(allow_neg=True)
        if main is None:
            return None
        r = self.rng.random()
        pron = pronoun_for(main.subj)
        past = main.tense == "past"
        if r < 0.5 and pron is not None and main.subj.tags & {"person", "animal"}:  # weil er müde ist
            adj = self.pick([a for a in ADJECTIVES if a.en in ("tired", "hungry", "thirsty", "happy", "sad", "sick",
                                                               "lazy") and a.tags & main.subj.tags])
            inner = Clause(pron, BE, "past" if past else "pres", neg=self.chance(0.15))
            inner.args.append(Arg(adj.en, adj.de, S_PRED))
        elif r < 0.65:
            inner = self.weather_clause("past" if past else self.pick(["pres", "prog"]))
        else:
            inner = self.basic_clause(allow_neg=False)
            if inner is None:
                return None
        m_en, m_de = realize(main, "main")
        s_en, s_de = realize(inner, "sub")
        return finish(m_en + ["because"] + s_en, m_de + [",", "weil"] + s_de, ".")

    def t_when(self):
        """When it rains, the children play in the house: Wenn es regnet, spielen die Kinder im Haus."""
        if self.chance(0.4):
            inner = self.weather_clause()
        else:
            inner = self.basic_clause(allow_neg=False, tenses=("pres",), time_p=0)
        main = self.basic_clause(allow_neg=True, tenses=("pres", "fut", "modal"))
        if inner is None or main is None or (main.time and main.time.kind == "freq"):
            return None
        conj = self.pick(["when", "if"])
        s_en, s_de = realize(inner, "sub")
        if self.chance(0.6):  # the subordinate clause takes the first position: verb, then subject
            front = (" ".join([conj] + s_en) + ",", " ".join(["wenn"] + s_de) + ",")
            return finish(*realize(main, "main", front=front), ".")
        m_en, m_de = realize(main, "main")
        return finish(m_en + [conj] + s_en, m_de + [",", "wenn"] + s_de, ".")

    def t_relative(self):
        """Der Mann, der das Buch liest, ist alt. / Ich kenne die Frau, die im Dorf wohnt."""
        if self.chance(0.55):  # on the subject of a copula
            tag = self.pick(["person", "animal", "text", "thing", "food"], [5, 2, 1, 1, 1])
            head = self.np({tag}, plural_p=0.25, adj_p=0.15, dets={"def": 6, "dem": 1, "poss": 2})
            rel = self.relative_clause(head)
            if rel is None:
                return None
            adj = self.pick([a for a in ADJECTIVES if a.tags & head.tags])
            cl = Clause(head, BE, self.pick(["pres", "pres", "past"]))
            cl.args.append(Arg(adj.en, adj.de, S_PRED))
            en, de = realize(cl, "main")
            return finish([en[0]] + rel[0] + en[1:], [de[0], ","] + rel[1] + [","] + de[1:], ".")
        # on the object of a main clause; German puts the relative clause after the verb(s)
        verb = VERB[self.pick(["see", "know", "visit", "meet", "call", "ask", "love", "like", "help", "thank",
                               "read", "buy", "find", "look_for", "need"])]
        subj = self.subject(verb.subj, pron_p=0.5, plural_p=0.2)
        tag = self.pick(sorted(verb.obj & {"person", "animal", "text", "food", "thing"}) or ["person"])
        head = self.np({tag}, plural_p=0.25, adj_p=0.15, dets={"def": 6, "dem": 1, "poss": 2})
        if isinstance(subj, NP) and subj.noun == head.noun:
            return None
        rel = self.relative_clause(head)
        if rel is None:
            return None
        tense, time = self.tense_for(verb, self.time(("past",)) if self.chance(0.3) else None, ("pres", "past", "fut"))
        cl = Clause(subj, verb, tense, time=time)
        case = "dat" if verb.frame == "dat" else "acc"
        cl.args.append(Arg(f"{verb.en_obj_prep} {head.en('obj')}".strip(), head.de(case),
                           S_DAT if case == "dat" else S_ACC))
        en, de = realize(cl, "main", front="time" if time else None)
        return finish(en + rel[0], de + [","] + rel[1], ".")

    def t_origin(self):
        """Anna comes from Vienna; my friend lives in a small village / in Switzerland."""
        subj = self.subject({"person"}, pron_p=0.4, name_p=0.3, plural_p=0.2)
        if self.chance(0.35):
            if self.chance(0.6):
                en, de = self.pick(CITIES)
                en, de = f"from {en}", f"aus {de}"
            else:
                en, de, gender = self.pick(COUNTRIES)
                en, de = f"from {en}", (f"aus der {de}" if gender else f"aus {de}")
            cl = Clause(subj, VERB["come"], "pres")
            cl.args.append(Arg(en, de, S_PP))
            return finish(*realize(cl, "main"), ".")
        time = self.time(("past", "fut")) if self.chance(0.3) else None
        tense, time = self.tense_for(LIVE, time)
        cl = Clause(subj, LIVE, tense, time=time)
        r = self.rng.random()
        if r < 0.4:
            en, de = self.pick(CITIES)
            cl.args.append(Arg(f"in {en}", f"in {de}", S_PP))
        elif r < 0.6:
            en, de, gender = self.pick(COUNTRIES)
            cl.args.append(Arg(f"in {en}", f"in der {de}" if gender else f"in {de}", S_PP))
        else:
            place = self.np({"live"}, plural_p=0, adj_p=0.5, dets={"indef": 3, "def": 1, "dem": 1})
            cl.args.append(Arg(f"in {place.en()}", de_pp("in", place, "dat"), S_PP))
        return finish(*realize(cl, "main", front="time" if time and self.chance(0.5) else None), ".")

    def t_weather(self):
        time = self.time(("habit", "now", "any")) if self.chance(0.7) else None
        cl = self.weather_clause("prog" if (time and time.kind == "now") or (not time and self.chance(0.5))
                                 else "pres")
        cl.time = time
        front = "time" if time and self.chance(0.5) else None
        return finish(*realize(cl, "main", front=front), ".")

    def pair(self):
        """One (English, German) sentence pair of 4-20 words on both sides."""
        names, weights = list(self.TEMPLATES), list(self.TEMPLATES.values())
        while True:
            result = getattr(self, self.pick(names, weights))()
            if result is not None and all(4 <= count_words(text) <= 20 for text in result):
                return result


def capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def finish(en_words, de_words, punct):
    """Join word lists into sentences: no space before commas, capital first letter, final punctuation."""
    def join(words):
        text = " ".join(w for w in words if w)
        text = re.sub(r" ,", ",", text)
        return capitalize(text) + punct
    return join(en_words), join(de_words)


TOKEN = re.compile(r"[^\s,.?!]+|[,.?!]")


def tokenize(text: str) -> list:
    return TOKEN.findall(text)


def count_words(text: str) -> int:
    return sum(1 for tok in tokenize(text) if tok not in ",.?!")


# ---------------------------------------------------------------------------------------------


def generate(train: int, valid: int, test: int, seed: int = 1):
    """{split: [(English, German), ...]} with no English or German sentence repeated anywhere."""
    gen = Generator(seed)
    seen_en, seen_de = set(), set()
    splits = {}
    for split, size in (("valid", valid), ("test", test), ("train", train)):
        pairs, attempts = [], 0
        bar = progress(total=size, desc=split, unit="pair")
        while len(pairs) < size:
            attempts += 1
            if attempts > 50 * size + 1000:
                sys.exit(f"could not draw {size} distinct {split} pairs (got {len(pairs)})")
            en, de = gen.pair()
            if en in seen_en or de in seen_de:
                continue
            seen_en.add(en)
            seen_de.add(de)
            pairs.append((en, de))
            bar.update()
        bar.close()
        splits[split] = pairs
    return {split: splits[split] for split in ("train", "valid", "test")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="output folder for {train,valid,test}.{en,de}")
    parser.add_argument("--train-pairs", type=int, default=20_000)
    parser.add_argument("--valid-pairs", type=int, default=500)
    parser.add_argument("--test-pairs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tokenize", action="store_true", help="split punctuation off (Moses-style tokens)")
    args = parser.parse_args(argv)

    splits = generate(args.train_pairs, args.valid_pairs, args.test_pairs, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    vocab = {"en": Counter(), "de": Counter()}
    for split, pairs in splits.items():
        lengths = {"en": 0, "de": 0}
        for lang, index in (("en", 0), ("de", 1)):
            lines = []
            for pair in pairs:
                tokens = tokenize(pair[index])
                lengths[lang] += count_words(pair[index])
                if split == "train":
                    vocab[lang].update(tokens)
                lines.append(" ".join(tokens) if args.tokenize else pair[index])
            (args.out / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
        n = max(len(pairs), 1)
        print(f"{split}: {len(pairs)} pairs, mean length en {lengths['en'] / n:.1f} / de {lengths['de'] / n:.1f} "
              f"words -> {args.out / split}.{{en,de}}")
    unseen = {}
    for lang, index in (("en", 0), ("de", 1)):
        tokens = [tok for pair in splits["test"] for tok in tokenize(pair[index])]
        unseen[lang] = sum(tok not in vocab[lang] for tok in tokens) / max(len(tokens), 1)
    print(f"vocabulary (train, tokens incl. punctuation): en {len(vocab['en'])}, de {len(vocab['de'])}; "
          f"test tokens unseen in train: en {100 * unseen['en']:.2f}%, de {100 * unseen['de']:.2f}%")


if __name__ == "__main__":
    main()
