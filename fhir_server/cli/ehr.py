"""``fhir-server ehr sync ENDPOINT_ID``: pull from an EHR once, in-process, and print the
summary (the same ``Endpoint/[id]/$sync`` the API offers; exit 1 when it failed)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import httpx

from fhir_server.core.config import Settings

SYNC_SCOPE = "system/*.cruds"


def arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ehr_command", metavar="ACTION", required=True)
    sync = sub.add_parser("sync", help="pull what changed in an EHR since the last sync")
    sync.add_argument("endpoint_id", help="id of the EHR's Endpoint on this server")
    sync.add_argument("--type", action="append", default=[], help="a type to sync (repeat)")
    sync.add_argument("--since", help="sync what changed since this instant")
    sync.add_argument("--bulk", action="store_true", help="use the EHR's Bulk Data $export")


def run(args: argparse.Namespace, settings: Settings) -> int:
    status, body = asyncio.run(_sync(args, settings))
    if status != 200:
        print(f"sync failed: HTTP {status}", file=sys.stderr)
        for issue in body.get("issue", []):
            print(f"  {issue.get('diagnostics', '')}", file=sys.stderr)
        return 1
    for result in body.get("parameter", []):
        parts = {p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                 for p in result.get("part", [])}
        print(" ".join(f"{k}={v}" for k, v in parts.items()))
    return 0


async def _sync(args: argparse.Namespace, settings: Settings) -> tuple[int, dict[str, Any]]:
    from fhir_server.auth.tokens import Grant
    from fhir_server.main import create_app

    app = create_app(settings.model_copy(update={"fhir_hl7v2_port": None}))
    async with app.router.lifespan_context(app):
        headers = {"Content-Type": "application/fhir+json"}
        if settings.fhir_auth != "off":
            token = await app.state.auth.issue_access_token(
                Grant(client_id="fhir-server-ehr-sync", scope=SYNC_SCOPE), lifetime=3600)
            headers["Authorization"] = f"Bearer {token}"
        params = [{"name": "type", "valueCode": t} for t in args.type]
        if args.bulk:
            params.append({"name": "bulk", "valueBoolean": True})
        if args.since:
            params.append({"name": "since", "valueDateTime": args.since})
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=None,
                                     base_url=settings.base_url + "/") as http:
            r = await http.post(f"Endpoint/{args.endpoint_id}/$sync", headers=headers,
                                content=json.dumps({"resourceType": "Parameters",
                                                    "parameter": params}))
            return r.status_code, r.json()
