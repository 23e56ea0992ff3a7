"""A small in-process event bus, and an audit sink that appends one JSON line per decision.

Topics:

* ``storage.backend.registered``: payload is a :class:`~greenroute.model.Backend`. The placement
  service subscribes and registers the backend's score inputs.
* ``sustainability.placement.decision``: payload is a
  :class:`~greenroute.model.CarbonPlacementDecision`, published on every decision.

A subscriber that raises is logged and skipped; it never breaks the publisher.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["BACKEND_REGISTERED", "PLACEMENT_DECISION", "AuditLogSink", "EventBus", "Handler"]

log = logging.getLogger(__name__)

BACKEND_REGISTERED = "storage.backend.registered"
PLACEMENT_DECISION = "sustainability.placement.decision"

Handler = Callable[[Any], None]


class EventBus:
    """Synchronous publish/subscribe by topic name. Thread-safe.

    Example:
        >>> bus = EventBus()
        >>> seen = []
        >>> unsubscribe = bus.subscribe("demo", seen.append)
        >>> bus.publish("demo", 42)
        1
        >>> seen
        [42]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def subscribe(self, topic: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(payload)`` for each event on ``topic``.

        Returns:
            A function that removes the subscription.
        """
        with self._lock:
            self._handlers[topic].append(handler)

        def unsubscribe() -> None:
            with self._lock:
                if handler in self._handlers[topic]:
                    self._handlers[topic].remove(handler)

        return unsubscribe

    def publish(self, topic: str, payload: Any) -> int:
        """Deliver ``payload`` to every subscriber of ``topic``, in subscription order.

        Returns:
            How many handlers ran without raising.
        """
        if not self._handlers.get(topic):
            return 0
        with self._lock:
            handlers = list(self._handlers.get(topic, ()))
        delivered = 0
        for handler in handlers:
            try:
                handler(payload)
                delivered += 1
            except Exception:
                log.exception("subscriber %r failed on %s", handler, topic)
        return delivered


class AuditLogSink:
    """Appends one JSON line per placement decision to a file.

    Subscribe it with ``bus.subscribe(PLACEMENT_DECISION, sink)``. Each line is the decision's
    ``to_dict()``, which holds no secrets. Writes from many threads never interleave.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __call__(self, decision: Any) -> None:
        line = json.dumps(decision.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line)

    def __repr__(self) -> str:
        return f"AuditLogSink({str(self.path)!r})"
