"""Each expansion of a value set has ``FHIR_TERMINOLOGY_EXPANSION_TIMEOUT`` in the concept
store: ``$expand``, ``ValueSet/$validate-code`` and the code set a search's ``:in`` or
``:not-in`` stores. Its queries stop at the deadline (``storage/deadline.py``), having
written nothing, and the client gets a 422 ``too-costly`` that names the bound.

The bound starts once the value set's plan is made (``compose.py``), so indexing a
changed code system on its first use (``catalog.py``) does not count against it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from fhir_server.core.config import Settings
from fhir_server.core.errors import Unprocessable
from fhir_server.storage.deadline import QueryTimeout, within


@contextmanager
def expansion_time(settings: Settings, *, expression: Sequence[str] = ()) -> Iterator[None]:
    seconds = settings.fhir_terminology_expansion_timeout
    try:
        with within(seconds):
            yield
    except QueryTimeout:
        raise Unprocessable(
            f"The value set's expansion took longer than this server allows ({seconds:g} s); "
            "narrow it (a regex filter reads every concept of its code system)",
            expression=expression, code="too-costly") from None
