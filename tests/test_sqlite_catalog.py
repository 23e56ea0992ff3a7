"""The SQLite catalog: two-phase writes, one live entry per path, and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from greenroute.adapters.catalog.sqlite import SqliteCatalog, from_url
from greenroute.errors import ConfigError
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow


def _entry(path: str, decision_id: str, backend: str = "b1", size: int = 10) -> CatalogEntry:
    now = utcnow()
    return CatalogEntry(path=path, backend_id=backend, url=f"memory://{backend}/{path}", size=size, etag=None,
                        write_gco2e=0.1, gco2e_month=0.2, carbon_intensity_g_per_kwh=21.0,
                        signal=SignalKind.AVERAGE, source=GridDataSource.EMBEDDED, decision_id=decision_id,
                        state=EntryState.PENDING, created_at=now, updated_at=now, failovers=("b0: refused",))


@pytest.fixture(params=["file", "memory"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> SqliteCatalog:
    cat = SqliteCatalog(tmp_path / "cat" / "catalog.db" if request.param == "file" else ":memory:")
    request.addfinalizer(cat.close)
    return cat


def test_pending_is_invisible_until_committed(catalog: SqliteCatalog) -> None:
    catalog.begin(_entry("ns/a", "d1"))
    assert catalog.lookup("ns/a") is None
    assert catalog.list() == []
    assert [e.decision_id for e in catalog.pending()] == ["d1"]
    committed, replaced = catalog.commit("d1", size=42, etag="e1", write_gco2e=1.5, gco2e_month=2.5)
    assert replaced is None
    assert committed.state is EntryState.COMMITTED and committed.size == 42 and committed.etag == "e1"
    assert committed.failovers == ("b0: refused",)
    assert catalog.lookup("ns/a") == committed
    assert catalog.pending() == []


def test_commit_replaces_the_previous_entry_and_returns_it(catalog: SqliteCatalog) -> None:
    catalog.begin(_entry("ns/a", "d1", backend="b1"))
    catalog.commit("d1", size=1, etag=None, write_gco2e=0, gco2e_month=0)
    catalog.begin(_entry("ns/a", "d2", backend="b2"))
    assert catalog.lookup("ns/a").backend_id == "b1"  # type: ignore[union-attr]
    new, old = catalog.commit("d2", size=2, etag=None, write_gco2e=0, gco2e_month=0)
    assert old is not None and old.backend_id == "b1"
    assert new.backend_id == "b2"
    assert [e.backend_id for e in catalog.list("ns/")] == ["b2"]  # never two live copies


def test_abort_and_unknown_commit(catalog: SqliteCatalog) -> None:
    catalog.begin(_entry("ns/a", "d1"))
    catalog.abort("d1")
    assert catalog.pending() == []
    with pytest.raises(KeyError):
        catalog.commit("d1", size=1, etag=None, write_gco2e=0, gco2e_month=0)


def test_prefix_listing_is_exact(catalog: SqliteCatalog) -> None:
    for i, path in enumerate(["a/x", "a/y/z", "ab/c", "b/d", "a0/e"]):
        catalog.begin(_entry(path, f"d{i}"))
        catalog.commit(f"d{i}", size=1, etag=None, write_gco2e=0, gco2e_month=0)
    assert [e.path for e in catalog.list("a/")] == ["a/x", "a/y/z"]
    assert [e.path for e in catalog.list("a")] == ["a/x", "a/y/z", "a0/e", "ab/c"]
    assert [e.path for e in catalog.list()] == ["a/x", "a/y/z", "a0/e", "ab/c", "b/d"]
    assert catalog.remove("a/x") is not None
    assert catalog.remove("a/x") is None
    assert catalog.count() == 4


def test_put_and_clear(catalog: SqliteCatalog) -> None:
    catalog.put(_entry("ns/a", "d1"))
    catalog.put(_entry("ns/a", "d2", backend="b9"))
    entry = catalog.lookup("ns/a")
    assert entry is not None and entry.backend_id == "b9" and entry.state is EntryState.COMMITTED
    catalog.clear()
    assert catalog.list() == []


def test_concurrent_writers_in_one_process(tmp_path: Path) -> None:
    catalog = SqliteCatalog(tmp_path / "c.db")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                catalog.begin(_entry(f"ns/{i % 10}", f"t{n}-{i}"))
                catalog.commit(f"t{n}-{i}", size=n, etag=None, write_gco2e=0, gco2e_month=0)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [e.path for e in catalog.list()] == [f"ns/{i}" for i in range(10)]
    assert catalog.pending() == []
    catalog.close()


_WRITER = """
import sys
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow
db, n = sys.argv[1], int(sys.argv[2])
catalog = SqliteCatalog(db)
for i in range(40):
    now = utcnow()
    catalog.begin(CatalogEntry(path=f"ns/{i % 7}", backend_id="b", url="memory://b", size=n, etag=None,
                               write_gco2e=0, gco2e_month=0, carbon_intensity_g_per_kwh=1,
                               signal=SignalKind.AVERAGE, source=GridDataSource.EMBEDDED,
                               decision_id=f"p{n}-{i}", state=EntryState.PENDING, created_at=now, updated_at=now))
    catalog.commit(f"p{n}-{i}", size=n, etag=None, write_gco2e=0, gco2e_month=0)
catalog.close()
"""


def test_concurrent_writers_across_processes(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    SqliteCatalog(db).close()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, db, str(n)]) for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    catalog = SqliteCatalog(db)
    entries = catalog.list()
    assert [e.path for e in entries] == [f"ns/{i}" for i in range(7)]
    assert catalog.pending() == []
    assert len({e.decision_id for e in entries}) == 7
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


def test_paging_with_start_after_and_limit(catalog: SqliteCatalog) -> None:
    for i in range(25):
        catalog.begin(_entry(f"ns/{i:02d}", f"d{i}"))
        catalog.commit(f"d{i}", size=1, etag=None, write_gco2e=0, gco2e_month=0)
    pages: list[list[str]] = []
    after = None
    while True:
        page = [e.path for e in catalog.list("ns/", start_after=after, limit=10)]
        pages.append(page)
        if len(page) < 10:
            break
        after = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [p for page in pages for p in page] == [f"ns/{i:02d}" for i in range(25)]
    assert [e.path for e in catalog.list(start_after="ns/23")] == ["ns/24"]
