"""Failed sign-ins lock a username for a while: password guessing is slowed."""

from __future__ import annotations

import asyncio

import pytest

from tests.auth.flow_helpers import (
    AuthorizeParams,
    app_client,
    code_from,
    login,
    pkce,
    running_app,
    user,
)
from tests.support.store import Store

APP_SCOPES = "openid fhirUser user/*.rs"
LIMIT = 3
LOCKOUT = 6  # seconds: three argon2 checks fit in it even on a busy machine


@pytest.mark.slow
async def test_a_username_is_locked_after_repeated_failures(store: Store) -> None:
    async with running_app(store, fhir_auth_login_max_failures=LIMIT,
                           fhir_auth_login_lockout_seconds=LOCKOUT) as (app, http):
        client_id, _ = await app_client(app, scope=APP_SCOPES)
        await user(app, "doc", "clinician")
        await user(app, "nurse", "clinician")
        _, challenge = pkce()
        params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs")
        for _ in range(LIMIT):
            assert (await login(http, params, username="doc", password="guess")).status_code == 401
        # Locked: even the right password is refused, without checking it.
        locked = await login(http, params, username="doc")
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.text
        # Another user is not locked by doc's failures (their address is, only much later).
        code_from(await login(http, params, username="nurse"), params)
        await asyncio.sleep(LOCKOUT + 1)
        code_from(await login(http, params, username="doc"), params)


async def test_many_failures_from_one_address_lock_it(store: Store) -> None:
    async with running_app(store, fhir_auth_login_max_failures=LIMIT) as (app, http):
        client_id, _ = await app_client(app, scope=APP_SCOPES)
        await user(app, "doc", "clinician")
        _, challenge = pkce()
        params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs")
        for i in range(LIMIT * 4):  # different usernames each time: a spraying guesser
            await login(http, params, username=f"someone{i}", password="guess")
        assert (await login(http, params, username="doc")).status_code == 429


async def test_concurrent_guesses_cannot_pass_the_limit_together(store: Store) -> None:
    async with running_app(store, fhir_auth_login_max_failures=LIMIT) as (app, http):
        client_id, _ = await app_client(app, scope=APP_SCOPES)
        await user(app, "doc", "clinician")
        _, challenge = pkce()
        params = AuthorizeParams(client_id=client_id, challenge=challenge, scope="user/*.rs")
        guesses = 4 * LIMIT  # within the address's limit: only the username's applies
        answers = await asyncio.gather(*[login(http, params, username="doc", password=f"g{i}")
                                         for i in range(guesses)])
        codes = sorted(a.status_code for a in answers)
        assert codes == [401] * LIMIT + [429] * (guesses - LIMIT), codes
        assert (await login(http, params, username="doc")).status_code == 429
