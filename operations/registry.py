"""Every operation this server offers."""

from __future__ import annotations

from operations.base import Operation
from operations.charge_item_apply import APPLY
from operations.claim_submit import CLAIM_SUBMIT
from operations.code_systems import CODE_SYSTEM_VALIDATE, LOOKUP, SUBSUMES
from operations.eligibility import COVERAGE_ELIGIBILITY, SUBMIT
from operations.generate_bill import GENERATE_BILL
from operations.value_sets import EXPAND, TRANSLATE, VALUE_SET_VALIDATE

OPERATIONS: tuple[Operation, ...] = (SUBMIT, COVERAGE_ELIGIBILITY, GENERATE_BILL, CLAIM_SUBMIT)
# Terminology (terminology/): code systems, value sets, concept maps.
OPERATIONS += (LOOKUP, CODE_SYSTEM_VALIDATE, SUBSUMES, EXPAND, VALUE_SET_VALIDATE, TRANSLATE,
               APPLY)


def operations_for(type_: str) -> list[Operation]:
    return [op for op in OPERATIONS if type_ in op.resource]
