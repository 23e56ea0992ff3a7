"""The SQLite catalog: greenroute's embedded default, at ``catalog.url = "sqlite:///path/catalog.db"``.

One table holds every entry, pending or committed, keyed by decision id; a partial unique index
allows at most one committed entry per path, so the catalog can never show two live copies.
The database runs in WAL mode, so readers never block the writer, and every write transaction
starts with ``BEGIN IMMEDIATE`` under a busy timeout, so concurrent writers in one process (one
connection per thread) and across processes on one machine queue instead of failing.

Listing by prefix is a range scan on the path index (``path >= prefix AND path < prefix_end``),
so a lookup or listing costs O(log n) plus the rows returned.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from greenroute.errors import ConfigError
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow

__all__ = ["SqliteCatalog", "from_url"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    decision_id  TEXT PRIMARY KEY,
    path         TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'committed')),
    backend_id   TEXT NOT NULL,
    url          TEXT NOT NULL,
    size         INTEGER NOT NULL,
    etag         TEXT,
    write_gco2e  REAL NOT NULL,
    gco2e_month  REAL NOT NULL,
    intensity    REAL NOT NULL,
    signal       TEXT NOT NULL,
    source       TEXT NOT NULL,
    failovers    TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_committed_path ON entries (path) WHERE state = 'committed';
CREATE INDEX IF NOT EXISTS entries_path ON entries (path);
"""

_COLUMNS = ("decision_id, path, state, backend_id, url, size, etag, write_gco2e, gco2e_month, intensity, "
            "signal, source, failovers, created_at, updated_at")


def from_url(url: str) -> SqliteCatalog:
    """Open the catalog at ``sqlite:///relative/or/absolute/path.db`` (``sqlite://`` for in-memory).

    Raises:
        ConfigError: The URL is not a sqlite URL.
    """
    if not url.startswith("sqlite://"):
        raise ConfigError(f"expected a sqlite:/// URL, got {url!r}", key="catalog.url")
    location = url.removeprefix("sqlite://")
    if location in ("", "/:memory:"):
        return SqliteCatalog(":memory:")
    return SqliteCatalog(location.removeprefix("/"))


class SqliteCatalog:
    """A :class:`~greenroute.ports.Catalog` in one SQLite file.

    Args:
        path: The database file (created with its folder if missing), or ``":memory:"``.
        busy_timeout_ms: How long a writer waits for another process's transaction.

    Example:
        >>> catalog = SqliteCatalog(":memory:")
        >>> catalog.lookup("lake/x.parquet") is None
        True
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 30_000) -> None:
        self.path = str(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._memory = self.path == ":memory:"
        if self._memory:
            # One shared connection: every thread must see the same in-memory database.
            self._shared: sqlite3.Connection | None = self._connect()
        else:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._shared = None
        self._db().executescript(_SCHEMA)  # idempotent; executescript manages its own transaction

    def __repr__(self) -> str:
        return f"SqliteCatalog({self.path!r})"

    # -- connections ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None,
                             check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if not self._memory:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._connections.append(db)
        return db

    def _db(self) -> sqlite3.Connection:
        if self._shared is not None:
            return self._shared
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        guard = self._lock if self._shared is not None else _NULL_LOCK
        with guard:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        guard = self._lock if self._shared is not None else _NULL_LOCK
        with guard:
            return list(self._db().execute(sql, params))

    # -- the Catalog protocol ---------------------------------------------------------------

    def begin(self, entry: CatalogEntry) -> None:
        """Record a pending write."""
        pending = _replace_state(entry, EntryState.PENDING)
        with self._write() as db:
            db.execute(f"INSERT INTO entries ({_COLUMNS}) VALUES ({', '.join('?' * 15)})", _row(pending))

    def commit(self, decision_id: str, *, size: int, etag: str | None, write_gco2e: float,
               gco2e_month: float) -> tuple[CatalogEntry, CatalogEntry | None]:
        """Make a pending write the path's one committed entry; returns it and the one it replaced."""
        now = utcnow().isoformat()
        with self._write() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE decision_id = ? AND state = 'pending'",
                             (decision_id,)).fetchone()
            if row is None:
                raise KeyError(decision_id)
            path = row[1]
            old = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE path = ? AND state = 'committed'",
                             (path,)).fetchone()
            if old is not None:
                db.execute("DELETE FROM entries WHERE decision_id = ?", (old[0],))
            db.execute("UPDATE entries SET state = 'committed', size = ?, etag = ?, write_gco2e = ?, "
                       "gco2e_month = ?, updated_at = ? WHERE decision_id = ?",
                       (size, etag, write_gco2e, gco2e_month, now, decision_id))
            new = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE decision_id = ?", (decision_id,)).fetchone()
        return _entry(new), (_entry(old) if old is not None else None)

    def abort(self, decision_id: str) -> None:
        """Forget a pending write."""
        with self._write() as db:
            db.execute("DELETE FROM entries WHERE decision_id = ? AND state = 'pending'", (decision_id,))

    def lookup(self, path: str) -> CatalogEntry | None:
        """The committed entry for ``path``."""
        rows = self._read(f"SELECT {_COLUMNS} FROM entries WHERE path = ? AND state = 'committed'", (path,))
        return _entry(rows[0]) if rows else None

    def list(self, prefix: str = "", *, start_after: str | None = None,
             limit: int | None = None) -> list[CatalogEntry]:
        """Committed entries under ``prefix`` (after ``start_after``, at most ``limit``), sorted by path."""
        where = ["state = 'committed'"]
        params: list[object] = []
        if prefix:
            where.append("path >= ? AND path < ?")
            params += [prefix, _prefix_end(prefix)]
        if start_after is not None:
            where.append("path > ?")
            params.append(start_after)
        sql = f"SELECT {_COLUMNS} FROM entries WHERE {' AND '.join(where)} ORDER BY path"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [_entry(r) for r in self._read(sql, tuple(params))]

    def remove(self, path: str) -> CatalogEntry | None:
        """Drop the committed entry for ``path``."""
        with self._write() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM entries WHERE path = ? AND state = 'committed'",
                             (path,)).fetchone()
            if row is not None:
                db.execute("DELETE FROM entries WHERE decision_id = ?", (row[0],))
        return _entry(row) if row is not None else None

    def pending(self) -> builtins.list[CatalogEntry]:
        """Every pending entry, oldest first."""
        rows = self._read(f"SELECT {_COLUMNS} FROM entries WHERE state = 'pending' ORDER BY created_at")
        return [_entry(r) for r in rows]

    def put(self, entry: CatalogEntry) -> None:
        """Insert or replace the committed entry for ``entry.path``."""
        committed = _replace_state(entry, EntryState.COMMITTED)
        with self._write() as db:
            db.execute("DELETE FROM entries WHERE (path = ? AND state = 'committed') OR decision_id = ?",
                       (entry.path, entry.decision_id))
            db.execute(f"INSERT INTO entries ({_COLUMNS}) VALUES ({', '.join('?' * 15)})", _row(committed))

    def clear(self) -> None:
        """Drop every entry."""
        with self._write() as db:
            db.execute("DELETE FROM entries")

    def count(self) -> int:
        """How many committed entries there are."""
        rows = self._read("SELECT COUNT(*) FROM entries WHERE state = 'committed'")
        value = rows[0][0]
        return int(value) if isinstance(value, int) else 0

    def close(self) -> None:
        """Close every connection this catalog opened."""
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NULL_LOCK = _NullLock()


def _prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _replace_state(entry: CatalogEntry, state: EntryState) -> CatalogEntry:
    from dataclasses import replace

    return replace(entry, state=state)


def _row(e: CatalogEntry) -> tuple[object, ...]:
    return (e.decision_id, e.path, e.state.value, e.backend_id, e.url, e.size, e.etag, e.write_gco2e,
            e.gco2e_month, e.carbon_intensity_g_per_kwh, e.signal.value, e.source.value,
            "\n".join(e.failovers), e.created_at.isoformat(), e.updated_at.isoformat())


def _entry(r: tuple[object, ...]) -> CatalogEntry:
    failovers = str(r[12])
    return CatalogEntry(
        decision_id=str(r[0]), path=str(r[1]), state=EntryState(str(r[2])), backend_id=str(r[3]), url=str(r[4]),
        size=int(str(r[5])), etag=None if r[6] is None else str(r[6]), write_gco2e=float(str(r[7])),
        gco2e_month=float(str(r[8])), carbon_intensity_g_per_kwh=float(str(r[9])), signal=SignalKind(str(r[10])),
        source=GridDataSource(str(r[11])), failovers=tuple(failovers.split("\n")) if failovers else (),
        created_at=datetime.fromisoformat(str(r[13])), updated_at=datetime.fromisoformat(str(r[14])),
    )
