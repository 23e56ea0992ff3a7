"""GridSignals.close() while a grid call is in flight, over real HTTP to the fake Electricity Maps server.

Closing drains running calls (bounded) before the HTTP clients are closed under them (issue 17).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from tests.fakes import FakeElectricityMaps, FaultKind

from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
from greenroute.model import Backend, GridDataSource, Provider
from greenroute.signals import GridSignals

FAST = RetryPolicy(max_retries=2, backoff_initial_seconds=0.001, backoff_max_seconds=0.002, jitter_seconds=0.001)


def backend(region: str) -> Backend:
    return Backend(id=f"b-{region}", provider=Provider.MEMORY, region=region, root=f"memory://{region}", pue=1.1)


@pytest.fixture
def em() -> Iterator[FakeElectricityMaps]:
    with FakeElectricityMaps() as server:
        yield server


def _grid_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("greenroute-grid") and t.is_alive()]


def test_close_drains_an_in_flight_call_before_closing_the_http_client(
        em: FakeElectricityMaps, caplog: pytest.LogCaptureFixture) -> None:
    em.inject("SE-SE3", FaultKind.HANG, hang_seconds=0.5, times=1)
    client = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", retry=FAST,
                                        timeout_seconds=5.0, cache_ttl_seconds=0)
    signals = GridSignals([client], time_budget_seconds=0.05)
    resolution = signals.resolve([backend("eu-north-1")])
    # The decision did not wait; the upstream call goes on in the background.
    assert resolution.values["b-eu-north-1"].source is GridDataSource.EMBEDDED
    assert _grid_workers(), "the upstream call should still be running"
    with caplog.at_level(logging.DEBUG, logger="greenroute"):
        started = time.monotonic()
        signals.close()
        closed_in = time.monotonic() - started
    # close() waited for the running call (it had ~0.45 s left), within its bound, and only then
    # closed the client: the call finished normally instead of failing under a closed client.
    assert 0.2 < closed_in < 5.0
    assert _grid_workers() == []
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert failures == []
    assert em.count("/v3/carbon-intensity/latest", key="SE-SE3") == 1


def test_close_gives_up_waiting_after_its_bound(em: FakeElectricityMaps) -> None:
    em.inject("SE-SE3", FaultKind.HANG, hang_seconds=3.0, times=1)
    client = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", retry=FAST,
                                        timeout_seconds=5.0, cache_ttl_seconds=0)
    signals = GridSignals([client], time_budget_seconds=0.05)
    signals.resolve([backend("eu-north-1")])
    started = time.monotonic()
    signals.close(timeout_seconds=0.2)
    assert 0.15 < time.monotonic() - started < 1.0
