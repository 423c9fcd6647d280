"""What an operation is: its definition, its parsed input, and the one Parameters parser.

Each operation module declares an ``Operation`` (name, level, types, in/out
parameters with type and cardinality) and an ``async run(call)``. The same
declaration produces the route (``fhir_server/api/operations.py``), the
OperationDefinition resource served at ``[base]/OperationDefinition/[id]`` and
the CapabilityStatement entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_server.core.config import Settings
from fhir_server.core.errors import Invalid
from fhir_server.storage.repository import Repository
from fhir_server.terminology.systems import SERVER_URI

# FHIR data types an in-parameter may have, and the Parameters key that carries each.
VALUE_KEYS = {
    "Reference": "valueReference", "Coding": "valueCoding", "decimal": "valueDecimal",
    "Money": "valueMoney", "date": "valueDate", "code": "valueCode", "string": "valueString",
    "boolean": "valueBoolean", "CodeableConcept": "valueCodeableConcept",
    "Identifier": "valueIdentifier", "dateTime": "valueDateTime", "Period": "valuePeriod",
    "Attachment": "valueAttachment",
    "uri": "valueUri", "canonical": "valueCanonical", "integer": "valueInteger",
}
# Types a GET request can carry in its query string, and how their text is read.
_FALSE_TRUE = {"false": False, "true": True}


@dataclass(frozen=True)
class Param:
    name: str
    use: str  # "in" | "out"
    min: int
    max: str  # "1" | "*"
    type: str | None = None  # None for a parameter made of parts
    documentation: str = ""
    parts: tuple[Param, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "use": self.use, "min": self.min,
                               "max": self.max}
        if self.documentation:
            out["documentation"] = self.documentation
        if self.type:
            out["type"] = self.type
        if self.parts:
            out["part"] = [p.to_fhir() for p in self.parts]
        return out


@dataclass
class Call:
    """One invocation: where it runs and what it was given."""

    repo: Repository
    settings: Settings
    services: Any  # fhir_server.api.operations.Services: adapters shared by the app
    params: dict[str, list[Any]]
    id_: str | None = None  # the instance, for instance-level operations
    # The caller's access check (fhir_server.auth.enforce.authorize, bound to the request):
    # ``await call.authorize(type_=..., interaction=..., resource=... | id_=...)``.
    authorize: Callable[..., Awaitable[Any]] | None = None
    # Whether the caller may see a stored resource the operation would reveal (a token
    # confined to a patient's compartment sees nothing of other patients).
    sees: Callable[[str, dict[str, Any]], Awaitable[bool]] | None = None
    # Patients the call concerned, for its AuditEvent.
    patients: list[str] = field(default_factory=list)

    async def check(self, **kwargs: Any) -> None:
        if self.authorize is not None:
            await self.authorize(**kwargs)

    async def may_see(self, type_: str, resource: dict[str, Any] | None) -> bool:
        if resource is None:
            return False
        return self.sees is None or await self.sees(type_, resource)

    def concerns(self, patient_ref: Any) -> None:
        if isinstance(patient_ref, str) and patient_ref.startswith("Patient/"):
            self.patients.append(patient_ref.split("/", 1)[1])

    def one(self, name: str) -> Any:
        values = self.params.get(name) or []
        return values[0] if values else None


Runner = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    id: str  # OperationDefinition id, e.g. "Claim-submit"
    code: str  # without the $
    title: str
    description: str
    resource: tuple[str, ...]
    type_level: bool
    instance: bool
    parameters: tuple[Param, ...]
    run: Runner
    affects_state: bool = True
    base: str | None = None  # the HL7 definition this one implements, if any
    resource_body: str | None = None  # in-parameter a bare resource body stands for
    text_body: str | None = None  # in-parameter an application/edi-x12 body stands for
    url: str = field(default="")
    # What the caller's token must allow on each type, whatever the input (SMART letters).
    requires: tuple[tuple[str, str], ...] = ()

    @property
    def canonical(self) -> str:
        return self.url or f"{SERVER_URI}/OperationDefinition/{self.id}"

    def definition(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resourceType": "OperationDefinition", "id": self.id, "url": self.canonical,
            "version": "1", "name": "".join(w[:1].upper() + w[1:]
                                            for w in self.id.replace("-", " ").split()),
            "title": self.title, "status": "active", "kind": "operation",
            "description": self.description, "affectsState": self.affects_state,
            "code": self.code, "resource": list(self.resource), "system": False,
            "type": self.type_level, "instance": self.instance,
            "parameter": [p.to_fhir() for p in self.parameters],
        }
        if self.base:
            out["base"] = self.base
        return out

    def inputs(self) -> tuple[Param, ...]:
        return tuple(p for p in self.parameters if p.use == "in")


def parse_parameters(op: Operation, body: dict[str, Any] | None) -> dict[str, list[Any]]:
    """Check a request body against the operation's in-parameters.

    The body is a Parameters resource, or (when the operation has a resource
    in-parameter) that resource itself. Values come back by name: the value for
    a typed parameter, a ``{part name: [values]}`` dict for one made of parts.
    """
    if body is None:
        body = {"resourceType": "Parameters"}
    if body.get("resourceType") != "Parameters":
        if op.resource_body is None:
            raise Invalid(f"${op.code} takes a Parameters resource", expression=["resourceType"])
        body = {"resourceType": "Parameters",
                "parameter": [{"name": op.resource_body, "resource": body}]}
    raw = body.get("parameter", [])
    if not isinstance(raw, list):
        raise Invalid("Parameters.parameter must be a list", expression=["Parameters.parameter"])
    out = _parse_level(op.inputs(), raw, "Parameters.parameter")
    return out


def _parse_level(defs: tuple[Param, ...], raw: list[Any], where: str) -> dict[str, list[Any]]:
    by_name = {p.name: p for p in defs}
    out: dict[str, list[Any]] = {}
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise Invalid("Each parameter needs a name", expression=[here])
        definition = by_name.get(item["name"])
        if definition is None:
            raise Invalid(f"Unknown parameter '{str(item['name'])[:64]}'; expected one of "
                          f"{', '.join(sorted(by_name))}", expression=[f"{here}.name"])
        out.setdefault(definition.name, []).append(_value(definition, item, here))
    for definition in defs:
        count = len(out.get(definition.name, []))
        if count < definition.min:
            raise Invalid(f"Parameter '{definition.name}' is required", expression=[where])
        if definition.max == "1" and count > 1:
            raise Invalid(f"Parameter '{definition.name}' may appear only once",
                          expression=[where])
    return out


def _value(definition: Param, item: dict[str, Any], here: str) -> Any:
    if definition.parts:
        parts = item.get("part")
        if not isinstance(parts, list):
            raise Invalid(f"Parameter '{definition.name}' is made of parts",
                          expression=[f"{here}.part"])
        return _parse_level(definition.parts, parts, f"{here}.part")
    if definition.type is not None and (definition.type == "Resource"
                                        or (definition.type[:1].isupper()
                                        and definition.type not in VALUE_KEYS)):
        resource = item.get("resource")
        if not isinstance(resource, dict):
            raise Invalid(f"Parameter '{definition.name}' takes a resource",
                          expression=[f"{here}.resource"])
        return resource
    key = VALUE_KEYS.get(definition.type or "")
    present = [k for k in item if k.startswith("value")]
    if key is None or present != [key]:
        raise Invalid(f"Parameter '{definition.name}' takes a {definition.type} ({key})",
                      expression=[here])
    value = item[key]
    if definition.type == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
        raise Invalid(f"Parameter '{definition.name}' takes a whole number", expression=[here])
    if definition.type == "boolean" and not isinstance(value, bool):
        raise Invalid(f"Parameter '{definition.name}' takes true or false", expression=[here])
    if definition.type in ("code", "string", "uri", "canonical") and not isinstance(value, str):
        raise Invalid(f"Parameter '{definition.name}' takes a {definition.type}",
                      expression=[here])
    if definition.type in ("Reference", "Coding", "Money", "CodeableConcept", "Identifier",
                           "Period", "Attachment") and not isinstance(value, dict):
        raise Invalid(f"Parameter '{definition.name}' must be a {definition.type} object",
                      expression=[f"{here}.{key}"])
    return value


def parameters_from_query(op: Operation, query: list[tuple[str, str]]) -> dict[str, Any]:
    """A GET request's query string as a Parameters resource (primitive types only), for
    ``parse_parameters``."""
    by_name = {p.name: p for p in op.inputs()}
    items: list[dict[str, Any]] = []
    for name, text in query:
        if name in ("_format", "_pretty"):
            continue
        definition = by_name.get(name)
        key = VALUE_KEYS.get(definition.type or "") if definition else None
        if definition is None:
            items.append({"name": name})  # reported as unknown by the parser
            continue
        if key is None or definition.type in COMPLEX_TYPES:
            raise Invalid(f"Parameter '{name}' is a {definition.type or 'group of parts'}: send "
                          f"it in a POSTed Parameters resource", expression=[name])
        value: Any = text
        if definition.type == "boolean":
            if text not in _FALSE_TRUE:
                raise Invalid(f"Parameter '{name}' takes true or false", expression=[name])
            value = _FALSE_TRUE[text]
        elif definition.type == "integer":
            if not text.lstrip("-").isdigit() or len(text) > 9:
                raise Invalid(f"Parameter '{name}' takes a whole number", expression=[name])
            value = int(text)
        items.append({"name": name, key: value})
    return {"resourceType": "Parameters", "parameter": items}


COMPLEX_TYPES = frozenset({"Reference", "Coding", "Money", "CodeableConcept", "Identifier",
                           "Period", "decimal"})
