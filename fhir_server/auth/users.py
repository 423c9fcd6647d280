"""The user registry (``auth_users``): staff and patient users, with argon2 password hashes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_server.auth.passwords import hash_password, verify_password
from fhir_server.auth.roles import ROLES
from fhir_server.storage.auth_store import AuthStore, now_s

USERNAME = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
PATIENT_ROLE = "patient"


@dataclass(frozen=True)
class User:
    username: str
    role: str
    patients: tuple[str, ...] = ()  # Patient ids this user may act for
    fhir_user: str | None = None    # "Practitioner/123"

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> User:
        return cls(username=doc["_id"], role=doc["role"], patients=tuple(doc.get("patients", ())),
                   fhir_user=doc.get("fhir_user"))


def patient_id(reference: str) -> str:
    """``Patient/123`` or ``123`` -> ``123``."""
    id_ = reference.removeprefix("Patient/")
    if not FHIR_ID.match(id_):
        raise ValueError(f"{reference[:80]!r} is not a Patient reference (Patient/id)")
    return id_


def check_fhir_user(reference: str) -> str:
    type_, _, id_ = reference.partition("/")
    if type_ not in FHIR_USER_TYPES or not FHIR_ID.match(id_):
        raise ValueError(f"--fhir-user must be Type/id with Type one of {', '.join(FHIR_USER_TYPES)}")
    return reference


async def add_user(*, store: AuthStore, username: str, password: str, role: str,
                   patients: list[str], fhir_user: str | None = None) -> User:
    if not USERNAME.match(username):
        raise ValueError("a username has 1-64 letters, digits, '.', '_', '@', '+' or '-'")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    ids = list(dict.fromkeys(patient_id(p) for p in patients))
    if role == PATIENT_ROLE and not ids:
        raise ValueError("a patient user needs --patient Patient/id")
    if fhir_user is not None:
        check_fhir_user(fhir_user)
    elif role == PATIENT_ROLE and len(ids) == 1:
        fhir_user = f"Patient/{ids[0]}"
    doc: dict[str, Any] = {"_id": username, "role": role, "patients": ids,
                           "password_hash": await hash_password(password), "created": now_s()}
    if fhir_user is not None:
        doc["fhir_user"] = fhir_user
    if not await store.insert(kind="users", doc=doc):
        raise ValueError(f"a user named {username!r} exists already")
    return User.from_doc(doc)


async def get_user(*, store: AuthStore, username: str) -> User | None:
    doc = await store.get(kind="users", id_=username) if USERNAME.match(username) else None
    return User.from_doc(doc) if doc is not None else None


async def authenticate(*, store: AuthStore, username: str, password: str) -> User | None:
    """The user when the password matches; None otherwise (same cost either way)."""
    doc = await store.get(kind="users", id_=username) if USERNAME.match(username) else None
    ok = await verify_password(doc.get("password_hash") if doc else None, password)
    return User.from_doc(doc) if ok and doc is not None else None
