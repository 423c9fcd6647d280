"""A short seeded run of the fuzzer (tools/fuzz_requests.py; bench/fuzz.py runs it long
against a server process) against the app in-process: no request may answer 5xx."""

from __future__ import annotations

import os

import httpx

from tools.data_sets import EXAMPLES
from tools.fuzz_requests import Capability, Fuzzer, FuzzRequest, load_examples

SEED = int(os.environ.get("FHIR_FUZZ_SEED", "20261206"))  # another seed: explore further
REQUESTS = 400  # about 10 s on either engine


async def send(client: httpx.AsyncClient, req: FuzzRequest) -> httpx.Response:
    url = client.base_url.copy_with(raw_path=client.base_url.raw_path + req.path.encode())
    return await client.request(req.method, url, content=req.body, headers=req.headers)


async def test_fuzzed_requests_never_answer_5xx(client: httpx.AsyncClient) -> None:
    capability = Capability.parse((await client.get("metadata")).json())
    fuzzer = Fuzzer(SEED, capability, load_examples(EXAMPLES, set(capability.params)))
    for req in fuzzer.seed_requests(40):
        assert (await send(client, req)).status_code < 300, req.path
    failures = []
    statuses = set()
    for _ in range(REQUESTS):
        req = fuzzer.next()
        resp = await send(client, req)
        statuses.add(resp.status_code)
        if resp.status_code >= 500:
            failures.append(f"{resp.status_code} {req.excerpt(200)}")
    assert not failures, "\n".join(failures)
    # The run reached the server's handlers, not only its front door:
    assert {200, 201, 400} <= statuses, statuses
