"""The router: one place that orchestrates every write, read and listing.

A write goes::

    seen = catalog.placement(path)                  -> the live entry this write replaces (a read)
    decision = placement.select_greenest_backend(candidates, size, retention)
    target.write(path, data, carbon metadata)       -> the object, self-describing
    catalog.commit(entry, expected=seen)            -> one transaction: compare-and-set on the live entry

The commit is the one durable catalog transaction of a write. If another writer committed the path
in between, the compare-and-set fails and the router re-reads: when the other entry names the same
physical object, the object's own ``greenroute_decision`` says whose bytes it holds, and a buffered
write whose bytes were overwritten stores them again before it commits, so the catalog always names
the decision whose bytes the object holds. A replaced copy elsewhere is deleted only while it still
carries the replaced decision. A crash before the commit leaves a self-describing object that
``fsck`` adopts (or removes, when a newer entry holds the path) and ``probe`` adopts.

On a fault worth failing over (connection error, timeout, 5xx) the backend is marked unhealthy and
the write goes to the next-best candidate; the decision and the catalog entry record the failover.
Any other error is raised (as an ``OSError``), and nothing is committed.

A read goes ``catalog.lookup -> target.open``; placement is not involved.

The blocking entry points (``write``, ``copy``, ``read``) and their coroutines (``awrite``, ``acopy``,
``aread``, for event loops such as the async ``greenroute://`` filesystem) share one implementation of
place -> store -> commit -> fail over: :meth:`GreenRouter._write_steps`, a generator that hands each
store to its driver. The blocking driver stores inline. The async driver runs the steps between two
stores on the router's worker threads, so placement and catalog transactions never block the event
loop, and stores with the target's own coroutine where it has one (``awrite``: s3fs, gcsfs and adlfs
are async underneath), else on a worker thread.

Logical paths are ``namespace/key...``; the physical location is the backend's root URL plus the
logical path, so the mapping can be read by a person and reversed by :meth:`GreenRouter.reindex`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import io
import logging
import os
import re
import threading
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Generic, Literal, TypeVar

from .carbon import CarbonEstimate
from .config import GreenrouteConfig, load_config
from .errors import (
    AllBackendsFailedError,
    CommitConflictError,
    ConcurrentWriteError,
    ConfigError,
    InvalidMetadataError,
    InvalidPathError,
    NoEligibleBackendError,
    StorageError,
    TargetUnavailableError,
)
from .model import Backend, CarbonPlacementDecision, CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow
from .placement import GreenPlacementService
from .plugins import load_entry_point
from .ports import Catalog, MultipartWrite, ObjectInfo, Placement, StorageTarget, WriteStream
from .reporting.baseline import baseline_for
from .streams import AbandonableWriter

if TYPE_CHECKING:
    from .rebalance import ApplyReport, MoveOutcome, RebalancePlan, Window

__all__ = [
    "FsckReport",
    "GreenRouter",
    "ObjectStat",
    "ReindexReport",
    "WriteResult",
    "validate_path",
]

log = logging.getLogger(__name__)

TARGET_ENTRY_POINTS = "greenroute.targets"
CATALOG_ENTRY_POINTS = "greenroute.catalogs"

#: S3 allows 2 KB of user metadata in all; greenroute keeps its own keys well inside that.
MAX_METADATA_BYTES = 2048
_USER_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

OnOverwrite = Literal["keep", "replace"]
#: How often one write re-tries its commit against other writers of the same path before giving up.
_MAX_COMMIT_ATTEMPTS = 16
#: Worker threads of the async entry points (placement, catalog transactions, blocking targets).
_WORKERS = 16
#: Write locks, striped by path: enough that the objects of one bulk write rarely share one.
_PATH_LOCK_STRIPES = 1024
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did.

    Attributes:
        path: The logical path.
        backend_id: Where the object landed.
        url: Its physical URL.
        size: Bytes written.
        etag: The target's etag.
        write_gco2e: Estimated gCO2e of the write, for the real size.
        gco2e_month: Projected gCO2e per month at rest.
        decision: The placement decision that chose the backend (with any failovers).
    """

    path: str
    backend_id: str
    url: str
    size: int
    etag: str | None
    write_gco2e: float
    gco2e_month: float
    decision: CarbonPlacementDecision

    @property
    def failovers(self) -> tuple[str, ...]:
        """Backends that failed before this one, with what failed."""
        return self.decision.failovers


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """A committed object: its catalog entry and what its target says about it."""

    entry: CatalogEntry
    info: ObjectInfo

    @property
    def metadata(self) -> Mapping[str, str]:
        """The object's metadata: greenroute's keys and the caller's."""
        return self.info.metadata


@dataclass(slots=True)
class FsckReport:
    """What ``fsck`` found and did.

    Attributes:
        committed: Paths whose uncommitted object was adopted (a crash before the commit).
        dropped: Reservations whose object never arrived.
        repaired: Paths whose entry named another write than the bytes its object holds; the
            entry now describes the object.
        orphans_deleted: URLs of uncommitted greenroute objects removed because a newer entry holds the path.
        skipped_recent: Paths left alone because they may be writes still in flight.
        unreachable: Backends that could not be checked, with why; their entries are untouched.
    """

    committed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    orphans_deleted: list[str] = field(default_factory=list)
    skipped_recent: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    missing_objects: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ReindexReport:
    """What ``reindex`` rebuilt.

    Attributes:
        entries: Live entries rebuilt from the reachable backends.
        duplicates: Paths found on two backends (the newest copy won).
        foreign: URLs without greenroute metadata, left alone.
        unreachable: Backends that could not be listed, with why; their entries were kept.
        kept: Paths whose existing entry on an unreachable backend was kept over a copy found elsewhere.
    """

    entries: int = 0
    duplicates: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    unreachable: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)


#: Characters some target's filesystem layer interprets instead of storing: s3fs and gcsfs parse
#: ``?versionId=``/``?generation=`` and ``#`` out of keys, and fsspec expands ``*``, ``?`` and ``[...]``
#: as globs. A logical path must name exactly one physical object on every target, so they are refused.
RESERVED_CHARACTERS = "?#*[]"


def validate_path(path: str) -> str:
    """Check a logical path (``namespace/key...``) and return it, normalised to Unicode NFC.

    Two spellings of one name (``é`` as one code point or as ``e`` plus a combining accent, U+212B
    ANGSTROM SIGN or U+00C5) are the same logical path, because some file systems and object stores
    normalise names and would otherwise store both as one physical object.

    Raises:
        InvalidPathError: Empty, absolute, with ``..``, ``.`` or empty segments, NUL or control
            characters, one of :data:`RESERVED_CHARACTERS`, a trailing ``/``, or no namespace.

    Example:
        >>> validate_path("lake/sales/2026-11.parquet")
        'lake/sales/2026-11.parquet'
    """
    if not isinstance(path, str) or not path:
        raise InvalidPathError(str(path), "empty path")
    if "\x00" in path:
        raise InvalidPathError(path, "contains NUL")
    if any(ord(ch) < 32 for ch in path):
        raise InvalidPathError(path, "contains a control character")
    if path.startswith("/") or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        raise InvalidPathError(path, "absolute paths and URLs are not logical paths; use namespace/key")
    if "\\" in path:
        raise InvalidPathError(path, "contains a backslash")
    reserved = sorted({ch for ch in path if ch in RESERVED_CHARACTERS})
    if reserved:
        raise InvalidPathError(path, f"contains {' '.join(repr(ch) for ch in reserved)}, which storage clients "
                                     "read as a version, fragment or glob rather than as part of the name")
    path = unicodedata.normalize("NFC", path)
    segments = path.split("/")
    if ".." in segments:
        raise InvalidPathError(path, "contains '..'")
    if "." in segments or "" in segments:
        raise InvalidPathError(path, "contains an empty or '.' segment (or ends with '/')")
    if len(segments) < 2:
        raise InvalidPathError(path, "expected namespace/key")
    return path


@dataclass(frozen=True, slots=True)
class _Store:
    """What a write's steps ask of their driver: store the object on ``target`` with ``metadata``."""

    target: StorageTarget
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Job:
    """A buffered write or a copy, validated and ready for :meth:`GreenRouter._write_steps`.

    Attributes:
        store: Stores the object with a blocking call (a stream is first sought back to its start).
        data: The bytes, when a target's coroutine may store them instead (``None``: a stream or a copy).
    """

    path: str
    size: int
    user: Mapping[str, str]
    retention_days: float | None
    candidates: Sequence[str] | None
    can_retry: bool
    exclusive: bool
    store: Callable[[StorageTarget, Mapping[str, str]], ObjectInfo]
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class _Done(Generic[_T]):
    """Steps that finished with ``value``."""

    value: _T


@dataclass(frozen=True, slots=True)
class _Failed:
    """Steps that raised ``error``."""

    error: BaseException


def _advance(steps: Generator[_R, Any, _T], value: Any, error: BaseException | None) -> _R | _Done[_T] | _Failed:
    """Run ``steps`` to their next request, sending ``value`` in (or throwing ``error``); never raises.

    The outcome is returned, not raised, so that a step run on a worker thread can hand back its end
    (``StopIteration``, which an asyncio future refuses) and its errors alike.
    """
    try:
        return steps.throw(error) if error is not None else steps.send(value)
    except StopIteration as done:
        return _Done(done.value)
    except BaseException as exc:  # noqa: BLE001 (the driver raises it in its caller)
        return _Failed(exc)


def _run_steps(steps: Generator[_R, Any, _T], perform: Callable[[_R], Any]) -> _T:
    """Drive ``steps`` inline, performing each request with the blocking ``perform``."""
    outcome = _advance(steps, None, None)
    while True:
        if isinstance(outcome, _Done):
            return outcome.value
        if isinstance(outcome, _Failed):
            raise outcome.error
        try:
            result = perform(outcome)
        except BaseException as exc:  # noqa: BLE001 (thrown into the steps: they fail over or clean up)
            outcome = _advance(steps, None, exc)
        else:
            outcome = _advance(steps, result, None)


def _never_stores(request: object) -> ObjectInfo:
    raise AssertionError(f"these steps store nothing, but asked for {request!r}")


class GreenRouter:
    """Writes each object to the greenest eligible backend, and finds it again.

    Args:
        placement: The placement service (backends, grid signals, carbon model).
        catalog: Where logical paths are recorded.
        target_factory: Builds a backend's storage target; by default the ``greenroute.targets``
            entry point named after the backend's provider.
        on_overwrite: ``"keep"`` rewrites an existing path on its current backend; ``"replace"``
            places it afresh and deletes the old copy after the commit.
        baseline: The backend every write is compared with in the carbon ledger (``[report] baseline``);
            by default the first backend the placement service lists.
        clock: Gives the time of commits and deletes (each entry's at-rest period); injectable for tests.

    Example:
        >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
        >>> from greenroute.profiles import default_backends
        >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
        >>> result = router.write("demo/hello.txt", b"hello")
        >>> result.backend_id, router.read("demo/hello.txt")
        ('aws-eu-north-1', b'hello')
    """

    def __init__(self, placement: GreenPlacementService, catalog: Catalog, *,
                 target_factory: Callable[[Backend], StorageTarget] | None = None,
                 on_overwrite: OnOverwrite = "keep", baseline: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        if on_overwrite not in ("keep", "replace"):
            raise ConfigError(f"expected 'keep' or 'replace', got {on_overwrite!r}", key="on_overwrite")
        self.placement = placement
        self.catalog = catalog
        self.on_overwrite: OnOverwrite = on_overwrite
        self.baseline = baseline
        self._clock = clock
        self._target_factory = target_factory or target_from_entry_point
        self._targets: dict[str, StorageTarget] = {}
        self._lock = threading.Lock()
        # Striped locks: writes of one path in this process are placed, stored and committed one at
        # a time, so the catalog can never name one write while the object holds another's bytes.
        self._path_locks = tuple(threading.Lock() for _ in range(_PATH_LOCK_STRIPES))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | GreenrouteConfig | None = None) -> GreenRouter:
        """A router for the configuration at ``path`` (see :func:`greenroute.load_config`)."""
        cfg = path if isinstance(path, GreenrouteConfig) else load_config(path)
        on_overwrite: OnOverwrite = "replace" if cfg.on_overwrite == "replace" else "keep"
        router = cls(cfg.build_service(), catalog_from_url(cfg.catalog_url), on_overwrite=on_overwrite,
                     baseline=cfg.baseline)
        router.rebalance_horizon_days = cfg.rebalance_default_horizon_days
        return router

    def close(self) -> None:
        """Release the catalog, the grid workers and the async entry points' worker threads."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
        self.catalog.close()
        self.placement.signals.close()

    def __enter__(self) -> GreenRouter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- targets ----------------------------------------------------------------------------

    def target(self, backend_id: str) -> StorageTarget:
        """The storage target of a configured backend (built once, on first use).

        Raises:
            KeyError: No backend has that id.
        """
        target = self._targets.get(backend_id)
        if target is None:
            backend = self.placement.backend(backend_id)
            with self._lock:
                target = self._targets.get(backend_id)
                if target is None:
                    target = self._targets[backend_id] = self._target_factory(backend)
        return target

    # -- writes -----------------------------------------------------------------------------

    def write(self, path: str, data: bytes | bytearray | memoryview | IO[bytes], *,
              metadata: Mapping[str, str] | None = None, size_hint: int | None = None,
              retention_days: float | None = None, candidates: Sequence[str] | None = None,
              exclusive: bool = False) -> WriteResult:
        """Write ``data`` to the greenest eligible backend and record it.

        Args:
            path: The logical path, ``namespace/key...``.
            data: Bytes, or a binary file object (streamed; seekable ones can fail over).
            metadata: The caller's own metadata, kept beside greenroute's keys.
            size_hint: The size when ``data`` is a stream of unknown length.
            retention_days: How long the object will be kept, for the at-rest estimate.
            candidates: Backend ids to choose from (default: all).
            exclusive: Create only: fail if the path exists. Across processes exactly one of several
                concurrent exclusive creates succeeds (the catalog reserves the path first).

        Raises:
            FileExistsError: ``exclusive`` and the path exists (or is being created).
            InvalidPathError: The path or the metadata is not acceptable; nothing was written.
            NoEligibleBackendError: No backend may take this write.
            AllBackendsFailedError: Every candidate failed; nothing was left behind.
            OSError: A client error (access denied, missing bucket) from the chosen target.
        """
        return self._run_job(self._write_job(path, data, metadata, size_hint, retention_days, candidates, exclusive))

    async def awrite(self, path: str, data: bytes | bytearray | memoryview | IO[bytes], *,
                     metadata: Mapping[str, str] | None = None, size_hint: int | None = None,
                     retention_days: float | None = None, candidates: Sequence[str] | None = None,
                     exclusive: bool = False) -> WriteResult:
        """:meth:`write` as a coroutine, for event loops (the async ``greenroute://`` filesystem's writes).

        The same steps as :meth:`write`, with the same arguments, result and errors. Placement and
        the catalog's transactions run on the router's worker threads, never on the event loop. Bytes
        are stored with the target's own coroutine where it has one (S3, GCS and Azure, on their
        library's event loop); streams, and targets without one, on a worker thread. Many calls at
        once therefore write concurrently, across objects and backends.

        Example:
            >>> import asyncio
            >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
            >>> from greenroute.profiles import default_backends
            >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
            >>> async def main() -> bytes:
            ...     await asyncio.gather(*(router.awrite(f"demo/{i}.txt", b"hi %d" % i) for i in range(3)))
            ...     return await router.aread("demo/2.txt")
            >>> asyncio.run(main())
            b'hi 2'
        """
        return await self._arun_job(self._write_job(path, data, metadata, size_hint, retention_days, candidates,
                                                    exclusive))

    def _write_job(self, path: str, data: bytes | bytearray | memoryview | IO[bytes],
                   metadata: Mapping[str, str] | None, size_hint: int | None, retention_days: float | None,
                   candidates: Sequence[str] | None, exclusive: bool) -> _Job:
        path = validate_path(path)
        user = _user_metadata(metadata)
        payload: bytes | IO[bytes] = bytes(data) if isinstance(data, bytearray | memoryview) else data
        size = len(payload) if isinstance(payload, bytes) else (size_hint or _remaining(payload) or 0)
        start = payload.tell() if not isinstance(payload, bytes) and payload.seekable() else None

        def store(target: StorageTarget, md: Mapping[str, str]) -> ObjectInfo:
            if start is not None and not isinstance(payload, bytes):
                payload.seek(start)
            return target.write(path, payload, md)

        if isinstance(payload, bytes):
            return _Job(path, size, user, retention_days, candidates, True, exclusive, store, payload)
        return _Job(path, size, user, retention_days, candidates, start is not None, exclusive, store)

    def open(self, path: str, mode: str = "rb", *, metadata: Mapping[str, str] | None = None,
             size_hint: int | None = None, retention_days: float | None = None,
             candidates: Sequence[str] | None = None, block_size: int | None = None) -> BinaryIO:
        """Open a logical path for streaming.

        ``"wb"`` places the object now (using ``size_hint`` when given) and binds its carbon
        values at close, from the real byte count; ``"xb"`` does the same for a path that must not
        exist yet. ``"rb"`` reads through the catalog.

        Raises:
            FileNotFoundError: ``"rb"`` of a path that is not in the catalog.
            FileExistsError: ``"xb"`` of a path that exists or is being created.
            ValueError: Any other mode.
        """
        if mode == "rb":
            entry = self._entry(path)
            return self.target(entry.backend_id).open_read(entry.path, block_size=block_size)
        if mode not in ("wb", "xb"):
            raise ValueError(f"mode must be 'rb', 'wb' or 'xb', got {mode!r}")
        path = validate_path(path)
        user = _user_metadata(metadata)
        seen = self._seen(path, exclusive=mode == "xb")

        def opener(target: StorageTarget, chosen: CarbonPlacementDecision) -> Callable[[], WriteStream]:
            metadata = self._metadata_at_close(path, chosen, retention_days, user)
            return functools.partial(target.open_write, path, metadata, block_size=block_size, size_hint=size_hint)

        decision, stream = _run_steps(
            self._attempt(path, size_hint or 0, retention_days, candidates, seen, opener, exclusive=mode == "xb"),
            lambda open_stream: open_stream())
        return _RoutedWriter(self, stream, path, decision, retention_days, seen,  # type: ignore[return-value]
                             exclusive=mode == "xb")

    def copy(self, src: str, dst: str, *, candidates: Sequence[str] | None = None,
             retention_days: float | None = None) -> WriteResult:
        """Copy ``src`` to ``dst``, placing ``dst`` like any write (server-side when it stays put)."""
        return self._run_job(self._copy_job(src, dst, candidates, retention_days))

    async def acopy(self, src: str, dst: str, *, candidates: Sequence[str] | None = None,
                    retention_days: float | None = None) -> WriteResult:
        """:meth:`copy` as a coroutine: the same steps, the copy itself on a worker thread (see :meth:`awrite`)."""
        job = await self._off_loop(self._copy_job, src, dst, candidates, retention_days)
        return await self._arun_job(job)

    def _copy_job(self, src: str, dst: str, candidates: Sequence[str] | None, retention_days: float | None) -> _Job:
        entry = self._entry(src)
        dst = validate_path(dst)
        source = self.target(entry.backend_id)
        user = {k: v for k, v in source.stat(entry.path).metadata.items() if not k.startswith("greenroute_")}

        def store(target: StorageTarget, md: Mapping[str, str]) -> ObjectInfo:
            if target is source:
                return target.copy(entry.path, dst, md)
            with source.open_read(entry.path) as stream:
                return target.write(dst, stream, md)

        return _Job(dst, entry.size, user, retention_days, candidates, True, False, store)

    def move(self, src: str, dst: str) -> WriteResult:
        """Copy ``src`` to ``dst``, then delete ``src``."""
        result = self.copy(src, dst)
        if validate_path(src) != result.path:
            self.delete(src)
        return result

    # -- reads ------------------------------------------------------------------------------

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes of a committed object (or the range ``[start, end)``).

        Raises:
            FileNotFoundError: The path is not in the catalog.
        """
        entry = self._entry(path)
        return self.target(entry.backend_id).read(entry.path, start, end)

    async def aread(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """:meth:`read` as a coroutine: the catalog lookup on a worker thread, then :meth:`aread_entry`."""
        return await self.aread_entry(await self._off_loop(self._entry, path), start, end)

    async def aread_entry(self, entry: CatalogEntry, start: int | None = None, end: int | None = None) -> bytes:
        """The bytes of the object a committed entry names (or ``[start, end)``), as a coroutine.

        For front doors that looked the entry up themselves. The target's own coroutine reads where it
        has one (on its library's event loop), else a worker thread.

        Raises:
            KeyError: The entry's backend is not configured.
        """
        target = self._targets.get(entry.backend_id)
        if target is None:
            target = await self._off_loop(self.target, entry.backend_id)
        aread = getattr(target, "aread", None)
        if aread is None:
            return await self._off_loop(target.read, entry.path, start, end)
        data: bytes = await aread(entry.path, start, end)
        return data

    def stat(self, path: str) -> ObjectStat:
        """A committed object's catalog entry and its target's view, metadata included."""
        entry = self._entry(path)
        return ObjectStat(entry, self.target(entry.backend_id).stat(entry.path))

    def lookup(self, path: str) -> CatalogEntry | None:
        """The committed catalog entry of ``path``, or ``None``."""
        return self.catalog.lookup(_nfc(path))

    def exists(self, path: str) -> bool:
        """Whether ``path`` is in the catalog."""
        return self.catalog.placement(_nfc(path)) is not None

    def probe(self, path: str) -> CatalogEntry | None:
        """Find a path the catalog lacks on the backends, best score first, and record it.

        Only an object carrying greenroute's own metadata for ``path`` is adopted; an unreachable
        backend is skipped, never allowed to hide the others.
        """
        path = validate_path(path)
        with self._path_lock(path):
            existing = self.catalog.lookup(path)
            if existing is not None:
                return existing
            ranked = [s.backend_id for s in self.placement.get_green_scores()]
            for backend_id in ranked + [b.id for b in self.placement.backends if b.id not in ranked]:
                try:
                    info = self.target(backend_id).stat(path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    log.warning("probe of %s on %s failed: %s", path, backend_id, _short(exc))
                    continue
                entry = _entry_from_metadata(backend_id, info)
                if entry is not None:
                    try:
                        self.catalog.commit(entry, expected=None)
                    except CommitConflictError:
                        return self.catalog.lookup(path)  # another process catalogued it meanwhile
                    log.info("probe: found %s on %s and repaired the catalog", path, backend_id)
                    return entry
        return None

    def list(self, prefix: str = "", *, recursive: bool = True, start_after: str | None = None,
             limit: int | None = None) -> list[CatalogEntry]:
        """Committed entries under ``prefix``, sorted by path.

        With ``recursive=False``, ``prefix`` is a directory and only its direct children are given.
        ``start_after`` and ``limit`` page through a large recursive listing.
        """
        prefix = _nfc(prefix)
        if recursive:
            return self.catalog.list(prefix, start_after=start_after, limit=limit)
        base = prefix.rstrip("/") + "/" if prefix else ""
        return [e for e in self.catalog.list(base) if "/" not in e.path[len(base):]]

    def delete(self, path: str) -> None:
        """Delete a committed object and its catalog entry.

        Raises:
            FileNotFoundError: The path is not in the catalog.
        """
        entry = self._entry(path)
        removed = self.catalog.remove(entry.path, at=self._clock())
        if removed is None:
            raise FileNotFoundError(2, "not in the greenroute catalog", path)
        self._delete_owned(removed)

    # -- repair -----------------------------------------------------------------------------

    def fsck(self, *, older_than_seconds: float = 300.0) -> FsckReport:
        """Reconcile the catalog with the backends after crashes; a dead backend never stops it.

        * A reservation (exclusive create) whose object exists and carries its decision is committed;
          one whose object does not is dropped.
        * Every reachable backend is listed. A greenroute object whose path has no live entry is a
          write that crashed before its commit: it is adopted, unless its decision was closed (a
          delete or overwrite whose object removal failed), when it is removed. One whose path is
          live elsewhere under another decision is an orphan and is removed. One at the live
          entry's own URL that holds another decision's bytes repairs the entry from the object.
        * A rebalance copy (``greenroute_move_of``) that was never committed is removed, never adopted:
          its move is only ever made live by its own compare-and-set commit, and a path deleted after
          the copy was made must stay deleted.
        * Anything younger than ``older_than_seconds`` may be a write in flight and is left alone.
          A backend that cannot be listed is reported in ``unreachable``; its entries are untouched.

        Only objects carrying greenroute's own metadata are ever removed.
        """
        report = FsckReport()
        now = utcnow()

        def recent(when: datetime | None) -> bool:
            return when is not None and (now - when).total_seconds() < older_than_seconds

        for entry in self.catalog.pending():
            if recent(entry.created_at):
                report.skipped_recent.append(entry.path)
                continue
            info = self._stat_or_none(entry.backend_id, entry.path, report.unreachable)
            if entry.backend_id in report.unreachable:
                continue
            if info is not None and info.metadata.get("greenroute_decision") == entry.decision_id:
                adopted = _entry_from_metadata(entry.backend_id, info)
                self.catalog.put(adopted if adopted is not None else entry)
                report.committed.append(entry.path)
            else:
                self.catalog.abort(entry.decision_id)
                report.dropped.append(entry.path)
        for _, info, found in self._scan(report.unreachable):
            if found is None:
                continue  # not greenroute's: never touched
            entry = found
            live = self.catalog.placement(entry.path)
            if live is not None and live.decision_id == entry.decision_id:
                continue
            if recent(info.modified):
                report.skipped_recent.append(entry.path)
                continue
            if live is not None and live.url == info.url:
                self.catalog.put(entry)  # the object is the truth about its own bytes
                report.repaired.append(entry.path)
            elif live is None and self.catalog.decision(entry.decision_id) is None \
                    and "greenroute_move_of" not in info.metadata:
                self.catalog.put(entry)
                report.committed.append(entry.path)
            else:
                self._delete_owned(entry)
                report.orphans_deleted.append(info.url)
        return report

    def reindex(self) -> ReindexReport:
        """Rebuild the live entries from the backends' own metadata; a dead backend never stops it.

        The new entries are built beside the old ones and swapped in with one transaction, so a
        crash leaves the old catalog whole. Entries on backends that cannot be listed are kept
        and the backends are reported. Objects without greenroute metadata are reported as foreign
        and left alone. When a path exists on two backends, the most recently modified copy wins.
        """
        found: dict[str, tuple[CatalogEntry, ObjectInfo]] = {}
        report = ReindexReport()
        for _, info, entry in self._scan(report.unreachable):
            if entry is None:
                report.foreign.append(info.url)
                continue
            previous = found.get(entry.path)
            if previous is not None:
                report.duplicates.append(entry.path)
                if (previous[1].modified or utcnow()) >= (info.modified or utcnow()):
                    continue
            found[entry.path] = (entry, info)
        report.kept = self.catalog.swap((e for e, _ in found.values()), keep_backends=report.unreachable)
        report.entries = len(found) - len(report.kept)
        return report

    def _scan(self, unreachable: dict[str, str]) -> Iterator[tuple[str, ObjectInfo, CatalogEntry | None]]:
        """Every object on every reachable backend, with the entry its metadata describes (if any).

        A backend that cannot be listed is recorded in ``unreachable`` and skipped.
        """
        for backend in self.placement.backends:
            try:
                infos = list(self.target(backend.id).list(""))
            except (OSError, ConfigError) as exc:
                unreachable[backend.id] = _short(exc)
                log.warning("backend %s could not be listed: %s", backend.id, _short(exc))
                continue
            for info in infos:
                yield backend.id, info, _entry_from_metadata(backend.id, info)

    def _stat_or_none(self, backend_id: str, path: str, unreachable: dict[str, str]) -> ObjectInfo | None:
        """``stat`` of an object; ``None`` when it is missing or its backend is no longer configured."""
        try:
            return self.target(backend_id).stat(path)
        except FileNotFoundError:
            return None
        except KeyError:
            return None
        except OSError as exc:
            unreachable[backend_id] = _short(exc)
            return None

    def _delete_owned(self, entry: CatalogEntry | Placement, path: str | None = None) -> None:
        """Delete the object of a closed entry, only while it still holds that entry's bytes.

        Another writer may have stored the same path on the same backend since; its object carries
        its own decision and is left alone. Failures are logged: the catalog no longer names the
        object, and ``fsck`` removes it later.
        """
        path = path if path is not None else entry.path if isinstance(entry, CatalogEntry) else None
        if path is None:
            raise ValueError("a Placement needs the path")
        try:
            if not self.target(entry.backend_id).delete_if(path, entry.decision_id):
                log.info("not deleting %s on %s: it is gone or holds another write's bytes", path, entry.backend_id)
        except (OSError, KeyError) as exc:
            log.warning("could not delete the old copy of %s on %s: %s", path, entry.backend_id, _short(exc))

    # -- internals --------------------------------------------------------------------------

    def _entry(self, path: str) -> CatalogEntry:
        entry = self.catalog.lookup(_nfc(path))
        if entry is None:
            raise FileNotFoundError(2, "not in the greenroute catalog", path)
        if entry.backend_id not in self._targets:
            try:
                self.placement.backend(entry.backend_id)
            except KeyError:
                raise StorageError(f"{path} is catalogued on backend {entry.backend_id!r}, which is not configured",
                                   backend_id=entry.backend_id) from None
        return entry

    def _seen(self, path: str, *, exclusive: bool) -> Placement | None:
        """The live entry a write of ``path`` will replace (its compare-and-set expectation)."""
        seen = self.catalog.placement(path)
        if exclusive and seen is not None:
            raise FileExistsError(17, "already exists", path)
        return seen

    def _decide(self, path: str, size: int, retention_days: float | None, candidates: Sequence[str] | None,
                seen: Placement | None) -> tuple[CarbonPlacementDecision, builtins.list[str]]:
        backend_ids = list(candidates) if candidates is not None else [b.id for b in self.placement.backends]
        if self.on_overwrite == "keep" and seen is not None and seen.backend_id in backend_ids:
            try:
                decision = self.placement.select_greenest_backend([seen.backend_id], size,
                                                                  retention_days=retention_days)
                return decision, [seen.backend_id]
            except NoEligibleBackendError:
                log.info("%s: current backend %s is no longer eligible; placing afresh", path, seen.backend_id)
        fitting = self._fitting(path, backend_ids)
        return self.placement.select_greenest_backend(fitting, size, retention_days=retention_days), fitting

    def _fitting(self, path: str, backend_ids: builtins.list[str]) -> builtins.list[str]:
        """The candidates whose target can hold this path."""
        fitting = []
        why: builtins.list[str] = []
        for backend_id in backend_ids:
            try:
                problem = _path_problem(path, self.target(backend_id))
            except KeyError:
                fitting.append(backend_id)  # unknown ids are reported by the placement service
                continue
            if problem is None:
                fitting.append(backend_id)
            else:
                why.append(problem)
        if not fitting and why:
            raise InvalidPathError(path, f"too long for every candidate target ({'; '.join(sorted(set(why)))})")
        return fitting

    def _check_length(self, path: str, target: StorageTarget) -> None:
        problem = _path_problem(path, target)
        if problem is not None:
            raise InvalidPathError(path, f"too long for {target.backend.id} ({problem})")

    # -- the steps of a write, and their drivers -------------------------------------------

    def _path_lock(self, path: str) -> threading.Lock:
        """The lock that serialises this process's writes of ``path``."""
        return self._path_locks[hash(path) % len(self._path_locks)]

    @contextlib.asynccontextmanager
    async def _apath_lock(self, path: str) -> AsyncIterator[None]:
        """Hold ``path``'s write lock (the very lock of the blocking entry points) without blocking the loop.

        It is polled: waiting for it on a worker thread could take every worker while the holders
        wait for one to commit.
        """
        lock = self._path_lock(path)
        pause = 0.0005
        while not lock.acquire(blocking=False):
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
        try:
            yield
        finally:
            lock.release()

    def _run_job(self, job: _Job) -> WriteResult:
        """A buffered write, driven inline."""
        with self._path_lock(job.path):
            return _run_steps(self._write_steps(job), lambda request: job.store(request.target, request.metadata))

    async def _arun_job(self, job: _Job) -> WriteResult:
        """A buffered write, driven from an event loop (see the module docstring)."""

        async def store(request: _Store) -> ObjectInfo:
            awrite = getattr(request.target, "awrite", None)
            if job.data is None or awrite is None:
                return await self._off_loop(job.store, request.target, request.metadata)
            info: ObjectInfo = await awrite(job.path, job.data, request.metadata)
            return info

        async with self._apath_lock(job.path):
            return await self._arun_steps(self._write_steps(job), store)

    async def _arun_steps(self, steps: Generator[_R, Any, _T], perform: Callable[[_R], Awaitable[Any]]) -> _T:
        """Drive ``steps`` from an event loop: each step on a worker thread, each request with ``perform``."""
        outcome = await self._step(steps, None, None)
        while True:
            if isinstance(outcome, _Done):
                return outcome.value
            if isinstance(outcome, _Failed):
                raise outcome.error
            try:
                result = await perform(outcome)
            except BaseException as exc:  # noqa: BLE001 (thrown into the steps: they fail over or clean up)
                outcome = await self._step(steps, None, exc)
            else:
                outcome = await self._step(steps, result, None)

    async def _step(self, steps: Generator[_R, Any, _T], value: Any,
                    error: BaseException | None) -> _R | _Done[_T] | _Failed:
        pool = self._worker_pool()
        future = asyncio.get_running_loop().run_in_executor(pool, _advance, steps, value, error)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # The step runs on; once it is done, close the steps so that they drop what they hold
            # (an exclusive create's reservation).
            def close(_: object) -> None:
                with contextlib.suppress(RuntimeError):  # the router was closed meanwhile
                    pool.submit(steps.close)

            future.add_done_callback(close)
            raise

    async def _off_loop(self, call: Callable[..., _T], *args: Any) -> _T:
        """Run a blocking call (catalog, placement, a blocking target) on the router's worker threads."""
        return await asyncio.get_running_loop().run_in_executor(self._worker_pool(), functools.partial(call, *args))

    def _worker_pool(self) -> ThreadPoolExecutor:
        """The async entry points' worker threads, made on first use (and again in a forked child).

        A pool of the router's own, not the event loop's default executor: its steps wait on catalog
        locks and blocking targets, and must never hold the threads a library's loop needs itself.
        """
        pool = self._pool
        if pool is None or self._pool_pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pool_pid != os.getpid():
                    self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="greenroute-router")
                    self._pool_pid = os.getpid()
                pool = self._pool
        return pool

    def _write_steps(self, job: _Job) -> Generator[_Store, ObjectInfo, WriteResult]:
        """One buffered write: read the live entry, place, store (asked of the driver), commit, fail over.

        The one implementation for the blocking and the async entry points: the driver performs each
        yielded store and sends back its result, or throws in its error.
        """
        seen = self._seen(job.path, exclusive=job.exclusive)
        estimates: dict[str, CarbonEstimate] = {}

        def request(target: StorageTarget, chosen: CarbonPlacementDecision) -> _Store:
            estimate = estimates[chosen.decision_id] = self._estimate(chosen, job.size, job.retention_days)
            return _Store(target, self._metadata(job.path, chosen, estimate, job.user))

        decision, info = yield from self._attempt(job.path, job.size, job.retention_days, job.candidates, seen,
                                                  request, can_retry=job.can_retry, exclusive=job.exclusive)
        estimate = estimates[decision.decision_id]
        if info.size != job.size:
            estimate = self._estimate(decision, info.size, job.retention_days)
        rewrite = (lambda: request(self.target(decision.backend_id), decision)) if job.can_retry else None
        return (yield from self._commit(job.path, decision, info, estimate, job.retention_days, seen, rewrite,
                                        exclusive=job.exclusive))

    def _attempt(self, path: str, size: int, retention_days: float | None, candidates: Sequence[str] | None,
                 seen: Placement | None, request: Callable[[StorageTarget, CarbonPlacementDecision], _R], *,
                 can_retry: bool = True, exclusive: bool = False
                 ) -> Generator[_R, Any, tuple[CarbonPlacementDecision, Any]]:
        """Place ``path`` and have the driver act on the chosen target, failing over when that is safe.

        ``request(target, decision)`` says what to do there; it is yielded, and the driver sends back
        the result or throws in the error. On a fault worth failing over, the next-best candidate is
        tried (when ``can_retry``); any other error is raised. Only an exclusive create records
        anything in the catalog before its commit: a reservation, dropped again on failure.
        """
        decision, backend_ids = self._decide(path, size, retention_days, candidates, seen)
        failovers: builtins.list[str] = []
        while True:
            if failovers:
                decision = replace(decision, failovers=tuple(failovers))
            target = self.target(decision.backend_id)
            self._check_length(path, target)
            if exclusive:
                self.catalog.begin(self._pending(path, decision, target))
            try:
                return decision, (yield request(target, decision))
            except TargetUnavailableError as exc:
                if exclusive:
                    self.catalog.abort(decision.decision_id)
                if not can_retry:
                    self.placement.health.mark_failed(decision.backend_id, _short(exc))
                    raise
                decision = self._fail_over(decision, exc, failovers, backend_ids, size, retention_days)
            except BaseException:
                if exclusive:
                    self.catalog.abort(decision.decision_id)
                raise

    def _fail_over(self, decision: CarbonPlacementDecision, exc: TargetUnavailableError, failovers: builtins.list[str],
                   backend_ids: builtins.list[str], size: int, retention_days: float | None) -> CarbonPlacementDecision:
        reason = _short(exc)
        log.warning("write to %s failed (%s); failing over", decision.backend_id, reason)
        self.placement.health.mark_failed(decision.backend_id, reason)
        failovers.append(f"{decision.backend_id}: {reason}")
        if decision.backend_id in backend_ids:
            backend_ids.remove(decision.backend_id)
        if not backend_ids:
            raise AllBackendsFailedError(dict(f.split(": ", 1) for f in failovers)) from exc
        try:
            return self.placement.select_greenest_backend(backend_ids, size, retention_days=retention_days)
        except NoEligibleBackendError as no_more:
            raise AllBackendsFailedError(dict(f.split(": ", 1) for f in failovers)) from no_more

    def _commit(self, path: str, decision: CarbonPlacementDecision, info: ObjectInfo, estimate: CarbonEstimate,
                retention_days: float | None, seen: Placement | None, rewrite: Callable[[], _Store] | None, *,
                exclusive: bool = False) -> Generator[_Store, ObjectInfo, WriteResult]:
        """Commit with a compare-and-set against ``seen``, resolving races with other writers.

        When another writer committed the path meanwhile: if its entry names another object, this
        write's object is intact and simply replaces it; if it names the same object, the object's
        own metadata says whose bytes it holds. A buffered write whose bytes were overwritten stores
        them again (``rewrite``, yielded to the driver); a stream cannot, and raises
        :class:`ConcurrentWriteError` unacknowledged.
        """
        entry = self._committed_entry(path, decision, info, estimate, retention_days)
        expected = seen.decision_id if seen is not None else None
        for attempt in range(_MAX_COMMIT_ATTEMPTS):
            # The at-rest period starts at the commit that succeeds (and the old one's ends): a retry
            # is stamped again; the first attempt keeps the time its entry was built with, just now.
            now = entry.created_at
            if attempt:
                now = self._clock()
                entry = replace(entry, created_at=now, updated_at=now)
            try:
                committed, replaced = self.catalog.commit(entry, expected=expected, at=now)
                break
            except CommitConflictError as conflict:
                current: Placement | None = conflict.current  # type: ignore[assignment]
                if exclusive:
                    self.catalog.abort(decision.decision_id)
                    self._delete_owned(entry)
                    raise FileExistsError(17, "created by another writer meanwhile", path) from None
                if current is not None and current.url == entry.url and current.backend_id == entry.backend_id:
                    holder = self._holder(entry)
                    if holder != decision.decision_id:
                        if rewrite is None:
                            raise ConcurrentWriteError(
                                f"{path}: another writer stored this path on {decision.backend_id} before this "
                                "stream committed; the object holds its bytes", backend_id=decision.backend_id
                            ) from None
                        info = yield rewrite()
                        entry = replace(entry, size=info.size, etag=info.etag)
                expected = current.decision_id if current is not None else None
        else:
            raise ConcurrentWriteError(f"{path}: gave up after {_MAX_COMMIT_ATTEMPTS} commit conflicts",
                                       backend_id=decision.backend_id)
        self.placement.health.mark_ok(decision.backend_id)
        if replaced is not None and replaced.url != committed.url:
            self._delete_owned(replaced)
        return WriteResult(path=path, backend_id=decision.backend_id, url=committed.url, size=info.size,
                           etag=info.etag, write_gco2e=estimate.write_gco2e,
                           gco2e_month=estimate.at_rest_gco2e_per_month, decision=decision)

    def _holder(self, entry: CatalogEntry) -> str | None:
        """The decision whose bytes the object of ``entry`` holds now (``None``: missing or unreadable)."""
        try:
            return self.target(entry.backend_id).stat(entry.path).metadata.get("greenroute_decision")
        except FileNotFoundError:
            return None

    def _committed_entry(self, path: str, decision: CarbonPlacementDecision, info: ObjectInfo,
                         estimate: CarbonEstimate, retention_days: float | None) -> CatalogEntry:
        now = self._clock()
        grid = decision.grid
        base = baseline_for(decision, info.size, backend=self._baseline_backend(), signals=self.placement.signals,
                            model=self.placement.carbon_model)
        return CatalogEntry(
            path=path, backend_id=decision.backend_id, url=info.url, size=info.size, etag=info.etag,
            write_gco2e=estimate.write_gco2e, gco2e_month=estimate.at_rest_gco2e_per_month,
            carbon_intensity_g_per_kwh=grid.carbon_intensity_g_per_kwh, signal=decision.signal, source=grid.source,
            decision_id=decision.decision_id, state=EntryState.COMMITTED, created_at=now, updated_at=now,
            failovers=decision.failovers, region=decision.backend.region, grid_zone=grid.grid_zone,
            observed_at=grid.observed_at, is_estimated=grid.is_estimated, is_stale=grid.is_stale,
            fallback=decision.fallback, model_version=self.placement.carbon_model.version,
            retention_days=retention_days, baseline_backend=base.backend_id, baseline_write_gco2e=base.write_gco2e,
            baseline_gco2e_month=base.gco2e_month, baseline_note=base.note,
        )

    def _baseline_backend(self) -> Backend | None:
        """The ledger's baseline backend (``None`` when it is not registered: the note says so)."""
        if self.baseline is None:
            backends = self.placement.backends
            if not backends:
                return None
            self.baseline = backends[0].id
        try:
            return self.placement.backend(self.baseline)
        except KeyError:
            return None

    def _estimate(self, decision: CarbonPlacementDecision, size: int, retention_days: float | None) -> CarbonEstimate:
        return self.placement.carbon_model.estimate(size, provider=decision.backend.provider,
                                                    pue=decision.backend.pue,
                                                    carbon_intensity_g_per_kwh=decision.grid.carbon_intensity_g_per_kwh,
                                                    retention_days=retention_days)

    def _pending(self, path: str, decision: CarbonPlacementDecision, target: StorageTarget) -> CatalogEntry:
        now = utcnow()
        return CatalogEntry(
            path=path, backend_id=decision.backend_id, url=target.url(path), size=decision.data_size_bytes,
            etag=None, write_gco2e=decision.write_gco2e, gco2e_month=decision.at_rest_gco2e_per_month,
            carbon_intensity_g_per_kwh=decision.grid.carbon_intensity_g_per_kwh, signal=decision.signal,
            source=decision.grid.source, decision_id=decision.decision_id, state=EntryState.PENDING,
            created_at=now, updated_at=now, failovers=decision.failovers,
        )

    def _metadata(self, path: str, decision: CarbonPlacementDecision, estimate: CarbonEstimate,
                  user: Mapping[str, str]) -> dict[str, str]:
        md = dict(user)
        md.update({
            "greenroute_gco2e": f"{estimate.write_gco2e:.6g}",
            "greenroute_gco2e_month": f"{estimate.at_rest_gco2e_per_month:.6g}",
            "greenroute_intensity": f"{decision.grid.carbon_intensity_g_per_kwh:g}",
            "greenroute_signal": decision.signal.value,
            "greenroute_source": decision.grid.source.value,
            "greenroute_backend": decision.backend_id,
            "greenroute_decision": decision.decision_id,
            "greenroute_path": path,
            "greenroute_model": self.placement.carbon_model.version,
        })
        total = len("".join(md).encode()) + len("".join(md.values()).encode())  # two joins: cheaper per write
        if total > MAX_METADATA_BYTES:
            raise InvalidMetadataError(next(iter(user), "greenroute_path"),
                                       f"the metadata of {path!r} would take {total} bytes, over S3's "
                                       f"{MAX_METADATA_BYTES}-byte limit (shorten the path or the caller's metadata)")
        return md

    def _metadata_at_close(self, path: str, decision: CarbonPlacementDecision, retention_days: float | None,
                           user: Mapping[str, str]) -> Callable[[int], dict[str, str]]:
        def metadata(size: int) -> dict[str, str]:
            return self._metadata(path, decision, self._estimate(decision, size, retention_days), user)

        return metadata

    def _commit_stream(self, writer: _RoutedWriter) -> WriteResult:
        info = writer.stream.info
        if info is None:
            info = self.target(writer.decision.backend_id).stat(writer.path)
        estimate = self._estimate(writer.decision, info.size, writer.retention_days)
        return _run_steps(self._commit(writer.path, writer.decision, info, estimate, writer.retention_days, writer.seen,
                                       None, exclusive=writer.exclusive), _never_stores)

    # -- rebalancing (greenroute.rebalance) ----------------------------------------------------

    #: The horizon of objects with no declared retention (``[rebalance] default_horizon_days``).
    rebalance_horizon_days: float = 365.0

    def rebalance_plan(self, *, prefix: str = "", min_saving_g: float = 0.0, horizon_days: float | None = None,
                       candidates: Sequence[str] | None = None) -> RebalancePlan:
        """Propose moves of committed objects to greener backends that pay for themselves.

        See :func:`greenroute.rebalance.plan`. Save the plan with ``plan.save(path)``.

        Example:
            >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
            >>> from greenroute.profiles import default_backends
            >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
            >>> _ = router.write("logs/a.bin", b"x" * 1000, candidates=["aws-us-west-2"], retention_days=365)
            >>> [m.to_backend for m in router.rebalance_plan().moves]
            ['aws-eu-north-1']
        """
        from .rebalance import plan

        return plan(self, prefix=prefix, min_saving_g=min_saving_g, horizon_days=horizon_days, candidates=candidates)

    def rebalance_apply(self, plan: RebalancePlan, *, window_hours: float | None = None, workers: int = 4,
                        progress: Callable[[MoveOutcome], None] | None = None,
                        stop: threading.Event | None = None,
                        on_wait: Callable[[Window], None] | None = None) -> ApplyReport:
        """Carry out a rebalance plan: copy, verify, commit, delete the old copy, crash-safe at every step.

        See :func:`greenroute.rebalance.apply`; with ``window_hours`` the moves wait for the greenest
        forecast window within that many hours.
        """
        from .rebalance import apply

        return apply(self, plan, window_hours=window_hours, workers=workers, progress=progress, stop=stop,
                     on_wait=on_wait)

    # -- multipart uploads (the boto3 drop-in's CreateMultipartUpload ... CompleteMultipartUpload) ----

    def open_multipart(self, path: str, *, size_hint: int | None = None, metadata: Mapping[str, str] | None = None,
                       retention_days: float | None = None, candidates: Sequence[str] | None = None,
                       exclusive: bool = False) -> MultipartUpload:
        """Place a multipart upload now; its parts then go straight to the chosen backend's own upload.

        The object is placed once, here, on ``size_hint`` bytes when given (the ranking of backends
        does not depend on the size), and the target begins its multipart upload (S3's own, Azure's
        staged blocks, GCS part objects composed at the end, part files in a local target's folder).
        Nothing is spooled on this machine. Parts may come in any order and from several threads.
        A backend fault fails over to the next-best candidate only until the first part is accepted;
        after that the parts live on that backend and a fault is an error. The carbon values are
        bound from the real size, and the catalog entry commits, at
        :meth:`MultipartUpload.complete`, with the compare-and-set of every write: a stream's rules
        apply, so if another writer's bytes replaced the object before the commit,
        :class:`ConcurrentWriteError` is raised and nothing is acknowledged.

        Args:
            path: The logical path, ``namespace/key...``.
            size_hint: The object's size, when known; the estimate S3 needs before the first part.
            metadata: The caller's own metadata, kept beside greenroute's keys.
            retention_days: How long the object will be kept, for the at-rest estimate.
            candidates: Backend ids to choose from (default: all).
            exclusive: Create only: the path is reserved now, so that exactly one of several concurrent
                exclusive creates completes (see also ``complete(..., exclusive=True)``).

        Raises:
            FileExistsError: ``exclusive`` and the path exists or is being created.
            InvalidPathError: The path is not acceptable. InvalidMetadataError: Nor is the metadata.
            NoEligibleBackendError: No backend may take this write.
            AllBackendsFailedError: Every candidate failed to begin the upload.

        Example:
            >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
            >>> from greenroute.profiles import default_backends
            >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
            >>> upload = router.open_multipart("media/clip.bin", size_hint=11)
            >>> _ = upload.upload_part(2, b" world")  # any order, any thread
            >>> _ = upload.upload_part(1, b"hello")
            >>> result = upload.complete([1, 2])
            >>> result.size, router.read("media/clip.bin")
            (11, b'hello world')
        """
        path = validate_path(path)
        user = _user_metadata(metadata)
        seen = self._seen(path, exclusive=exclusive)
        decision, backend_ids = self._decide(path, size_hint or 0, retention_days, candidates, seen)
        return MultipartUpload(self, path, decision, backend_ids, user=user, size_hint=size_hint,
                               retention_days=retention_days, seen=seen, exclusive=exclusive)


class MultipartUpload:
    """A multipart upload placed by :meth:`GreenRouter.open_multipart`; safe to use from several threads.

    Attributes:
        path: The logical path.
        decision: The placement decision the parts go to (with any failovers before the first part).
    """

    def __init__(self, router: GreenRouter, path: str, decision: CarbonPlacementDecision,
                 backend_ids: builtins.list[str], *, user: Mapping[str, str], size_hint: int | None,
                 retention_days: float | None, seen: Placement | None, exclusive: bool) -> None:
        self.router = router
        self.path = path
        self._user = user
        self._size_hint = size_hint
        self._retention_days = retention_days
        self._seen = seen
        self._exclusive = exclusive
        self._lock = threading.Lock()
        self._failovers: builtins.list[str] = []
        self._backend_ids = backend_ids
        self._generation = 0  # which target upload parts go to; a failover starts the next
        self._accepted: set[int] = set()
        self._reserved = False
        self._closed = False
        self._begin(decision)

    @property
    def closed(self) -> bool:
        """Whether the upload was completed or aborted (or could not fail over)."""
        return self._closed

    def upload_part(self, number: int, data: bytes) -> str | None:
        """Send part ``number`` to the backend (sending a number again replaces the part).

        Raises:
            FileNotFoundError: The upload was completed or aborted.
            TargetUnavailableError: The backend failed after a part was accepted (the upload cannot
                move: abort it and upload again).
            AllBackendsFailedError: Every candidate failed before the first part was accepted.
        """
        while True:
            with self._lock:
                self._check_open()
                upload, generation = self._upload, self._generation
            try:
                tag = upload.upload_part(number, data)
            except TargetUnavailableError as exc:
                with self._lock:
                    self._check_open()
                    if generation == self._generation:
                        self._fail_over(exc)
                continue  # on the upload a failover began
            with self._lock:
                if generation == self._generation:
                    self._accepted.add(number)
                    return tag
            # a failover abandoned the upload this part went to: send it again

    def complete(self, parts: Sequence[int], *, exclusive: bool = False) -> WriteResult:
        """Join the listed parts into the object and commit its catalog entry.

        Args:
            parts: The part numbers, ascending (parts sent but not listed are dropped).
            exclusive: Create only (S3's ``If-None-Match: *`` on completion): the path is reserved
                before the object is joined, so an existing object is never touched.

        Raises:
            FileExistsError: ``exclusive`` and the path exists or is being created; the upload stays
                open (it can still be aborted), as after any failed completion.
            ConcurrentWriteError: Another writer stored the same object before this one committed.
        """
        router = self.router
        with self._lock:
            self._check_open()
            reserved_now = False
            if exclusive and not self._reserved:
                router.catalog.begin(router._pending(self.path, self.decision, router.target(self.decision.backend_id)))
                self._reserved = reserved_now = True
            try:
                info = self._upload.complete(parts)
            except BaseException:
                if reserved_now:
                    router.catalog.abort(self.decision.decision_id)
                    self._reserved = False
                raise
            self._closed = True
        # a reservation made now proved the path free; the entry seen at open may be gone since
        seen = None if reserved_now else self._seen
        estimate = router._estimate(self.decision, info.size, self._retention_days)
        return _run_steps(router._commit(self.path, self.decision, info, estimate, self._retention_days, seen, None,
                                         exclusive=self._reserved), _never_stores)

    def abort(self) -> None:
        """Drop the upload and the parts the backend holds; nothing was committed. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._upload.abort()
            finally:
                if self._reserved:
                    self.router.catalog.abort(self.decision.decision_id)
                    self._reserved = False

    def _check_open(self) -> None:
        if self._closed:
            raise FileNotFoundError(2, "no such multipart upload (it was completed or aborted)", self.path)

    def _begin(self, decision: CarbonPlacementDecision) -> None:
        """Begin the target's upload for ``decision``, failing over while backends are unavailable."""
        router = self.router
        while True:
            if self._failovers:
                decision = replace(decision, failovers=tuple(self._failovers))
            target = router.target(decision.backend_id)
            router._check_length(self.path, target)
            opener = getattr(target, "open_multipart", None)
            if opener is None:
                raise StorageError(f"{decision.backend_id}: its target cannot take multipart uploads",
                                   backend_id=decision.backend_id)
            if self._exclusive:
                router.catalog.begin(router._pending(self.path, decision, target))
            try:
                upload: MultipartWrite = opener(self.path, router._metadata_at_close(
                    self.path, decision, self._retention_days, self._user), size_hint=self._size_hint)
            except TargetUnavailableError as exc:
                if self._exclusive:
                    router.catalog.abort(decision.decision_id)
                decision = router._fail_over(decision, exc, self._failovers, self._backend_ids, self._size_hint or 0,
                                             self._retention_days)
                continue
            except BaseException:
                if self._exclusive:
                    router.catalog.abort(decision.decision_id)
                raise
            self._upload, self.decision, self._reserved = upload, decision, self._exclusive
            self._generation += 1
            return

    def _fail_over(self, exc: TargetUnavailableError) -> None:
        """Move the upload to the next-best backend (holding the lock), if no part was accepted yet."""
        failed = self.decision
        if self._accepted:
            self.router.placement.health.mark_failed(failed.backend_id, _short(exc))
            raise TargetUnavailableError(
                f"{self.path}: {failed.backend_id} failed after {len(self._accepted)} part(s) were accepted there, so "
                f"the upload cannot move to another backend; abort it and upload again ({_short(exc)})",
                backend_id=failed.backend_id) from exc
        self._closed = True  # until an upload begins elsewhere
        with contextlib.suppress(OSError):
            self._upload.abort()
        if self._reserved:
            self.router.catalog.abort(failed.decision_id)
            self._reserved = False
        self._begin(self.router._fail_over(failed, exc, self._failovers, self._backend_ids, self._size_hint or 0,
                                           self._retention_days))
        self._closed = False


class _RoutedWriter(AbandonableWriter, io.RawIOBase):
    """A writable stream whose close commits the catalog entry (and whose failure aborts it)."""

    def __init__(self, router: GreenRouter, stream: WriteStream, path: str, decision: CarbonPlacementDecision,
                 retention_days: float | None, seen: Placement | None, *, exclusive: bool = False) -> None:
        super().__init__()
        self.seen = seen
        self.exclusive = exclusive
        self.router = router
        self.stream = stream
        self.path = path
        self.decision = decision
        self.retention_days = retention_days
        self.result: WriteResult | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.stream.write(data)
        return memoryview(data).nbytes

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.stream.close()
        except BaseException:
            if self.exclusive:
                self.router.catalog.abort(self.decision.decision_id)
            super().close()
            raise
        try:
            self.result = self.router._commit_stream(self)
        finally:
            super().close()

    def discard(self) -> None:
        """Abandon the write: nothing is committed and nothing becomes visible."""
        if self.closed:
            return
        try:
            self.stream.discard()
        except OSError as exc:
            log.warning("could not discard partial write of %s: %s", self.path, _short(exc))
        finally:
            if self.exclusive:
                self.router.catalog.abort(self.decision.decision_id)
            super().close()

    @property
    def info(self) -> WriteResult | None:
        """The write's result, after a successful close."""
        return self.result


def target_from_entry_point(backend: Backend) -> StorageTarget:
    """Build ``backend``'s target with the ``greenroute.targets`` entry point named after its provider.

    Raises:
        ConfigError: No installed adapter serves that provider (install the extra, e.g. ``greenroute[s3]``).
    """
    provider = backend.provider.value
    try:
        factory: Callable[[Backend], StorageTarget] | None = load_entry_point(TARGET_ENTRY_POINTS, provider)
    except ImportError as exc:
        extra = {"s3": "s3", "gcs": "gcs", "azure": "azure"}.get(provider)
        hint = f"pip install 'greenroute[{extra}]'" if extra else "reinstall greenroute"
        raise ConfigError(f"the {provider} target cannot be imported ({exc}); {hint}",
                          key=f"backends.{backend.id}") from exc
    if factory is None:
        raise ConfigError(f"no storage target installed for provider {provider!r}", key=f"backends.{backend.id}")
    return factory(backend)


def catalog_from_url(url: str) -> Catalog:
    """Open the catalog named by ``url`` with the ``greenroute.catalogs`` entry point of its scheme."""
    scheme = url.split(":", 1)[0]
    try:
        factory: Callable[[str], Catalog] | None = load_entry_point(CATALOG_ENTRY_POINTS, scheme)
    except ImportError as exc:
        extra = "postgres" if scheme in ("postgresql", "postgres") else None
        hint = f"pip install 'greenroute[{extra}]'" if extra else "reinstall greenroute"
        raise ConfigError(f"the {scheme} catalog cannot be imported ({exc}); {hint}", key="catalog.url") from exc
    if factory is None:
        raise ConfigError(f"no catalog installed for {scheme!r} URLs", key="catalog.url")
    return factory(url)


def _path_problem(path: str, target: StorageTarget) -> str | None:
    """Why ``target`` cannot hold ``path``, or ``None``."""
    if len(path.encode()) > target.max_path_bytes:
        return f"max {target.max_path_bytes} bytes"
    segment_limit: int | None = getattr(target, "max_segment_bytes", None)
    if segment_limit is not None and any(len(seg.encode()) > segment_limit for seg in path.split("/")):
        return f"max {segment_limit} bytes per path segment"
    return None


def _nfc(path: str) -> str:
    """``path`` in Unicode NFC, as :func:`validate_path` stores it (cheap when it already is)."""
    return path if unicodedata.is_normalized("NFC", path) else unicodedata.normalize("NFC", path)


def _user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if not metadata:
        return {}
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not _USER_KEY.match(key) or key.startswith("greenroute_"):
            raise InvalidMetadataError(str(key), "metadata keys are lowercase letters, digits and '_', start with a "
                                                 "letter, at most 64 long, and not 'greenroute_*' (Azure and S3 rules)")
        if not isinstance(value, str):
            raise InvalidMetadataError(key, f"metadata values are strings, got {type(value).__name__}")
        out[key] = value
    return out


def _remaining(stream: IO[bytes]) -> int | None:
    try:
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            return end - here
    except (OSError, ValueError):
        return None
    return None


def _float(text: str | None, default: float) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _entry_from_metadata(backend_id: str, info: ObjectInfo) -> CatalogEntry | None:
    md = info.metadata
    path = md.get("greenroute_path")
    decision = md.get("greenroute_decision")
    if not path or not decision or path != info.path:
        return None
    now = utcnow()
    try:
        signal = SignalKind(md.get("greenroute_signal", "average"))
        source = GridDataSource(md.get("greenroute_source", "embedded"))
    except ValueError:
        return None
    return CatalogEntry(
        path=path, backend_id=backend_id, url=info.url, size=info.size, etag=info.etag,
        write_gco2e=_float(md.get("greenroute_gco2e"), 0.0), gco2e_month=_float(md.get("greenroute_gco2e_month"), 0.0),
        carbon_intensity_g_per_kwh=_float(md.get("greenroute_intensity"), 0.0), signal=signal, source=source,
        decision_id=decision, state=EntryState.COMMITTED, created_at=info.modified or now,
        updated_at=info.modified or now, model_version=md.get("greenroute_model"),
    )
