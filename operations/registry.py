"""Every operation this server offers."""

from __future__ import annotations

from operations.base import Operation
from operations.claim_submit import CLAIM_SUBMIT
from operations.ehr_sync import ENDPOINT_SYNC
from operations.eligibility import COVERAGE_ELIGIBILITY, SUBMIT
from operations.generate_bill import GENERATE_BILL
from operations.import_835 import IMPORT_835
from operations.record_payment import RECORD_PAYMENT

OPERATIONS: tuple[Operation, ...] = (SUBMIT, COVERAGE_ELIGIBILITY, GENERATE_BILL, CLAIM_SUBMIT,
                                     IMPORT_835, RECORD_PAYMENT, ENDPOINT_SYNC)


def operations_for(type_: str) -> list[Operation]:
    return [op for op in OPERATIONS if type_ in op.resource]
