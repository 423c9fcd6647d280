"""The operations' OperationDefinitions, stored as resources so that
``[base]/OperationDefinition/[id]`` reads (and searches) them like any other."""

from __future__ import annotations

from fhir_server import interactions as svc
from fhir_server.config import Settings
from fhir_server.storage.repository import Repository
from operations.registry import OPERATIONS


async def publish_operation_definitions(*, repo: Repository, settings: Settings) -> None:
    """Write each definition whose stored version is missing or different (at start-up)."""
    for op in OPERATIONS:
        definition = op.definition()
        _, current = await svc.current_resource(repo, "OperationDefinition", op.id)
        if current is not None and {k: v for k, v in current.items() if k != "meta"} == definition:
            continue
        await svc.update(repo=repo, settings=settings, type_="OperationDefinition", id_=op.id,
                         resource=definition)
