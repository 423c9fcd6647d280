"""Every operation this server offers."""

from __future__ import annotations

from operations.base import Operation
from operations.charge_item_apply import APPLY
from operations.claim_submit import CLAIM_SUBMIT
from operations.code_systems import CODE_SYSTEM_VALIDATE, LOOKUP, SUBSUMES
from operations.ehr_sync import ENDPOINT_SYNC
from operations.eligibility import COVERAGE_ELIGIBILITY, SUBMIT
from operations.generate_bill import GENERATE_BILL
from operations.import_835 import IMPORT_835
from operations.record_payment import RECORD_PAYMENT
from operations.value_sets import EXPAND, TRANSLATE, VALUE_SET_VALIDATE

OPERATIONS: tuple[Operation, ...] = (SUBMIT, COVERAGE_ELIGIBILITY, GENERATE_BILL, CLAIM_SUBMIT,
                                     IMPORT_835, RECORD_PAYMENT, ENDPOINT_SYNC)
# Terminology (terminology/): code systems, value sets, concept maps.
OPERATIONS += (LOOKUP, CODE_SYSTEM_VALIDATE, SUBSUMES, EXPAND, VALUE_SET_VALIDATE, TRANSLATE,
               APPLY)


def operations_for(type_: str) -> list[Operation]:
    return [op for op in OPERATIONS if type_ in op.resource]
