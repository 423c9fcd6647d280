"""The fuzzer's requests: one small function per kind, drawn at random from a seeded
``random.Random`` so that a seed (and a request's number) replays a run exactly.

``Fuzzer(seed, capability, examples)`` knows the server only through its
CapabilityStatement (types, search parameters, operations) and the vendored R4 examples
(``seed_requests`` stores some of them first so that ids exist). ``next()`` gives a
``FuzzRequest``; ``bench/fuzz.py`` sends them to a server process and
``tests/api/test_fuzz.py`` to the app in-process."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tools.fuzz_values import add_extension, dumps, mutate_resource, odd_number, odd_string, odd_value

FHIR_JSON = "application/fhir+json"
CONTENT_TYPES = [FHIR_JSON, "application/json", "application/json-patch+json", "text/plain",
                 "application/fhir+xml", "application/x-www-form-urlencoded", "",
                 "application/fhir+json; charset=latin-1", "application/fhir+json; fhirVersion=9",
                 "multipart/form-data; boundary=x", "application/*", "application/fhir+json;;"]
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx", ""]
MODIFIERS = [":exact", ":contains", ":missing", ":not", ":above", ":below", ":in", ":not-in",
             ":of-type", ":identifier", ":text", ":Patient", ":Nope", ":", "::", ":missing:not"]
OPERATIONS_GARBAGE = ["validate", "expand", "validate-code", "lookup", "everything", "export",
                      "generate-bill", "submit", "import-835", "meta", "nope", "translate",
                      "subsumes", "apply", "eligibility", "record-payment", "sync"]


@dataclass
class FuzzRequest:
    number: int
    kind: str
    method: str
    path: str  # relative to the FHIR base, query string included, already encoded
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def excerpt(self, limit: int = 300) -> str:
        body = (self.body or b"")[:limit].decode("utf-8", "replace")
        return f"#{self.number} {self.kind}: {self.method} {self.path[:limit]} {body}"


@dataclass
class Capability:
    """What the fuzzer reads of /metadata: search parameters and operations per type."""

    params: dict[str, list[tuple[str, str]]]  # type -> [(name, type)]
    operations: dict[str, list[str]]  # type -> operation codes ("*": system level)
    includes: dict[str, list[str]]

    @classmethod
    def parse(cls, statement: dict[str, Any]) -> Capability:
        rest = statement["rest"][0]
        params: dict[str, list[tuple[str, str]]] = {}
        ops: dict[str, list[str]] = {"*": [o["name"] for o in rest.get("operation", [])]}
        includes: dict[str, list[str]] = {}
        for res in rest["resource"]:
            params[res["type"]] = [(p["name"], p["type"]) for p in res.get("searchParam", [])]
            ops[res["type"]] = [o["name"] for o in res.get("operation", [])]
            includes[res["type"]] = res.get("searchInclude", []) + res.get("searchRevInclude", [])
        return cls(params, ops, includes)


def load_examples(folder: Path, types: set[str]) -> list[dict[str, Any]]:
    """The R4 examples of types the server has (AuditEvent aside: the server writes those)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        resource = json.loads(path.read_bytes())
        if resource.get("resourceType") in types - {"AuditEvent"} and resource.get("id"):
            out.append(resource)
    return out


class Fuzzer:
    # A few types whose search parameters are fuzzed in depth, and others now and then.
    FOCUS = ("Patient", "Claim", "Invoice", "Observation", "Encounter", "ChargeItem", "Coverage",
             "ExplanationOfBenefit", "ValueSet", "CodeSystem", "PaymentReconciliation")

    def __init__(self, seed: int, capability: Capability, examples: list[dict[str, Any]]):
        self.rng = random.Random(seed)
        self.cap = capability
        self.examples = examples
        self.types = sorted(capability.params)
        self.count = 0
        kinds: list[tuple[Callable[[], FuzzRequest], int]] = [
            (self.create, 14), (self.update, 12), (self.json_patch, 6),
            (self.fhirpath_patch, 6), (self.bundle, 10), (self.search, 22),
            (self.operation, 12), (self.odd_headers, 8), (self.read_like, 6),
            (self.conditional, 4),
        ]
        self.kinds = [k for k, _ in kinds]
        self.weights = [w for _, w in kinds]

    # -- plumbing ---------------------------------------------------------------------

    def _req(self, kind: str, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, raw: bytes | None = None) -> FuzzRequest:
        self.count += 1
        data = raw if raw is not None else (None if body is None else dumps(body, self.rng))
        head = {"Content-Type": FHIR_JSON} if data is not None else {}
        return FuzzRequest(self.count, kind, method, path, {**head, **(headers or {})}, data)

    def next(self) -> FuzzRequest:
        return self.rng.choices(self.kinds, self.weights)[0]()

    def seed_requests(self, count: int) -> list[FuzzRequest]:
        """PUTs of ``count`` examples as they are (not counted as fuzz), so ids exist;
        Patient/example first (the patient of a patient token)."""
        picked = random.Random(0).sample(self.examples, min(count, len(self.examples)))
        picked.sort(key=lambda r: (r["resourceType"], r["id"]) != ("Patient", "example"))
        return [FuzzRequest(0, "seed", "PUT", f"{r['resourceType']}/{r['id']}",
                            {"Content-Type": FHIR_JSON}, dumps(r)) for r in picked]

    def example(self) -> dict[str, Any]:
        return self.rng.choice(self.examples)

    def mutated(self) -> dict[str, Any]:
        return mutate_resource(self.example(), self.rng, self.types)

    def some_type(self) -> str:
        return self.rng.choice(self.FOCUS if self.rng.random() < 0.7 else self.types)

    def some_id(self) -> str:
        if self.rng.random() < 0.8:
            return str(self.example()["id"])
        return self.rng.choice(["x", "-", "a" * 64, "a" * 65, "%00", "%C3%28", "%2E%2E", "1.2"])

    # -- (a) writes of mutated examples ---------------------------------------------------

    def create(self) -> FuzzRequest:
        body = self.mutated()
        rtype = body.get("resourceType") if isinstance(body.get("resourceType"), str) else None
        target = rtype if rtype and self.rng.random() < 0.8 and rtype in self.cap.params \
            else self.some_type()
        return self._req("create", "POST", target, body)

    def update(self) -> FuzzRequest:
        source = self.example()
        body = mutate_resource(source, self.rng, self.types)
        id_ = source["id"] if self.rng.random() < 0.7 else self.some_id()
        headers = {}
        if self.rng.random() < 0.3:
            headers["If-Match"] = self.rng.choice(['W/"1"', '"1"', "W/", 'W/"x"', "*", 'W/"-1"',
                                                   'W/"99999999999999999999"', ""])
        return self._req("update", "PUT", f"{source['resourceType']}/{id_}", body, headers)

    def json_patch(self) -> FuzzRequest:
        source = self.example()
        ops = []
        for _ in range(self.rng.randrange(0, 4)):
            path = self.rng.choice(["/name/0/family", "/id", "/resourceType", "/meta", "/-",
                                    "/name/-", "/name/99", "/~1x", "/~2", "", "/", "name",
                                    "/contained/0/id", "/extension/0", "/a/b/c", "/name/-1"])
            op: dict[str, Any] = {"op": self.rng.choice(["add", "remove", "replace", "move",
                                                         "copy", "test", "nope", ""]),
                                  "path": self.rng.choice([path, odd_value(self.rng)])}
            if self.rng.random() < 0.7:
                op["value"] = odd_value(self.rng)
            if self.rng.random() < 0.3:
                op["from"] = self.rng.choice(["/name", "/id", "", "/x/y", 1])
            ops.append(op)
        body: Any = ops if self.rng.random() < 0.9 else odd_value(self.rng)
        return self._req("json-patch", "PATCH", f"{source['resourceType']}/{source['id']}", body,
                         {"Content-Type": "application/json-patch+json"})

    def fhirpath_patch(self) -> FuzzRequest:
        source = self.example()
        parts = []
        for _ in range(self.rng.randrange(0, 3)):
            part: list[Any] = [
                {"name": "type", "valueCode": self.rng.choice(["add", "insert", "delete",
                                                               "replace", "move", "x", ""])},
                {"name": "path", "valueString": self.rng.choice([
                    f"{source['resourceType']}.name", "Patient.name[0].family", "",
                    "Patient.name.where(", "%resource", "Patient.extension('x')", "1 + 1",
                    "Patient.name.first().given[99]", "Patient.identifier.exists()",
                    "Patient.name | Patient.address", "Patient." + "a." * 200 + "b",
                    "Patient.name.where(use='official').given", odd_string(self.rng)])},
                {"name": "name", "valueString": self.rng.choice(["family", "", "x.y", "1"])},
                {"name": "value", self.rng.choice(["valueString", "valueInteger", "valueX",
                                                   "valueHumanName"]): odd_value(self.rng)},
                {"name": "index", "valueInteger": odd_number(self.rng)},
                {"name": "source", "valueInteger": self.rng.choice([0, -1, 99])},
                {"name": "destination", "valueInteger": self.rng.choice([0, -1, 99])},
            ]
            parts.append({"name": "operation", "part": self.rng.sample(part, self.rng.randrange(
                1, len(part) + 1))})
        body = {"resourceType": "Parameters", "parameter": parts}
        return self._req("fhirpath-patch", "PATCH",
                         f"{source['resourceType']}/{source['id']}", body)

    # -- (b) transactions and batches ------------------------------------------------------

    def bundle_entry(self, uuids: list[str]) -> dict[str, Any]:
        resource = self.mutated() if self.rng.random() < 0.6 else copy.deepcopy(self.example())
        rtype = resource.get("resourceType") if isinstance(resource.get("resourceType"),
                                                           str) else "Patient"
        method = self.rng.choice(["POST", "PUT", "DELETE", "GET", "PATCH", "HEAD", "", "post"])
        url = self.rng.choice([rtype, f"{rtype}/{resource.get('id')}", f"{rtype}?_id=x",
                               "", "/", "Nope", f"{rtype}/", "http://other.org/x", "metadata",
                               f"{rtype}?identifier={odd_string(self.rng)[:30]}", "$export"])
        entry: dict[str, Any] = {"resource": resource, "request": {"method": method, "url": url}}
        full = self.rng.choice([*uuids, "urn:uuid:", "urn:uuid:x", "Patient/1", "#", "",
                                        "http://x/Patient/1", None])
        if full is not None:
            entry["fullUrl"] = full
        if uuids and self.rng.random() < 0.4:  # a reference to another entry: maybe a circle
            add_extension(resource, {"url": "http://x/r",
                                     "valueReference": {"reference": self.rng.choice(uuids)}})
        if self.rng.random() < 0.2:
            entry["request"][self.rng.choice(["ifNoneExist", "ifMatch", "ifNoneMatch"])] = \
                self.rng.choice(["identifier=x", "", "?", "_id=", "nope=1", 'W/"1"', "x=%zz",
                                 "identifier:missing=true", "name=a&name=b"])
        if self.rng.random() < 0.1:
            entry = self.rng.choice([{}, {"request": entry["request"]}, {"resource": resource},
                                     {"fullUrl": 1, "resource": [], "request": "x"}])
        return entry

    def bundle(self) -> FuzzRequest:
        uuids = [f"urn:uuid:{self.rng.randrange(16 ** 8):08x}-0000-4000-8000-000000000000"
                 for _ in range(self.rng.randrange(0, 4))]
        entries = [self.bundle_entry(uuids) for _ in range(self.rng.randrange(0, 7))]
        kind = self.rng.choice(["transaction", "batch", "batch", "transaction", "collection",
                                "document", "", "transaction-response", None])
        body: dict[str, Any] = {"resourceType": "Bundle", "type": kind, "entry": entries}
        if self.rng.random() < 0.1:
            body["entry"] = odd_value(self.rng)
        path = "" if self.rng.random() < 0.9 else self.rng.choice(["Bundle", "/"])
        return self._req("bundle", "POST", path, body)

    # -- (c) searches --------------------------------------------------------------------

    def search_value(self, ptype: str) -> str:
        rng = self.rng
        prefix = rng.choice(PREFIXES) if rng.random() < 0.5 else ""
        values = {
            "date": ["2020", "2020-01", "2020-13-01", "2020-01-01T10:00", "2020-01-01T25:00Z",
                     "1-1-1", "99999", "2020-01-01T00:00:00+99:00", "now", ""],
            "number": ["1", "-1", "1e9999", "NaN", "0.000000001", "1,2", "abc", "1e-400"],
            "quantity": ["5.4|http://unitsofmeasure.org|mg", "5||", "|||", "x|y", "1e999|a|b"],
            "token": ["a|b", "|b", "a|", "|", "||", "http://x|", "a|b|c", "\\|", "x\\"],
            "reference": ["Patient/1", "Patient/", "1", "http://x/Patient/1", "urn:uuid:x",
                          "Nope/1", "/", "Patient/1/_history/2"],
            "composite": ["a$b", "$", "a$b$c", "http://x|a$gt5"],
            "uri": ["http://x", "urn:oid:1.2", "", "x y", "http://x/%ff"],
            "special": ["1,2", "x", "0:0|1"],
        }.get(ptype, ["x"])
        value = rng.choice(values) if rng.random() < 0.7 else odd_string(rng)[:200]
        return prefix + value

    def search_pair(self, rtype: str) -> str:
        rng = self.rng
        params = self.cap.params.get(rtype) or [("_id", "token")]
        name, ptype = rng.choice(params)
        if rng.random() < 0.3:
            name += rng.choice(MODIFIERS)
        if rng.random() < 0.1:  # a chain
            name += "." + rng.choice(["name", "identifier", "subject.name", "x", "", "_id"])
        if rng.random() < 0.05:
            name = f"_has:{rng.choice(self.types)}:{rng.choice(['patient', 'subject', 'x'])}:" \
                   f"{rng.choice(['_id', 'code', 'status', 'x'])}"
        return f"{quote(name, safe=':._$|')}={self.encode(self.search_value(ptype))}"

    def encode(self, value: str) -> str:
        if self.rng.random() < 0.1:
            return self.rng.choice(["%", "%ff", "%C3%28", "%00", "%E2%82", "%2", "%%", "%ZZ"])
        return quote(value.encode("utf-8", "surrogatepass"), safe="|,$:")

    def control_pair(self, rtype: str) -> str:
        rng = self.rng
        incl = self.cap.includes.get(rtype) or ["Patient:general-practitioner"]
        name, value = rng.choice([
            ("_count", rng.choice(["0", "-1", "1", "1000000", "x", "1.5", "", "2"])),
            ("_offset", rng.choice(["0", "-5", "99999999", "x", "1e3"])),
            ("_sort", rng.choice(["_id", "-_lastUpdated", "x", "-", "", "name,-birthdate",
                                  "_score", "--x", ",", "status:text"])),
            ("_elements", rng.choice(["id", "", "x,y", "name.family", "meta,*", ","])),
            ("_summary", rng.choice(["true", "false", "count", "text", "data", "x", ""])),
            ("_total", rng.choice(["none", "estimate", "accurate", "x"])),
            ("_include", rng.choice([*incl, "*", "x:y", "Patient:", ":", "Claim:patient:Nope",
                                     "*:*", "Patient:link:Patient"])),
            ("_revinclude", rng.choice([*incl, "*", "Nope:x", "Claim:patient", ""])),
            ("_include:iterate", rng.choice([*incl, "*"])),
            ("_contained", rng.choice(["true", "both", "x"])),
            ("_format", rng.choice(["json", "xml", "x", "application/fhir+json"])),
            ("_lastUpdated", self.search_value("date")),
            ("_id", self.search_value("token")), ("_text", "x"), ("_content", "x"),
            ("_filter", "name eq x"), ("_query", "x"), ("_type", "Patient,Nope"),
        ])
        return f"{name}={self.encode(value)}"

    def search(self) -> FuzzRequest:
        rng = self.rng
        rtype = self.some_type()
        pairs = [self.search_pair(rtype) for _ in range(rng.randrange(0, 4))]
        pairs += [self.control_pair(rtype) for _ in range(rng.randrange(0, 3))]
        if pairs and rng.random() < 0.2:
            pairs.append(rng.choice(pairs))  # repeated parameter
        if rng.random() < 0.05:
            pairs.append(rng.choice(["&", "=", "a", "==", "x=1=2", "&&", "_count"]))
        query = "&".join(pairs)
        where = rng.random()
        if where < 0.1:
            return self._req("search", "POST", f"{rtype}/_search", raw=query.encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        if where < 0.15:
            path = f"Patient/{self.some_id()}/{rtype}"  # compartment search
        elif where < 0.2:
            path = rng.choice(["", "_history", f"{rtype}/_history", "_search"])
        else:
            path = rtype
        return self._req("search", "GET", f"{path}?{query}" if query else path)

    # -- (d) operations and headers ----------------------------------------------------------

    def operation_body(self) -> tuple[Any, bytes | None]:
        rng = self.rng
        pick = rng.randrange(5)
        if pick == 0:
            return None, rng.choice([b"", b"ISA*00*", b"ISA" + b"*" * 200 + b"~" * 50,
                                     b"\x00\xff\xfe", b"garbage", b"{"])
        if pick == 1:
            return self.mutated(), None
        if pick == 2:
            return odd_value(rng), None
        params = [{"name": rng.choice(["url", "code", "system", "valueSet", "coding",
                                       "resource", "x12", "content", "_type", "display",
                                       "count", "offset", "filter", "patient", "coverage",
                                       "encounter", "codeableConcept", "mode", ""]),
                   rng.choice(["valueString", "valueUri", "valueCode", "valueInteger",
                               "valueCoding", "resource", "valueBoolean", "part", "value"]):
                       odd_value(rng) if rng.random() < 0.5 else odd_string(rng)[:100]}
                  for _ in range(rng.randrange(0, 5))]
        return {"resourceType": "Parameters", "parameter": params}, None

    def operation(self) -> FuzzRequest:
        rng = self.rng
        rtype = rng.choice([t for t, ops in self.cap.operations.items() if ops] or ["*"])
        code = rng.choice(self.cap.operations[rtype] if rng.random() < 0.85
                          else OPERATIONS_GARBAGE)
        if rtype == "*":
            path = f"${code}"
        elif rng.random() < 0.5:
            path = f"{rtype}/${code}"
        else:
            path = f"{rtype}/{self.some_id()}/${code}"
        if rng.random() < 0.35:
            query = "&".join(self.search_pair(rtype) for _ in range(rng.randrange(1, 3)))
            query += rng.choice(["", "&url=http://hl7.org/fhir/ValueSet/x", "&code=%ff",
                                 "&_type=Nope", "&_since=x", "&system=", "&count=-1"])
            return self._req("operation", "GET", f"{path}?{query}",
                             headers={"Prefer": rng.choice(["respond-async", "x", ""])})
        body, raw = self.operation_body()
        headers = {"Content-Type": rng.choice(["text/plain", "application/EDI-X12"])} if raw \
            else {}
        return self._req("operation", "POST", path, body, headers, raw=raw)

    def odd_headers(self) -> FuzzRequest:
        rng = self.rng
        base = rng.choice([self.create, self.update, self.search, self.read_like])()
        base.kind += "+headers"
        name = rng.choice(["Content-Type", "Accept", "If-Match", "If-None-Exist", "Prefer",
                           "Authorization", "If-None-Match", "If-Modified-Since",
                           "Content-Encoding", "X-Request-Id", "Origin", "X-Forwarded-For"])
        value = rng.choice({
            "Content-Type": CONTENT_TYPES,
            "Accept": ["application/fhir+xml", "text/html", "*/*", "", "application/fhir+json;"
                       "q=x", "application/json;fhirVersion=3.0", "x/y, */*;q=0"],
            "Authorization": ["Bearer", "Bearer ", "Bearer x.y.z", "Basic Zm9vOmJhcg==",
                              "bearer " + "a" * 5000, "Token x", "Bearer eyJhbGciOiJub25lIn0.e30."],
            "Prefer": ["return=minimal", "return=OperationOutcome", "return=x", "handling=strict",
                       "handling=lenient", "respond-async", "x=y=z"],
            "If-Modified-Since": ["yesterday", "Mon, 01 Jan 0001 00:00:00 GMT", ""],
            "Content-Encoding": ["gzip", "br", "x"],
        }.get(name, ["", "*", 'W/"1"', "identifier=x", "x" * 2000, "%ff", "a,b"]))
        base.headers[name] = value.strip()  # HTTP clients refuse edge whitespace themselves
        return base

    def read_like(self) -> FuzzRequest:
        rng = self.rng
        source = self.example()
        rtype, id_ = source["resourceType"], self.some_id()
        method, path = rng.choice([
            ("GET", f"{rtype}/{id_}"), ("GET", f"{rtype}/{id_}/_history"),
            ("GET", f"{rtype}/{id_}/_history/{rng.choice(['1', '0', '-1', 'x', '9' * 30])}"),
            ("DELETE", f"{rtype}/{id_}"), ("HEAD", f"{rtype}/{id_}"),
            ("GET", f"{rtype}/{id_}?_elements=id&_summary=x"), ("OPTIONS", rtype),
            ("GET", "metadata?mode=" + rng.choice(["terminology", "x", "full"])),
            ("GET", f"Nope/{id_}"), ("GET", f"{rtype}/{id_}/x/y/z"),
        ])
        return self._req("read", method, path)

    def conditional(self) -> FuzzRequest:
        rng = self.rng
        body = self.mutated() if rng.random() < 0.5 else self.example()
        rtype = self.example()["resourceType"]
        criteria = "&".join([self.search_pair(rtype) for _ in range(rng.randrange(0, 3))]
                            or [rng.choice(["", "_id=", "x"])])
        method = rng.choice(["PUT", "DELETE", "PATCH", "POST"])
        if method == "POST":
            return self._req("conditional", "POST", rtype, body, {"If-None-Exist": criteria})
        if method == "PATCH":
            return self._req("conditional", "PATCH", f"{rtype}?{criteria}",
                             [{"op": "replace", "path": "/active", "value": True}],
                             {"Content-Type": "application/json-patch+json"})
        return self._req("conditional", method, f"{rtype}?{criteria}",
                         body if method == "PUT" else None)
