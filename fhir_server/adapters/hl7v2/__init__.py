"""HL7 v2 over MLLP: the listener, message parsing, and one mapping module per message
family (adt, siu, dft), after the HL7 v2-to-FHIR Implementation Guide."""

from fhir_server.adapters.hl7v2.listener import start_listener as start
from fhir_server.adapters.hl7v2.listener import stop_listener as stop

__all__ = ["start", "stop"]
