"""The X12 payer adapter: a clearinghouse reached in X12 5010 over HTTP.

* ``POST {address}/x12`` (``Content-Type: application/edi-x12``) sends an interchange;
  the answer's body is the synchronous interchange: a 271 for a 270, a 999 for an 837P, a
  277 for a 276.
* ``GET {address}/x12/outbox?after={cursor}`` lists the files waiting (277CA, 835) as
  JSON ``[{"id": ..., "x12": ...}]``, oldest first (``fhir_server/operations/x12_poll.py`` applies them).

Timeouts, retries (the 270 and the outbox read only: an 837P that may have arrived is
never resent), the circuit breaker and OAuth are ``PeerHttp``'s, shared with the FHIR
adapter. Control numbers come from ``X12State`` (persisted, unique across restarts).
Every interchange sent and received comes back in ``PayerAnswer.exchanged``.

Answers are read under a bound (``peer_limits.py``): an interchange answered to a 270 or
an 837P under FHIR_MAX_X12_BYTES; the outbox list, which holds the files, under
FHIR_MAX_BUNDLE_BYTES or twice FHIR_MAX_X12_BYTES, whichever is larger (each file in it
is then held to FHIR_MAX_X12_BYTES when it is applied).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from fhir_server.adapters.payer import Exchanged, PayerAnswer, PayerEndpoint
from fhir_server.adapters.peer_errors import PayerRefused, unreachable
from fhir_server.adapters.peer_http import PeerHttp
from fhir_server.adapters.x12.acks import ClaimStatus, read_277ca, read_999
from fhir_server.adapters.x12.claim837 import write_837p
from fhir_server.adapters.x12.claim_status import write_276
from fhir_server.adapters.x12.eligibility import read_271, response_of, write_270
from fhir_server.adapters.x12.segments import Interchange, X12Error, parse
from fhir_server.adapters.x12.state import X12State
from fhir_server.core.config import Settings
from fhir_server.revenue.states import ClaimOutcome
from fhir_server.terminology.systems import ADJUDICATION_ERROR, CLAIM_CONTROL

X12_MEDIA = "application/edi-x12"
COUNTER = "interchange"


def received(text: str, kind: str, document: Interchange | None) -> Exchanged:
    return Exchanged("received", kind, text, document.control if document else "")


class X12PayerAdapter:
    def __init__(self, settings: Settings, *, http: PeerHttp, state: X12State) -> None:
        self.settings = settings
        self.http = http
        self.state = state

    async def close(self) -> None:
        await self.http.close()

    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> PayerAnswer:
        assert endpoint.partner is not None
        at = datetime.now(UTC)
        control = await self.state.next_number(COUNTER)
        text = write_270(request, partner=endpoint.partner, control=control, at=at)
        sent = Exchanged("sent", "270", text, f"{control:09d}")
        answer, document = await self._inquire(endpoint, text, "270")
        try:
            found = read_271(document)
        except X12Error as error:
            raise _failed(endpoint, f"a 271 this server cannot read ({error.where})") from None
        response = response_of(found, request, currency=self.settings.fhir_billing_currency,
                               created=at.isoformat(timespec="seconds").replace("+00:00", "Z"))
        return PayerAnswer(response, [sent, received(answer, "271", document)])

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> PayerAnswer:
        assert endpoint.partner is not None
        at = datetime.now(UTC)
        control = await self.state.next_number(COUNTER)
        text = write_837p(claim, control_system=CLAIM_CONTROL, partner=endpoint.partner,
                          control=control, at=at)
        sent = Exchanged("sent", "837P", text, f"{control:09d}")
        answer = await self._post(endpoint, text, idempotent=False)
        document = self._read(endpoint, answer)
        try:
            groups = read_999(document)
        except X12Error:
            raise _failed(endpoint, "no 999 in the answer to an 837P") from None
        verdicts = [s for g in groups for s in g.sets if s.control == f"{control:04d}"]
        if not verdicts:
            raise _failed(endpoint, "a 999 that does not acknowledge this 837P")
        response: dict[str, Any] = {
            "resourceType": "ClaimResponse", "status": "active", "type": claim.get("type"),
            "use": claim.get("use", "claim"), "patient": claim.get("patient"),
            "created": at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "insurer": claim.get("insurer"), "outcome": ClaimOutcome.QUEUED.value,
            "disposition": "Accepted by the clearinghouse (999); awaiting the payer"}
        rejected = [v for v in verdicts if not v.accepted]
        if rejected:
            problems = [p for v in rejected for p in v.problems] or [
                f"transaction set rejected (IK5 {rejected[0].code or 'R'})"]
            response.update(outcome=ClaimOutcome.ERROR.value,
                            disposition="Rejected by the clearinghouse (999)",
                            error=[x12_error("x12-999-rejected", "Rejected (999)", p)
                                   for p in problems[:20]])
        return PayerAnswer(response, [sent, received(answer, "999", document)])

    async def claim_status(self, endpoint: PayerEndpoint, claim: dict[str, Any], *,
                           payer_claim: str | None) -> tuple[list[ClaimStatus], list[Exchanged]]:
        """A 276 about ``claim`` (packed), and what the 277 answered for it."""
        assert endpoint.partner is not None
        at = datetime.now(UTC)
        control = await self.state.next_number(COUNTER)
        text = write_276(claim, payer_claim=payer_claim, partner=endpoint.partner,
                         control=control, at=at)
        sent = Exchanged("sent", "276", text, f"{control:09d}")
        answer, document = await self._inquire(endpoint, text, "276")
        try:
            statuses = read_277ca(document)
        except X12Error as error:
            raise _failed(endpoint, f"a 277 this server cannot read ({error.where})") from None
        return statuses, [sent, received(answer, "277", document)]

    async def outbox(self, endpoint: PayerEndpoint, after: str | None) -> list[tuple[str, str]]:
        """The files waiting at the clearinghouse after ``after``: [(id, X12 text)]."""
        def read(response: httpx.Response) -> list[tuple[str, str]]:
            if response.status_code != 200:
                raise _failed(endpoint, f"outbox answered HTTP {response.status_code}")
            try:
                files = orjson.loads(response.content)
                return [(str(f["id"]), str(f["x12"])) for f in files]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise _failed(endpoint, "outbox answer is not a list of files") from None

        url = f"{endpoint.address.rstrip('/')}/x12/outbox"
        query = httpx.QueryParams({"after": after} if after else {})
        # The list holds the files themselves, escaped in JSON (a line break takes two
        # bytes more): one file at FHIR_MAX_X12_BYTES must fit, or it would stop the outbox
        # for good (the cursor passes only files it has read, refused or not).
        limit = max(self.settings.fhir_max_bundle_bytes, 2 * self.settings.fhir_max_x12_bytes)
        return await self.http.call(endpoint, "GET", f"{url}?{query}" if after else url,
                                    body=None, headers={"Accept": "application/json"},
                                    idempotent=True, read=read, max_bytes=limit)

    async def _inquire(self, endpoint: PayerEndpoint, text: str, kind: str
                       ) -> tuple[str, Interchange]:
        """An inquiry (270, 276) sent, and its synchronous answer read: a 999 in its place
        is the clearinghouse refusing it (PayerRefused, with its first problems)."""
        answer = await self._post(endpoint, text, idempotent=True)  # asking twice is harmless
        document = self._read(endpoint, answer)
        if "999" in {t.set_id for t in document.transactions()}:
            problems = [p for g in read_999(document) for s in g.sets for p in s.problems]
            raise PayerRefused(f"The clearinghouse at {endpoint.reference} rejected the {kind}: "
                               + ("; ".join(problems[:3]) or "no reason given"))
        return answer, document

    async def _post(self, endpoint: PayerEndpoint, text: str, *, idempotent: bool) -> str:
        def read(response: httpx.Response) -> str:
            if not 200 <= response.status_code < 300:
                raise _failed(endpoint, f"interchange answered HTTP {response.status_code}")
            return response.text

        return await self.http.call(endpoint, "POST", f"{endpoint.address.rstrip('/')}/x12",
                                    body=text.encode("ascii", "replace"),
                                    headers={"Content-Type": X12_MEDIA, "Accept": X12_MEDIA},
                                    idempotent=idempotent, read=read,
                                    max_bytes=self.settings.fhir_max_x12_bytes)

    def _read(self, endpoint: PayerEndpoint, text: str) -> Interchange:
        # Not larger than FHIR_MAX_X12_BYTES: PeerHttp read it under that bound.
        try:
            return parse(text)
        except X12Error as error:
            raise _failed(endpoint, f"bad X12 in the answer ({error.where})") from None


def _failed(endpoint: PayerEndpoint, detail: str) -> PayerRefused:
    """The clearinghouse answered, but not in X12 as asked: told as every peer failure."""
    return unreachable("payer", endpoint.reference, detail, kind=PayerRefused)


def x12_error(code: str, display: str, text: str) -> dict[str, Any]:
    """A ClaimResponse.error: this server's code, and the segment and reason as text."""
    return {"code": {"coding": [{"system": ADJUDICATION_ERROR, "code": code,
                                 "display": display}], "text": text[:1000]}}


class PayerRouter:
    """The payer adapter the operations use: FHIR or X12 by the Endpoint's connectionType."""

    def __init__(self, *, fhir: Any, x12: X12PayerAdapter) -> None:
        self.fhir = fhir
        self.x12 = x12

    def _for(self, endpoint: PayerEndpoint) -> Any:
        return self.x12 if endpoint.partner is not None else self.fhir

    async def check_eligibility(self, endpoint: PayerEndpoint,
                                request: dict[str, Any]) -> PayerAnswer:
        answer: PayerAnswer = await self._for(endpoint).check_eligibility(endpoint, request)
        return answer

    async def submit_claim(self, endpoint: PayerEndpoint, claim: dict[str, Any]) -> PayerAnswer:
        answer: PayerAnswer = await self._for(endpoint).submit_claim(endpoint, claim)
        return answer

    async def close(self) -> None:
        await self.fhir.close()  # the HTTP client is shared: closing one closes it
