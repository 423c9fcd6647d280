"""Circuit breakers and retry pacing for calls to external systems."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field


@dataclass
class CircuitBreaker:
    """Closed until ``failures`` consecutive failures; then open for ``reset`` seconds,
    after which one trial call is let through (half-open): success closes it, failure
    opens it again."""

    failures: int
    reset: float
    consecutive: int = 0
    opened_at: float | None = None
    trial_running: bool = False
    clock: object = field(default=time.monotonic, repr=False)

    def _now(self) -> float:
        return float(self.clock())  # type: ignore[operator]

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self._now() - self.opened_at < self.reset or self.trial_running:
            return False
        self.trial_running = True  # half-open: this caller is the trial
        return True

    def succeeded(self) -> None:
        self.consecutive = 0
        self.opened_at = None
        self.trial_running = False

    def failed(self) -> None:
        self.consecutive += 1
        self.trial_running = False
        if self.opened_at is not None or self.consecutive >= self.failures:
            self.opened_at = self._now()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._now() - self.opened_at >= self.reset else "open"


def backoff_delay(attempt: int, *, base: float = 0.2, cap: float = 2.0) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return random.uniform(0, min(cap, base * 2 ** attempt))
