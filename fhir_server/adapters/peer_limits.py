"""How much of a peer's answer this server reads: answers are read as they arrive and
cut off past a bound, so a peer (an Endpoint address anyone allowed to write one sets)
cannot make a worker hold a multi-gigabyte or endless answer.

A declared ``Content-Length`` over the bound is refused before the body is read; without
one (chunked, or a connection closed at the end) the bytes are counted as they arrive,
after decompression, and the connection is dropped as soon as the count passes the
bound. Either way the call fails as every peer failure does (``peer_errors.py``: one
generic message for the caller, "answer over N bytes" in the log), and is not retried:
the peer would send the same answer again.
"""

from __future__ import annotations

import httpx


class AnswerTooLarge(Exception):
    """The peer's answer is larger than this call reads (the connection was dropped)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"answer over {max_bytes} bytes")
        self.max_bytes = max_bytes


async def send_bounded(client: httpx.AsyncClient, request: httpx.Request, *,
                       max_bytes: int) -> httpx.Response:
    """``client.send(request)``, with the answer's content read under ``max_bytes``
    (``AnswerTooLarge`` past it; httpx's errors as they come)."""
    response = await client.send(request, stream=True)
    try:
        declared = response.headers.get("content-length", "")
        if declared.strip().isdigit() and int(declared) > max_bytes:
            raise AnswerTooLarge(max_bytes)
        chunks: list[bytes] = []
        count = 0
        async for chunk in response.aiter_bytes():
            count += len(chunk)
            if count > max_bytes:
                raise AnswerTooLarge(max_bytes)
            chunks.append(chunk)
        # What ``Response.aread()`` does, with the bytes counted on the way.
        response._content = b"".join(chunks)
    finally:
        # Read whole: the connection goes back to the pool. Cut off: it is closed, not
        # read to its end.
        await response.aclose()
    return response
