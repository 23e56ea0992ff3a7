"""A base for greenroute's write streams: closing commits, anything else abandons.

Every streamed write in greenroute (the router's, each target's, the ``greenroute://`` file's) has
the same rule: ``close()`` makes the object visible, while leaving a ``with`` block by an exception,
calling ``discard()``, or dropping the stream unclosed abandons it. io's own default would be to
close, and so commit, a half-written object; this base replaces that default in one place.
"""

from __future__ import annotations

import contextlib
import io
from types import TracebackType

__all__ = ["AbandonableWriter"]


class AbandonableWriter(io.IOBase):
    """Mix in before an ``io`` base class; subclasses implement ``close()`` (commit) and :meth:`discard`."""

    def discard(self) -> None:
        """Abandon the write: nothing becomes visible."""
        raise NotImplementedError

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __del__(self) -> None:
        # Dropped without close(): abandoned, never committed half-written.
        if not self.closed:
            with contextlib.suppress(Exception):
                self.discard()
