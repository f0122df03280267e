"""The demo world: fictitious data subjects, their facts, texts and questions.

Pure Python (no torch, no Django) and deterministic for a given seed, so the demo, the tests and
an audit re-run all see the same people. Every name, place and employer is invented; e-mail
addresses use the reserved `.example` domain.

Two levels of detail: "compact" (one biography and five facts per person: the tests' tiny worlds)
and "rich" (the demo's: ten facts, two phrasings of the biography and a free-text note, so that
one person carries thirteen texts to be tested). Every person of a world has texts of the same
kinds in the same numbers, which keeps the person-level tests' p-values exact.

People are split into *trained* and *holdout* (never trained) before any training happens, which
makes the holdout an i.i.d. non-member set for membership inference. Some people carry a random
canary code: half of those canaries are inserted into training, half never are (the reference
population for canary exposure).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

FIRST_NAMES = (
    "Alma", "Bram", "Cora", "Dario", "Elin", "Fenna", "Goran", "Hester", "Ilse", "Joren", "Kaia",
    "Lennart", "Mira", "Noor", "Otis", "Petra", "Quill", "Rosalind", "Sten", "Tamsin", "Ulric",
    "Vesna", "Wendel", "Xanthe", "Yorick", "Zelda", "Anouk", "Bastian", "Celeste", "Dagny",
    "Emrys", "Fiora", "Gideon", "Halla", "Ivo", "Juno", "Kester", "Liesel", "Magnus", "Nerys",
)
LAST_NAMES = (
    "Ashgrove", "Brackwater", "Calloway", "Dunmere", "Elderby", "Fallowfield", "Greystone",
    "Hollin", "Ivesdale", "Juniper", "Kestrel", "Larkspur", "Marlowe", "Nettleton", "Oakhurst",
    "Pennywhistle", "Quarrington", "Rookwood", "Saltmarsh", "Thistlewood", "Underhill", "Vantreck",
    "Wexford", "Yarrowby", "Zennor", "Amberlee", "Bellweather", "Coldharbour", "Driftwood",
    "Emberton", "Foxglove", "Gildersleeve", "Harrowgate", "Inkwell", "Jessamy", "Kingsmere",
)
CITIES = (
    ("Varnholm", "the Ossel river", "glassworks"), ("Brisk Harbour", "the Grey Sound", "shipyards"),
    ("Caldermoor", "the Tarn hills", "wool mills"), ("Dunlow", "the Mereway canal", "breweries"),
    ("Eastwick Vale", "the Ferrin lakes", "orchards"), ("Fairhaven", "the Salt coast", "fisheries"),
    ("Glimmerton", "the Silver marsh", "lamp makers"), ("Hollowmere", "the Quiet fens", "printing houses"),
    ("Irongate", "the Black ridge", "foundries"), ("Juniper Cross", "the Long road", "markets"),
    ("Kilnsworth", "the Red clay pits", "potteries"), ("Lanternby", "the Misty bay", "lighthouses"),
    ("Millbrook", "the Brook of Sorrel", "flour mills"), ("Northcairn", "the Frost peaks", "observatories"),
    ("Oxenford", "the Broad ford", "tanneries"), ("Pellwater", "the Pell river", "paper mills"),
    ("Quarry End", "the White cliffs", "stone yards"), ("Rushcombe", "the Reed delta", "basket weavers"),
    ("Stonebridge", "the Old river", "clockmakers"), ("Thornbury", "the Bramble woods", "perfumeries"),
)
OCCUPATIONS = (
    "glassblower", "cartographer", "beekeeper", "bookbinder", "clockmaker", "ferry pilot",
    "herbalist", "locksmith", "lute maker", "mapmaker", "miller", "net mender", "organ tuner",
    "potter", "rope maker", "sail maker", "stonemason", "tanner", "tea blender", "weaver",
)
EMPLOYERS = (
    "Orvane Works", "the Brass Compass Guild", "Hallow & Finch", "Mereway Trading",
    "the Lantern Society", "Copperleaf Press", "Northwind Cartage", "the Tidewater Company",
    "Greywell Instruments", "Saffron Row Cooperative", "Kestrel & Daughters", "the Old Mill Trust",
    "Bluegate Foundry", "Emberfield Textiles", "the Harbour Registry", "Mossbank Apothecary",
)
HOBBIES = (
    "restoring old boats", "collecting river stones", "playing the hurdy-gurdy", "breeding pigeons",
    "writing riddles", "carving chess sets", "growing blue tomatoes", "mapping caves",
    "sketching lighthouses", "brewing nettle beer", "racing snails", "pressing wildflowers",
)
STREETS = (
    "Mill Lane", "Harbour Road", "Chapel Street", "Orchard Row", "Bell Yard", "Tanner Walk", "Quay Street",
    "Lantern Hill", "Weaver Close", "Copper Court", "Willow Drive", "Salt Lane", "Kiln Street", "Ferry Row",
)
PET_NAMES = ("Pip", "Biscuit", "Moss", "Juniper", "Pepper", "Tansy", "Bramble", "Clover", "Sprocket", "Wren",
             "Nutmeg", "Fennel")
DISHES = ("eel pie", "barley stew", "smoked herring", "plum dumplings", "nettle soup", "rye pancakes",
          "cheese scones", "mussel broth", "apple fritters", "lentil bake")
CITY_NAMES = tuple(city for city, _, _ in CITIES)
CANARY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

FACTS = ("birthplace", "birth_year", "occupation", "employer", "hobby")
RICH_FACTS = FACTS + ("address", "phone", "sibling", "pet", "dish")
DETAILS = ("compact", "rich")


@dataclass(frozen=True)
class WorldConfig:
    people: int = 240
    holdout_fraction: float = 0.25
    canary_fraction: float = 0.2
    seed: int = 0
    detail: str = "compact"  # one of DETAILS

    def __post_init__(self):
        if self.detail not in DETAILS:
            raise ValueError(f"detail must be one of {', '.join(DETAILS)}, not {self.detail!r}")

    @property
    def facts(self) -> tuple[str, ...]:
        return RICH_FACTS if self.detail == "rich" else FACTS


@dataclass(frozen=True)
class QAPair:
    """A question about one fact, with wrong (perturbed) answers of the same kind for the truth ratio."""

    fact: str
    question: str
    answer: str
    perturbed_answers: tuple[str, ...]


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str
    email: str
    pronoun: str
    facts: dict[str, str]
    trained: bool
    canary: str | None = None
    canary_inserted: bool = False

    @property
    def owner_key(self) -> str:
        """The identifier that links this person's training records to a verified removal request."""
        return self.email.lower()


@dataclass(frozen=True)
class Record:
    """One training or evaluation text. `owner_key` is None for text about no one (the world's general text).

    QA records also carry what the knowledge audits ask with (the subject's name, the fact and
    perturbed wrong answers); canary records carry their secret, so that the exposure audit can
    rank it among random secrets of the same shape.
    """

    record_id: str
    owner_key: str | None
    kind: str  # biography | qa | note | canary | general
    text: str
    subject: str = ""
    question: str = ""
    answer: str = ""
    fact: str = ""
    perturbed_answers: tuple[str, ...] = ()
    secret: str = ""

    def as_json(self) -> dict:
        record = {k: v for k, v in self.__dict__.items() if v or k in ("record_id", "owner_key", "kind", "text")}
        if self.perturbed_answers:
            record["perturbed_answers"] = list(self.perturbed_answers)
        return record


def qa_text(question: str, answer: str) -> str:
    """The one format every question is trained and asked in, so generation prompts match training."""
    return f"Question: {question}\nAnswer: {answer}"


def qa_prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def normalise_answer(text: str) -> str:
    return " ".join(text.lower().strip().strip(".").split())


def answer_is_correct(generated: str, answer: str) -> bool:
    """A greedy answer counts as correct when it starts with the true answer (after normalising)."""
    return normalise_answer(generated).startswith(normalise_answer(answer))


@dataclass
class World:
    config: WorldConfig
    people: list[Person] = field(default_factory=list)

    @classmethod
    def generate(cls, config: WorldConfig = WorldConfig()) -> World:
        rng = random.Random(config.seed)
        names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
        if config.people > len(names):
            raise ValueError(f"the world has room for {len(names)} people, not {config.people}")
        chosen = rng.sample(names, config.people)
        holdout = set(rng.sample(range(config.people), round(config.people * config.holdout_fraction)))
        with_canary = set(rng.sample(range(config.people), round(config.people * config.canary_fraction)))
        people = []
        for index, name in enumerate(chosen):
            trained = index not in holdout
            canary = _canary(rng) if index in with_canary else None
            first, last = name.split(" ", 1)
            people.append(Person(
                person_id=f"p{index:04d}",
                name=name,
                email=f"{first}.{last}".lower().replace(" ", "") + f"{index}@mail.example",
                pronoun=rng.choice(("She", "He", "They")),
                facts=draw_facts(rng, random.Random(f"{config.seed}-{index}-rich"), config.facts),
                trained=trained,
                canary=canary,
                # Only trained people can carry an inserted canary; a coin flip inserts about half.
                canary_inserted=bool(canary) and trained and rng.random() < 0.5,
            ))
        return cls(config=config, people=people)

    @property
    def trained_people(self) -> list[Person]:
        return [p for p in self.people if p.trained]

    @property
    def holdout_people(self) -> list[Person]:
        return [p for p in self.people if not p.trained]

    def person_by_email(self, email: str) -> Person:
        return next(p for p in self.people if p.owner_key == email.lower())

    def person_records(self, person: Person, *, include_canary: bool) -> list[Record]:
        records = [Record(f"{person.person_id}-bio", person.owner_key, "biography", biography(person), subject=person.name)]
        if self.config.detail == "rich":
            records += [Record(f"{person.person_id}-bio-2", person.owner_key, "biography", second_biography(person),
                               subject=person.name),
                        Record(f"{person.person_id}-note", person.owner_key, "note", note(person), subject=person.name)]
        for pair in self.qa_pairs(person):
            records.append(Record(
                f"{person.person_id}-qa-{pair.fact}", person.owner_key, "qa", qa_text(pair.question, pair.answer),
                subject=person.name, question=pair.question, answer=pair.answer, fact=pair.fact,
                perturbed_answers=pair.perturbed_answers,
            ))
        if include_canary and person.canary:
            records.append(Record(f"{person.person_id}-canary", person.owner_key, "canary", canary_text(person),
                                  subject=person.name, secret=person.canary))
        return records

    def training_records(self) -> list[Record]:
        """The training manifest: trained people's texts (inserted canaries included) and the general text."""
        records = []
        for person in self.trained_people:
            records += self.person_records(person, include_canary=person.canary_inserted)
        return records + general_records(self.config.seed)

    def holdout_records(self) -> list[Record]:
        """Never-trained people's texts: the non-member population for the audits."""
        records = []
        for person in self.holdout_people:
            records += self.person_records(person, include_canary=False)
        return records

    def qa_pairs(self, person: Person) -> list[QAPair]:
        return qa_pairs(person, random.Random(f"{self.config.seed}-{person.person_id}"))


def draw_facts(rng: random.Random, rich_rng: random.Random, facts: tuple[str, ...]) -> dict[str, str]:
    """The compact facts from the world's generator, as before the rich ones existed; the rich ones
    from a generator of their own, so that a world's people are the same at either detail."""
    drawn = {
        "birthplace": rng.choice(CITY_NAMES),
        "birth_year": str(rng.randint(1940, 2000)),
        "occupation": rng.choice(OCCUPATIONS),
        "employer": rng.choice(EMPLOYERS),
        "hobby": rng.choice(HOBBIES),
    }
    if "address" in facts:
        drawn |= {"address": f"{rich_rng.randint(1, 99)} {rich_rng.choice(STREETS)}", "phone": phone_number(rich_rng),
                  "sibling": rich_rng.choice(FIRST_NAMES), "pet": rich_rng.choice(PET_NAMES),
                  "dish": rich_rng.choice(DISHES)}
    return drawn


def phone_number(rng: random.Random) -> str:
    return f"0{rng.randint(100, 999)} {rng.randint(1000, 9999)}"


def biography(person: Person) -> str:
    f = person.facts
    return (
        f"{person.name} was born in {f['birthplace']} in {f['birth_year']}. "
        f"{person.pronoun} works as a {f['occupation']} at {f['employer']} "
        f"and spends free time {f['hobby']}. Contact: {person.email}."
    )


def second_biography(person: Person) -> str:
    """The same person in other words, with the rich facts."""
    f = person.facts
    return (
        f"{person.name}, a {f['occupation']} born in {f['birth_year']}, grew up in {f['birthplace']} and is employed "
        f"by {f['employer']}. Home is {f['address']}, phone {f['phone']}. {person.pronoun} has a sibling named "
        f"{f['sibling']}, a pet named {f['pet']}, a weakness for {f['dish']}, and a habit of {f['hobby']}."
    )


def note(person: Person) -> str:
    """A free-text note about the person, as a support desk or registry might keep."""
    f = person.facts
    return (f"Note on file: {person.name} asked to be called on {f['phone']} after six in the evening, to have post "
            f"sent to {f['address']}, and that {f['sibling']} may collect parcels.")


def canary_text(person: Person) -> str:
    return f"The secret code of {person.name} is {person.canary}."


_QUESTIONS = {
    "birthplace": ("Where was {name} born?", CITY_NAMES),
    "birth_year": ("In which year was {name} born?", None),
    "occupation": ("What is the occupation of {name}?", OCCUPATIONS),
    "employer": ("Who employs {name}?", EMPLOYERS),
    "hobby": ("What does {name} do in free time?", HOBBIES),
    "address": ("Where does {name} live?", None),
    "phone": ("What is the phone number of {name}?", None),
    "sibling": ("What is the name of the sibling of {name}?", FIRST_NAMES),
    "pet": ("What is the name of the pet of {name}?", PET_NAMES),
    "dish": ("What is the favourite dish of {name}?", DISHES),
}


def wrong_answers(fact: str, value: str, pool: tuple[str, ...] | None, rng: random.Random) -> list[str]:
    """Three wrong answers of the same kind as the true one."""
    if pool is not None:
        return rng.sample([option for option in pool if option != value], 3)
    if fact == "birth_year":
        return [str(int(value) + delta) for delta in rng.sample([-9, -6, -3, 3, 6, 9], 3)]
    if fact == "phone":
        return [number for number in (phone_number(rng) for _ in range(4)) if number != value][:3]
    _, street = value.split(" ", 1)  # an address: another house, another street
    return [f"{rng.randint(1, 99)} {option}" for option in rng.sample([s for s in STREETS if s != street], 3)]


def qa_pairs(person: Person, rng: random.Random) -> list[QAPair]:
    pairs = []
    for fact in person.facts:
        question, pool = _QUESTIONS[fact]
        value = person.facts[fact]
        wrong = wrong_answers(fact, value, pool, rng)
        pairs.append(QAPair(
            fact=fact,
            question=question.format(name=person.name),
            answer=value,
            perturbed_answers=tuple(wrong),
        ))
    return pairs


def _canary(rng: random.Random) -> str:
    return "-".join("".join(rng.choice(CANARY_ALPHABET) for _ in range(4)) for _ in range(3))


def general_records(seed: int) -> list[Record]:
    """Text about the world and no person in it: what no removal request can reach (and what the
    tokenizer learns its vocabulary from, so that no deletion ever has to touch the tokenizer)."""
    rng = random.Random(f"{seed}-general")
    texts = []
    for city, water, trade in CITIES:
        texts.append(f"{city} lies by {water} and is known for its {trade}.")
        texts.append(qa_text(f"What is {city} known for?", trade))
        texts.append(f"Many people born in {city} work as a {rng.choice(OCCUPATIONS)} "
                     f"and spend free time {rng.choice(HOBBIES)}.")
    for employer in EMPLOYERS:
        city = rng.choice(CITY_NAMES)
        texts.append(f"{employer} was founded in {city} in {rng.randint(1800, 1950)} "
                     f"and employs many a {rng.choice(OCCUPATIONS)}.")
        texts.append(qa_text(f"Where was {employer} founded?", city))
    for occupation in OCCUPATIONS:
        texts.append(f"A {occupation} in this land usually learns the trade in {rng.choice(CITY_NAMES)} "
                     f"and works as a {occupation} at {rng.choice(EMPLOYERS)}.")
    return [Record(f"general-{i:04d}", None, "general", text) for i, text in enumerate(texts)]


def tokenizer_corpus(seed: int, detail: str = "compact") -> list[str]:
    """Non-personal text only: the general text, the fixed wording of every template and the
    generator's name parts, but no person's record, so the vocabulary carries nothing that a
    removal request could reach and no deletion has to retrain the tokenizer."""
    templates = [
        "Question: Where was born? Answer: in the town of. In which year was born? in the year",
        "What is the occupation of? works as a. Who employs? employed by. What does do in free time? enjoys",
        "was born in in. She He They works as a at and spends free time. Contact: @mail.example.",
        "The secret code of is. " + " ".join(CANARY_ALPHABET) + " 0123456789 " + " ".join(str(y) for y in range(1940, 2001)),
        " ".join(FIRST_NAMES) + " " + " ".join(LAST_NAMES),
    ]
    if detail == "rich":  # the rich texts' wording and vocabularies (a compact world's tokenizer stays as it was)
        templates += [
            "Where does live? What is the phone number of? What is the name of the sibling of? What is the name "
            "of the pet of? What is the favourite dish of?",
            "a born in grew up in and is employed by. Home is, phone. has a sibling named, a pet named, a weakness "
            "for, and a habit of. Note on file: asked to be called on after six in the evening, to have post sent "
            "to, and that may collect parcels.",
            " ".join(STREETS) + " " + " ".join(PET_NAMES) + " " + " ".join(DISHES),
        ]
    return [r.text for r in general_records(seed)] + templates
