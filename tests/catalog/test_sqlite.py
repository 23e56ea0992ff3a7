"""What only the SQLite catalog has: file URLs, writers across processes, migrations and lock errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from greenroute.adapters.catalog.sqlite import SqliteCatalog, from_url
from greenroute.errors import CatalogUnavailableError, CommitConflictError, ConfigError
from greenroute.model import EntryState

from .conftest import make_entry

_WRITER = """
import sys
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.errors import CommitConflictError
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow
db, n = sys.argv[1], int(sys.argv[2])
catalog = SqliteCatalog(db)
for i in range(40):
    path = f"ns/{i % 7}"
    while True:
        seen = catalog.placement(path)
        now = utcnow()
        entry = CatalogEntry(path=path, backend_id="b", url="memory://b", size=n, etag=None,
                             write_gco2e=0, gco2e_month=0, carbon_intensity_g_per_kwh=1,
                             signal=SignalKind.AVERAGE, source=GridDataSource.EMBEDDED,
                             decision_id=f"p{n}-{i}", state=EntryState.COMMITTED, created_at=now, updated_at=now)
        try:
            catalog.commit(entry, expected=seen.decision_id if seen else None)
            break
        except CommitConflictError:
            continue
catalog.close()
"""


def test_concurrent_writers_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, db, str(n)]) for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    catalog = SqliteCatalog(db)
    entries = catalog.list()
    assert [e.path for e in entries] == [f"ns/{i}" for i in range(7)]
    assert catalog.pending() == []
    assert len(list(catalog.history())) == 160
    catalog.close()


def test_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert from_url("sqlite://").path == ":memory:"
    relative = from_url("sqlite:///rel/cat.db")
    assert relative.path == "rel/cat.db" and (tmp_path / "rel" / "cat.db").is_file()
    relative.close()
    absolute = from_url(f"sqlite:///{tmp_path}/abs.db")
    assert absolute.path == f"{tmp_path}/abs.db"
    absolute.close()
    with pytest.raises(ConfigError, match="expected a sqlite:/// URL"):
        from_url("postgresql://x")


_V1_SCHEMA = """
CREATE TABLE entries (
    decision_id TEXT PRIMARY KEY, path TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'committed')), backend_id TEXT NOT NULL, url TEXT NOT NULL,
    size INTEGER NOT NULL, etag TEXT, write_gco2e REAL NOT NULL, gco2e_month REAL NOT NULL, intensity REAL NOT NULL,
    signal TEXT NOT NULL, source TEXT NOT NULL, failovers TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE UNIQUE INDEX entries_committed_path ON entries (path) WHERE state = 'committed';
CREATE INDEX entries_path ON entries (path);
INSERT INTO entries VALUES ('d1', 'ns/a', 'committed', 'b', 'memory://b/ns/a', 3, 'e', 0.1, 0.2, 21.0, 'average',
                            'embedded', '', '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00');
"""


def test_a_first_release_catalog_is_migrated_forward_keeping_its_entries(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(_V1_SCHEMA)
    raw.close()
    catalog = SqliteCatalog(db)
    entry = catalog.lookup("ns/a")
    assert entry is not None and (entry.size, entry.etag, entry.decision_id) == (3, "e", "d1")
    catalog.commit(make_entry("ns/a", "d2"), expected="d1")
    assert catalog.decision("d1").state is EntryState.CLOSED  # type: ignore[union-attr]
    catalog.close()
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
    raw.close()
    SqliteCatalog(db).close()  # reopening a current catalog migrates nothing


def test_a_lock_held_past_the_timeout_is_greenroutes_error_not_sqlite3s(tmp_path: Path) -> None:
    db = tmp_path / "locked.db"
    SqliteCatalog(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    catalog = SqliteCatalog(db, busy_timeout_ms=50)  # opening a current catalog takes no write lock
    try:
        with pytest.raises(CatalogUnavailableError, match="locked") as info:
            catalog.commit(make_entry("ns/a", "d1"), expected=None)
        assert isinstance(info.value, OSError) and isinstance(info.value.__cause__, sqlite3.OperationalError)
        assert catalog.lookup("ns/a") is None  # readers are not blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        catalog.close()


def test_conflicts_are_reported_with_the_current_placement(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    catalog.commit(make_entry("ns/a", "d1"), expected=None)
    with pytest.raises(CommitConflictError, match="ns/a"):
        catalog.commit(make_entry("ns/a", "d2"), expected=None)
    catalog.close()
