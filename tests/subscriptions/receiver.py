"""A rest-hook receiver on loopback: notes every request it gets, answers a chosen status."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.loopback import serve_in_thread


@dataclass(frozen=True)
class Got:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    url: str = ""
    got: list[Got] = field(default_factory=list)
    status: int = 200
    delays: list[float] = field(default_factory=list)  # seconds before answering, in turn

    async def until(self, count: int, timeout: float = 10.0) -> list[Got]:
        deadline = time.monotonic() + timeout
        while len(self.got) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.got)} notifications arrived, not {count}")
            await asyncio.sleep(0.02)
        return list(self.got)

    def delivered(self) -> list[Got]:
        return [g for g in self.got if 200 <= g.answered < 300]


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    async def hook(request: Request) -> Response:
        if state.delays:
            await asyncio.sleep(state.delays.pop(0))
        state.got.append(Got(method=request.method, path=request.url.path,
                             headers={k.lower(): v for k, v in request.headers.items()},
                             body=await request.body(), answered=state.status))
        return Response(status_code=state.status)

    app = Starlette(routes=[Route("/{path:path}", hook, methods=["POST", "PUT"])])
    with serve_in_thread(app) as url:
        state.url = url
        yield state
