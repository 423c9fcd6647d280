"""The clinic's revenue cycle from an empty server, over HTTP, step by step.

Two servers take part: the clinic (where the patient is seen and billed) and the payer
(the insurer, a second process of this same server, which answers eligibility and
adjudicates claims from its own member records). The script prints each step and, last,
one JSON line with what it saw (the worklist Task, the bill's total, what the primary and
then the secondary plan paid, what the patient owed, what the Invoice says after the
patient paid, the patient's Communications).

The patient has two plans at the payer, a primary (order 1) and a secondary (order 2): the
claim goes to the primary, and the clinic's next-payer worker bills what it left (the
copay) to the secondary, with the primary's answer carried; the patient owes what the
secondary left in turn.

The visit is billed by the clinic's billing worker when its Encounter finishes. The
script finishes it without a `serviceProvider`, and the clinic has no
FHIR_BILLING_PROVIDER, so the worker cannot make the Claim: the script waits for the
failed bill-visit Task on the worklist, prints why, fixes the Encounter as the Task says
and runs `Task/[id]/$retry`, which bills the visit. Last it lists the patient's
notifications (Communications): start the clinic with an SMTP server to send them to, or
none is sent. A local SMTP sink that prints what it gets (aiosmtpd, one of the `test` extras):

    .venv/bin/python -m aiosmtpd -n -l 127.0.0.1:8025

Start the two servers (two terminals), each with its own data directory:

    # the payer, on port 8081
    FHIR_PORT=8081 FHIR_DATA_DIR=var/payer .venv/bin/fhir-server serve
    # the clinic, allowed to call a payer on loopback, emailing the patient through the sink
    FHIR_PEER_ALLOWED_HOSTS=127.0.0.1 FHIR_SMTP_URL=smtp://127.0.0.1:8025 \
        FHIR_SMTP_FROM=clinic@example.org FHIR_DATA_DIR=var/clinic .venv/bin/fhir-server serve

The payer wants a token from the clinic's server too: make the clinic a key
(`fhir-server keys client --out clinic.jwk > clinic-public.jwks`), start the clinic with
`FHIR_CLIENT_KEY_FILE=clinic.jwk`, register it at the payer
(`FHIR_DATA_DIR=var/payer fhir-server clients add --id clinic-1 --jwks-file
clinic-public.jwks --scope "system/CoverageEligibilityRequest.c system/Claim.c"`) and
pass `--payer-client-id clinic-1`.

Then give the script an operator's token for each server in the environment (never on
the command line), made with the CLI on each server's data directory and port (a token
names the server that issued it), as the README's quick start does:

    token_for() {  # DATA_DIR PORT: an operator's client, user and token on that server
      CLIENT=$(FHIR_DATA_DIR=$1 FHIR_PORT=$2 .venv/bin/fhir-server clients add --name ops \
               --redirect-uri http://localhost/cb --scope "user/*.cruds" \
               | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
      FHIR_DATA_DIR=$1 FHIR_PORT=$2 .venv/bin/fhir-server users add ops --role admin >&2
      FHIR_DATA_DIR=$1 FHIR_PORT=$2 .venv/bin/fhir-server token --client "$CLIENT" \
          --scope "user/*.cruds" --user ops
    }
    export CLINIC_TOKEN=$(token_for var/clinic 8080) PAYER_TOKEN=$(token_for var/payer 8081)
    .venv/bin/python examples/revenue_cycle.py --clinic http://127.0.0.1:8080/fhir \
        --payer http://127.0.0.1:8081/fhir --payer-client-id clinic-1

The price list is two ChargeItemDefinitions (a consultation and a blood test); the
member's primary plan has a fixed copay per visit, the secondary a smaller copay and a high
deductible. Only httpx is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

SERVICES = "urn:example:clinic-services"  # the clinic's code system for what it bills
MEMBERS = "urn:example:member-id"
PAYER_IDS = "urn:example:payer-id"
CURRENCY = "USD"
# The price list: code -> (display, price).
PRICE_LIST = {"OPD001": ("Doctor Consultation", Decimal(400)),
              "LAB025": ("Blood Test", Decimal(250))}
COPAY = Decimal(30)  # the member's primary plan: a copay per visit
MEMBER_ID = "M-100"
# The secondary plan (Beta Care): a copay of 10 and a deductible of 620, so that alone it
# would pay 20 of the bill's 650; it pays at most what the primary left.
SECOND_COPAY, SECOND_DEDUCTIBLE, SECOND_MEMBER_ID = Decimal(10), Decimal(620), "B-200"
PAYERS = {"ACME": "Acme Health", "BETA": "Beta Care"}
PATIENT_EMAIL = "peter.chalmers@example.org"
SHARES = "https://fhir-rcm-server.org/CodeSystem/invoice-share"
WORKLIST = "https://fhir-rcm-server.org/CodeSystem/worklist"
WAIT = 60.0  # seconds to wait for the billing worker's Task
NOTIFY_WAIT = 20.0  # seconds to wait for the patient's notifications


def money(value: Decimal) -> dict[str, Any]:
    return {"value": int(value) if value == value.to_integral() else float(value),
            "currency": CURRENCY}


class Server:
    """One FHIR server, spoken to with a bearer token; every call must succeed."""

    def __init__(self, base: str, token: str | None) -> None:
        headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=base.rstrip("/") + "/", headers=headers, timeout=60)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             expect: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        response = self.http.request(method, path, json=body)
        if response.status_code not in expect:
            raise SystemExit(f"{method} {path} answered {response.status_code}: {response.text}")
        out: dict[str, Any] = response.json()
        return out

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", resource["resourceType"], resource, expect=(201,))


def step(text: str) -> None:
    print(f"* {text}", flush=True)


def payer_organization(payer_id: str, endpoint: str | None = None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization", "name": PAYERS[payer_id], "active": True,
        "identifier": [{"system": PAYER_IDS, "value": payer_id}],
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                              "code": "pay"}]}]}
    if endpoint:
        org["endpoint"] = [{"reference": endpoint}]
    return org


def coverage(patient: str, payer: str, year: int, *, member: str, order: int,
             copay: Decimal | None = None, deductible: Decimal | None = None) -> dict[str, Any]:
    cov: dict[str, Any] = {
        "resourceType": "Coverage", "status": "active",
        "identifier": [{"system": MEMBERS, "value": member}], "subscriberId": member,
        "beneficiary": {"reference": patient}, "payor": [{"reference": payer}],
        "period": {"start": f"{year}-01-01", "end": f"{year}-12-31"}, "order": order}
    costs = [(code, value) for code, value in (("gpvisit", copay), ("deductible", deductible))
             if value is not None]
    if costs:
        cov["costToBeneficiary"] = [{"type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/coverage-copay-type",
            "code": code}]}, "valueMoney": money(value)} for code, value in costs]
    return cov


def set_up_payer(payer: Server, year: int) -> None:
    step(f"payer: its two plans' Organizations, and the member's Patient and Coverages "
         f"(primary: copay {COPAY}; secondary: copay {SECOND_COPAY}, deductible "
         f"{SECOND_DEDUCTIBLE} {CURRENCY})")
    acme, beta = (payer.create(payer_organization(payer_id)) for payer_id in PAYERS)
    person = payer.create({"resourceType": "Patient", "name": [{"family": "Chalmers",
                                                                 "given": ["Peter"]}]})
    member = f"Patient/{person['id']}"
    payer.create(coverage(member, f"Organization/{acme['id']}", year, member=MEMBER_ID,
                          order=1, copay=COPAY))
    payer.create(coverage(member, f"Organization/{beta['id']}", year, member=SECOND_MEMBER_ID,
                          order=2, copay=SECOND_COPAY, deductible=SECOND_DEDUCTIBLE))


def set_up_clinic(clinic: Server, payer_base: str, client_id: str | None) -> dict[str, str]:
    step("clinic: itself, the payer's two Organizations with an Endpoint to its server")
    clinic.call("PUT", "Organization/clinic", {"resourceType": "Organization", "id": "clinic",
                                               "name": "Clinic"})
    endpoint: dict[str, Any] = {
        "resourceType": "Endpoint", "status": "active", "address": payer_base,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "hl7-fhir-rest"},
        "payloadType": [{"text": "FHIR R4"}]}
    if client_id:  # the payer wants a token: private_key_jwt with FHIR_CLIENT_KEY_FILE
        endpoint["extension"] = [{
            "url": "https://fhir-rcm-server.org/StructureDefinition/endpoint-oauth2",
            "extension": [{"url": "clientId", "valueString": client_id}]}]
    endpoint = clinic.create(endpoint)
    acme, beta = (clinic.create(payer_organization(payer_id, f"Endpoint/{endpoint['id']}"))
                  for payer_id in PAYERS)
    step("clinic: the price list, one ChargeItemDefinition per service")
    for code, (display, price) in PRICE_LIST.items():
        clinic.create({
            "resourceType": "ChargeItemDefinition", "url": f"urn:example:price/{code}",
            "status": "active",
            "code": {"coding": [{"system": SERVICES, "code": code, "display": display}]},
            "propertyGroup": [{"priceComponent": [{"type": "base", "amount": money(price)}]}]})
        print(f"    {code} {display}: {price} {CURRENCY}")
    doctor = clinic.create({"resourceType": "Practitioner", "name": [{"family": "Doc"}]})
    room = clinic.create({"resourceType": "Location", "name": "Room 1"})
    return {"payer": f"Organization/{acme['id']}", "second": f"Organization/{beta['id']}",
            "doctor": f"Practitioner/{doctor['id']}",
            "room": f"Location/{room['id']}"}


def share(invoice: dict[str, Any], code: str) -> Decimal:
    for component in invoice.get("totalPriceComponent", []):
        coding = component["code"]["coding"][0]
        if coding["system"] == SHARES and coding["code"] == code:
            return Decimal(str(component["amount"]["value"]))
    return Decimal(0)


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


def wait_for_task(clinic: Server, visit: str) -> dict[str, Any]:
    """The visit's failed bill-visit Task, once the billing worker (a background consumer of
    the outbox) has tried: polled, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        found = clinic.call("GET", f"Task?code={WORKLIST}|bill-visit&focus={visit}&status=failed")
        if found.get("entry"):
            task: dict[str, Any] = found["entry"][0]["resource"]
            return task
        if time.monotonic() > deadline:
            raise SystemExit(f"no failed bill-visit Task about {visit} after {WAIT} seconds "
                             "(with FHIR_BILLING_PROVIDER set, the clinic bills it at once)")
        time.sleep(0.5)


def wait_for_next_claim(clinic: Server, claim: dict[str, Any]
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The claim the next-payer worker (a background consumer of the outbox) made after
    ``claim``'s answer, and its own answer: polled, for at most WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while True:
        found = clinic.call("GET", f"Claim?patient={claim['patient']['reference']}")
        following = [e["resource"] for e in found.get("entry", [])
                     if e["resource"]["id"] != claim["id"]]
        if following:
            answers = clinic.call("GET", f"ClaimResponse?request=Claim/{following[0]['id']}")
            if answers.get("entry"):
                return following[0], answers["entry"][0]["resource"]
        if time.monotonic() > deadline:
            raise SystemExit(f"no answered claim after Claim/{claim['id']} in {WAIT} seconds")
        time.sleep(0.5)


def communications(clinic: Server, patient: str, last: str) -> list[dict[str, Any]]:
    """The patient's Communications, once the one about ``last`` (the payment, the last
    thing they are told of) is there, or after NOTIFY_WAIT seconds (none without a channel)."""
    deadline = time.monotonic() + NOTIFY_WAIT
    while True:
        found = clinic.call("GET", f"Communication?subject={patient}&_sort=sent&_count=100")
        told = [e["resource"] for e in found.get("entry", [])]
        if any(a.get("reference") == last for c in told for a in c.get("about", [])) \
                or time.monotonic() > deadline:
            return told
        time.sleep(0.5)


def run(clinic: Server, payer: Server, payer_base: str, client_id: str | None) -> dict[str, Any]:
    year = date.today().year
    set_up_payer(payer, year)
    ids = set_up_clinic(clinic, payer_base, client_id)

    step("clinic: the patient and their two Coverages (member ids at the payer, order 1 and 2)")
    person = clinic.create({"resourceType": "Patient", "name": [{"family": "Chalmers",
                                                                 "given": ["Peter"]}],
                            "telecom": [{"system": "email", "value": PATIENT_EMAIL}]})
    patient = f"Patient/{person['id']}"
    cov = clinic.create(coverage(patient, ids["payer"], year, member=MEMBER_ID, order=1))
    clinic.create(coverage(patient, ids["second"], year, member=SECOND_MEMBER_ID, order=2))

    visit_day = date.today()
    step(f"eligibility: Coverage/{cov['id']}/$eligibility, asked of the payer's server")
    answer = clinic.call("POST", f"Coverage/{cov['id']}/$eligibility", {
        "resourceType": "Parameters",
        "parameter": [{"name": "serviced", "valueDate": visit_day.isoformat()}]})
    inforce = answer["insurance"][0]["inforce"]
    print(f"    in force: {inforce}")

    step("booking: an Appointment with the doctor in room 1 (a draft Invoice comes with it)")
    start = datetime.combine(visit_day, datetime.min.time(), UTC) + timedelta(hours=9)
    end = start + timedelta(minutes=30)
    instant = "%Y-%m-%dT%H:%M:%SZ"
    booked = clinic.create({
        "resourceType": "Appointment", "status": "booked", "start": start.strftime(instant),
        "end": end.strftime(instant),
        "participant": [{"actor": {"reference": who}, "status": "accepted"}
                        for who in (patient, ids["doctor"], ids["room"])]})

    step("visit: the Encounter, in progress, and a ChargeItem per service rendered")
    encounter = clinic.create({
        "resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": patient},
        "appointment": [{"reference": f"Appointment/{booked['id']}"}],
        "period": {"start": start.strftime(instant), "end": end.strftime(instant)}})
    visit = f"Encounter/{encounter['id']}"
    for code in PRICE_LIST:  # no price: the bill prices them from the price list
        clinic.create({"resourceType": "ChargeItem", "status": "billable",
                       "code": {"coding": [{"system": SERVICES, "code": code}]},
                       "subject": {"reference": patient}, "context": {"reference": visit},
                       "quantity": {"value": 1}})

    # Finished without serviceProvider (the Claim's provider), and the clinic has no
    # FHIR_BILLING_PROVIDER: the visit is recorded, and the billing worker cannot bill it.
    step(f"visit ends: {visit} finished, without a serviceProvider")
    encounter = clinic.call("PUT", visit, {**without_meta(encounter), "status": "finished"})

    step("worklist: the billing worker could not bill the visit; its bill-visit Task")
    task = wait_for_task(clinic, visit)
    reason = task["statusReason"]["text"]
    print(f"    Task/{task['id']} is {task['status']}: {reason}")
    print("    fix: the Encounter's serviceProvider is the clinic; then Task/$retry")
    clinic.call("PUT", visit, {**without_meta(encounter),
                               "serviceProvider": {"reference": "Organization/clinic"}})
    retried = clinic.call("POST", f"Task/{task['id']}/$retry", {"resourceType": "Parameters"})
    outputs = [o["valueReference"]["reference"] for o in retried.get("output", [])]
    print(f"    Task/{retried['id']} is {retried['status']}: {', '.join(outputs)}")
    if retried["status"] != "completed":
        raise SystemExit(f"Task/{retried['id']} is still {retried['status']}: "
                         f"{retried.get('statusReason', {}).get('text')}")

    # Asking for the visit's bill returns the one the retry made: one bill per visit.
    step("bill: Invoice/$generate-bill for the visit returns the bill made by the retry")
    bill = clinic.call("POST", "Invoice/$generate-bill", {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": patient}},
        {"name": "encounter", "valueReference": {"reference": visit}},
        *({"name": "service", "part": [
            {"name": "code", "valueCoding": {"system": SERVICES, "code": code}},
            {"name": "quantity", "valueDecimal": 1}]} for code in PRICE_LIST)]})
    made = {e["resource"]["resourceType"]: e["resource"] for e in bill["entry"]}
    invoice, claim = made["Invoice"], made["Claim"]
    total = Decimal(str(invoice["totalGross"]["value"]))
    print(f"    Invoice/{invoice['id']}: {total:.2f} {CURRENCY}; Claim/{claim['id']}")

    step("claim: Claim/$submit to the primary plan, adjudicated by the payer's server")
    response = clinic.call("POST", "Claim/$submit", claim)
    paid = Decimal(str(response["payment"]["amount"]["value"]))
    print(f"    {response['outcome']}: the primary plan pays {paid:.2f} {CURRENCY}")

    step("next payer: the clinic bills what the primary left to the secondary plan")
    following, answer = wait_for_next_claim(clinic, claim)
    second_paid = Decimal(str(answer["payment"]["amount"]["value"]))
    print(f"    Claim/{following['id']} (related: Claim/{claim['id']}): {answer['outcome']}, "
          f"the secondary plan pays {second_paid:.2f} {CURRENCY}")
    invoice = clinic.call("GET", f"Invoice/{invoice['id']}")
    owed = share(invoice, "patient")
    print(f"    Invoice/{invoice['id']}: the insurers pay {share(invoice, 'insurer'):.2f}, "
          f"the patient owes {owed:.2f} {CURRENCY}")

    step(f"payment: Invoice/{invoice['id']}/$record-payment, the patient pays in cash")
    paid_by_patient = clinic.call("POST", f"Invoice/{invoice['id']}/$record-payment", {
        "resourceType": "Parameters", "parameter": [
            {"name": "amount", "valueMoney": money(owed)},
            {"name": "method", "valueCode": "CASH"},  # a v2-0570 code, as valueCode
            {"name": "reference", "valueString": "receipt 1"}]})
    after = next(p["resource"] for p in paid_by_patient["parameter"] if p["name"] == "invoice")
    payment = next(p["resource"] for p in paid_by_patient["parameter"]
                   if p["name"] == "paymentReconciliation")
    print(f"    Invoice/{after['id']} is {after['status']}, owed {share(after, 'patient'):.2f}")

    step(f"notifications: the patient's Communications (Communication?subject={patient})")
    told = communications(clinic, patient, f"PaymentReconciliation/{payment['id']}")
    for sent in told:
        medium = ",".join(m.get("text", "?") for m in sent.get("medium", []))
        about = ",".join(a["reference"] for a in sent.get("about", []))
        print(f"    {sent['category'][0]['text']} by {medium} about {about}: {sent['status']}")
    if not told:
        print("    none: the clinic sends none without FHIR_SMTP_URL (or FHIR_SMS_URL)")
    return {"inforce": inforce, "appointment": f"Appointment/{booked['id']}",
            "encounter": visit, "task": f"Task/{task['id']}",
            "task_failed": task["status"], "task_reason": reason,
            "task_after_retry": retried["status"], "task_output": outputs,
            "invoice": f"Invoice/{invoice['id']}",
            "claim": f"Claim/{claim['id']}", "total": str(total), "outcome": response["outcome"],
            "payer_paid": str(paid), "next_claim": f"Claim/{following['id']}",
            "second_paid": str(second_paid), "patient_owed": str(owed),
            "status_after_payment": after["status"],
            "owed_after_payment": str(share(after, "patient")),
            "payment": f"PaymentReconciliation/{payment['id']}",
            "communications": [{"id": c["id"], "category": c["category"][0]["text"],
                                "status": c["status"],
                                "about": [a["reference"] for a in c.get("about", [])]}
                               for c in told]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clinic", default="http://127.0.0.1:8080/fhir", help="the clinic's base")
    parser.add_argument("--payer", default="http://127.0.0.1:8081/fhir", help="the payer's base")
    parser.add_argument("--payer-client-id", help="the clinic's client id at the payer, when "
                        "the payer requires OAuth (SMART Backend Services)")
    args = parser.parse_args(argv)
    clinic = Server(args.clinic, os.environ.get("CLINIC_TOKEN"))
    payer = Server(args.payer, os.environ.get("PAYER_TOKEN"))
    summary = run(clinic, payer, args.payer, args.payer_client_id)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
