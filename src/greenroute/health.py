"""Backend health: a small circuit breaker per backend.

When a write to a backend fails with a fault worth failing over (connection error, timeout,
5xx), the router marks it failed; the placement service then skips it for a cool-down. If every
eligible backend is cooling down, they are tried anyway (half-open), so the breaker can never turn
a partial outage into a total one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BackendHealth"]


class BackendHealth:
    """Tracks which backends are cooling down after a failure. Thread-safe.

    Example:
        >>> now = [0.0]
        >>> health = BackendHealth(cooldown_seconds=30, clock=lambda: now[0])
        >>> health.mark_failed("aws-us-east-1", "connection refused")
        >>> health.is_healthy("aws-us-east-1")
        False
        >>> now[0] = 31.0
        >>> health.is_healthy("aws-us-east-1")
        True
    """

    def __init__(self, cooldown_seconds: float = 30.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open: dict[str, tuple[float, str]] = {}

    def mark_failed(self, backend_id: str, reason: str) -> None:
        """Open the breaker for ``backend_id`` for one cool-down."""
        with self._lock:
            self._open[backend_id] = (self._clock() + self.cooldown_seconds, reason)

    def mark_ok(self, backend_id: str) -> None:
        """Close the breaker after a success."""
        if backend_id in self._open:
            with self._lock:
                self._open.pop(backend_id, None)

    def any_open(self) -> bool:
        """Whether any breaker is (or was, until checked) open: a cheap test for the hot path."""
        return bool(self._open)

    def is_healthy(self, backend_id: str) -> bool:
        """False while ``backend_id`` is cooling down."""
        return self.unhealthy_reason(backend_id) is None

    def unhealthy_reason(self, backend_id: str) -> str | None:
        """Why ``backend_id`` is cooling down, or ``None`` when it is healthy."""
        if not self._open:
            return None
        with self._lock:
            entry = self._open.get(backend_id)
            if entry is None:
                return None
            until, reason = entry
            remaining = until - self._clock()
            if remaining <= 0:
                del self._open[backend_id]
                return None
        return f"unhealthy for {remaining:.0f} s more after: {reason}"
