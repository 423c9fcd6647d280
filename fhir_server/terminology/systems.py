"""URIs this server defines for the links and codes of its revenue-cycle workflows."""

from __future__ import annotations

SERVER_URI = "https://fhir-rcm-server.org"

# Identifier system of a bill's key, shared by its ChargeItems, Invoice and Claim:
# the value is the reference of what was billed ("Appointment/123" or "Encounter/456").
BILL_KEY = "urn:fhir-rcm-server:bill"
# Extension on an Invoice: the Appointment whose booking created it.
INVOICE_APPOINTMENT = f"{SERVER_URI}/StructureDefinition/invoice-appointment"
# On a generated Claim: why its insurance lists the Coverages it does, in that order (valueString).
CLAIM_COVERAGE_CHOICE = f"{SERVER_URI}/StructureDefinition/claim-coverage-choice"
# Codes of Invoice.totalPriceComponent (type informational) after adjudication.
INVOICE_SHARE = f"{SERVER_URI}/CodeSystem/invoice-share"
# Errors this server's payer side reports (CoverageEligibilityResponse / ClaimResponse .error).
ADJUDICATION_ERROR = f"{SERVER_URI}/CodeSystem/adjudication-error"
# Extension on an Endpoint: how to get an OAuth2 token for it (client id, scope).
ENDPOINT_OAUTH = f"{SERVER_URI}/StructureDefinition/endpoint-oauth2"
# Extension on an Endpoint: valueBoolean true to sync this EHR every FHIR_EHR_SYNC_INTERVAL.
ENDPOINT_EHR_SYNC = f"{SERVER_URI}/StructureDefinition/endpoint-ehr-sync"
# Identifier system linking a bill's ChargeItems and Claim to their Invoice ("Invoice/[id]").
BILL_INVOICE = "urn:fhir-rcm-server:invoice"

# HL7 terminology used by the revenue-cycle operations.
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
PROCESS_PRIORITY = "http://terminology.hl7.org/CodeSystem/processpriority"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/ex-paymenttype"
BENEFIT_TYPE = "http://terminology.hl7.org/CodeSystem/benefit-type"
BENEFIT_CATEGORY = "http://terminology.hl7.org/CodeSystem/ex-benefitcategory"
COPAY_TYPE = "http://terminology.hl7.org/CodeSystem/coverage-copay-type"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
ENDPOINT_CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"

# X12 over a clearinghouse (issue #13).
# Endpoint.connectionType of a clearinghouse that takes X12 5010.
X12_CONNECTION = f"{SERVER_URI}/CodeSystem/endpoint-connection-type"
# Extension on such an Endpoint: the trading partner settings (sender, receiver, usage).
X12_PARTNER = f"{SERVER_URI}/StructureDefinition/x12-partner"
# Identifier the outbound Claim carries, sent as CLM01 and echoed in 277CA TRN02 / 835 CLP01.
CLAIM_CONTROL = "urn:fhir-rcm-server:claim"
# Identifier of a PaymentReconciliation posted from an 835: "[payer Organization id]|[TRN02]".
REMITTANCE_TRACE = "urn:fhir-rcm-server:x12-trn"
# Identifier of a ClaimResponse: the payer's claim control number (835 CLP07, 277CA REF*1K).
PAYER_CLAIM_NUMBER = "urn:fhir-rcm-server:x12-payer-claim"
# Type of a DocumentReference holding an X12 interchange sent or received.
X12_DOCUMENT = f"{SERVER_URI}/CodeSystem/x12-transaction"
# X12 external code lists.
X12_CAS_GROUP = "https://x12.org/codes/claim-adjustment-group-codes"
X12_CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
X12_CLAIM_STATUS_CATEGORY = "https://x12.org/codes/claim-status-category-codes"
X12_CLAIM_STATUS = "https://x12.org/codes/claim-status-codes"
X12_PLB_REASON = "https://x12.org/codes/provider-adjustment-reason-codes"
PAYMENT_METHOD = "http://terminology.hl7.org/CodeSystem/v2-0570"
PAYMENT_METHOD_EXTENSION = ("http://hl7.org/fhir/5.0/StructureDefinition/"
                            "extension-PaymentReconciliation.method")
PAYMENT_KIND = "http://terminology.hl7.org/CodeSystem/payment-type"
# The worklist: Task.code of what a background step could not do (bill-visit, submit-claim,
# check-eligibility, post-remittance, notify-patient), for the billing office to fix and retry,
# and of the denials a person works (work-denial).
WORKLIST = f"{SERVER_URI}/CodeSystem/worklist"
# Task.identifier of a worklist Task when a focus holds several items, each its own Task
# (an 835 kept as a DocumentReference: one post-remittance Task per claim payment it holds).
WORKLIST_ITEM = f"{SERVER_URI}/worklist-item"
