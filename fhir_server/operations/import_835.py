"""``PaymentReconciliation/$import-835``: post an 835 remittance (see ``remittance_posting``).

The body is the X12 text (``Content-Type: application/edi-x12``), or a Parameters with
``x12`` (string) or ``attachment`` (Attachment with base64 ``data``). The answer is a
Parameters: each PaymentReconciliation written (or found, when the 835 was applied
before) as ``paymentReconciliation``, and an ``outcome`` OperationOutcome listing what was
posted and, as warnings, the CLPs set aside (for claims this server never sent to that
payer, or whose amounts do not balance), each naming its post-remittance Task.
"""

from __future__ import annotations

import base64
import binascii

from fhir_server.core.errors import Invalid, operation_outcome
from fhir_server.operations.base import Call, Operation, Param
from fhir_server.operations.remittance_posting import apply_835
from fhir_server.revenue.records import Resource


def text_of(call: Call) -> str:
    given = [v for v in (call.one("x12"), call.one("attachment")) if v is not None]
    if len(given) != 1:
        raise Invalid("Give the 835 once: as the body (application/edi-x12), or as the "
                      "parameter 'x12' or 'attachment'", expression=["Parameters.parameter"])
    value = given[0]
    if isinstance(value, str):
        return value
    try:
        return base64.b64decode(str(value.get("data", "")), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise Invalid("The attachment's data must be base64 of ASCII X12 text",
                      expression=["Parameters.parameter.where(name='attachment')"]) from None


async def run(call: Call) -> Resource:
    applied = await apply_835(repo=call.repo, settings=call.settings, text=text_of(call))
    return {"resourceType": "Parameters", "parameter": [
        *({"name": "paymentReconciliation", "resource": r} for r in applied.written),
        {"name": "outcome", "resource": operation_outcome(applied.issues)}]}


IMPORT_835 = Operation(
    id="PaymentReconciliation-import-835", code="import-835",
    title="Post an X12 835 remittance",
    description="Reads an X12 5010 835, checks it (envelope, implementation guide, payment "
    "totals, payer), and posts each check/EFT all or nothing: a PaymentReconciliation, the paid "
    "claims' ClaimResponses and their Invoices' balances. A claim payment for a claim this "
    "server did not send, or that does not balance, is set aside as a post-remittance Task "
    "and the others are posted. The same 835 again changes nothing.",
    resource=("PaymentReconciliation",), type_level=True, instance=False, text_body="x12",
    requires=(("PaymentReconciliation", "c"), ("ClaimResponse", "c"), ("ClaimResponse", "u"),
              ("Invoice", "u")),
    parameters=(
        Param("x12", "in", 0, "1", "string", "The 835 interchange"),
        Param("attachment", "in", 0, "1", "Attachment", "The 835 interchange, base64"),
        Param("paymentReconciliation", "out", 0, "*", "PaymentReconciliation",
              "The PaymentReconciliations posted (or found: applied before)"),
        Param("outcome", "out", 1, "1", "OperationOutcome",
              "What was posted; warnings for claim payments set aside on the worklist"),
    ),
    run=run)
