"""MLLP framing with a size limit: ``<VT> message <FS><CR>``, at most N bytes of message.

A block larger than the limit is never held whole: its first bytes (where the MSH is) are
kept, the rest is read and dropped as it arrives, up to its end marker, so that the
connection stays in step and the sender gets its AR (application reject, "do not send
again") instead of a broken connection it would answer by sending the same message
forever. The stream's buffer never holds more than the limit (asyncio pauses reading at
twice the reader's limit, which is the limit plus the start byte).
"""

from __future__ import annotations

import asyncio

from hl7.mllp import InvalidBlockError

START = b"\x0b"
END = b"\x1c\x0d"
HEAD_BYTES = 4096  # kept of an oversized block: enough for its MSH segment


class BlockTooLarge(Exception):
    """A block over the limit was read past and dropped; ``head`` is its beginning."""

    def __init__(self, head: bytes) -> None:
        super().__init__("MLLP block over the limit")
        self.head = head


def reader_limit(max_message: int) -> int:
    """The StreamReader limit for messages of at most ``max_message`` bytes (and <VT>)."""
    return max_message + len(START)


async def read_block(reader: asyncio.StreamReader) -> bytes:
    """The next block's message (without the framing bytes).

    Raises BlockTooLarge (after dropping the block), InvalidBlockError (no start byte) and
    IncompleteReadError (the peer closed)."""
    try:
        block = await reader.readuntil(END)
    except asyncio.LimitOverrunError as over:
        raise BlockTooLarge(await _drop_block(reader, over.consumed)) from None
    if not block.startswith(START):
        raise InvalidBlockError("Block does not begin with Start Block character <VT>")
    return block[len(START):-len(END)]


async def _drop_block(reader: asyncio.StreamReader, consumed: int) -> bytes:
    """Reads and drops the rest of an oversized block, through its end marker; its head.

    ``consumed`` is what the reader says holds no end marker: dropped, then the reader is
    asked again, until the marker comes (asyncio leaves the buffer intact on overrun)."""
    head = b""
    while True:
        dropped = await reader.readexactly(consumed)
        head = head or dropped[:HEAD_BYTES]
        try:
            await reader.readuntil(END)
            return head
        except asyncio.LimitOverrunError as over:
            consumed = over.consumed
