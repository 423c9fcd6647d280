"""The audit trail of one Subscription's notifications: transmit AuditEvents.

Each failed attempt, and each delivery that needed more than one attempt, is one
AuditEvent (``attempt n: failed`` / ``delivered``). Notifications delivered at the first
attempt are grouped: one AuditEvent names every resource they carried (each an entity),
with the ``period`` from the first to the last, written once ``GROUP_SECONDS`` passed
since the first or ``GROUP_MAX`` resources are named, and when the worker stops. A clinic
with ten Subscriptions on every write would otherwise write ten AuditEvents per write,
which cost more than the notifications themselves (measured: about 0.5 ms of a core
each, half the consumer's time, and the database's write lock besides). Every resource
sent and to whom stays on record; what is grouped is only the time, to the second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fhir_server.audit.events import transmit_event
from fhir_server.storage.model import instant, now_ms
from fhir_server.subscriptions.channel import Channel

GROUP_SECONDS = 1.0
GROUP_MAX = 100

Audit = Callable[[dict[str, Any]], None]


class Transmits:
    def __init__(self, audit: Audit | None, *, base_url: str, subscription: str) -> None:
        self.audit, self.base_url, self.subscription = audit, base_url, subscription
        self._focuses: list[str] = []  # delivered at the first attempt, not yet recorded
        self._first = ""  # when the first of them was delivered (an instant)
        self._since = 0.0  # the same, on the monotonic clock

    def attempted(self, hook: Channel, focuses: Sequence[str], *, delivered: bool,
                  attempt: int) -> None:
        """One attempt to send a notification naming ``focuses`` (none: a handshake or
        a heartbeat)."""
        if self.audit is None:
            return
        if delivered and attempt == 1 and focuses:
            if not self._focuses:
                self._first, self._since = instant(now_ms()), time.monotonic()
            self._focuses.extend(focuses)
            if len(self._focuses) >= GROUP_MAX:
                self.flush(hook)
            return
        self.flush(hook)
        self.audit(transmit_event(
            recorded=instant(now_ms()), base_url=self.base_url,
            subscription=self.subscription, channel=hook.type_,
            destination=hook.destination, delivered=delivered, attempt=attempt,
            focuses=list(focuses)))

    def due_in(self) -> float | None:
        """Seconds until the grouped deliveries are to be recorded (None: none wait)."""
        if not self._focuses:
            return None
        return max(0.0, GROUP_SECONDS - (time.monotonic() - self._since))

    def flush(self, hook: Channel) -> None:
        """Record the grouped deliveries now."""
        if not self._focuses or self.audit is None:
            return
        now = instant(now_ms())
        self.audit(transmit_event(
            recorded=now, base_url=self.base_url, subscription=self.subscription,
            channel=hook.type_, destination=hook.destination, delivered=True,
            attempt=None, focuses=self._focuses, period=(self._first, now)))
        self._focuses = []
