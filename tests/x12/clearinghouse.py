"""A loopback clearinghouse for the tests, run as its own process:
``python -m tests.x12.clearinghouse PORT``.

* ``POST /x12`` (application/edi-x12): an 837P is validated with pyx12 against the 5010
  837P map and answered with the 999 pyx12 writes; for each claim it accepted it queues a
  277CA (rejected, A7:21, for member ids in ``reject_members``; else accepted, A2:20). A 270
  is checked with pyx12's envelope reader (pyx12 ships no 005010X279A1 map) and answered with
  a 271 from its member table (AAA 75 for an unknown member). A 276 is checked the same way
  (pyx12 indexes no 005010X212 map: its 277 one is left out of its index, and loads as a
  map of another layout) and answered with a 277 whose STC01 is ``claim_status[TRN02]``
  (default P1:20, pending).
* ``GET /x12/outbox?after=ID``: the files queued after ``ID``, oldest first.
* Test controls: ``POST /admin/config`` (members, reject_members, claim_status), ``POST /admin/outbox``
  (queue a file), ``GET /admin/received`` (what arrived, with pyx12's verdict).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.x12.edi import (
    claim_ack_277,
    claim_status_277,
    elements,
    eligibility_271,
    envelope_errors,
    pyx12_check,
)

STATE: dict[str, Any] = {"members": {}, "reject_members": [], "received": [], "outbox": [],
                         "control": 500, "claim_status": {}}


def _control() -> int:
    STATE["control"] += 1
    return int(STATE["control"])


async def receive(request: Request) -> Response:
    if request.headers.get("content-type", "").split(";")[0] != "application/edi-x12":
        return PlainTextResponse("send application/edi-x12", status_code=415)
    text = (await request.body()).decode("ascii")
    segments = elements(text)
    kind = next((s[1] for s in segments if s[0] == "ST"), "")
    today = datetime.now(UTC).date()
    if kind == "270":
        errors = envelope_errors(text)
        STATE["received"].append({"kind": kind, "text": text, "valid": not errors,
                                  "errors": errors})
        if errors:
            return PlainTextResponse("bad envelope", status_code=400)
        member = next(s[9] for s in segments if s[:2] == ["NM1", "IL"])
        plan = STATE["members"].get(member)
        answer = eligibility_271(segments, plan=plan, control=_control(), on=today)
        return PlainTextResponse(answer, media_type="application/edi-x12")
    if kind == "276":
        errors = envelope_errors(text)
        STATE["received"].append({"kind": kind, "text": text, "valid": not errors,
                                  "errors": errors})
        if errors:
            return PlainTextResponse("bad envelope", status_code=400)
        trace = next(s[2] for s in segments if s[:2] == ["TRN", "1"])
        answer = claim_status_277(segments, status=STATE["claim_status"].get(trace, "P1:20"),
                                  control=_control(), on=today)
        assert not envelope_errors(answer), "the test clearinghouse wrote a bad 277 envelope"
        return PlainTextResponse(answer, media_type="application/edi-x12")
    valid, ack = pyx12_check(text)
    STATE["received"].append({"kind": kind, "text": text, "valid": valid, "ack": ack})
    if kind == "837" and valid:
        npi = next(s[9] for s in segments if s[:2] == ["NM1", "85"])
        member = next(s[9] for s in segments if s[:2] == ["NM1", "IL"])
        claims = [(s[1], member, Decimal(s[2]),
                   "A7:21:IL" if member in STATE["reject_members"] else "A2:20")
                  for s in segments if s[0] == "CLM"]
        ack_277 = claim_ack_277(claims=claims, provider_npi=npi, on=today, control=_control())
        ok, _ = pyx12_check(ack_277)
        assert ok, "the test clearinghouse wrote an invalid 277CA"
        _queue(ack_277)
    return PlainTextResponse(ack, media_type="application/edi-x12")


def _queue(text: str) -> str:
    id_ = f"f{len(STATE['outbox']) + 1:05d}"
    STATE["outbox"].append({"id": id_, "x12": text})
    return id_


async def outbox(request: Request) -> Response:
    after = request.query_params.get("after")
    files = STATE["outbox"]
    if after:
        files = [f for f in files if f["id"] > after]
    return JSONResponse(files)


async def config(request: Request) -> Response:
    body = await request.json()
    STATE["members"] = body.get("members", STATE["members"])
    STATE["reject_members"] = body.get("reject_members", STATE["reject_members"])
    STATE["claim_status"] = body.get("claim_status", STATE["claim_status"])
    return JSONResponse({"ok": True})


async def queue(request: Request) -> Response:
    return JSONResponse({"id": _queue((await request.body()).decode("ascii"))})


async def received(request: Request) -> Response:
    return JSONResponse(STATE["received"])


async def ready(request: Request) -> Response:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[
    Route("/x12", receive, methods=["POST"]), Route("/x12/outbox", outbox),
    Route("/admin/config", config, methods=["POST"]),
    Route("/admin/outbox", queue, methods=["POST"]), Route("/admin/received", received),
    Route("/ready", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
