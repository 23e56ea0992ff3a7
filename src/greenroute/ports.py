"""The ports: small protocols that adapters implement and the core depends on.

The core never imports an adapter; configuration picks adapters by name and hands them in.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, BinaryIO, Literal, NamedTuple, Protocol, runtime_checkable

from .model import Backend, CatalogEntry, GridCarbonData, SignalKind

__all__ = [
    "LEDGER_KEYS",
    "METADATA_KEYS",
    "MONTH_US",
    "Catalog",
    "GridKey",
    "GridSource",
    "LedgerObject",
    "LedgerQuery",
    "LedgerTotals",
    "MultipartTarget",
    "MultipartWrite",
    "ObjectInfo",
    "Placement",
    "SharedGridCache",
    "SharedGridClaim",
    "SharedGridEntry",
    "StorageTarget",
    "WriteStream",
]


@runtime_checkable
class GridSource(Protocol):
    """Something that can tell the grid carbon intensity of a region.

    Implementations: :class:`greenroute.EmbeddedGridSource` and :class:`greenroute.ManualGridSource`
    in the core, and the live API clients in ``greenroute.adapters``.

    Attributes:
        name: Stable short name, as used in ``placement.sources`` (``"watttime"``).
        signal: The one signal kind this source answers with.
    """

    name: str
    signal: SignalKind

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The current value for ``region``.

        Args:
            region: A cloud region (``us-west-2``) or an operator-chosen name.
            zone: The source's own zone code to use instead of the region's mapped one
                (an Electricity Maps zone for average sources, a WattTime region for marginal ones).

        Raises:
            greenroute.errors.GridDataError: The source cannot give a value; the subclass says why.
            greenroute.errors.UnknownRegionError: The source does not know the region.
        """
        ...

    def is_available(self) -> bool:
        """Whether the source is configured to answer at all (for example has credentials)."""
        ...


# -- storage ------------------------------------------------------------------------------------

#: greenroute's own metadata keys, stamped on every object. Lowercase with underscores, because
#: Azure accepts only identifier-like keys and S3 lowercases keys. Values are always strings.
METADATA_KEYS: tuple[str, ...] = (
    "greenroute_gco2e",        # estimated gCO2e of the write
    "greenroute_gco2e_month",  # projected gCO2e per month at rest
    "greenroute_intensity",    # grid intensity used, gCO2(e)/kWh
    "greenroute_signal",       # marginal | average
    "greenroute_source",       # the grid data source
    "greenroute_backend",      # the backend id
    "greenroute_decision",     # the placement decision id
    "greenroute_path",         # the logical path (what reindex reads)
    "greenroute_model",        # the carbon model's version
)


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a target knows about one stored object.

    Attributes:
        path: The logical path (``namespace/key...``), relative to the backend's root.
        url: The physical URL (the backend's root plus the logical path).
        size: Size in bytes.
        etag: The target's entity tag or checksum, when it has one.
        metadata: User metadata in canonical form (``greenroute_*`` keys with underscores).
        modified: Last modification time, timezone-aware, when known.
    """

    path: str
    url: str
    size: int
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    modified: datetime | None = None


class WriteStream(Protocol):
    """A target's streamed write: bytes in, then :meth:`close` makes the object visible with its metadata."""

    #: Set by a successful :meth:`close`.
    info: ObjectInfo | None

    def write(self, data: bytes) -> int:
        """Append bytes."""
        ...

    def close(self) -> None:
        """Finish the upload and bind the metadata computed from the final size."""
        ...

    def discard(self) -> None:
        """Abandon the upload: nothing becomes visible."""
        ...


class StorageTarget(Protocol):
    """One backend's concrete storage: an S3 bucket prefix, a GCS bucket, an Azure container, a folder.

    Paths given to a target are logical paths, already validated by the router; the target maps
    them under its root. Metadata is written with the object, in one request where the backend
    allows it, and read back in canonical form. A target that cannot store metadata raises; it
    never drops it silently.

    Errors are builtin :class:`OSError` subclasses that keep their cause: ``FileNotFoundError``,
    ``PermissionError``, and :class:`greenroute.errors.TargetUnavailableError` (a
    ``ConnectionError``) for faults worth failing over: connection errors, timeouts and 5xx.
    """

    backend: Backend
    #: The longest logical path this target accepts, in UTF-8 bytes.
    max_path_bytes: int

    def url(self, path: str) -> str:
        """The physical URL of ``path``."""
        ...

    def write(self, path: str, data: bytes | IO[bytes], metadata: Mapping[str, str]) -> ObjectInfo:
        """Store ``data`` at ``path`` with ``metadata``, replacing any object there."""
        ...

    def open_write(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]],
                   *, block_size: int | None = None, size_hint: int | None = None) -> WriteStream:
        """A streamed write; ``metadata_at_close(size)`` gives the metadata once the size is known.

        With ``size_hint`` the target sends ``metadata_at_close(size_hint)`` with the upload's first
        request, so a stream that ends at that size needs no metadata fix-up at close (on S3, no
        self-copy of a multipart object); any other final size is still bound correctly at close.
        """
        ...

    def open_read(self, path: str, *, block_size: int | None = None) -> BinaryIO:
        """A readable binary stream of the object."""
        ...

    def read(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """The object's bytes, or the range ``[start, end)``."""
        ...

    def stat(self, path: str) -> ObjectInfo:
        """Size, etag, canonical metadata and modification time of one object."""
        ...

    def delete(self, path: str) -> None:
        """Remove the object. A missing object raises ``FileNotFoundError``."""
        ...

    def delete_if(self, path: str, decision_id: str) -> bool:
        """Remove the object only while it holds ``decision_id``'s bytes (its ``greenroute_decision``).

        Another writer may store the same path at any moment; its object must survive. Where the
        backend has a conditional delete (an ETag or generation precondition, or a lock around the
        final rename of a local file) the check and the delete are one atomic step.

        Returns:
            Whether the object was removed (``False``: missing, or it holds another decision).
        """
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose logical path starts with ``prefix``, recursively, with metadata."""
        ...

    def copy(self, src: str, dst: str, metadata: Mapping[str, str]) -> ObjectInfo:
        """Server-side copy within this target, replacing the metadata."""
        ...


# -- catalog ------------------------------------------------------------------------------------


class Placement(NamedTuple):
    """Where a path's live entry is: the cheapest answer a catalog gives before a write."""

    decision_id: str
    backend_id: str
    url: str


class Catalog(Protocol):
    """Where every logical path lives, and the carbon ledger of everything ever committed.

    A write costs one durable transaction: :meth:`commit`, a compare-and-set against the live entry
    the write saw (:meth:`placement`) before it stored its object. Readers see only committed entries,
    at most one per path. An overwrite, delete or move closes the old entry (it stays as history).
    Objects are self-describing, so a crash between the object write and the commit leaves an object
    that ``fsck`` adopts or removes and ``probe`` adopts; no pending record is needed for that.
    Pending entries are exclusive creates' reservations.
    """

    def placement(self, path: str) -> Placement | None:
        """The path's live entry, in brief (one indexed read)."""
        ...

    def commit(self, entry: CatalogEntry, *, expected: str | None, reason: str = "overwritten",
               at: datetime | None = None) -> tuple[CatalogEntry, CatalogEntry | None]:
        """Make ``entry`` the path's live entry, if the live entry is still ``expected``.

        Args:
            entry: The new entry (its state is set to committed).
            expected: The decision id of the live entry the write saw, or ``None`` if it saw none.
            reason: The ``closed_reason`` of the entry this one replaces (``"moved"`` for a rebalance).
            at: When the replaced entry's at-rest period ends (its ``closed_at``); now when ``None``.
                The router passes the new entry's ``created_at``, so a path's ledger has no gap.

        Returns:
            The committed entry, and the entry it closed (if the path had one).

        Raises:
            greenroute.errors.CommitConflictError: The live entry is another; ``current`` says which.
        """
        ...

    def begin(self, entry: CatalogEntry) -> None:
        """Reserve a path for an exclusive create (a pending entry keyed by ``entry.decision_id``).

        Raises:
            FileExistsError: The path has a live entry or another reservation.
        """
        ...

    def abort(self, decision_id: str) -> None:
        """Forget a reservation. Unknown ids are ignored."""
        ...

    def lookup(self, path: str) -> CatalogEntry | None:
        """The committed entry for ``path``."""
        ...

    def decision(self, decision_id: str) -> CatalogEntry | None:
        """The entry of one decision, in any state (``fsck`` tells a closed write from a lost one)."""
        ...

    def list(self, prefix: str = "", *, start_after: str | None = None,
             limit: int | None = None) -> list[CatalogEntry]:
        """Committed entries whose path starts with ``prefix``, sorted by path.

        Args:
            prefix: Only paths starting with this.
            start_after: Only paths sorting after this one (for paging).
            limit: At most this many entries.
        """
        ...

    def remove(self, path: str, *, expected: str | None = None, reason: str = "deleted",
               at: datetime | None = None) -> CatalogEntry | None:
        """Close the live entry of ``path`` (if it is still ``expected``, when given) at ``at`` (default now);
        returns it.

        Raises:
            greenroute.errors.CommitConflictError: ``expected`` was given and the live entry is another.
        """
        ...

    def pending(self) -> builtins.list[CatalogEntry]:
        """Every pending entry, oldest first."""
        ...

    def put(self, entry: CatalogEntry) -> None:
        """Make ``entry`` the live entry for its path unconditionally (``probe``, ``fsck`` adoption)."""
        ...

    def swap(self, entries: Iterable[CatalogEntry], *, keep_backends: Iterable[str] = ()) -> builtins.list[str]:
        """Replace every live entry with ``entries`` in one transaction (``reindex``).

        Live entries on ``keep_backends`` (backends that could not be listed) are kept, and a rebuilt
        entry for a path that one of them holds is left out.

        Returns:
            The paths left out because a kept entry holds them.
        """
        ...

    def history(self, prefix: str = "", *, since: datetime | None = None,
                until: datetime | None = None) -> Iterator[CatalogEntry]:
        """Every committed or closed entry (the ledger) under ``prefix`` whose at-rest period overlaps
        ``[since, until)``, oldest first."""
        ...

    def aggregate(self, query: LedgerQuery) -> builtins.list[LedgerTotals]:
        """The ledger's sums for ``query``, computed by the database: one row per group (and time bucket).

        Every figure follows :class:`LedgerTotals`; rows are sorted by key, then bucket.
        """
        ...

    def ledger(self, query: LedgerQuery) -> Iterator[LedgerObject]:
        """One row per ledger entry in ``query``'s scope (its keys and buckets are ignored), oldest first,
        with the same figures per entry that :meth:`aggregate` sums. Streams in pages."""
        ...

    def clear(self) -> None:
        """Drop every entry, history included."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# -- the carbon ledger --------------------------------------------------------------------------

#: What a ledger query may group by: an entry's column, or (``prefix``) its first directories.
LEDGER_KEYS: tuple[str, ...] = ("backend", "namespace", "prefix", "region", "signal", "source", "model",
                                "baseline")

#: Microseconds in an average month (730 h, as in the carbon model), the unit of every ``gco2e_month`` rate.
MONTH_US = 730 * 3600 * 1_000_000


@dataclass(frozen=True, slots=True)
class LedgerQuery:
    """The scope of a ledger report: a period, a prefix, what to group by and the time buckets.

    An entry is in scope when it was written in ``[since, until)`` or held into that period. Its write
    counts when it was written in the period; its at-rest carbon accrues at its rate (``gco2e_month``
    per 730 h) over the part of ``[created_at, closed_at or until)`` inside the period.

    Attributes:
        until: End of the period (exclusive); entries still held accrue up to it.
        since: Start of the period (inclusive); ``None``: from the first entry.
        prefix: Only paths starting with this.
        keys: Group by these (each one of :data:`LEDGER_KEYS`); empty: one group.
        depth: How many directory levels the ``prefix`` key keeps (``lab/batch-00/`` is depth 2).
        buckets: Starts of consecutive time buckets, ascending: each ends where the next starts and the
            last at ``until``. Sums are then per group and bucket, and writes before the first start are
            left out.
        market_factors: A market-based emission factor (gCO2e/kWh) by backend id, for the separate
            market-based figure. Location-based figures never use them.
    """

    until: datetime
    since: datetime | None = None
    prefix: str = ""
    keys: tuple[str, ...] = ()
    depth: int = 1
    buckets: tuple[datetime, ...] = ()
    market_factors: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """The ledger's sums for one group (and time bucket). Carbon figures are gCO2e, location-based.

    "Held" means in the catalog: committed, and not yet closed by an overwrite, delete or move.

    Attributes:
        key: The group's values, one per query key (``None`` where an entry has none).
        bucket: The index of the time bucket in ``LedgerQuery.buckets``; ``None`` without buckets.
        objects: Entries written in the period (bucket) or held into it.
        bytes: Their bytes.
        writes: Entries written in the period.
        write_gco2e: Those writes' estimates.
        at_rest_gco2e: At-rest carbon accrued in the period: rate x time held.
        gco2e_month: The at-rest rate of what is held at the end of the period, per 730 h.
        held_objects: Entries held at the end of the period.
        baseline_objects: Entries with a baseline (same signal kind and model, decided at write time).
        baseline_gco2e: Their baseline write (when written in the period) plus baseline at rest accrued.
        compared_gco2e: The same entries' own write plus at rest accrued (what the baseline is compared with).
        stale_objects: Entries whose estimate used stale or fallback grid data.
        marginal_objects: Entries estimated on a marginal signal (the others are average).
        market_objects: Entries on backends with a market-based factor.
        market_gco2e: Their write plus at rest accrued, on the market-based factor instead of the grid's.
        intensity_sum: The sum of the grid intensities the writes used (divide by ``writes``).
        first_write: The earliest write in scope (without buckets).
        last_write: The latest write in scope (without buckets).
    """

    key: tuple[str | None, ...]
    bucket: int | None
    objects: int
    bytes: int
    writes: int
    write_gco2e: float
    at_rest_gco2e: float
    gco2e_month: float
    held_objects: int
    baseline_objects: int
    baseline_gco2e: float
    compared_gco2e: float
    stale_objects: int
    marginal_objects: int
    market_objects: int
    market_gco2e: float
    intensity_sum: float
    first_write: datetime | None = None
    last_write: datetime | None = None


class LedgerObject(NamedTuple):
    """One ledger entry with its figures for a period: what :meth:`Catalog.aggregate` sums.

    Attributes:
        entry: The catalog entry, as committed (and closed, if it was).
        held_seconds: How long it was held inside the period.
        written_in_period: Its write falls in the period (so ``entry.write_gco2e`` counts).
        at_rest_gco2e: At-rest carbon accrued in the period.
        baseline_gco2e: The baseline's write (when it counts) plus its at rest over the same time;
            ``None`` without a baseline.
        market_gco2e: The market-based figure, when its backend declares a factor.
    """

    entry: CatalogEntry
    held_seconds: float
    written_in_period: bool
    at_rest_gco2e: float
    baseline_gco2e: float | None
    market_gco2e: float | None


# -- shared grid cache --------------------------------------------------------------------------

#: A grid value's cache key: (source name, region, the source's zone or ``None``, signal kind).
GridKey = tuple[str, str, str | None, SignalKind]


class SharedGridEntry(NamedTuple):
    """What the fleet's cache holds for one key, from one batched read.

    Attributes:
        value: The newest value the fleet holds, fresh or not, with the provenance of the process
            that fetched it; ``None`` when there is none or what is there is unusable.
        fresh: The value is within the fleet's TTL.
        refreshing: Some process holds the key's fetch lock.
        failure: Why the fleet's last fetch for the key failed, while its backoff lasts.
        foreign: Something malformed or foreign sits under the key (it is ignored, then overwritten).
    """

    value: GridCarbonData | None
    fresh: bool
    refreshing: bool
    failure: str | None
    foreign: bool = False


class SharedGridClaim(NamedTuple):
    """The answer to an attempt to become the one process that fetches a key.

    ``outcome`` is ``"claimed"`` (fetch it, then :meth:`SharedGridCache.store` with ``token``),
    ``"fresh"`` (another process just stored ``value``), ``"busy"`` (another process is fetching),
    ``"failed"`` (the fleet's last fetch failed: ``detail`` says why) or ``"budget"`` (the source's
    fleet-wide rate budget is spent: ``detail`` names it).
    """

    outcome: Literal["claimed", "fresh", "busy", "failed", "budget"]
    value: GridCarbonData | None = None
    token: str | None = None
    detail: str = ""


class SharedGridCache(Protocol):
    """Grid values, fetch locks and rate budgets shared by every process of a fleet (Redis, Valkey).

    Every method is one round trip whatever the number of keys, and bounded by a short timeout.
    Failures are :class:`OSError` (``ConnectionError``, ``TimeoutError``) with a secret-free message,
    never the driver's own exception; :class:`greenroute.signals.GridSignals` then falls back to its
    per-process cache. Values keep their provenance; credentials are never stored.

    Attributes:
        description: Where the cache is, without credentials (``"redis 10.0.0.5:6379/0"``).
    """

    description: str

    def read(self, keys: Sequence[GridKey]) -> builtins.list[SharedGridEntry]:
        """Each key's entry, in order."""
        ...

    def claim(self, keys: Sequence[GridKey], *, force: Sequence[bool] = ()) -> builtins.list[SharedGridClaim]:
        """Try to take each key's fetch lock (and one call of its source's rate budget).

        Args:
            keys: The keys to fetch.
            force: Per key, ignore a fresh marker (what is stored under the key was unusable).
        """
        ...

    def store(self, key: GridKey, value: GridCarbonData, token: str, *, ttl_seconds: float,
              keep_seconds: float) -> bool:
        """Store a fetched value, fresh for ``ttl_seconds`` and kept ``keep_seconds``, and release the lock.

        Returns:
            False when a newer fetch already stored a value (the fencing token is older), so nothing changed.
        """
        ...

    def fail(self, key: GridKey, token: str, reason: str, *, backoff_seconds: float) -> None:
        """Record that the fetch failed (other processes skip the key for ``backoff_seconds``; 0 records
        nothing) and release the lock if ``token`` still holds it."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


# -- multipart uploads --------------------------------------------------------------------------


class MultipartWrite(Protocol):
    """A target's multipart upload: numbered parts sent to the backend as they come, then one object.

    Parts may arrive in any order and from several threads at once; sending a part number again
    replaces it. Each part goes to the backend's own staging (S3's UploadPart, Azure's staged
    blocks, part objects on GCS, part files in a local target's folder, memory), never to a spool
    on the caller's disk. Nothing is visible at the path until :meth:`complete`.

    Attributes:
        path: The logical path the upload will complete at.
    """

    path: str

    def upload_part(self, number: int, data: bytes) -> str | None:
        """Send part ``number`` (1 to 10,000); returns the backend's tag for it, when it gives one.

        Raises:
            greenroute.errors.TargetUnavailableError: A fault worth failing over (connection, timeout, 5xx).
        """
        ...

    def complete(self, parts: Sequence[int]) -> ObjectInfo:
        """Join the listed parts (ascending part numbers, each sent) into the object, with its metadata.

        The metadata is ``metadata_at_close(size)`` for the real size. Parts sent but not listed are
        dropped. A failed completion leaves the upload open, as on S3: it can be completed or aborted.
        """
        ...

    def abort(self) -> None:
        """Drop the upload and its staged parts; nothing becomes visible."""
        ...


class MultipartTarget(StorageTarget, Protocol):
    """A :class:`StorageTarget` that takes multipart uploads (every target greenroute ships does)."""

    def open_multipart(self, path: str, metadata_at_close: Callable[[int], Mapping[str, str]], *,
                       size_hint: int | None = None) -> MultipartWrite:
        """Begin a multipart upload of ``path``; ``metadata_at_close(size)`` gives the metadata for a size.

        Backends that need the metadata before the first part (S3's CreateMultipartUpload) are sent
        ``metadata_at_close(size_hint)``, or, without a hint, the values for the first part's size; a
        completed object of another size still carries the values of its real size.
        """
        ...
