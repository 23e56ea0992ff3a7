"""greenroute's exceptions.

Every error greenroute raises on purpose is a :class:`GreenrouteError` (or, at a filesystem
boundary, the matching builtin :class:`OSError` subclass)::

    GreenrouteError
    ├── ConfigError                  a config file, registry file or argument is invalid
    │   └── UnknownRegionError       a cloud region or grid zone greenroute has no data for
    ├── GridDataError                a grid data source could not give a value
    │   ├── GridDataUnavailableError no usable value (down, no credentials, null intensity)
    │   ├── GridAccessDeniedError    the account may not read this region (WattTime 403 scope)
    │   └── GridUnitsError           the provider answered in units greenroute does not know
    ├── PlacementError               no placement decision could be made
    │   └── NoEligibleBackendError   every candidate was filtered out (each reason is kept)
    ├── InvalidPathError             a logical path is empty, absolute, has ".." or NUL, or is too long
    │                                (also a ValueError)
    ├── InvalidMetadataError         a metadata key or value greenroute will not store (also a ValueError)
    └── StorageError                 a storage target failed (also an OSError)
        ├── TargetUnavailableError   connection error, timeout or 5xx: worth failing over
        │                            (also a ConnectionError)
        ├── MetadataNotSupportedError the target cannot store greenroute's metadata
        ├── AllBackendsFailedError   every candidate failed; nothing was left behind
        └── ConcurrentWriteError     another writer's bytes replaced this write's before it committed
    CatalogError                     the catalog could not be read or written (also an OSError)
    └── CatalogUnavailableError      locked past its timeout, unreachable, or restarting
    CommitConflictError              a commit's compare-and-set lost to another writer (the router retries)

:class:`UnknownRegionError` is a :class:`ConfigError` because an unknown region nearly always
comes from configuration or a command-line argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AllBackendsFailedError",
    "CatalogError",
    "CatalogUnavailableError",
    "CommitConflictError",
    "ConcurrentWriteError",
    "ConfigError",
    "GreenrouteError",
    "GridAccessDeniedError",
    "GridDataError",
    "GridDataUnavailableError",
    "GridUnitsError",
    "InvalidMetadataError",
    "InvalidPathError",
    "MetadataNotSupportedError",
    "NoEligibleBackendError",
    "PlacementError",
    "StorageError",
    "TargetUnavailableError",
    "UnknownRegionError",
]


class GreenrouteError(Exception):
    """Base class of every error greenroute raises on purpose."""


class ConfigError(GreenrouteError):
    """A configuration file, persisted registry or argument is invalid.

    Attributes:
        path: The file at fault, when there is one.
        key: The dotted key at fault, when there is one (``backends[2].pue``).
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        where = ": ".join(part for part in (path, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class UnknownRegionError(ConfigError):
    """greenroute has no grid data for a region or zone.

    Attributes:
        region: The region that was asked for.
        suggestions: The closest known regions, best first.
    """

    def __init__(self, region: str, suggestions: Sequence[str] = (), *, key: str | None = None,
                 path: str | None = None) -> None:
        self.region = region
        self.suggestions = tuple(suggestions)
        hint = f" (did you mean {', '.join(repr(s) for s in self.suggestions)}?)" if self.suggestions else ""
        super().__init__(f"unknown region {region!r}{hint}", path=path, key=key)


class GridDataError(GreenrouteError):
    """A grid data source could not give a value.

    Attributes:
        source: The source's name (``watttime``, ``electricitymaps``, ...).
        region: The region asked for, when known.
    """

    def __init__(self, message: str, *, source: str | None = None, region: str | None = None) -> None:
        self.source = source
        self.region = region
        super().__init__(message)


class GridDataUnavailableError(GridDataError):
    """No usable value: the source is down, unconfigured, or answered ``null``."""


class GridAccessDeniedError(GridDataError):
    """The account may not read this region (for example WattTime's 403 "Invalid scope")."""


class GridUnitsError(GridDataError):
    """The provider answered in units greenroute does not know; it never guesses."""


class PlacementError(GreenrouteError):
    """No placement decision could be made."""


class NoEligibleBackendError(PlacementError):
    """Every candidate backend was filtered out before scoring.

    Attributes:
        reasons: Each candidate's backend id mapped to why it was not eligible.
    """

    def __init__(self, reasons: Mapping[str, str]) -> None:
        self.reasons = dict(reasons)
        detail = "; ".join(f"{backend}: {why}" for backend, why in sorted(self.reasons.items()))
        super().__init__(f"no eligible backend ({detail})" if detail else "no candidate backends given")


class InvalidPathError(GreenrouteError, ValueError):
    """A logical path greenroute will not store: rejected before anything is written."""

    def __init__(self, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"invalid path {path!r}: {why}")


class StorageError(GreenrouteError, OSError):
    """A storage target failed. Also an :class:`OSError`, as filesystem callers expect.

    Attributes:
        backend_id: The backend whose target failed, when known.
    """

    def __init__(self, message: str, *, backend_id: str | None = None) -> None:
        self.backend_id = backend_id
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TargetUnavailableError(StorageError, ConnectionError):
    """Connection error, timeout or server error (5xx): the router fails over to the next backend."""


class MetadataNotSupportedError(StorageError):
    """The target cannot store greenroute's metadata; greenroute never drops it silently."""


class AllBackendsFailedError(StorageError):
    """Every candidate backend failed for one write.

    Attributes:
        failures: Each backend id mapped to what went wrong.
    """

    def __init__(self, failures: Mapping[str, str]) -> None:
        self.failures = dict(failures)
        detail = "; ".join(f"{b}: {why}" for b, why in self.failures.items())
        super().__init__(f"every candidate backend failed ({detail})")


class ConcurrentWriteError(StorageError):
    """Another writer stored the same path on the same backend after this write, and this write cannot be
    replayed (a stream): it was not acknowledged, and the object holds the other writer's bytes."""


class CatalogError(GreenrouteError, OSError):
    """The catalog could not be read or written. The driver's own error is kept as ``__cause__``.

    Messages name the catalog by host, port and database or by file, never with a password.
    """


class CatalogUnavailableError(CatalogError):
    """The catalog is locked past its timeout, unreachable, or restarting: worth retrying later."""


class CommitConflictError(GreenrouteError):
    """A commit's compare-and-set failed: the path's live entry is no longer the one the write saw.

    The router resolves it (it re-reads the path and retries, or rewrites its bytes); callers of
    :class:`~greenroute.GreenRouter` never see it.

    Attributes:
        path: The logical path.
        current: The path's live placement now (``None`` when it has none).
    """

    def __init__(self, path: str, current: object) -> None:
        self.path = path
        self.current = current
        super().__init__(f"{path}: the catalog entry changed under this write")


class InvalidMetadataError(GreenrouteError, ValueError):
    """Caller metadata greenroute will not store: rejected before anything is written.

    Keys are lowercase letters, digits and ``_``, start with a letter, are at most 64 long and
    never start with ``greenroute_`` (S3 lowercases keys, Azure refuses ``-``); values are strings.

    Attributes:
        key: The metadata key at fault.
        why: What is wrong with the key or its value.
    """

    def __init__(self, key: str, why: str) -> None:
        self.key = key
        self.why = why
        super().__init__(f"invalid metadata {key!r}: {why}")
