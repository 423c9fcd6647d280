"""Annotated dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from fhir_server.core.config import Settings
from fhir_server.storage.repository import Repository


async def get_repo(request: Request) -> Repository:
    """The request's repository: the caller's access bound in (auth/scoped.py)."""
    repo: Repository = getattr(request.state, "repo", None) or request.app.state.repo
    return repo


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


RepoDep = Annotated[Repository, Depends(get_repo)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
