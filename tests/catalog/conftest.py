"""One ``catalog`` fixture over every catalog implementation, for the contract suite.

Each parameter opens a fresh, empty catalog and closes it afterwards. Server catalogs add their
parameter here (with the server fixture that backs them): ``postgresql`` opens a fresh schema of
the run's PostgreSQL database for each test (see :mod:`tests.servers.postgres`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind, utcnow
from greenroute.ports import Catalog

# tests/catalog is a package (the tests import .conftest), so pytest does not make `tests` importable
# before this file runs; the server fixtures live in tests.servers.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.servers.postgres import pg_url, postgres_run, postgres_server_factory  # noqa: E402, F401

CatalogFactory = Callable[[], Catalog]

KINDS = ["sqlite-file", "sqlite-memory", "postgresql"]


def make_entry(path: str, decision_id: str, backend: str = "b1", size: int = 10, **extra: object) -> CatalogEntry:
    """An entry as the router would commit it (state and times are the catalog's business)."""
    now = utcnow()
    fields: dict[str, object] = dict(
        path=path, backend_id=backend, url=f"memory://{backend}/{path}", size=size, etag=None, write_gco2e=0.1,
        gco2e_month=0.2, carbon_intensity_g_per_kwh=21.0, signal=SignalKind.AVERAGE, source=GridDataSource.EMBEDDED,
        decision_id=decision_id, state=EntryState.COMMITTED, created_at=now, updated_at=now,
        failovers=("b0: refused",))
    fields.update(extra)
    return CatalogEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=KINDS)
def catalog_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CatalogFactory]:
    """Opens catalogs that share one database (two "processes" on one catalog), all closed at the end."""
    opened: list[Catalog] = []
    memory: list[SqliteCatalog] = []
    # Resolved here, not in factory(): tests call the factory from threads, and fixtures are not thread-safe.
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else ""

    def factory() -> Catalog:
        if request.param == "sqlite-file":
            cat: Catalog = SqliteCatalog(tmp_path / "cat" / "catalog.db")
        elif request.param == "postgresql":
            from greenroute.adapters.catalog.postgres import from_url

            cat = from_url(url)
        else:
            if not memory:  # an in-memory database exists once per process: share the one object
                memory.append(SqliteCatalog(":memory:"))
            cat = memory[0]
        opened.append(cat)
        return cat

    yield factory
    for cat in opened:
        cat.close()


@pytest.fixture
def catalog(catalog_factory: CatalogFactory) -> Catalog:
    return catalog_factory()
