"""Search criteria the server's own code writes for ``interactions.find_resources``: values
escaped as the search syntax asks (``fhir_server/search/parse.py`` reads them back)."""

from __future__ import annotations


def search_token(system: str | None, value: str) -> str:
    """A token search value, its ``,``, ``|``, ``$`` and ``\\`` escaped: ``system|value``,
    or the value alone when there is no system."""
    escaped = "".join(f"\\{c}" if c in ",|$\\" else c for c in value)
    return f"{system}|{escaped}" if system else escaped
