"""Every operation this server offers."""

from __future__ import annotations

from fhir_server.operations.base import Operation
from fhir_server.operations.charge_item_apply import APPLY
from fhir_server.operations.claim_correct import CLAIM_CORRECT
from fhir_server.operations.claim_submit import CLAIM_SUBMIT
from fhir_server.operations.code_systems import CODE_SYSTEM_VALIDATE, LOOKUP, SUBSUMES
from fhir_server.operations.ehr_sync import ENDPOINT_SYNC
from fhir_server.operations.eligibility import COVERAGE_ELIGIBILITY, SUBMIT
from fhir_server.operations.generate_bill import GENERATE_BILL
from fhir_server.operations.import_835 import IMPORT_835
from fhir_server.operations.record_payment import RECORD_PAYMENT
from fhir_server.operations.subscription_events import SUBSCRIPTION_EVENTS, SUBSCRIPTION_STATUS
from fhir_server.operations.subscription_secret import SUBSCRIPTION_SECRET
from fhir_server.operations.task_retry import TASK_RETRY
from fhir_server.operations.value_sets import EXPAND, TRANSLATE, VALUE_SET_VALIDATE

OPERATIONS: tuple[Operation, ...] = (SUBMIT, COVERAGE_ELIGIBILITY, GENERATE_BILL, CLAIM_SUBMIT,
                                     CLAIM_CORRECT, IMPORT_835, RECORD_PAYMENT, ENDPOINT_SYNC)
# The worklist (fhir_server/operations/worklist.py).
OPERATIONS += (TASK_RETRY,)
# Terminology (fhir_server/terminology/): code systems, value sets, concept maps.
OPERATIONS += (LOOKUP, CODE_SYSTEM_VALIDATE, SUBSUMES, EXPAND, VALUE_SET_VALIDATE, TRANSLATE,
               APPLY)
# Subscriptions (fhir_server/subscriptions/).
OPERATIONS += (SUBSCRIPTION_SECRET, SUBSCRIPTION_EVENTS, SUBSCRIPTION_STATUS)


def operations_for(type_: str) -> list[Operation]:
    return [op for op in OPERATIONS if type_ in op.resource]
