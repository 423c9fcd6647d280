"""Types a ``patient/`` token reaches by ownership: the Subscriptions its app made for its
patient.

A Subscription is in no compartment: it names no patient (its criteria may not either,
``Observation?status=final`` is the usual one), and what it carries is the subscribing
app's own configuration (its endpoint, the headers the server sends it with, often a
credential of the receiver). So a ``patient/Subscription`` scope (v2 ``c r u d s``, v1
``read``/``write``) grants:

* ``c``: creating one; the server records the writer beside it, never in it (the owner
  record of ``subscriptions/state.py``: client id, scopes, launch patient, user);
* ``r s u d``: only those whose recorded owner is this token's client, launch patient and
  user: another patient's Subscriptions, another app's for the same patient and the
  clinic's own are "not there" (404 on read, update and delete; absent from searches and
  histories), exactly like another patient's Observation.

The owner is whoever wrote the Subscription last (a clinician's update makes it the
clinician's); the write rule (``subscriptions/rule.py``) checks a patient token's update
against the recorded owner before it records the new one, under the Subscription's lease.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir_server.auth.patient_visibility import OWNED
from fhir_server.auth.principal import Principal
from fhir_server.search.query import EVERYTHING, NOTHING, Ids, Query
from fhir_server.storage.records import Records


def owns(principal: Principal, owner: Mapping[str, Any] | None) -> bool:
    """Whether ``owner`` (a recorded writer) is this patient token's app, patient and user."""
    return (owner is not None and principal.patient is not None
            and owner.get("patient") == principal.patient
            and owner.get("client_id") == principal.client_id
            and owner.get("username") == principal.username)


async def owned_query(records: Records, *, type_: str, principal: Principal,
                      letter: str) -> Query:
    """What a ``patient/`` term grants of an owned type: anything to create (the creator
    becomes its owner), else the ids of what the token owns. The owner records are read
    once per request, type and interaction (``Access`` keeps the compiled terms): one small
    record per Subscription."""
    if letter == "c":
        return EVERYTHING
    mine = sorted(str(doc["_id"]) for doc in await records.all(kind=OWNED[type_])
                  if owns(principal, doc.get("owner")))
    return Ids(tuple(mine)) if mine else NOTHING
