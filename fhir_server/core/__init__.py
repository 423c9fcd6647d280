"""The base every room stands on: settings, errors, FHIR JSON, money."""
