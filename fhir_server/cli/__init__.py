"""Every command of ``fhir-server``."""
