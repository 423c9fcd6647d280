"""A FHIR R4 server for the clinic revenue cycle, on MongoDB."""

__version__ = "0.1.0"
