"""One correction to the pinned FHIR models (``fhir.resources`` 8.3.0 on ``fhir-core``),
applied when ``models.py`` (the R4 model lookup) is imported.

``fhir_core.types.Url`` validates a ``url`` element by calling ``.startswith`` on the
value once pydantic has refused it, so a number or an object where R4 has a ``url``
(``Endpoint.address``, ``Subscription.channel.endpoint``, ...) escaped validation as an
``AttributeError``: a 500 instead of a 400 naming the element. A value that is not a
string is now refused first with a ``ValueError``, which pydantic reports like any other
invalid value, with its location.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_core.types import Url
from pydantic_core import Url as PydanticUrl

_validate_url = Url.__dict__["_validate_url"].__func__


def _validate_url_string(cls: type[Url], input_value: Any, validator: Callable[[Any], Any]
                         ) -> Any:
    if not isinstance(input_value, str | PydanticUrl):
        raise ValueError("A url must be a JSON string")
    return _validate_url(cls, input_value, validator)


Url._validate_url = classmethod(_validate_url_string)  # type: ignore[assignment,method-assign]
