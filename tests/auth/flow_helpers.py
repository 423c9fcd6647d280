"""Helpers for driving the SMART authorization server over HTTP like an app and a browser."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from fastapi import FastAPI

from fhir_server.auth.clients import register_client
from fhir_server.auth.tokens import AuthService, Grant
from fhir_server.auth.users import add_user
from fhir_server.main import create_app
from tests.support.store import BASE, Store, make_settings

ORIGIN = BASE.removesuffix("/fhir")
AUTHORIZE = f"{ORIGIN}/auth/authorize"
TOKEN = f"{ORIGIN}/auth/token"
REDIRECT = "https://app.example.org/callback"
PASSWORD = "correct horse battery"


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636 appendix B), computed here."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Form:
    """The first <form> of a page: its method, action and fields (hidden, text, radio)."""

    method: str = "get"
    action: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    inputs: list[dict[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and self.form is None:
            self.form = Form(method=values.get("method", "get").lower(), action=values.get("action"))
        elif tag == "input" and self.form is not None:
            self.form.inputs.append(values)
            if values.get("type") == "hidden":
                self.form.fields[values["name"]] = values.get("value", "")


def parse_form(html: str) -> Form:
    parser = _FormParser()
    parser.feed(html)
    assert parser.form is not None, "the page has no form"
    return parser.form


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@asynccontextmanager
async def running_app(store: Store,
                      **overrides: object) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(make_settings(store, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            yield app, http


def service(app: FastAPI) -> AuthService:
    auth: AuthService = app.state.auth
    return auth


async def app_client(app: FastAPI, *, scope: str, confidential: bool = False,
                     client_id: str | None = None) -> tuple[str, str | None]:
    client, secret = await register_client(
        store=service(app).store, name="Test app", scope=scope, redirect_uris=[REDIRECT],
        confidential=confidential, client_id=client_id)
    return client.client_id, secret


async def user(app: FastAPI, username: str, role: str, *, patients: tuple[str, ...] = (),
               fhir_user: str | None = None) -> None:
    await add_user(store=service(app).store, username=username, password=PASSWORD, role=role,
                   patients=list(patients), fhir_user=fhir_user)


async def admin_token(app: FastAPI) -> str:
    """A system token for setting up test data (issued by the service, as the CLI does)."""
    return await service(app).issue_access_token(
        Grant(client_id="test-setup", scope="system/*.cruds"))


async def create(app: FastAPI, http: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {await admin_token(app)}",
               "Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    response = await http.post(f"{BASE}/{resource['resourceType']}", json=resource, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@dataclass
class AuthorizeParams:
    client_id: str
    scope: str
    challenge: str
    redirect_uri: str = REDIRECT
    state: str = field(default_factory=lambda: secrets.token_urlsafe(8))
    aud: str = BASE
    launch: str | None = None
    nonce: str | None = None
    method: str = "S256"

    def query(self) -> dict[str, str]:
        out = {"response_type": "code", "client_id": self.client_id, "redirect_uri": self.redirect_uri,
               "scope": self.scope, "state": self.state, "aud": self.aud,
               "code_challenge": self.challenge, "code_challenge_method": self.method}
        if self.launch:
            out["launch"] = self.launch
        if self.nonce:
            out["nonce"] = self.nonce
        return out


async def login(http: httpx.AsyncClient, params: AuthorizeParams, *, username: str,
                password: str = PASSWORD) -> httpx.Response:
    """GET authorize, fill in the login form, post it to the same URL; the answer to the post."""
    page = await http.get(AUTHORIZE, params=params.query())
    assert page.status_code == 200, page.text
    form = parse_form(page.text)
    assert form.method == "post" and form.action in (None, "")
    names = {i.get("name") for i in form.inputs}
    assert {"username", "password"} <= names
    return await http.post(str(page.url), data={**form.fields, "username": username,
                                                "password": password})


def code_from(response: httpx.Response, params: AuthorizeParams) -> str:
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(params.redirect_uri + "?")
    query = query_of(location)
    assert query["state"] == params.state
    return query["code"]


async def exchange(http: httpx.AsyncClient, *, code: str, verifier: str, client_id: str,
                   redirect_uri: str = REDIRECT, secret: str | None = None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier}
    if secret is None:
        return await http.post(TOKEN, data={**data, "client_id": client_id})
    return await http.post(TOKEN, data=data, auth=(client_id, secret))
