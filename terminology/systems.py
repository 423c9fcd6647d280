"""URIs this server defines for the links and codes of its revenue-cycle workflows."""

from __future__ import annotations

SERVER_URI = "https://fhir-rcm-server.org"

# Identifier system of a bill's key, shared by its ChargeItems, Invoice and Claim:
# the value is the reference of what was billed ("Appointment/123" or "Encounter/456").
BILL_KEY = "urn:fhir-rcm-server:bill"
# Extension on an Invoice: the Appointment whose booking created it.
INVOICE_APPOINTMENT = f"{SERVER_URI}/StructureDefinition/invoice-appointment"
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
