"""The audit trail: an AuditEvent for every FHIR interaction and every login, written in
batches off the request path (``trail.py``), built from identifiers only (``events.py``)."""
