"""examples/revenue_cycle.py run as a newcomer would run it: against two server processes on
loopback (the clinic, and a second process as the payer that wants the clinic's token)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from fhir_server.notifications.delivery import NOTIFICATION
from tests.notifications.peers import Inbox, smtp_server
from tests.support.server_process import (
    ServerProcess,
    client_key_files,
    free_port,
    payer_process,
    server_env,
    server_process,
)
from tests.support.store import HTTP_TIMEOUT, ROOT, Store, StoreFactory

SCRIPT = ROOT / "examples" / "revenue_cycle.py"
CLINIC_CLIENT = "clinic-1"
PAYER_SCOPE = "system/CoverageEligibilityRequest.c system/Claim.c"
CLINIC_FROM = "clinic@example.org"


def script_module() -> ModuleType:
    """The script's own input data (its price list, the member's copay)."""
    spec = importlib.util.spec_from_file_location("revenue_cycle", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def operator_token(store: Store, server: ServerProcess) -> str:
    """An operator's token made with the CLI, as the script's docstring tells a newcomer:
    a client, an admin user (password on stdin), a token."""
    env = server_env(store, int(server.base.rsplit(":", 1)[1].split("/", 1)[0]))

    def cli(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, cwd=ROOT,
                              input=stdin, capture_output=True, text=True,
                              timeout=HTTP_TIMEOUT * 4, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    client = json.loads(cli("clients", "add", "--name", "ops", "--redirect-uri",
                            "http://localhost/cb", "--scope", "user/*.cruds"))["client_id"]
    cli("users", "add", "ops", "--role", "admin", "--password-stdin",
        stdin="a-long-passphrase-for-ops\n")
    return cli("token", "--client", client, "--scope", "user/*.cruds", "--user", "ops")


@pytest.fixture
async def databases(new_store: StoreFactory) -> AsyncIterator[tuple[Store, Store]]:
    stores = (new_store(), new_store())
    yield stores
    for store in stores:
        await store.drop()


@pytest.fixture
def clinic_key(tmp_path: Path) -> tuple[Path, Path]:
    return client_key_files(tmp_path)


@pytest.fixture
def payer(databases: tuple[Store, Store], clinic_key: tuple[Path, Path]) -> Iterator[ServerProcess]:
    with payer_process(databases[1], client_id=CLINIC_CLIENT, jwks_file=clinic_key[1],
                       scope=PAYER_SCOPE) as server:
        yield server


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on loopback: the patient's mailbox, and its port."""
    box, port = Inbox(), free_port()
    controller = smtp_server(box, port)
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture
def clinic(databases: tuple[Store, Store], clinic_key: tuple[Path, Path],
           inbox: tuple[Inbox, int]) -> Iterator[ServerProcess]:
    # No FHIR_BILLING_PROVIDER (whatever the caller's environment): the billing worker
    # cannot bill until the script's Encounter names its serviceProvider. Patient email
    # through the test's SMTP server.
    port = free_port()
    env = {k: v for k, v in server_env(databases[0], port).items()
           if k != "FHIR_BILLING_PROVIDER"}
    with server_process(databases[0], port=port, env=env,
                        FHIR_CLIENT_KEY_FILE=str(clinic_key[0]),
                        FHIR_PEER_ALLOWED_HOSTS="127.0.0.1",
                        FHIR_SMTP_URL=f"smtp://127.0.0.1:{inbox[1]}",
                        FHIR_SMTP_FROM=CLINIC_FROM) as server:
        yield server


def body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


@pytest.mark.slow
@pytest.mark.process
async def test_the_walkthrough_runs_the_revenue_cycle(
        clinic: ServerProcess, payer: ServerProcess, databases: tuple[Store, Store],
        inbox: tuple[Inbox, int]) -> None:
    tokens = {"CLINIC_TOKEN": operator_token(databases[0], clinic),
              "PAYER_TOKEN": operator_token(databases[1], payer)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--clinic", clinic.base, "--payer", payer.base,
         "--payer-client-id", CLINIC_CLIENT],
        env={**os.environ, **tokens}, cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    steps = [line.split(":", 1)[0] for line in lines if line.startswith("* ")]
    assert steps == ["* payer", "* clinic", "* clinic", "* clinic", "* eligibility",
                     "* booking", "* visit", "* visit ends", "* worklist", "* bill", "* claim",
                     "* next payer", "* payment", "* notifications"]

    data = script_module()
    total = sum((price for _, price in data.PRICE_LIST.values()), Decimal(0))
    summary = json.loads(lines[-1])
    assert summary["inforce"] is True
    assert Decimal(summary["total"]) == total
    assert summary["outcome"] == "complete"
    primary_paid = total - data.COPAY
    # The secondary plan alone would pay the total less its copay and deductible; it pays
    # at most what the primary left.
    second_paid = min(total - data.SECOND_COPAY - data.SECOND_DEDUCTIBLE, data.COPAY)
    owed = total - primary_paid - second_paid
    assert Decimal(summary["payer_paid"]) == primary_paid
    assert Decimal(summary["second_paid"]) == second_paid
    assert Decimal(summary["patient_owed"]) == owed > 0
    assert summary["status_after_payment"] == "balanced"
    assert Decimal(summary["owed_after_payment"]) == 0
    for code, (display, price) in data.PRICE_LIST.items():
        assert f"    {code} {display}: {price} {data.CURRENCY}" in lines

    # What the script printed is what the servers hold.
    headers = {"Authorization": f"Bearer {tokens['CLINIC_TOKEN']}"}
    invoice = httpx.get(f"{clinic.base}/{summary['invoice']}", headers=headers,
                        timeout=HTTP_TIMEOUT).json()
    assert invoice["status"] == "balanced"
    assert Decimal(str(invoice["totalGross"]["value"])) == total
    payer_headers = {"Authorization": f"Bearer {tokens['PAYER_TOKEN']}"}
    answers = httpx.get(f"{payer.base}/ClaimResponse", headers=payer_headers,
                        timeout=HTTP_TIMEOUT).json()
    assert answers["total"] == 2  # the payer adjudicated the claim for each plan
    assert sorted(Decimal(str(e["resource"]["payment"]["amount"]["value"]))
                  for e in answers["entry"]) == sorted([primary_paid, second_paid])

    # The worklist: the worker's Task failed for want of a provider, the retry billed the
    # visit, and that bill is the only one ($generate-bill afterwards returned it).
    assert summary["task_failed"] == "failed"
    assert "serviceProvider" in summary["task_reason"]
    assert "FHIR_BILLING_PROVIDER" in summary["task_reason"]
    assert summary["task_after_retry"] == "completed"
    assert sorted(summary["task_output"]) == sorted([summary["claim"], summary["invoice"]])
    task = httpx.get(f"{clinic.base}/{summary['task']}", headers=headers,
                     timeout=HTTP_TIMEOUT).json()
    assert task["status"] == "completed"
    assert task["focus"]["reference"] == summary["encounter"]
    assert task["code"]["coding"][0]["code"] == "bill-visit"
    history = httpx.get(f"{clinic.base}/{summary['task']}/_history", headers=headers,
                        timeout=HTTP_TIMEOUT).json()
    assert {e["resource"]["status"] for e in history["entry"]} == {"failed", "completed"}
    patient = invoice["subject"]["reference"]
    invoices = httpx.get(f"{clinic.base}/Invoice", params={"subject": patient},
                         headers=headers, timeout=HTTP_TIMEOUT).json()
    assert [e["resource"]["id"] for e in invoices["entry"]] == [invoice["id"]]
    claims = httpx.get(f"{clinic.base}/Claim", params={"patient": patient},
                       headers=headers, timeout=HTTP_TIMEOUT).json()
    assert sorted(f"Claim/{e['resource']['id']}" for e in claims["entry"]) == sorted(
        [summary["claim"], summary["next_claim"]])
    charges = httpx.get(f"{clinic.base}/ChargeItem", params={"subject": patient},
                        headers=headers, timeout=HTTP_TIMEOUT).json()
    assert sorted(e["resource"]["code"]["coding"][0]["code"] for e in charges["entry"]) == \
        sorted(data.PRICE_LIST)  # the script's, billed once; $generate-bill added none

    # The patient was emailed the booking, the bill (once the last payer answered: what the
    # secondary left) and the receipt of their payment, each a Communication.
    box = inbox[0]
    recorded = httpx.get(f"{clinic.base}/Communication", params={"subject": patient},
                         headers=headers, timeout=HTTP_TIMEOUT).json()
    told = {c["id"]: c for c in (e["resource"] for e in recorded["entry"])}
    assert sorted(c["category"] for c in summary["communications"]) == sorted(
        c["category"][0]["text"] for c in told.values())
    assert len(box.messages) == len(told) == 3
    expected = {"appointment-booked": (None, summary["appointment"]),
                "invoice-issued": (owed, summary["invoice"]),
                "payment-posted": (owed, summary["payment"])}
    seen = []
    for message in box.messages:
        assert message["To"] == data.PATIENT_EMAIL and message["From"] == CLINIC_FROM
        [sent] = [c for c in told.values() if {"system": NOTIFICATION,
                                               "value": message["X-FHIR-Notification"]}
                  in c["identifier"]]
        assert sent["status"] == "completed"
        assert sent["medium"][0]["text"] == "email"
        kind = sent["category"][0]["text"].removeprefix("patient notification: ")
        amount, about = expected[kind]
        [reference] = [a["reference"] for a in sent["about"]]
        assert reference == about
        if amount is not None:
            assert f"{amount:.2f} {data.CURRENCY}" in body(message)
        seen.append(kind)
    assert sorted(seen) == sorted(expected)
