"""Connecting to MongoDB or FerretDB and finding out what the engine can do."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient, WriteConcern
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from fhir_server.storage.repository import EngineInfo

log = logging.getLogger("fhir_server.storage")


@dataclass(frozen=True)
class MongoEngine:
    """What the connected MongoDB-compatible server supports, detected at start-up."""

    info: EngineInfo
    # FerretDB 1.24 rejects $elemMatch with field conditions on arrays of sub-documents.
    elem_match_subdocuments: bool = True
    # FerretDB 1.24 on SQLite evaluates every filter by scanning (only _id is pushed down).
    uses_indexes: bool = True

    @property
    def write_concern(self) -> WriteConcern:
        # Majority needs a replica set; a standalone acknowledges with w=1.
        return WriteConcern(w="majority") if self.info.replica_set else WriteConcern(w=1)


# Raised by the driver when the database cannot be reached; answered as 503.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (ConnectionFailure,)


def make_client(uri: str, **kwargs: Any) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(uri, tz_aware=True, uuidRepresentation="standard",
                            serverSelectionTimeoutMS=10_000, **kwargs)


async def detect_engine(client: AsyncMongoClient[dict[str, Any]]) -> MongoEngine:
    hello = await client.admin.command("hello")
    build = await client.admin.command("buildInfo")
    is_ferret = any(k.startswith("ferretdb") for k in build)  # ferretdbVersion, ferretdbFeatures
    version = str(build.get("version", "unknown"))
    replica_set = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
    # Multi-document transactions need a replica set or sharded cluster on
    # MongoDB 4.2+; FerretDB has none (no startSession/commitTransaction).
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    transactions = (not is_ferret) and replica_set and major >= 4
    info = EngineInfo(name="ferretdb" if is_ferret else "mongodb", version=version,
                      replica_set=replica_set, transactions=transactions)
    log.info("database engine=%s version=%s replica_set=%s transactions=%s",
             info.name, info.version, info.replica_set, info.transactions)
    return MongoEngine(info=info, elem_match_subdocuments=not is_ferret,
                       uses_indexes=not is_ferret)


def database(client: AsyncMongoClient[dict[str, Any]], name: str,
             engine: MongoEngine) -> AsyncDatabase[dict[str, Any]]:
    return client.get_database(name, write_concern=engine.write_concern)
