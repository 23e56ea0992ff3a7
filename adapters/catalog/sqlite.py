"""The SQLite catalog: greenroute's embedded default, at ``catalog.url = "sqlite:///path/catalog.db"``.

One table holds every entry (the ledger): pending reservations, the committed live entry of each
path, and closed entries (overwritten, deleted or moved), keyed by decision id. A partial unique
index allows at most one committed entry per path, so the catalog can never show two live copies.

A write commits in one transaction (:meth:`SqliteCatalog.commit`): a compare-and-set against the
live entry the write saw, which closes that entry and inserts the new one. The database runs in WAL
mode with ``synchronous = NORMAL``, so readers never block the writer, and every write transaction
starts with ``BEGIN IMMEDIATE`` (or is one statement, as the commit of a new path is) under a busy
timeout, so writers in one process (one connection per thread) and across processes on one machine
queue instead of failing. A lock held past the timeout is a
:class:`~greenroute.errors.CatalogUnavailableError`, never a ``sqlite3`` error.

The schema carries a version (``PRAGMA user_version``) and forward migrations, run on first use
under the same write lock, so two processes opening a new file at once cannot race.

Listing by prefix is a range scan on the path index (``path >= prefix AND path < prefix_end``),
so a lookup or listing costs O(log n) plus the rows returned.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from greenroute.errors import CatalogError, CatalogUnavailableError, CommitConflictError, ConfigError
from greenroute.model import CatalogEntry, EntryState, utcnow
from greenroute.ports import LedgerObject, LedgerQuery, LedgerTotals, Placement

from . import _ledger
from ._rows import COLUMNS, as_committed, entry_from_row, prefix_end, row_from_entry

__all__ = ["SqliteCatalog", "from_url"]

_SCHEMA_VERSION = 2

_TABLE = """
CREATE TABLE entries (
    decision_id          TEXT PRIMARY KEY,
    path                 TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'closed')),
    backend_id           TEXT NOT NULL,
    url                  TEXT NOT NULL,
    size                 INTEGER NOT NULL,
    etag                 TEXT,
    write_gco2e          REAL NOT NULL,
    gco2e_month          REAL NOT NULL,
    intensity            REAL NOT NULL,
    signal               TEXT NOT NULL,
    source               TEXT NOT NULL,
    failovers            TEXT NOT NULL DEFAULT '',
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    region               TEXT,
    grid_zone            TEXT,
    observed_at          TEXT,
    is_estimated         INTEGER NOT NULL DEFAULT 0,
    is_stale             INTEGER NOT NULL DEFAULT 0,
    fallback             INTEGER NOT NULL DEFAULT 0,
    model_version        TEXT,
    retention_days       REAL,
    baseline_backend     TEXT,
    baseline_write_gco2e REAL,
    baseline_gco2e_month REAL,
    baseline_note        TEXT,
    closed_at            TEXT,
    closed_reason        TEXT,
    moves                TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX entries_committed_path ON entries (path) WHERE state = 'committed';
CREATE INDEX entries_path ON entries (path);
CREATE INDEX entries_created ON entries (created_at);
"""

#: Forward migrations: version -> the statements that take the schema from version - 1 to it.
_MIGRATIONS: dict[int, str] = {
    # 1 -> 2: the ledger. Closed entries stay as history, so the state CHECK changes, which SQLite
    # can only do by rebuilding the table.
    2: _TABLE.replace("CREATE TABLE entries", "CREATE TABLE entries_v2")
              .replace(" ON entries ", " ON entries_v2 ")
              .replace("entries_committed_path", "entries_v2_committed_path")
              .replace("entries_path", "entries_v2_path").replace("entries_created", "entries_v2_created")
    + """
INSERT INTO entries_v2 (decision_id, path, state, backend_id, url, size, etag, write_gco2e, gco2e_month, intensity,
                        signal, source, failovers, created_at, updated_at)
    SELECT decision_id, path, state, backend_id, url, size, etag, write_gco2e, gco2e_month, intensity,
           signal, source, failovers, created_at, updated_at FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v2 RENAME TO entries;
""",
}

_INSERT = (f"INSERT INTO entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           "ON CONFLICT (decision_id) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "decision_id"))
#: The commit of a path expected to have no live entry: a unique violation on the live path, or this
#: decision being that live entry already, inserts nothing (and the caller reads the live entry).
_INSERT_NEW = _INSERT + " WHERE NOT (entries.state = 'committed' AND entries.path = excluded.path)"
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM entries"
_LEDGER_PAGE = 5000
_CLOSE = "UPDATE entries SET state = 'closed', closed_at = ?, closed_reason = ?, updated_at = ? WHERE decision_id = ?"


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
        busy_timeout_ms: How long a writer waits for another process's transaction before
            :class:`~greenroute.errors.CatalogUnavailableError`.

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
        with self._errors():
            if self._memory:
                # One shared connection: every thread must see the same in-memory database.
                self._shared: sqlite3.Connection | None = self._connect()
            else:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._shared = None
            self._migrate()

    def __repr__(self) -> str:
        return f"SqliteCatalog({self.path!r})"

    # -- connections and errors ---------------------------------------------------------------

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
    def _errors(self) -> Iterator[None]:
        """Turn ``sqlite3`` errors into greenroute's, keeping the cause."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise CatalogUnavailableError(
                    f"catalog {self.path} stayed locked by another writer for over {self._busy_timeout_ms} ms "
                    f"({text})") from exc
            raise CatalogError(f"catalog {self.path}: {text}") from exc
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {self.path}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        guard = self._lock if self._shared is not None else _NULL_LOCK
        with self._errors(), guard:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        guard = self._lock if self._shared is not None else _NULL_LOCK
        with self._errors(), guard:
            return list(self._db().execute(sql, params))

    def _migrate(self) -> None:
        if int(self._db().execute("PRAGMA user_version").fetchone()[0]) == _SCHEMA_VERSION:
            return  # current: opening takes no write lock
        with self._write() as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()
                if exists is None:
                    _script(db, _TABLE)
                    version = _SCHEMA_VERSION
                else:
                    version = 1  # the first release had no version number
            if version > _SCHEMA_VERSION:
                raise CatalogError(f"catalog {self.path} has schema version {version}, newer than this greenroute "
                                   f"knows ({_SCHEMA_VERSION}); upgrade greenroute")
            for step in range(version + 1, _SCHEMA_VERSION + 1):
                _script(db, _MIGRATIONS[step])
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # -- the Catalog protocol ---------------------------------------------------------------

    def placement(self, path: str) -> Placement | None:
        """The path's live entry, in brief."""
        rows = self._read("SELECT decision_id, backend_id, url FROM entries WHERE path = ? AND state = 'committed'",
                          (path,))
        return Placement(str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def commit(self, entry: CatalogEntry, *, expected: str | None, reason: str = "overwritten",
               at: datetime | None = None) -> tuple[CatalogEntry, CatalogEntry | None]:
        """Make ``entry`` the live entry of its path if the live entry is still ``expected``; the replaced
        entry is closed with ``reason`` at ``at`` (default now)."""
        now = at or utcnow()
        committed = as_committed(entry)
        if expected is None:
            # A new path (the common write) is one INSERT, a transaction of its own: the unique index on
            # live paths is the compare-and-set (a violation, or this decision already live, inserts
            # nothing; the transaction below then reads what is live). One statement holds SQLite's write
            # lock only while SQLite runs it, never while this thread waits for the GIL between statements.
            guard = self._lock if self._shared is not None else _NULL_LOCK
            with self._errors(), guard:
                try:
                    inserted = self._db().execute(_INSERT_NEW, row_from_entry(committed)).rowcount
                except sqlite3.IntegrityError:
                    inserted = 0
            if inserted == 1:
                return committed, None
        with self._write() as db:
            old = _live(db, entry.path)
            if (old.decision_id if old is not None else None) != expected:
                raise CommitConflictError(entry.path, _brief(old))
            if old is not None and old.decision_id != entry.decision_id:
                db.execute(_CLOSE, (now.isoformat(), reason, now.isoformat(), old.decision_id))
            db.execute(_INSERT, row_from_entry(committed))
        return committed, (old if old is not None and old.decision_id != entry.decision_id else None)

    def begin(self, entry: CatalogEntry) -> None:
        """Reserve the path for an exclusive create."""
        pending = replace(entry, state=EntryState.PENDING)
        with self._write() as db:
            taken = db.execute("SELECT state FROM entries WHERE path = ? AND state IN ('committed', 'pending')",
                               (entry.path,)).fetchone()
            if taken is not None:
                raise FileExistsError(17, f"already {'exists' if taken[0] == 'committed' else 'being created'}",
                                      entry.path)
            db.execute(_INSERT, row_from_entry(pending))

    def abort(self, decision_id: str) -> None:
        """Forget a reservation."""
        with self._write() as db:
            db.execute("DELETE FROM entries WHERE decision_id = ? AND state = 'pending'", (decision_id,))

    def lookup(self, path: str) -> CatalogEntry | None:
        """The committed entry for ``path``."""
        rows = self._read(f"{_SELECT} WHERE path = ? AND state = 'committed'", (path,))
        return entry_from_row(rows[0]) if rows else None

    def decision(self, decision_id: str) -> CatalogEntry | None:
        """The entry of one decision, in any state."""
        rows = self._read(f"{_SELECT} WHERE decision_id = ?", (decision_id,))
        return entry_from_row(rows[0]) if rows else None

    def list(self, prefix: str = "", *, start_after: str | None = None,
             limit: int | None = None) -> list[CatalogEntry]:
        """Committed entries under ``prefix`` (after ``start_after``, at most ``limit``), sorted by path."""
        where = ["state = 'committed'"]
        params: list[object] = []
        if prefix:
            where.append("path >= ? AND path < ?")
            params += [prefix, prefix_end(prefix)]
        if start_after is not None:
            where.append("path > ?")
            params.append(start_after)
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY path"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        return [entry_from_row(r) for r in self._read(sql, tuple(params))]

    def remove(self, path: str, *, expected: str | None = None, reason: str = "deleted",
               at: datetime | None = None) -> CatalogEntry | None:
        """Close the live entry of ``path`` (if it is still ``expected``, when given) at ``at`` (default now)."""
        now = (at or utcnow()).isoformat()
        with self._write() as db:
            old = _live(db, path)
            if expected is not None and (old is None or old.decision_id != expected):
                raise CommitConflictError(path, _brief(old))
            if old is not None:
                db.execute(_CLOSE, (now, reason, now, old.decision_id))
        return old

    def pending(self) -> builtins.list[CatalogEntry]:
        """Every pending entry, oldest first."""
        return [entry_from_row(r) for r in self._read(f"{_SELECT} WHERE state = 'pending' ORDER BY created_at")]

    def put(self, entry: CatalogEntry) -> None:
        """Make ``entry`` the live entry for its path, closing any other."""
        now = utcnow().isoformat()
        committed = replace(entry, state=EntryState.COMMITTED, closed_at=None, closed_reason=None)
        with self._write() as db:
            old = _live(db, entry.path)
            if old is not None and old.decision_id != entry.decision_id:
                db.execute(_CLOSE, (now, "replaced", now, old.decision_id))
            db.execute("DELETE FROM entries WHERE decision_id = ? AND state = 'pending'", (entry.decision_id,))
            db.execute(_INSERT, row_from_entry(committed))

    def swap(self, entries: Iterable[CatalogEntry], *, keep_backends: Iterable[str] = ()) -> builtins.list[str]:
        """Replace the live entries with ``entries`` in one transaction, keeping those on ``keep_backends``."""
        now = utcnow().isoformat()
        keep = sorted(set(keep_backends))
        marks = ", ".join("?" * len(keep))
        left_out: builtins.list[str] = []
        with self._write() as db:
            kept = {str(r[0]) for r in db.execute(
                f"SELECT path FROM entries WHERE state = 'committed' AND backend_id IN ({marks})", keep)}
            db.execute(f"UPDATE entries SET state = 'closed', closed_at = ?, closed_reason = 'reindexed', "
                       f"updated_at = ? WHERE state = 'committed' AND backend_id NOT IN ({marks})", (now, now, *keep))
            for entry in entries:
                if entry.path in kept:
                    left_out.append(entry.path)
                    continue
                committed = replace(entry, state=EntryState.COMMITTED, closed_at=None, closed_reason=None)
                db.execute(_INSERT, row_from_entry(committed))
        return left_out

    def history(self, prefix: str = "", *, since: datetime | None = None,
                until: datetime | None = None) -> Iterator[CatalogEntry]:
        """Committed and closed entries under ``prefix`` whose at-rest period overlaps ``[since, until)``."""
        where = ["state IN ('committed', 'closed')"]
        params: list[object] = []
        if prefix:
            where.append("path >= ? AND path < ?")
            params += [prefix, prefix_end(prefix)]
        if until is not None:
            where.append("created_at < ?")
            params.append(until.isoformat())
        if since is not None:
            where.append("(closed_at IS NULL OR closed_at > ?)")
            params.append(since.isoformat())
        rows = self._read(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at", tuple(params))
        return (entry_from_row(r) for r in rows)

    def clear(self) -> None:
        """Drop every entry, history included."""
        with self._write() as db:
            db.execute("DELETE FROM entries")

    def count(self) -> int:
        """How many committed entries there are."""
        rows = self._read("SELECT COUNT(*) FROM entries WHERE state = 'committed'")
        value = rows[0][0]
        return int(value) if isinstance(value, int) else 0

    def aggregate(self, query: LedgerQuery) -> builtins.list[LedgerTotals]:
        """The ledger's sums for ``query``, computed in SQL (see :mod:`._ledger`)."""
        sql, params = _ledger.totals_sql(query, _ledger.SQLITE)
        return _ledger.totals_from_rows(query, self._ledger_read(sql, params))

    def ledger(self, query: LedgerQuery) -> Iterator[LedgerObject]:
        """One row per ledger entry in ``query``'s scope, oldest first, a page of 5,000 at a time."""
        after: tuple[object, object] | None = None
        while True:
            sql, params = _ledger.objects_sql(query, _ledger.SQLITE, after=after, limit=_LEDGER_PAGE)
            rows = self._ledger_read(sql, params)
            for row in rows:
                item = _ledger.object_from_row(row)
                if item is not None:
                    yield item
            if len(rows) < _LEDGER_PAGE:
                return
            after = (rows[-1][COLUMNS.index("created_at")], rows[-1][COLUMNS.index("decision_id")])

    def _ledger_read(self, sql: str, params: dict[str, object]) -> builtins.list[tuple[object, ...]]:
        guard = self._lock if self._shared is not None else _NULL_LOCK
        with self._errors(), guard:
            db = self._db()
            # SQLite cannot split a path; the prefix grouping calls Python (registering is idempotent).
            db.create_function("greenroute_prefix", 2, _ledger.prefix_of, deterministic=True)
            return list(db.execute(sql, params))

    # -- bulk: catalog migrate ---------------------------------------------------------------

    def entries(self) -> Iterator[CatalogEntry]:
        """Every entry in every state, in ``decision_id`` order, read a page at a time."""
        after = ""
        while True:
            rows = self._read(f"{_SELECT} WHERE decision_id > ? ORDER BY decision_id LIMIT 5000", (after,))
            yield from (entry_from_row(r) for r in rows)
            if len(rows) < 5000:
                return
            after = str(rows[-1][0])

    def count_all(self) -> int:
        """How many entries there are, in every state."""
        value = self._read("SELECT COUNT(*) FROM entries")[0][0]
        return int(value) if isinstance(value, int) else 0

    def import_entries(self, entries: Iterable[CatalogEntry]) -> int:
        """Insert entries as they are, in one transaction, skipping decision ids already present (and any
        that would give a path a second live entry or reservation); returns how many were inserted."""
        rows = [row_from_entry(e) for e in entries]
        with self._write() as db:
            cur = db.executemany(f"INSERT OR IGNORE INTO entries ({', '.join(COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            return max(0, cur.rowcount)

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


def _script(db: sqlite3.Connection, script: str) -> None:
    """Run ``script`` statement by statement inside the caller's transaction (executescript would commit)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _live(db: sqlite3.Connection, path: str) -> CatalogEntry | None:
    row = db.execute(f"{_SELECT} WHERE path = ? AND state = 'committed'", (path,)).fetchone()
    return entry_from_row(row) if row is not None else None


def _brief(entry: CatalogEntry | None) -> Placement | None:
    return Placement(entry.decision_id, entry.backend_id, entry.url) if entry is not None else None
