"""Choosing and opening the storage engine at start-up.

``MONGODB_URI`` set: MongoDB (a replica set or sharded cluster in production;
FerretDB stands in for it in the tests). Unset: the embedded SQLite database
``FHIR_DATA_DIR/fhir.sqlite3``.
"""

from __future__ import annotations

from pathlib import Path

from fhir_server.core.config import Settings
from fhir_server.storage.locks import Locks
from fhir_server.storage.repository import DatabaseUnavailable, Repository

SQLITE_FILE = "fhir.sqlite3"
OLD_FERRETDB_DIR = "ferretdb"  # what the embedded FerretDB of earlier versions left


class StorageError(RuntimeError):
    """The configured storage cannot be used; the message says what to do."""


def sqlite_path(settings: Settings) -> Path:
    return settings.fhir_data_dir / SQLITE_FILE


def check_data_dir(settings: Settings) -> None:
    """Refuse a data directory written by the old embedded FerretDB, saying how to move it."""
    data_dir = settings.fhir_data_dir
    if (data_dir / OLD_FERRETDB_DIR).is_dir() and not sqlite_path(settings).exists():
        raise StorageError(
            f"{data_dir} holds a database of the embedded FerretDB engine of earlier versions "
            f"({data_dir / OLD_FERRETDB_DIR}); the embedded engine is SQLite now. To move the "
            f"data: 'fhir-server export --from-ferretdb {data_dir} --out DIR' (needs Go, as "
            f"before), then rename {data_dir / OLD_FERRETDB_DIR} (to keep it) and run "
            f"'fhir-server load DIR'. Or keep serving it through MongoDB by setting MONGODB_URI.")


async def missing_database(settings: Settings) -> str | None:
    """None when the configured database holds this server's data; else what is missing,
    in one sentence. On SQLite: the file ``FHIR_DATA_DIR/fhir.sqlite3`` (or a folder of the
    old embedded FerretDB, which ``check_data_dir`` explains). On MongoDB: the database's
    ``history`` collection, which every opening of the database makes (its indexes) before
    anything is written. Creates nothing."""
    if not settings.mongodb_uri:
        path = sqlite_path(settings).absolute()
        if path.exists() or (settings.fhir_data_dir / OLD_FERRETDB_DIR).is_dir():
            return None
        relative = "" if settings.fhir_data_dir.is_absolute() else ", from the current folder"
        return (f"there is no database at {path} "
                f"(FHIR_DATA_DIR={settings.fhir_data_dir}{relative})")
    from fhir_server.storage.mongo.engine import make_client
    from fhir_server.storage.mongo.versions import HISTORY

    client = make_client(settings.mongodb_uri)
    try:
        names = await client[settings.mongodb_database].list_collection_names()
    finally:
        await client.close()
    if HISTORY in names:
        return None
    return (f"the MongoDB database {settings.mongodb_database!r} (MONGODB_DATABASE) holds no "
            f"database of this server (no {HISTORY!r} collection)")


async def open_repository(settings: Settings) -> Repository:
    """The repository of the configured engine, opened (schema or indexes, recovery)."""
    repo: Repository
    if settings.mongodb_uri:
        from fhir_server.storage.mongo.engine import database, detect_engine, make_client
        from fhir_server.storage.mongo.repository import MongoRepository

        client = make_client(settings.mongodb_uri)
        try:
            engine = await detect_engine(client)
        except BaseException:
            await client.close()
            raise
        repo = MongoRepository(client=client, db=database(client, settings.mongodb_database,
                                                          engine), engine=engine)
    else:
        from fhir_server.storage.sqlite.repository import SqliteRepository

        check_data_dir(settings)
        repo = SqliteRepository(path=sqlite_path(settings),
                                synchronous=settings.fhir_sqlite_synchronous)
    repo.locks = Locks(repo.records, lease=settings.fhir_lease_seconds)
    try:
        await repo.open()
    except BaseException:
        await repo.close()
        raise
    return repo


def unavailable_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the database cannot be reached (answered 503)."""
    from fhir_server.storage.mongo.engine import UNAVAILABLE_ERRORS

    return (*UNAVAILABLE_ERRORS, DatabaseUnavailable)
