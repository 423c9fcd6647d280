"""External systems behind Protocols (payers, EHRs), with their resilience."""
