"""Entry-point lookups for adapters, with each group scanned once per process.

``importlib.metadata.entry_points`` reads every installed distribution's metadata on each call (about
16 ms in a typical environment), and a router build asks for several groups. The installed set does not
change under a running process in any way greenroute supports, so each group's scan is cached; call
:func:`clear_entry_point_cache` after installing a distribution in-process (tests do).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = ["clear_entry_point_cache", "entry_point_names", "load_entry_point"]


@functools.cache
def _group(group: str) -> Mapping[str, EntryPoint]:
    # Imported here: importlib.metadata (and the email package it loads) costs more than the rest of
    # ``import greenroute.config``, and a process whose config names no adapter never needs it.
    from importlib.metadata import entry_points

    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        # The first distribution that declares a name wins, as the uncached loops did.
        found.setdefault(ep.name, ep)
    return MappingProxyType(found)


def load_entry_point(group: str, name: str) -> Any | None:
    """Load the object the entry point ``name`` of ``group`` names, or ``None`` when none is installed.

    Args:
        group: The entry-point group, e.g. ``"greenroute.targets"``.
        name: The entry point's name in that group, e.g. ``"memory"``.

    Returns:
        The loaded object (usually a factory), or ``None`` when nothing installed declares ``name``.

    Raises:
        ImportError: The entry point is declared but its module cannot be imported (a missing extra);
            callers turn this into an install hint.

    Example:
        >>> factory = load_entry_point("greenroute.targets", "memory")
        >>> factory is not None
        True
    """
    ep = _group(group).get(name)
    return None if ep is None else ep.load()


def entry_point_names(group: str) -> tuple[str, ...]:
    """The names installed in ``group``, sorted (for "did you mean" messages and listings)."""
    return tuple(sorted(_group(group)))


def clear_entry_point_cache() -> None:
    """Forget the cached scans, so the next lookup sees distributions installed since."""
    _group.cache_clear()
