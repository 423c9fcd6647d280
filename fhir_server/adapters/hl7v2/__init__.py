"""HL7 v2 over MLLP: the listener (``listener.py``), message parsing, and one mapping module
per message family (adt, siu, dft), after the HL7 v2-to-FHIR Implementation Guide.

The package imports none of its modules: they import each other (``segments``), and an
``__init__`` that imported the listener made every one of them a cycle through it."""
