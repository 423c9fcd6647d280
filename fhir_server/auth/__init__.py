"""SMART on FHIR: the authorization server, tokens, scopes, roles and their enforcement."""
