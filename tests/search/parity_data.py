"""The parity data set: a few hundred generated resources with random but valid values.

Seeded, so every run (and both engines) sees the same resources. The values are drawn
from small pools on purpose, so that random queries built from the same pools find
something: names with case, accents and characters that need escaping, dates of every
precision and with time zones, Periods open at either end, quantities with and without
system and code, references by type, by bare id and by identifier, a code system
hierarchy and value sets for ``:below``/``:above``/``:in``/``:not-in``.

Every resource is validated with the R4B model, as the server validates what it stores.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.core.fhirjson import dumps
from fhir_server.search.extract import index_resource
from fhir_server.service.validation import validate_resource

SEED = 20261206
BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BODY = "http://example.org/cs/body"  # the hierarchy (concept store) of :below / :above
MRN = "urn:example:mrn"
NPI = "http://hl7.org/fhir/sid/us-npi"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FIRST_TS = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)  # the instants resources are stored at

FAMILIES = ("Müller", "Muller", "MÜLLER", "Smith", "smith-jones", "O'Brien", "Chalmers",
            "van der Berg", "Ångström", "Lee", "Smith, Jr", "Pipe|Line", "Dollar$Sign",
            "Back\\Slash", "Zoë")
GIVENS = ("Anna", "Ann", "Zoë", "Jean-Luc", "Mary Ann", "ÉLISE", "bob", "Peter", "Jim")
CITIES = ("Zürich", "Zurich", "Boston", "Bern", "Oslo", "São Paulo", "New York")
COUNTRIES = ("CH", "US", "NO", "BR")
LOINC_CODES = (("8867-4", "Heart rate"), ("29463-7", "Body weight"), ("8302-2", "Body height"),
               ("85354-9", "Blood pressure panel"), ("8480-6", "Systolic blood pressure"),
               ("8462-4", "Diastolic blood pressure"), ("2339-0", "Glucose"))
# The hierarchy: child -> parent (roots have none).
BODY_TREE = {"body": None, "head": "body", "eye": "head", "ear": "head", "trunk": "body",
             "heart": "trunk", "lung": "trunk", "left-lung": "lung", "right-lung": "lung",
             "limb": "body", "arm": "limb", "leg": "limb", "knee": "leg"}
UNITS = (("kg", "kg"), ("g", "g"), ("/min", "beats/minute"), ("mm[Hg]", "mmHg"),
         ("cm", "cm"), ("mg/dL", "mg/dL"))
CATEGORIES = ("vital-signs", "laboratory", "survey", "exam")
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONTEXT_TYPE = "http://terminology.hl7.org/CodeSystem/usage-context-type"
VALUE_SETS = {  # url -> members (system|code), stored as code sets in the concept store
    "http://example.org/fhir/ValueSet/vitals": (f"{LOINC}|8867-4", f"{LOINC}|29463-7",
                                                f"{LOINC}|8480-6", f"{LOINC}|8462-4"),
    "http://example.org/fhir/ValueSet/lungs": (f"{BODY}|lung", f"{BODY}|left-lung",
                                               f"{BODY}|right-lung"),
    "http://example.org/fhir/ValueSet/empty": (),
}
# A few hundred in all: FerretDB reads a whole collection for every query (about a
# millisecond per resource here), and the parity test runs thousands of queries on it.
COUNTS = {"Organization": 10, "Practitioner": 14, "Patient": 45, "Encounter": 38,
          "Observation": 48, "RiskAssessment": 20, "ValueSet": 15}
BATCHES = 6  # resources are stored in this many batches, a day and some minutes apart

Resource = dict[str, Any]


@dataclass
class Dataset:
    """The generated resources, their search values and the instants they are stored at."""

    resources: dict[str, dict[str, Resource]] = field(default_factory=dict)
    index: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    stored_at: dict[str, dict[str, datetime]] = field(default_factory=dict)
    deleted: set[tuple[str, str]] = field(default_factory=set)  # stored, then deleted

    def add(self, resource: Resource) -> None:
        type_, id_ = resource["resourceType"], resource["id"]
        self.resources.setdefault(type_, {})[id_] = resource
        self.index.setdefault(type_, {})[id_] = index_resource(resource, base_url=BASE)

    def ids(self, type_: str) -> list[str]:
        return sorted(self.resources.get(type_, {}))

    def live(self, type_: str) -> list[str]:
        """The ids of the type's resources that are not deleted."""
        return [i for i in self.ids(type_) if (type_, i) not in self.deleted]

    def place(self) -> None:
        """The instant each resource is stored at: ``BATCHES`` batches per type, a day and
        some minutes apart (so that ``_lastUpdated`` and its sort mean something)."""
        for type_, found in self.resources.items():
            ids = sorted(found)
            for b in range(BATCHES):
                at = FIRST_TS + timedelta(days=b, minutes=7 * b, seconds=b)
                for id_ in ids[b::BATCHES]:
                    self.stored_at.setdefault(type_, {})[id_] = at

    def batches(self) -> list[tuple[datetime, str, list[tuple[str, str, dict[str, Any]]]]]:
        """(instant, type, items) of each batch ``Repository.append_new`` stores."""
        grouped: dict[tuple[datetime, str], list[tuple[str, str, dict[str, Any]]]] = {}
        for type_, found in sorted(self.resources.items()):
            for id_ in sorted(found):
                grouped.setdefault((self.stored_at[type_][id_], type_), []).append(
                    (id_, dumps(found[id_]).decode(), self.index[type_][id_]))
        return [(at, type_, items) for (at, type_), items in sorted(grouped.items())]


# -- values --------------------------------------------------------------------------------

def a_date(rng: random.Random, *, low: int = 1930, high: int = 2026) -> str:
    """A date or dateTime of a random precision (year ... instant with a zone)."""
    day = datetime(low, 1, 1, tzinfo=UTC) + timedelta(
        days=rng.randrange((high - low) * 365), seconds=rng.randrange(86_400))
    precision = rng.choice(("year", "month", "day", "day", "minute", "second", "ms", "zone"))
    if precision == "year":
        return f"{day.year:04d}"
    if precision == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if precision == "day":
        return day.date().isoformat()
    if precision == "minute":
        return day.strftime("%Y-%m-%dT%H:%M:00Z")
    if precision == "second":
        return day.strftime("%Y-%m-%dT%H:%M:%SZ")
    if precision == "ms":
        return day.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rng.randrange(1000):03d}Z"
    return day.strftime("%Y-%m-%dT%H:%M:%S") + rng.choice(("+02:00", "-05:00", "+00:00"))


def _moment(rng: random.Random, *, low: int = 2015, high: int = 2026) -> datetime:
    return datetime(low, 1, 1, tzinfo=UTC) + timedelta(
        days=rng.randrange((high - low) * 365), seconds=rng.randrange(86_400))


def _text(moment: datetime, zone: str) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone


def a_datetime(rng: random.Random) -> str:
    """A dateTime with a time (what Period and effective elements usually carry)."""
    return _text(_moment(rng), rng.choice(("Z", "+01:00", "-04:00")))


def a_period(rng: random.Random) -> dict[str, str]:
    """A Period, sometimes open at one end (its start never after its end)."""
    start = _moment(rng)
    end = start + timedelta(minutes=rng.randrange(1, 60 * 24 * 90))
    zone = rng.choice(("Z", "+01:00", "-04:00"))
    shape = rng.random()
    if shape < 0.15:
        return {"start": _text(start, zone)}
    if shape < 0.25:
        return {"end": _text(end, zone)}
    return {"start": _text(start, zone), "end": _text(end, zone)}


def a_decimal(rng: random.Random, *, low: int, high: int) -> Decimal:
    places = rng.choice((0, 0, 1, 2, 3))
    value = Decimal(rng.randrange(low * 10**places, high * 10**places)).scaleb(-places)
    return value


def a_quantity(rng: random.Random, *, low: int = 0, high: int = 200) -> dict[str, Any]:
    code, unit = rng.choice(UNITS)
    q: dict[str, Any] = {"value": a_decimal(rng, low=low, high=high)}
    shape = rng.random()
    if shape < 0.6:
        q |= {"unit": unit, "system": UCUM, "code": code}
    elif shape < 0.8:
        q |= {"unit": unit}
    elif shape < 0.9:
        q |= {"system": UCUM, "code": code}
    return q


def a_name(rng: random.Random) -> dict[str, Any]:
    name: dict[str, Any] = {"family": rng.choice(FAMILIES)}
    if rng.random() < 0.85:
        name["given"] = rng.sample(GIVENS, rng.choice((1, 1, 2)))
    return name


def a_coding(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.7:
        code, display = rng.choice(LOINC_CODES)
        return {"system": LOINC, "code": code, "display": display}
    code = rng.choice(sorted(BODY_TREE))
    return {"system": BODY, "code": code, "display": code.replace("-", " ").title()}


def a_concept(rng: random.Random) -> dict[str, Any]:
    concept: dict[str, Any] = {"coding": [a_coding(rng) for _ in range(rng.choice((1, 1, 1, 2)))]}
    if rng.random() < 0.4:
        concept["text"] = rng.choice(("Vital sign", "Lab result", "Ünusual finding", "BODY"))
    return concept


def maybe(rng: random.Random, chance: float) -> bool:
    return rng.random() < chance


def an_identifier(rng: random.Random, system: str, value: str, *, typed: bool) -> dict[str, Any]:
    ident: dict[str, Any] = {"system": system, "value": value}
    if typed:
        ident["type"] = {"coding": [{"system": V2_0203, "code": rng.choice(("MR", "PI"))}]}
    return ident


def an_address(rng: random.Random) -> dict[str, Any]:
    return {"line": [f"{rng.randrange(1, 99)} {rng.choice(('Main St', 'Bahnhofstraße'))}"],
            "city": rng.choice(CITIES), "postalCode": f"{rng.randrange(1000, 9999)}",
            "country": rng.choice(COUNTRIES), "use": rng.choice(("home", "work"))}


def a_telecom(rng: random.Random, n: int) -> list[dict[str, Any]]:
    out = [{"system": "phone", "value": f"+41 44 {n:03d} {rng.randrange(10, 99)}",
            "use": "work"}]
    if maybe(rng, 0.5):
        out.append({"system": "email", "value": f"person{n}@example.org"})
    return out


# -- resources -------------------------------------------------------------------------------

def organization(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "Organization", "id": f"o{n:02d}",
                     "name": f"{rng.choice(('General', 'Général', 'St. Mary'))} {rng.choice(CITIES)}",
                     "identifier": [an_identifier(rng, NPI, f"9{n:05d}", typed=False)]}
    if maybe(rng, 0.7):
        res["active"] = maybe(rng, 0.8)
    if maybe(rng, 0.6):
        res["address"] = [an_address(rng)]
    if n and maybe(rng, 0.5):
        res["partOf"] = {"reference": f"Organization/o{rng.randrange(n):02d}"}
    return res


def practitioner(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "Practitioner", "id": f"pr{n:02d}", "name": [a_name(rng)],
                     "identifier": [an_identifier(rng, NPI, f"1{n:05d}", typed=False)]}
    if maybe(rng, 0.8):
        res["gender"] = rng.choice(("male", "female", "other", "unknown"))
    if maybe(rng, 0.5):
        res["telecom"] = a_telecom(rng, n)
    if maybe(rng, 0.5):
        res["address"] = [an_address(rng)]
    return res


def patient(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "Patient", "id": f"p{n:03d}",
                     "name": [a_name(rng) for _ in range(rng.choice((1, 1, 2)))],
                     "identifier": [an_identifier(rng, MRN, f"MRN{n:04d}", typed=maybe(rng, 0.6))]}
    if maybe(rng, 0.9):
        res["gender"] = rng.choice(("male", "female", "other", "unknown"))
    if maybe(rng, 0.85):
        res["birthDate"] = a_date(rng)[:10]
    if maybe(rng, 0.7):
        res["active"] = maybe(rng, 0.85)
    if maybe(rng, 0.6):
        res["telecom"] = a_telecom(rng, n)
    if maybe(rng, 0.7):
        res["address"] = [an_address(rng) for _ in range(rng.choice((1, 1, 2)))]
    if maybe(rng, 0.6):
        res["generalPractitioner"] = [{"reference": rng.choice(
            [f"Practitioner/{i}" for i in data.ids("Practitioner")]
            + [f"{BASE}/Organization/{i}" for i in data.ids("Organization")[:3]])}]
    if maybe(rng, 0.6):
        res["managingOrganization"] = {"reference": f"Organization/{rng.choice(data.ids('Organization'))}"}
    if maybe(rng, 0.1):
        res["deceasedDateTime"] = a_datetime(rng)
    elif maybe(rng, 0.1):
        res["deceasedBoolean"] = maybe(rng, 0.5)
    return res


def encounter(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "Encounter", "id": f"e{n:03d}",
                     "status": rng.choice(("planned", "in-progress", "finished", "cancelled")),
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                               "code": rng.choice(("AMB", "EMER", "IMP"))},
                     "subject": {"reference": f"Patient/{rng.choice(data.ids('Patient'))}"}}
    if maybe(rng, 0.85):
        res["period"] = a_period(rng)
    if maybe(rng, 0.5):
        res["length"] = {**a_quantity(rng, low=5, high=600)}
    if maybe(rng, 0.7):
        res["participant"] = [{"individual": {"reference": f"Practitioner/{i}"}}
                              for i in rng.sample(data.ids("Practitioner"), rng.choice((1, 2)))]
    if maybe(rng, 0.6):
        res["serviceProvider"] = {"reference": f"Organization/{rng.choice(data.ids('Organization'))}"}
    if maybe(rng, 0.5):
        res["reasonCode"] = [a_concept(rng)]
    if maybe(rng, 0.5):
        res["identifier"] = [an_identifier(rng, "urn:example:visit", f"V{n:04d}", typed=False)]
    return res


def _observation_value(rng: random.Random, res: Resource) -> None:
    shape = rng.random()
    if shape < 0.5:
        res["valueQuantity"] = a_quantity(rng)
    elif shape < 0.65:
        res["valueCodeableConcept"] = a_concept(rng)
    elif shape < 0.75:
        res["valueString"] = rng.choice(FAMILIES + CITIES)
    elif shape < 0.85:
        res["valueDateTime"] = a_date(rng, low=2010)
    elif shape < 0.9:
        res["valuePeriod"] = a_period(rng)


def observation(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "Observation", "id": f"ob{n:03d}",
                     "status": rng.choice(("final", "preliminary", "amended")),
                     "code": a_concept(rng)}
    if maybe(rng, 0.9):
        res["subject"] = {"reference": f"Patient/{rng.choice(data.ids('Patient'))}"}
    if maybe(rng, 0.5):
        res["encounter"] = {"reference": f"Encounter/{rng.choice(data.ids('Encounter'))}"}
    if maybe(rng, 0.6):
        res["category"] = [{"coding": [{"system": OBS_CATEGORY, "code": rng.choice(CATEGORIES)}]}]
    if maybe(rng, 0.5):
        res["effectiveDateTime"] = a_date(rng, low=2015)
    elif maybe(rng, 0.5):
        res["effectivePeriod"] = a_period(rng)
    if maybe(rng, 0.5):
        res["performer"] = [rng.choice(
            [{"reference": f"Practitioner/{rng.choice(data.ids('Practitioner'))}"},
             {"reference": f"Organization/{rng.choice(data.ids('Organization'))}"},
             {"identifier": {"system": NPI, "value": f"1{rng.randrange(30):05d}"}}])]
    _observation_value(rng, res)
    if maybe(rng, 0.3):
        res["component"] = [{"code": a_concept(rng), "valueQuantity": a_quantity(rng)}
                            for _ in range(rng.choice((1, 2)))]
    if maybe(rng, 0.2) and data.ids("Observation"):
        res["hasMember"] = [{"reference": f"Observation/{rng.choice(data.ids('Observation'))}"}]
    if "value" not in "".join(res) and maybe(rng, 0.5):
        res["dataAbsentReason"] = {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": rng.choice(("unknown", "asked-unknown", "error"))}]}
    return res


def risk_assessment(rng: random.Random, n: int, data: Dataset) -> Resource:
    res: Resource = {"resourceType": "RiskAssessment", "id": f"ra{n:02d}",
                     "status": "final",
                     "subject": {"reference": f"Patient/{rng.choice(data.ids('Patient'))}"}}
    if maybe(rng, 0.85):
        res["prediction"] = [{"probabilityDecimal": a_decimal(rng, low=0, high=1)
                              if maybe(rng, 0.3) else Decimal(rng.randrange(0, 1000)).scaleb(-3),
                              "outcome": {"text": rng.choice(("Stroke", "Fall"))}}
                             for _ in range(rng.choice((1, 1, 2)))]
    if maybe(rng, 0.7):
        res["occurrenceDateTime"] = a_date(rng, low=2015)
    if maybe(rng, 0.5):
        res["method"] = a_concept(rng)
    return res


def value_set(rng: random.Random, n: int, data: Dataset) -> Resource:
    depth = "/".join(rng.sample(("core", "lab", "vitals", "v2", "local"), rng.choice((0, 1, 2))))
    url = f"http://example.org/fhir/ValueSet/{depth + '/' if depth else ''}vs{n:02d}"
    res: Resource = {"resourceType": "ValueSet", "id": f"vs{n:02d}", "url": url,
                     "status": rng.choice(("draft", "active", "retired")),
                     "name": f"ValueSet{n:02d}", "version": f"{rng.randrange(1, 4)}.0"}
    if maybe(rng, 0.6):
        res["date"] = a_date(rng, low=2018)
    if maybe(rng, 0.6):
        res["publisher"] = rng.choice(("HL7 International", "Hôpital Général", "ACME"))
    if maybe(rng, 0.5):
        res["useContext"] = [{"code": {"system": CONTEXT_TYPE,
                                       "code": rng.choice(("focus", "venue", "age"))},
                              "valueCodeableConcept": a_concept(rng)}]
    return res


BUILDERS = (("Organization", organization), ("Practitioner", practitioner),
            ("Patient", patient), ("Encounter", encounter), ("Observation", observation),
            ("RiskAssessment", risk_assessment), ("ValueSet", value_set))


def generate(seed: int = SEED) -> Dataset:
    """The data set of ``seed``: every resource validated, its search values extracted."""
    rng = random.Random(seed)
    data = Dataset()
    for type_, build in BUILDERS:
        for n in range(COUNTS[type_]):
            resource = build(rng, n, data)
            validate_resource(resource, max_depth=64, expected_type=type_)
            data.add(resource)
    data.place()
    for type_, _ in BUILDERS:  # a deletion leaves its values behind in no engine's searches
        data.deleted |= {(type_, i) for i in rng.sample(data.ids(type_), COUNTS[type_] // 12)}
    return data


def hierarchy(code: str, *, below: bool) -> set[str]:
    """The codes of ``BODY_TREE`` below (or above) ``code``, itself included."""
    def ancestors(c: str) -> list[str]:
        out = []
        parent = BODY_TREE.get(c)
        while parent is not None:
            out.append(parent)
            parent = BODY_TREE.get(parent)
        return out

    if code not in BODY_TREE:
        return set()
    if below:
        return {c for c in BODY_TREE if c == code or code in ancestors(c)}
    return {code, *ancestors(code)}
