"""The PostgreSQL catalog: one catalog for a fleet, at ``catalog.url = "postgresql://user@host:5432/db"``.

Every process of a fleet (web replicas using the boto3 drop-in, Dask or Spark workers writing
``greenroute://``) opens the same database, so they share one view of where every object is, with
the SQLite catalog's semantics on every machine at once:

* one table holds every entry (the ledger), keyed by decision id; a partial unique index allows at
  most one ``committed`` entry per path and another at most one ``pending`` reservation per path;
* a write's commit is **one round trip**: ``SELECT ... FROM gr_commit(...)``, a PL/pgSQL function
  created with the schema, run under autocommit. Inside one server-side transaction it locks the
  path's live entry (``FOR UPDATE``), compares it with the entry the write saw, closes it and
  inserts the new one, or answers ``conflict`` with the live entry as it is now. Two writers that
  both saw no entry race on the unique index; the loser gets ``conflict`` too. Reservations
  (``gr_begin``), deletes (``gr_remove``) and adoptions (``gr_put``) are one round trip each.
  (psycopg prepares a statement the fifth time a connection runs it; that one-off costs one
  extra round trip per connection and statement.)
* listings page by key (``path > $after ORDER BY path LIMIT n``) on the live-path index, never by
  OFFSET; the history pages by ``(created_at, decision_id)``.

Connections come from a :mod:`psycopg_pool` pool (``pool_size``, default 4) with autocommit and a
server-side ``statement_timeout`` (default 5000 ms). The password never comes from the config
file: libpq reads ``PGPASSWORD``, a service file or a password file itself, and ``password_env``
names another environment variable. A URL with a password is refused without echoing it, and
every message names the catalog as ``host:port/db``.

Faults. A lost connection (the server restarted, the network dropped) discards the pool's broken
connections (the pool reconnects in the background) and a call that is safe to repeat is retried
for up to ``retry_seconds`` (default 10): every read, ``abort``, ``put`` and ``clear``. A commit is
repeated only once the catalog can tell whether it applied: the new entry's decision id is looked
up first (the entry records the one it replaced), so an acknowledged write is never lost and never
applied twice. A reservation is resolved the same way. Anything else is a
:class:`~greenroute.errors.CatalogUnavailableError` (unreachable, restarting, timed out) or a
:class:`~greenroute.errors.CatalogError`, with psycopg's error as ``__cause__``.

The schema (``schema`` query parameter, default ``greenroute``) is created on first use with a
version table and forward migrations, under ``pg_advisory_xact_lock``, so processes that start at
once never race while creating it.

URL query parameters (the ``[catalog]`` keys of ``greenroute.toml`` arrive as these):
``schema``, ``pool_size``, ``statement_timeout_ms``, ``connect_timeout_seconds``, ``retry_seconds``,
``password_env``; any other parameter goes to libpq as usual (``sslmode``, ``service``, ...).
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from greenroute.errors import CatalogError, CatalogUnavailableError, CommitConflictError, ConfigError
from greenroute.model import CatalogEntry, EntryState, utcnow
from greenroute.ports import LedgerObject, LedgerQuery, LedgerTotals, Placement

from . import _ledger
from ._rows import COLUMNS, as_committed, entry_from_row, prefix_end, row_from_entry

__all__ = ["SCHEMA_VERSION", "PostgresCatalog", "PostgresSettings", "from_url"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: The first key of the two-key advisory lock that guards schema creation (the second is the schema's hash).
_LOCK_CLASS = 0x67726E  # "grn"
_SCHEMES = ("postgresql", "postgres")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
#: Rows per page of the history and entries iterators, and per batch of a bulk import.
_PAGE = 5000
_T = TypeVar("_T")

#: Column types, in :data:`COLUMNS` order; ``replaces`` (the decision a commit closed) follows them.
_TYPES: dict[str, str] = {
    "decision_id": 'text COLLATE "C" PRIMARY KEY',
    "path": 'text COLLATE "C" NOT NULL',
    "state": "text NOT NULL CHECK (state IN ('pending', 'committed', 'closed'))",
    "backend_id": "text NOT NULL",
    "url": "text NOT NULL",
    "size": "bigint NOT NULL",
    "etag": "text",
    "write_gco2e": "double precision NOT NULL",
    "gco2e_month": "double precision NOT NULL",
    "intensity": "double precision NOT NULL",
    "signal": "text NOT NULL",
    "source": "text NOT NULL",
    "failovers": "text NOT NULL DEFAULT ''",
    "created_at": "timestamptz NOT NULL",
    "updated_at": "timestamptz NOT NULL",
    "region": "text",
    "grid_zone": "text",
    "observed_at": "timestamptz",
    "is_estimated": "boolean NOT NULL DEFAULT false",
    "is_stale": "boolean NOT NULL DEFAULT false",
    "fallback": "boolean NOT NULL DEFAULT false",
    "model_version": "text",
    "retention_days": "double precision",
    "baseline_backend": "text",
    "baseline_write_gco2e": "double precision",
    "baseline_gco2e_month": "double precision",
    "baseline_note": "text",
    "closed_at": "timestamptz",
    "closed_reason": "text",
    "moves": "text NOT NULL DEFAULT ''",
}
assert tuple(_TYPES) == COLUMNS
_ALL = (*COLUMNS, "replaces")
_FLAGS = tuple(COLUMNS.index(c) for c in ("is_estimated", "is_stale", "fallback"))


def _migrations(s: str) -> dict[int, str]:
    """Forward migrations for schema ``s``: version -> the SQL that takes the schema from version - 1 to it."""
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in _TYPES.items())
    upsert = ", ".join(f"{c} = excluded.{c}" for c in _ALL if c != "decision_id")
    return {1: f"""
CREATE TABLE {s}.entries (
    {columns},
    replaces text COLLATE "C"
);
CREATE UNIQUE INDEX entries_live_path ON {s}.entries (path) WHERE state = 'committed';
CREATE UNIQUE INDEX entries_pending_path ON {s}.entries (path) WHERE state = 'pending';
CREATE INDEX entries_path ON {s}.entries (path);
CREATE INDEX entries_created ON {s}.entries (created_at, decision_id);

-- A write's commit: compare-and-set on the path's live entry, close it (with p_reason), insert the new one.
-- outcome 'ok': entry is the entry closed (NULL: none); 'conflict': entry is the live one now.
CREATE FUNCTION {s}.gr_commit(p {s}.entries, p_expected text, p_now timestamptz, p_reason text)
RETURNS TABLE (outcome text, entry {s}.entries) LANGUAGE plpgsql AS $fn$
DECLARE
    cur {s}.entries;
BEGIN
    SELECT * INTO cur FROM {s}.entries e WHERE e.path = p.path AND e.state = 'committed' FOR UPDATE;
    IF cur.decision_id IS DISTINCT FROM p_expected THEN
        IF cur.decision_id IS NULL THEN
            -- The entry this waited for was closed meanwhile: report the newest live one.
            SELECT * INTO cur FROM {s}.entries e WHERE e.path = p.path AND e.state = 'committed';
        END IF;
        RETURN QUERY SELECT 'conflict'::text, cur;
        RETURN;
    END IF;
    BEGIN
        IF cur.decision_id IS NOT NULL AND cur.decision_id <> p.decision_id THEN
            UPDATE {s}.entries e SET state = 'closed', closed_at = p_now, closed_reason = p_reason, updated_at = p_now
             WHERE e.decision_id = cur.decision_id RETURNING * INTO cur;
        ELSE
            cur := NULL;
        END IF;
        p.state := 'committed';
        p.closed_at := NULL;
        p.closed_reason := NULL;
        p.replaces := cur.decision_id;
        INSERT INTO {s}.entries SELECT (p).* ON CONFLICT (decision_id) DO UPDATE SET {upsert};
    EXCEPTION WHEN unique_violation THEN
        -- Another writer that also saw no entry committed first.
        SELECT * INTO cur FROM {s}.entries e WHERE e.path = p.path AND e.state = 'committed';
        RETURN QUERY SELECT 'conflict'::text, cur;
        RETURN;
    END;
    RETURN QUERY SELECT 'ok'::text, cur;
END
$fn$;

-- An exclusive create's reservation: NULL, or the state of what already holds the path.
CREATE FUNCTION {s}.gr_begin(p {s}.entries) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
    taken text;
BEGIN
    SELECT e.state INTO taken FROM {s}.entries e
     WHERE e.path = p.path AND e.state IN ('committed', 'pending') ORDER BY e.state = 'committed' DESC LIMIT 1;
    IF taken IS NOT NULL THEN
        RETURN taken;
    END IF;
    p.state := 'pending';
    INSERT INTO {s}.entries SELECT (p).*;
    RETURN NULL;
EXCEPTION WHEN unique_violation THEN
    RETURN 'pending';
END
$fn$;

-- Close the live entry of a path (if it is still p_expected, when given).
-- outcome 'ok': entry is the entry closed (NULL: none); 'conflict': entry is the live one.
CREATE FUNCTION {s}.gr_remove(p_path text, p_expected text, p_reason text, p_now timestamptz)
RETURNS TABLE (outcome text, entry {s}.entries) LANGUAGE plpgsql AS $fn$
DECLARE
    cur {s}.entries;
BEGIN
    SELECT * INTO cur FROM {s}.entries e WHERE e.path = p_path AND e.state = 'committed' FOR UPDATE;
    IF p_expected IS NOT NULL AND cur.decision_id IS DISTINCT FROM p_expected THEN
        RETURN QUERY SELECT 'conflict'::text, cur;
        RETURN;
    END IF;
    IF cur.decision_id IS NOT NULL THEN
        UPDATE {s}.entries e SET state = 'closed', closed_at = p_now, closed_reason = p_reason, updated_at = p_now
         WHERE e.decision_id = cur.decision_id RETURNING * INTO cur;
    END IF;
    RETURN QUERY SELECT 'ok'::text, cur;
END
$fn$;

-- Adopt an entry unconditionally (probe, fsck): close any other live entry of its path.
CREATE FUNCTION {s}.gr_put(p {s}.entries, p_now timestamptz) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    old text;
BEGIN
    SELECT e.decision_id INTO old FROM {s}.entries e WHERE e.path = p.path AND e.state = 'committed' FOR UPDATE;
    IF old IS NOT NULL AND old <> p.decision_id THEN
        UPDATE {s}.entries e SET state = 'closed', closed_at = p_now, closed_reason = 'replaced', updated_at = p_now
         WHERE e.decision_id = old;
    ELSE
        old := NULL;
    END IF;
    DELETE FROM {s}.entries e WHERE e.decision_id = p.decision_id AND e.state = 'pending';
    p.state := 'committed';
    p.closed_at := NULL;
    p.closed_reason := NULL;
    p.replaces := old;
    INSERT INTO {s}.entries SELECT (p).* ON CONFLICT (decision_id) DO UPDATE SET {upsert};
END
$fn$;
"""}


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostgresSettings:
    """Where the catalog is and how to talk to it (no password: that comes from the environment).

    Attributes:
        conninfo: The libpq URL without greenroute's own query parameters (and never with a password).
        schema: The schema holding the catalog's table and functions. Defaults to ``greenroute``.
        pool_size: The most connections one process opens. Defaults to 4.
        statement_timeout_ms: The server-side limit on one statement (0: none). Defaults to 5000.
        connect_timeout_seconds: How long opening a connection may take. Defaults to 5.
        retry_seconds: How long a call that is safe to repeat keeps retrying while the database is
            unreachable or restarting. Defaults to 10.
        password_env: An environment variable holding the password, if not libpq's own ``PGPASSWORD``.
    """

    conninfo: str
    schema: str = "greenroute"
    pool_size: int = 4
    statement_timeout_ms: int = 5000
    connect_timeout_seconds: float = 5.0
    retry_seconds: float = 10.0
    password_env: str | None = None

    @classmethod
    def from_url(cls, url: str) -> PostgresSettings:
        """Parse ``postgresql://user@host:port/db?schema=...&pool_size=...``.

        Raises:
            ConfigError: Not a PostgreSQL URL, a password in it, or a bad parameter value.
        """
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise ConfigError(f"expected a postgresql:// URL, got a {parts.scheme or 'scheme-less'} one",
                              key="catalog.url")
        query = parse_qsl(parts.query, keep_blank_values=True)
        if _has_password(url):
            raise ConfigError("the catalog URL must not contain a password (it would end up in logs and "
                              "process listings); set PGPASSWORD, name a variable with [catalog] password_env, "
                              "or use a libpq service or password file", key="catalog.url")
        ours = {k: v for k, v in query if k in _PARAMETERS}
        rest = [(k, v) for k, v in query if k not in _PARAMETERS]
        values: dict[str, Any] = {}
        for key, text in ours.items():
            values[key] = _PARAMETERS[key](text)
        # libpq decodes %XX but not "+", so a space must stay %20.
        conninfo = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest, quote_via=quote)))
        return cls(conninfo=conninfo, **values)

    def where(self) -> str:
        """``host:port/db`` as libpq will resolve it (environment defaults included), without credentials."""
        try:
            d = conninfo_to_dict(self.conninfo)
        except psycopg.Error:
            d = {}
        host = str(d.get("host") or os.environ.get("PGHOST") or "localhost")
        port = str(d.get("port") or os.environ.get("PGPORT") or "5432")
        user = str(d.get("user") or os.environ.get("PGUSER") or "")
        db = str(d.get("dbname") or os.environ.get("PGDATABASE") or user or "postgres")
        return f"{host}:{port}/{db}"

    def connect_kwargs(self) -> dict[str, Any]:
        """libpq parameters added to :attr:`conninfo` for every connection (the password among them)."""
        d = conninfo_to_dict(self.conninfo)
        options = str(d.get("options") or "")
        options += f" -c statement_timeout={int(self.statement_timeout_ms)} -c TimeZone=UTC"
        kwargs: dict[str, Any] = {
            "options": options.strip(),
            "connect_timeout": max(1, round(self.connect_timeout_seconds)),
            "application_name": str(d.get("application_name") or "greenroute"),
            "autocommit": True,
        }
        if self.password_env:
            password = os.environ.get(self.password_env)
            if not password:
                raise ConfigError(f"catalog.password_env names ${self.password_env}, which is not set",
                                  key="catalog.password_env")
            kwargs["password"] = password
        return kwargs


def _identifier(text: str) -> str:
    if not _IDENTIFIER.match(text):
        raise ConfigError("expected a lowercase SQL identifier (letters, digits, _; at most 63)",
                          key="catalog.schema")
    return text


def _positive_int(key: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"expected a whole number, got {text!r}", key=f"catalog.{key}") from None
        if value < (0 if key == "statement_timeout_ms" else 1):
            raise ConfigError(f"expected a whole number >= {0 if key == 'statement_timeout_ms' else 1}, got {value}",
                              key=f"catalog.{key}")
        return value

    return parse


def _seconds(key: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"expected a number of seconds, got {text!r}", key=f"catalog.{key}") from None
        if value < 0:
            raise ConfigError(f"expected a number of seconds >= 0, got {value:g}", key=f"catalog.{key}")
        return value

    return parse


def _env_name(text: str) -> str:
    if not text:
        raise ConfigError("expected the name of an environment variable", key="catalog.password_env")
    return text


_PARAMETERS: dict[str, Callable[[str], Any]] = {
    "schema": _identifier,
    "pool_size": _positive_int("pool_size"),
    "statement_timeout_ms": _positive_int("statement_timeout_ms"),
    "connect_timeout_seconds": _seconds("connect_timeout_seconds"),
    "retry_seconds": _seconds("retry_seconds"),
    "password_env": _env_name,
}


def _has_password(url: str) -> bool:
    """Whether ``url`` carries a password, in its user info or as a query parameter."""
    parts = urlsplit(url)
    if "@" in parts.netloc and ":" in parts.netloc.rsplit("@", 1)[0]:
        return True
    return any(k == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True))


def from_url(url: str) -> PostgresCatalog:
    """Open the catalog at ``postgresql://user@host:port/db`` (the ``greenroute.catalogs`` entry point).

    Raises:
        ConfigError: The URL is not usable (see :meth:`PostgresSettings.from_url`).
        CatalogUnavailableError: The database cannot be reached; the message names host and port.
    """
    return PostgresCatalog(PostgresSettings.from_url(url))


# -- the catalog --------------------------------------------------------------------------------


class _Lost(Exception):
    """A call that is not safe to repeat lost its connection: whether it applied is unknown."""

    def __init__(self, error: CatalogError) -> None:
        super().__init__(str(error))
        self.error = error


class PostgresCatalog:
    """A :class:`~greenroute.ports.Catalog` in one PostgreSQL schema, shared by every process of a fleet.

    Args:
        settings: Where the database is and how to use it.

    Raises:
        CatalogUnavailableError: The database cannot be reached at start-up (the message names
            ``host:port/db``).
        CatalogError: The schema is newer than this greenroute knows, or cannot be created.
    """

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self.where = settings.where()
        self.schema = _identifier(settings.schema)
        self._kwargs = settings.connect_kwargs()
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None
        self._pid = os.getpid()
        self._closed = False
        s = self.schema
        cols = ", ".join(COLUMNS)
        self._select = f"SELECT {cols} FROM {s}.entries"
        marks = ", ".join(["%s"] * len(_ALL))
        self._row = f"ROW({marks})::{s}.entries"
        self._dialect = _ledger.POSTGRES.with_table(f"{s}.entries")
        self._migrate()
        self._open_pool()

    def __repr__(self) -> str:
        return f"PostgresCatalog({self.where!r}, schema={self.schema!r})"

    # -- connections and errors ---------------------------------------------------------------

    def _open_pool(self) -> None:
        pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            self.settings.conninfo, kwargs=self._kwargs, min_size=1, max_size=self.settings.pool_size,
            open=False, name=f"greenroute-catalog {self.where}",
            timeout=self.settings.connect_timeout_seconds + self.settings.retry_seconds,
            reconnect_timeout=max(60.0, self.settings.retry_seconds))
        pool.open(wait=False)
        self._pool = pool
        self._pid = os.getpid()

    def _current_pool(self) -> ConnectionPool[psycopg.Connection[tuple[Any, ...]]]:
        if self._closed:
            raise CatalogError(f"catalog {self.where}: closed")
        if self._pid != os.getpid():
            # A forked child must not share its parent's sockets: open its own pool, leave the parent's alone.
            with self._lock:
                if self._pid != os.getpid():
                    self._open_pool()
        assert self._pool is not None
        return self._pool

    def _error(self, exc: BaseException, doing: str) -> CatalogError:
        """greenroute's error for a psycopg or pool error: names the database, never the password."""
        text = _first_line(exc)
        password = self._kwargs.get("password")
        if password:
            text = text.replace(str(password), "***")
        where = f"catalog {self.where} (schema {self.schema})"
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return CatalogUnavailableError(f"{where}: {doing} took over the statement timeout of "
                                           f"{self.settings.statement_timeout_ms} ms ({text})")
        if isinstance(exc, PoolTimeout):
            return CatalogUnavailableError(f"{where}: no connection within "
                                           f"{self.settings.connect_timeout_seconds + self.settings.retry_seconds:g} s "
                                           f"while {doing} (the database is unreachable or every connection is busy)")
        if _lost(exc):
            return CatalogUnavailableError(f"{where}: connection lost or refused while {doing} ({text})")
        return CatalogError(f"{where}: {doing} failed ({text})")

    def _call(self, doing: str, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], _T], *, safe: bool,
              deadline: float | None = None) -> _T:
        """Run ``fn`` on a pooled connection; on a lost connection retry it if ``safe``, else raise :class:`_Lost`."""
        deadline = deadline if deadline is not None else time.monotonic() + self.settings.retry_seconds
        delay = 0.05
        while True:
            pool = self._current_pool()
            try:
                with pool.connection() as conn:
                    return fn(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                if not _lost(exc) and not isinstance(exc, psycopg.errors.DeadlockDetected):
                    raise self._error(exc, doing) from exc
                error = self._error(exc, doing)
                if not isinstance(exc, PoolTimeout):
                    # The server restarted or the network dropped: the pool's idle connections are
                    # likely dead too. Checking them now beats failing on each in turn.
                    pool.check()
                if not safe:
                    raise _Lost(error) from exc
                if time.monotonic() + delay > deadline:
                    raise error from exc
                log.info("%s; retrying", error)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _query(self, doing: str, sql: str,
               params: Sequence[object] | Mapping[str, object] = ()) -> list[tuple[Any, ...]]:
        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        return self._call(doing, run, safe=True)

    def _migrate(self) -> None:
        """Create or upgrade the schema, under an advisory lock so that processes starting at once don't race."""
        s = self.schema
        try:
            conn = psycopg.connect(self.settings.conninfo, **{**self._kwargs, "autocommit": False})
        except psycopg.Error as exc:
            raise CatalogUnavailableError(f"cannot connect to the catalog at {self.where} "
                                          f"({_scrub(_first_line(exc), self._kwargs.get('password'))})") from exc
        try:
            with conn:
                version = _schema_version(conn, s)
                conn.commit()
                if version == SCHEMA_VERSION:
                    return  # current: opening takes no lock
                # A new transaction that takes the lock first, so that it sees what a process that held
                # the lock before it committed (the catalog lookups after the wait re-read the system tables).
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS, s))
                version = _schema_version(conn, s)
                if version > SCHEMA_VERSION:
                    raise CatalogError(f"catalog {self.where} (schema {s}) has schema version {version}, newer than "
                                       f"this greenroute knows ({SCHEMA_VERSION}); upgrade greenroute")
                if version == 0:
                    exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (s,)).fetchone()
                    if exists is None:
                        conn.execute(f"CREATE SCHEMA {s}")
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer PRIMARY KEY, "
                                 "applied_at timestamptz NOT NULL DEFAULT now())")
                migrations = _migrations(s)
                for step in range(version + 1, SCHEMA_VERSION + 1):
                    conn.execute(migrations[step])
                    conn.execute(f"INSERT INTO {s}.schema_version (version) VALUES (%s)", (step,))
                log.info("catalog %s: schema %s at version %d", self.where, s, SCHEMA_VERSION)
        except CatalogError:
            raise
        except psycopg.Error as exc:
            raise self._error(exc, "creating the schema") from exc
        finally:
            conn.close()

    def _params(self, entry: CatalogEntry, state: EntryState) -> list[object]:
        row = list(row_from_entry(replace(entry, state=state), timestamps_as_text=False))
        for i in _FLAGS:
            row[i] = bool(row[i])
        row.append(None)  # replaces: set by the server
        return row

    # -- the Catalog protocol ---------------------------------------------------------------

    def placement(self, path: str) -> Placement | None:
        """The path's live entry, in brief (one indexed read)."""
        rows = self._query("reading a placement", f"SELECT decision_id, backend_id, url FROM {self.schema}.entries "
                           "WHERE path = %s AND state = 'committed'", (path,))
        return Placement(rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def commit(self, entry: CatalogEntry, *, expected: str | None, reason: str = "overwritten",
               at: datetime | None = None) -> tuple[CatalogEntry, CatalogEntry | None]:
        """Make ``entry`` the live entry of its path if the live entry is still ``expected`` (one round trip);
        the replaced entry is closed with ``reason`` at ``at`` (default now)."""
        committed = as_committed(entry)
        sql = f"SELECT outcome, (entry).* FROM {self.schema}.gr_commit({self._row}, %s, %s, %s)"
        params = [*self._params(committed, EntryState.COMMITTED), expected, at or utcnow(), reason]
        deadline = time.monotonic() + self.settings.retry_seconds

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[str, CatalogEntry | None]:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return str(row[0]), (entry_from_row(row[1:1 + len(COLUMNS)]) if row[1] is not None else None)

        while True:
            try:
                outcome, other = self._call("committing a write", run, safe=False, deadline=deadline)
                break
            except _Lost as lost:
                applied = self._applied(entry.decision_id, deadline, lost)
                if applied is not None:
                    return committed, applied[1]
                if time.monotonic() > deadline:
                    raise lost.error from lost.__cause__
                # It did not apply: the compare-and-set is run again, so it still checks ``expected``.
        if outcome == "conflict":
            raise CommitConflictError(entry.path, _brief(other))
        return committed, other

    def _applied(self, decision_id: str, deadline: float,
                 lost: _Lost) -> tuple[CatalogEntry, CatalogEntry | None] | None:
        """After a commit lost its connection: whether it applied (its entry and the one it closed), or ``None``."""
        s = self.schema

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[CatalogEntry, CatalogEntry | None] | None:
            row = conn.execute(f"SELECT {', '.join(COLUMNS)}, replaces FROM {s}.entries WHERE decision_id = %s",
                               (decision_id,)).fetchone()
            if row is None or row[2] == EntryState.PENDING.value:
                return None
            replaced = None
            if row[-1] is not None:
                old = conn.execute(f"{self._select} WHERE decision_id = %s", (row[-1],)).fetchone()
                replaced = entry_from_row(old) if old is not None else None
            return entry_from_row(row[:len(COLUMNS)]), replaced

        try:
            result = self._call("finding out whether a commit applied", run, safe=True, deadline=deadline)
        except CatalogUnavailableError as exc:
            raise CatalogUnavailableError(f"{lost.error} (and whether decision {decision_id} was committed "
                                          f"cannot be told yet: {exc})") from exc
        if result is not None:
            log.info("catalog %s: a commit whose connection was lost had applied (decision %s)", self.where,
                     decision_id)
        return result

    def begin(self, entry: CatalogEntry) -> None:
        """Reserve the path for an exclusive create (one round trip)."""
        sql = f"SELECT {self.schema}.gr_begin({self._row})"
        params = self._params(entry, EntryState.PENDING)
        deadline = time.monotonic() + self.settings.retry_seconds

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> str | None:
            row = conn.execute(sql, params).fetchone()
            return None if row is None or row[0] is None else str(row[0])

        while True:
            try:
                taken = self._call("reserving a path", run, safe=False, deadline=deadline)
                break
            except _Lost as lost:
                mine = self._call("finding out whether a reservation applied",
                                  lambda conn: conn.execute(
                                      f"SELECT path, state FROM {self.schema}.entries WHERE decision_id = %s",
                                      (entry.decision_id,)).fetchone(), safe=True, deadline=deadline)
                if mine is not None and mine[1] == EntryState.PENDING.value:
                    return
                if time.monotonic() > deadline:
                    raise lost.error from lost.__cause__
        if taken is not None:
            raise FileExistsError(17, f"already {'exists' if taken == 'committed' else 'being created'}", entry.path)

    def abort(self, decision_id: str) -> None:
        """Forget a reservation (idempotent, so retried across a lost connection)."""
        self._call("dropping a reservation",
                   lambda conn: conn.execute(f"DELETE FROM {self.schema}.entries WHERE decision_id = %s "
                                             "AND state = 'pending'", (decision_id,)), safe=True)

    def lookup(self, path: str) -> CatalogEntry | None:
        """The committed entry for ``path``."""
        rows = self._query("looking up a path", f"{self._select} WHERE path = %s AND state = 'committed'", (path,))
        return entry_from_row(rows[0]) if rows else None

    def decision(self, decision_id: str) -> CatalogEntry | None:
        """The entry of one decision, in any state."""
        rows = self._query("looking up a decision", f"{self._select} WHERE decision_id = %s", (decision_id,))
        return entry_from_row(rows[0]) if rows else None

    def list(self, prefix: str = "", *, start_after: str | None = None,
             limit: int | None = None) -> builtins.list[CatalogEntry]:
        """Committed entries under ``prefix`` (after ``start_after``, at most ``limit``), sorted by path.

        A page is a range scan on the live-path index from the key after ``start_after``; never an OFFSET.
        """
        where = ["state = 'committed'"]
        params: builtins.list[object] = []
        if prefix:
            where.append("path >= %s AND path < %s")
            params += [prefix, prefix_end(prefix)]
        if start_after is not None:
            where.append("path > %s")
            params.append(start_after)
        sql = f"{self._select} WHERE {' AND '.join(where)} ORDER BY path"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(max(0, int(limit)))
        return [entry_from_row(r) for r in self._query("listing", sql, params)]

    def remove(self, path: str, *, expected: str | None = None, reason: str = "deleted",
               at: datetime | None = None) -> CatalogEntry | None:
        """Close the live entry of ``path`` (if it is still ``expected``, when given) at ``at`` (default now);
        one round trip."""
        sql = f"SELECT outcome, (entry).* FROM {self.schema}.gr_remove(%s, %s, %s, %s)"
        params = (path, expected, reason, at or utcnow())

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[str, CatalogEntry | None]:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return str(row[0]), (entry_from_row(row[1:1 + len(COLUMNS)]) if row[1] is not None else None)

        try:
            outcome, entry = self._call("closing an entry", run, safe=False)
        except _Lost as lost:
            if expected is not None:
                old = self.decision(expected)
                if old is not None and old.state is EntryState.CLOSED and old.closed_reason == reason:
                    return old  # it applied before the connection dropped
            raise CatalogUnavailableError(f"{lost.error}; whether {path} was removed is not known, and "
                                          "`greenroute fsck` reconciles it") from lost.__cause__
        if outcome == "conflict":
            raise CommitConflictError(path, _brief(entry))
        return entry

    def pending(self) -> builtins.list[CatalogEntry]:
        """Every pending entry, oldest first."""
        return [entry_from_row(r) for r in self._query(
            "listing reservations", f"{self._select} WHERE state = 'pending' ORDER BY created_at, decision_id")]

    def put(self, entry: CatalogEntry) -> None:
        """Make ``entry`` the live entry for its path, closing any other (idempotent, so retried)."""
        sql = f"SELECT {self.schema}.gr_put({self._row}, %s)"
        params = [*self._params(entry, EntryState.COMMITTED), utcnow()]
        self._call("adopting an entry", lambda conn: conn.execute(sql, params), safe=True)

    def swap(self, entries: Iterable[CatalogEntry], *, keep_backends: Iterable[str] = ()) -> builtins.list[str]:
        """Replace the live entries with ``entries`` in one transaction, keeping those on ``keep_backends``."""
        s = self.schema
        keep = sorted(set(keep_backends))
        now = utcnow()
        left_out: builtins.list[str] = []

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            with conn.transaction():
                kept = {r[0] for r in conn.execute(
                    f"SELECT path FROM {s}.entries WHERE state = 'committed' AND backend_id = ANY(%s)", (keep,))}
                conn.execute(f"UPDATE {s}.entries SET state = 'closed', closed_at = %s, closed_reason = 'reindexed', "
                             "updated_at = %s WHERE state = 'committed' AND NOT (backend_id = ANY(%s))",
                             (now, now, keep))
                rows: dict[str, builtins.list[object]] = {}
                for entry in entries:
                    if entry.path in kept:
                        left_out.append(entry.path)
                        continue
                    committed = replace(entry, closed_at=None, closed_reason=None)
                    rows[entry.decision_id] = self._params(committed, EntryState.COMMITTED)
                self._load(conn, rows.values(), on_conflict="update")

        try:
            self._call("swapping in a rebuilt index", run, safe=False)
        except _Lost as lost:
            raise CatalogUnavailableError(f"{lost.error}; the rebuilt index may not have been swapped in: run "
                                          "`greenroute reindex` again") from lost.__cause__
        return left_out

    def history(self, prefix: str = "", *, since: datetime | None = None,
                until: datetime | None = None) -> Iterator[CatalogEntry]:
        """Committed and closed entries under ``prefix`` whose at-rest period overlaps ``[since, until)``.

        Read a page at a time by ``(created_at, decision_id)``, so a large ledger never sits in memory.
        """
        where = ["state IN ('committed', 'closed')"]
        params: builtins.list[object] = []
        if prefix:
            where.append("path >= %s AND path < %s")
            params += [prefix, prefix_end(prefix)]
        if until is not None:
            where.append("created_at < %s")
            params.append(until)
        if since is not None:
            where.append("(closed_at IS NULL OR closed_at > %s)")
            params.append(since)
        return self._pages("reading the ledger", where, params, ("created_at", "decision_id"))

    def _pages(self, doing: str, where: builtins.list[str], params: builtins.list[object],
               key: tuple[str, ...]) -> Iterator[CatalogEntry]:
        order = ", ".join(key)
        after: tuple[object, ...] | None = None
        while True:
            conditions = list(where)
            page_params = list(params)
            if after is not None:
                conditions.append(f"({order}) > ({', '.join(['%s'] * len(key))})")
                page_params += list(after)
            sql = (f"{self._select} WHERE {' AND '.join(conditions) or 'true'} ORDER BY {order} LIMIT {_PAGE}")
            rows = self._query(doing, sql, page_params)
            for row in rows:
                yield entry_from_row(row)
            if len(rows) < _PAGE:
                return
            last = rows[-1]
            after = tuple(last[COLUMNS.index(k)] for k in key)

    def aggregate(self, query: LedgerQuery) -> builtins.list[LedgerTotals]:
        """The ledger's sums for ``query``, computed by PostgreSQL (see :mod:`._ledger`); a few rows come back."""
        sql, params = _ledger.totals_sql(query, self._dialect)
        return _ledger.totals_from_rows(query, self._query("summing the ledger", sql, params))

    def ledger(self, query: LedgerQuery) -> Iterator[LedgerObject]:
        """One row per ledger entry in ``query``'s scope, oldest first, a page at a time by key."""
        after: tuple[object, object] | None = None
        while True:
            sql, params = _ledger.objects_sql(query, self._dialect, after=after, limit=_PAGE)
            rows = self._query("reading the ledger", sql, params)
            for row in rows:
                item = _ledger.object_from_row(row)
                if item is not None:
                    yield item
            if len(rows) < _PAGE:
                return
            after = (rows[-1][COLUMNS.index("created_at")], rows[-1][COLUMNS.index("decision_id")])

    def clear(self) -> None:
        """Drop every entry, history included."""
        self._call("clearing the catalog", lambda conn: conn.execute(f"TRUNCATE {self.schema}.entries"), safe=True)

    def count(self) -> int:
        """How many committed entries there are."""
        rows = self._query("counting entries", f"SELECT count(*) FROM {self.schema}.entries WHERE state = 'committed'")
        return int(rows[0][0])

    # -- bulk: catalog migrate ---------------------------------------------------------------

    def entries(self) -> Iterator[CatalogEntry]:
        """Every entry in every state (pending, committed, closed), in ``decision_id`` order, a page at a time."""
        return self._pages("reading every entry", [], [], ("decision_id",))

    def count_all(self) -> int:
        """How many entries there are in every state."""
        return int(self._query("counting entries", f"SELECT count(*) FROM {self.schema}.entries")[0][0])

    def import_entries(self, entries: Iterable[CatalogEntry]) -> int:
        """Insert entries as they are (any state), skipping decision ids already present; one transaction.

        An entry that would give a path a second live entry or reservation is skipped too (the
        migration's verification then reports it). Loaded with ``COPY``.

        Returns:
            How many entries were inserted.
        """
        rows = [self._params(e, e.state) for e in entries]

        def run(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
            with conn.transaction():
                return self._load(conn, rows, on_conflict="nothing")

        # Importing skips what is already there, so running it again after a lost connection is harmless
        # (the count is then what the repeat inserted; the migration verifies the result by checksum).
        return self._call("importing entries", run, safe=True) if rows else 0

    def _load(self, conn: psycopg.Connection[tuple[Any, ...]], rows: Iterable[Sequence[object]], *,
              on_conflict: str) -> int:
        """COPY ``rows`` into a temporary table and insert them; inside the caller's transaction."""
        s = self.schema
        conn.execute(f"CREATE TEMP TABLE gr_load (LIKE {s}.entries INCLUDING DEFAULTS) ON COMMIT DROP")
        with conn.cursor().copy(f"COPY gr_load ({', '.join(_ALL)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if on_conflict == "update":
            upsert = ", ".join(f"{c} = excluded.{c}" for c in _ALL if c != "decision_id")
            action = f"ON CONFLICT (decision_id) DO UPDATE SET {upsert}"
        else:
            action = "ON CONFLICT DO NOTHING"
        cur = conn.execute(f"INSERT INTO {s}.entries ({', '.join(_ALL)}) SELECT {', '.join(_ALL)} FROM gr_load "
                           f"{action}")
        inserted = cur.rowcount
        conn.execute("DROP TABLE gr_load")
        return max(0, inserted)

    def close(self) -> None:
        """Close the pool's connections."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()


def _schema_version(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> int:
    # A query of the system tables, not to_regclass(): that answers from this backend's catalog cache,
    # which can still say "missing" for a table another process has just created.
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = 'schema_version'", (schema,)).fetchone()
    if row is None:
        return 0
    found = conn.execute(f"SELECT coalesce(max(version), 0) FROM {schema}.schema_version").fetchone()
    return int(found[0]) if found is not None else 0


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection is gone (or could not be had), not that the statement failed."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
    return isinstance(exc, psycopg.InterfaceError)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrub(text: str, password: object) -> str:
    return text.replace(str(password), "***") if password else text


def _brief(entry: CatalogEntry | None) -> Placement | None:
    return Placement(entry.decision_id, entry.backend_id, entry.url) if entry is not None else None
