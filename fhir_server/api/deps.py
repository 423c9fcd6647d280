"""Annotated dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fhir_server.auth.enforce import request_access
from fhir_server.core.config import Settings
from fhir_server.storage.repository import Repository


async def get_repo(request: Request) -> Repository:
    """The request's repository: the caller's access bound in by ``enforce_request``
    (auth/enforce.py), which every router handing out a repository depends on. A route
    outside it gets none (500, internal error), never the app's unscoped repository."""
    _, repo = request_access(request)
    return repo


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RepoDep = Annotated[Repository, Depends(get_repo)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
