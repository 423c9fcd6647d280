"""What the system history lists: the versions a test's writes made, to check against."""

from __future__ import annotations

import httpx


async def versions_listed(client: httpx.AsyncClient) -> set[tuple[str, int]]:
    """Every version the system history lists (AuditEvents aside: the server's own log adds
    no events)."""
    r = await client.get("_history", params={"_count": 1000})
    assert r.status_code == 200, r.text
    found = set()
    for entry in r.json().get("entry", []):
        if "resource" in entry:
            res = entry["resource"]
            key = (f"{res['resourceType']}/{res['id']}", int(res["meta"]["versionId"]))
        else:  # a deletion: its request names it, its etag its version
            key = (entry["request"]["url"], int(entry["response"]["etag"].split('"')[1]))
        if not key[0].startswith("AuditEvent/"):
            found.add(key)
    return found
