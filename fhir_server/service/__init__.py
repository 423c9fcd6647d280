"""The FHIR interactions: read, write, history, bundles, patch, per-type rules."""
