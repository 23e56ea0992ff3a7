"""Fixtures for the ledger reports: a frozen clock, three memory backends on pinned grid values, a router.

The clock is the router's injectable ``clock``: each test moves it by hand, so every at-rest period
is known exactly. Grid values come from a :class:`~greenroute.signals.ManualGridSource`, so every
estimate can be computed by hand from the carbon model's published coefficients.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

# The catalog contract's fixtures: the ledger contract (test_ledger_contract.py) runs on every catalog.
from tests.catalog.conftest import catalog, catalog_factory  # noqa: F401
from tests.servers.postgres import pg_url, postgres_run  # noqa: F401

from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.model import Backend, Provider, SignalKind
from greenroute.placement import GreenPlacementService
from greenroute.ports import Catalog
from greenroute.router import GreenRouter
from greenroute.signals import GridSignals, ManualGridSource

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
#: Pinned grid intensities (gCO2e/kWh) by region.
INTENSITY = {"us-east-1": 400.0, "eu-north-1": 20.0, "us-west-2": 120.0}
PUE = {"base-east": 1.2, "green-north": 1.1, "mid-west": 1.15}
REGION = {"base-east": "us-east-1", "green-north": "eu-north-1", "mid-west": "us-west-2"}
BASELINE = "base-east"


class FrozenClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def at(self, hours: float) -> datetime:
        """Set the time to ``T0 + hours`` and return it."""
        self.now = T0 + timedelta(hours=hours)
        return self.now


def backends(tag: str) -> list[Backend]:
    """Three in-memory backends (replication 1) under roots unique to ``tag``."""
    return [Backend(id=b, provider=Provider.MEMORY, region=REGION[b], root=f"memory://gr-ledger-{tag}/{b}",
                    pue=PUE[b]) for b in ("base-east", "green-north", "mid-west")]


def make_router(where: Path | Catalog, clock: FrozenClock, *, signal: SignalKind = SignalKind.AVERAGE,
                intensities: dict[str, float] | None = None, baseline: str = BASELINE) -> GreenRouter:
    """A router on the three backends, over ``where`` (a catalog, or a path for a new SQLite one)."""
    signals = GridSignals([ManualGridSource(intensities if intensities is not None else INTENSITY, signal=signal)],
                          signal=signal)
    service = GreenPlacementService(backends(uuid.uuid4().hex[:8]), signals=signals)
    opened = SqliteCatalog(where) if isinstance(where, Path) else where
    return GreenRouter(service, opened, baseline=baseline, clock=clock)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def router(tmp_path: Path, clock: FrozenClock) -> Iterator[GreenRouter]:
    r = make_router(tmp_path / "catalog.db", clock)
    yield r
    r.close()
