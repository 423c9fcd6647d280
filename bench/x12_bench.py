"""X12 throughput (run by hand): 837P claims generated per second, and 835 claim payments
posted per second for one 835 with 1,000 CLPs.

* 837P: ``write_837p`` on a packed Claim (the 400 + 250 bill, with its patient, coverage,
  payer, provider, diagnosis, encounter and location contained), then pyx12's validation
  of one such interchange against the 5010 837P map (what the test clearinghouse runs).
* 835: 1,000 Claims with their Invoices on a fresh database, then one
  ``PaymentReconciliation/$import-835`` (in-process ASGI) that checks the file (envelope,
  pyx12 map, balancing) and posts all 1,000: the ClaimResponses, the Invoices' balances,
  the PaymentReconciliation and the 835's DocumentReference, in one all-or-nothing commit.

Uses MONGODB_URI when set, else an embedded FerretDB.
Usage: python bench/x12_bench.py [--claims 2000] [--clps 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import admin_headers, fresh_settings  # noqa: E402

from fhir_server.adapters.payer import Partner  # noqa: E402
from fhir_server.adapters.x12.claim837 import write_837p  # noqa: E402
from fhir_server.adapters.x12.validate import validate  # noqa: E402
from fhir_server.core.config import Settings  # noqa: E402
from fhir_server.core.fhirjson import dumps  # noqa: E402
from fhir_server.main import create_app  # noqa: E402

BASE = "http://bench/fhir"
CPT = "http://www.ama-assn.org/go/cpt"
NIIP = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NIIP"}]}
LINES = (("99213", Decimal(400)), ("85025", Decimal(250)))
ADDRESS = [{"line": ["1 Main St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}]


def packed_claim(n: int) -> dict[str, Any]:
    day = "2026-03-15"
    return {
        "resourceType": "Claim", "status": "active", "use": "claim",
        "identifier": [{"system": "urn:fhir-rcm-server:claim", "value": str(uuid.uuid4())}],
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "professional"}]},
        "contained": [
            {"resourceType": "Patient", "id": "patient1", "name": [{"family": f"Bench{n}",
                                                                    "given": ["Ann"]}],
             "gender": "female", "birthDate": "1970-01-01", "address": ADDRESS},
            {"resourceType": "Coverage", "id": "coverage1", "status": "active",
             "subscriberId": f"M{n}", "beneficiary": {"reference": "#patient1"},
             "payor": [{"reference": "#organization2"}]},
            {"resourceType": "Organization", "id": "organization1", "name": "Clinic",
             "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"},
                            {"system": "urn:oid:2.16.840.1.113883.4.4", "value": "123456789"}],
             "telecom": [{"system": "phone", "value": "5555551234"}], "address": ADDRESS},
            {"resourceType": "Organization", "id": "organization2", "name": "Acme Health",
             "identifier": [{"type": NIIP, "value": "ACME1"}]},
            {"resourceType": "Condition", "id": "condition1", "subject": {"reference": "#patient1"},
             "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm",
                                  "code": "J06.9"}]}}],
        "patient": {"reference": "#patient1"}, "provider": {"reference": "#organization1"},
        "insurer": {"reference": "#organization2"}, "created": day,
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": "#coverage1"}}],
        "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": "#condition1"}}],
        "item": [{"sequence": i, "productOrService": {"coding": [{"system": CPT, "code": code}]},
                  "servicedDate": day, "quantity": {"value": 1},
                  "net": {"value": price, "currency": "USD"}}
                 for i, (code, price) in enumerate(LINES, 1)],
        "total": {"value": sum(p for _, p in LINES), "currency": "USD"}}


def bench_837p(count: int) -> dict[str, float]:
    claims = [packed_claim(n) for n in range(count)]
    partner = Partner("CLINIC01", "CH01", "T")
    at = datetime.now(UTC)
    t0 = time.perf_counter()
    texts = [write_837p(c, control_system="urn:fhir-rcm-server:claim", partner=partner,
                        control=n + 1, at=at) for n, c in enumerate(claims)]
    elapsed = time.perf_counter() - t0
    t1 = time.perf_counter()
    report = validate(texts[0])
    validated = time.perf_counter() - t1
    assert report.valid, report.problems
    return {"per_second": count / elapsed, "validate_ms": validated * 1000}


def remittance(claims: list[tuple[str, Decimal]], payer_id: str) -> str:
    ymd = datetime.now(UTC).strftime("%Y%m%d")
    paid_total = sum((total - 30 for _, total in claims), Decimal(0))
    body = [f"BPR*I*{paid_total}*C*ACH*CCP*01*999999999*DA*1*1987654321**01*888888888*DA*2*{ymd}",
            "TRN*1*BENCH1*1987654321", f"DTM*405*{ymd}", "N1*PR*ACME HEALTH",
            "N3*1 PAYER WAY", "N4*HARTFORD*CT*06101", f"REF*2U*{payer_id}",
            "PER*BL*EDI*TE*8005550100", "N1*PE*CLINIC*XX*1234567893", "LX*1"]
    for claim_id, total in claims:
        body += [f"CLP*{claim_id}*1*{total}*{total - 30}*30*12*P{claim_id[:8]}",
                 "NM1*QC*1*BENCH*ANN****MI*M1", f"DTM*232*{ymd}"]
        for seq, (code, price) in enumerate(LINES, 1):
            copay = 30 if seq == 1 else 0
            body += [f"SVC*HC:{code}*{price}*{price - copay}**1", f"DTM*472*{ymd}",
                     *([f"CAS*PR*3*{copay}"] if copay else []), f"REF*6R*{seq}"]
    isa = (f"ISA*00*{'':10}*00*{'':10}*ZZ*{'CH01':<15}*ZZ*{'CLINIC01':<15}*{ymd[2:]}*1200*^*"
           "00501*000000777*0*P*:")
    segments = [isa, f"GS*HP*CH01*CLINIC01*{ymd}*1200*777*X*005010X221A1", "ST*835*0777",
                *body, f"SE*{len(body) + 2}*0777", "GE*1*777", "IEA*1*000000777"]
    return "~".join(segments) + "~\n"


async def bench_835(clps: int) -> dict[str, Any]:
    async with fresh_settings("x12-bench-", fhir_base_url=BASE, fhir_audit_journal=False
                              ) as (settings, engine):
        return {**await _post_835(settings, clps), "engine": engine}


async def _post_835(settings: Settings, clps: int) -> dict[str, float]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/", timeout=3600,
                                     headers=await admin_headers(app)) as http:
            payer = (await http.post("Organization", json={
                "resourceType": "Organization", "name": "Acme Health",
                "identifier": [{"type": NIIP, "value": "ACME1"}]})).json()
            claims = await _seed(http, clps, f"Organization/{payer['id']}")
            text = remittance(claims, "ACME1")
            t0 = time.perf_counter()
            report = validate(text)
            checked = time.perf_counter() - t0
            assert report.valid, report.problems[:3]
            t0 = time.perf_counter()
            r = await http.post("PaymentReconciliation/$import-835", content=text.encode(),
                                headers={"Content-Type": "application/edi-x12"})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200, r.text[:500]
            posted = r.json()["parameter"][0]["resource"]["detail"]
            assert sum(1 for d in posted if "request" in d) == clps
    return {"per_second": clps / elapsed, "seconds": elapsed, "validate_s": checked,
            "bytes": len(text)}


async def _seed(http: httpx.AsyncClient, count: int, payer: str) -> list[tuple[str, Decimal]]:
    out = []
    for start in range(0, count, 250):
        entries = []
        for n in range(start, min(count, start + 250)):
            patient, invoice, claim = (str(uuid.uuid4()) for _ in range(3))
            total = sum(p for _, p in LINES)
            entries += [
                {"resource": {"resourceType": "Patient", "id": patient,
                              "name": [{"family": f"Bench{n}"}]},
                 "request": {"method": "PUT", "url": f"Patient/{patient}"}},
                {"resource": {"resourceType": "Invoice", "id": invoice, "status": "issued",
                              "subject": {"reference": f"Patient/{patient}"},
                              "totalGross": {"value": total, "currency": "USD"}},
                 "request": {"method": "PUT", "url": f"Invoice/{invoice}"}},
                {"resource": {**{k: v for k, v in packed_claim(n).items()
                                 if k not in ("contained", "diagnosis")}, "id": claim,
                              "identifier": [{"system": "urn:fhir-rcm-server:invoice",
                                              "value": f"Invoice/{invoice}"}],
                              "patient": {"reference": f"Patient/{patient}"},
                              "provider": {"display": "Clinic"}, "insurer": {"reference": payer},
                              "insurance": [{"sequence": 1, "focal": True,
                                             "coverage": {"display": "Coverage"}}]},
                 "request": {"method": "PUT", "url": f"Claim/{claim}"}}]
            out.append((claim, total))
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        r = await http.post("", content=dumps(bundle),  # decimals as JSON numbers
                            headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.text[:300]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--clps", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
          f"python {platform.python_version()}")
    generated = bench_837p(args.claims)
    print(f"837P generated: {generated['per_second']:,.0f} claims/s ({args.claims} claims); "
          f"pyx12 validation of one 837P: {generated['validate_ms']:.0f} ms")
    posted = asyncio.run(bench_835(args.clps))
    print(f"835 posted on {posted['engine']}: {posted['per_second']:,.1f} claim payments/s "
          f"({args.clps} CLPs, {posted['bytes']:,} bytes, {posted['seconds']:.1f} s, of which "
          f"pyx12 validation {posted['validate_s']:.1f} s)")


if __name__ == "__main__":
    main()
