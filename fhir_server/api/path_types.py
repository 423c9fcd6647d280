"""URL convertors for the path segments FHIR defines, so that routes can say what they take.

``fhirtype``: a resource type's name (a capital letter, then letters), except
``OperationDefinition``, whose instances the operations' routes serve from their
declarations. ``fhirid``: a logical id (FHIR R4 ``id``: 1 to 64 of ``A-Z a-z 0-9 - .``).
Neither matches a segment that starts with ``$`` or ``_``, so routes that use them never
shadow an operation (``$lookup``) or a special path (``_history``, ``_search``).
``opname``: an operation's name as invoked (``$`` and a code).
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor


class Verbatim(Convertor[str]):
    """A path segment matching ``regex``, passed to the route as it is."""

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class FhirType(Verbatim):
    regex = r"(?!OperationDefinition\b)[A-Z][A-Za-z]{0,63}"


class FhirId(Verbatim):
    regex = r"[A-Za-z0-9\-.]{1,64}"


class OpName(Verbatim):
    regex = r"\$[A-Za-z][A-Za-z0-9\-]{0,63}"


register_url_convertor("fhirtype", FhirType())
register_url_convertor("fhirid", FhirId())
register_url_convertor("opname", OpName())
