"""Small builders for test resources."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from tools.data_sets import EXAMPLES


def patient(*, family: str = "Chalmers", given: str = "Peter", gender: str = "male",
            birth_date: str = "1974-12-25", identifier: tuple[str, str] | None = None,
            id_: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family,
                                                                "given": [given]}],
                           "gender": gender, "birthDate": birth_date}
    if identifier is not None:
        res["identifier"] = [{"system": identifier[0], "value": identifier[1]}]
    if id_ is not None:
        res["id"] = id_
    return res


def example(name: str) -> dict[str, Any]:
    """An official R4 example, decimals kept exact."""
    return load_json(EXAMPLES / name)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(), parse_float=Decimal)


def without_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}
