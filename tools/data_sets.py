"""Where the data sets of the tests, benchmarks and generators live: ``data/`` in the
repository (its README gives each set's source, version and licence), so that a clone
needs nothing beside it.

The FHIR definition files are stored gzipped (24 MB of JSON, 2.7 MB compressed);
``definition`` reads one by its published name."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
EXAMPLES = DATA / "fhir-r4-examples"  # one official R4 example resource per file
DEFINITIONS = DATA / "fhir-r4-definitions"  # FHIR 4.0.1 definition Bundles, gzipped
SYNTHEA_BUNDLES = DATA / "synthea-bundles"  # one Synthea patient per Bundle
SYNTHEA_BULK = DATA / "synthea-bulk-10"  # a Synthea bulk export, one NDJSON file per type


def definition_path(name: str) -> Path:
    """The stored file of a definition file named as published (``valuesets.json``)."""
    return DEFINITIONS / f"{name}.gz"


def read_json(path: Path) -> Any:
    """A JSON file, gzipped when its name ends in ``.gz``."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw)


def definition(name: str) -> Any:
    """One of the FHIR R4 definition files, by its published name (``valuesets.json``)."""
    return read_json(definition_path(name))
