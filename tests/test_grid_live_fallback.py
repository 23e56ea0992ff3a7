"""Live grid clients behind GridSignals and the placement service, against fake APIs over loopback.

These tests check the promises a placement caller relies on: logins and upstream calls are not
spent per decision, concurrent askers share one call, a hung provider never holds a decision past
its time budget, no provider fault ever reaches the caller as an exception, and a decision is
always made on one signal kind from one source (falling back as a whole).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from tests.fakes import FakeElectricityMaps, FakeWattTime, FaultKind

from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
from greenroute.adapters.grid.watttime import WattTimeGridApiStrategy, lbs_per_mwh_to_g_per_kwh
from greenroute.embedded import embedded_data
from greenroute.model import Backend, GridDataSource, Provider, SignalKind
from greenroute.placement import GreenPlacementService
from greenroute.signals import GridResolution, GridSignals

FAST = RetryPolicy(max_retries=2, backoff_initial_seconds=0.001, backoff_max_seconds=0.002, jitter_seconds=0.001)


def backend(region: str) -> Backend:
    return Backend(id=f"b-{region}", provider=Provider.MEMORY, region=region, root=f"memory://{region}", pue=1.1)


BACKENDS = [backend("us-west-2"), backend("eu-north-1"), backend("eu-west-1")]


@pytest.fixture
def wt() -> Iterator[FakeWattTime]:
    with FakeWattTime() as server:
        yield server


@pytest.fixture
def em() -> Iterator[FakeElectricityMaps]:
    with FakeElectricityMaps() as server:
        yield server


class Stack:
    """Clients and GridSignals built for one test, closed at its end."""

    def __init__(self) -> None:
        self.closers: list[Any] = []

    def watttime(self, server: FakeWattTime, **kwargs: Any) -> WattTimeGridApiStrategy:
        options: dict[str, Any] = {"username": server.username, "password": server.password,
                                   "base_url": server.url, "retry": FAST, "timeout_seconds": 5.0}
        options.update(kwargs)
        client = WattTimeGridApiStrategy(**options)
        self.closers.append(client)
        return client

    def electricitymaps(self, server: FakeElectricityMaps, **kwargs: Any) -> ElectricityMapsApiStrategy:
        options: dict[str, Any] = {"api_key": server.api_key, "base_url": f"{server.url}/v3", "retry": FAST,
                                   "timeout_seconds": 5.0}
        options.update(kwargs)
        client = ElectricityMapsApiStrategy(**options)
        self.closers.append(client)
        return client

    def signals(self, sources: list[Any], **kwargs: Any) -> GridSignals:
        signals = GridSignals(sources, **kwargs)
        self.closers.insert(0, signals)  # stop the workers before closing their clients
        return signals


@pytest.fixture
def stack() -> Iterator[Stack]:
    built = Stack()
    yield built
    for thing in built.closers:
        thing.close()


def _single_kind(resolution: GridResolution) -> set[tuple[GridDataSource, SignalKind]]:
    return {(v.source, v.signal) for v in resolution.values.values()}


def test_100_decisions_log_in_at_most_once(wt: FakeWattTime, stack: Stack) -> None:
    client = stack.watttime(wt, cache_ttl_seconds=0)
    signals = stack.signals([client], signal=SignalKind.MARGINAL, cache_ttl_seconds=0, time_budget_seconds=5.0)
    service = GreenPlacementService(BACKENDS[:2], signals=signals)
    for _ in range(100):
        decision = service.select_greenest_backend(None, 1_000_000)
        assert decision.signal is SignalKind.MARGINAL
        assert {g.source for g in decision.grid_data.values()} == {GridDataSource.WATTTIME}
    assert wt.count("/v3/forecast") == 200  # every decision really went upstream
    assert wt.count("/login") == 1


def test_64_threads_asking_for_one_region_make_one_upstream_request(wt: FakeWattTime, stack: Stack) -> None:
    wt.inject("BPA", FaultKind.HANG, hang_seconds=0.3, times=1)  # keep the first call in flight
    signals = stack.signals([stack.watttime(wt)], signal=SignalKind.MARGINAL, time_budget_seconds=5.0)
    barrier = threading.Barrier(64)
    results: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        try:
            resolution = signals.resolve([backend("us-west-2")])
            with lock:
                results.append(resolution.values["b-us-west-2"].carbon_intensity_g_per_kwh)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert results == [lbs_per_mwh_to_g_per_kwh(1050.0)] * 64
    assert wt.count("/v3/forecast") == 1
    assert wt.count("/login") == 1


def test_a_hung_provider_never_holds_a_decision_past_its_budget(wt: FakeWattTime, stack: Stack) -> None:
    embedded_data()  # load the embedded CSVs outside the timed calls
    wt.inject("BPA", FaultKind.HANG, hang_seconds=2.0)
    budget = 0.25
    signals = stack.signals([stack.watttime(wt)], signal=SignalKind.MARGINAL, time_budget_seconds=budget)
    service = GreenPlacementService(BACKENDS, signals=signals)

    started = time.monotonic()
    resolution = signals.resolve(BACKENDS)
    resolve_seconds = time.monotonic() - started
    started = time.monotonic()
    decision = service.select_greenest_backend(None, 1_000_000)
    decide_seconds = time.monotonic() - started

    assert resolve_seconds <= budget + 0.05
    assert decide_seconds <= budget + 0.05
    for outcome in (resolution, decision):
        assert outcome.signal is SignalKind.AVERAGE
        assert any("watttime" in r and "no answer within 250 ms" in r and "us-west-2" in r
                   for r in outcome.fallback_reasons), outcome.fallback_reasons
    assert {g.source for g in decision.grid_data.values()} == {GridDataSource.EMBEDDED}


def test_no_exception_reaches_a_placement_caller_under_any_fault(wt: FakeWattTime, em: FakeElectricityMaps,
                                                                 stack: Stack) -> None:
    embedded_data()
    for kind in FaultKind:
        wt.clear_faults()
        em.clear_faults()
        wt.inject("*", kind, hang_seconds=0.6, retry_after="0")
        em.inject("*", kind, hang_seconds=0.6, retry_after="0")
        signals = stack.signals([stack.watttime(wt), stack.electricitymaps(em)], signal=SignalKind.MARGINAL,
                                time_budget_seconds=0.25)
        service = GreenPlacementService(BACKENDS, signals=signals)
        started = time.monotonic()
        decision = service.select_greenest_backend(None, 10_000_000, retention_days=30)
        scores = service.get_green_scores()
        value = service.get_grid_carbon_data("eu-north-1")
        assert time.monotonic() - started < 1.0, kind
        assert decision.backend_id in {b.id for b in BACKENDS}, kind
        assert {g.signal for g in decision.grid_data.values()} == {decision.signal}, kind
        assert len({g.source for g in decision.grid_data.values()}) == 1, kind
        assert all(g.carbon_intensity_g_per_kwh > 0 for g in decision.grid_data.values()), kind
        assert len(scores) == len(BACKENDS), kind
        assert value.carbon_intensity_g_per_kwh > 0, kind
        if kind is not FaultKind.UNEXPECTED_UNITS:  # EM has no units field, so it serves normally then
            assert decision.fallback, kind


def test_a_region_denied_on_watttime_moves_the_whole_decision_to_electricity_maps(
        wt: FakeWattTime, em: FakeElectricityMaps, stack: Stack) -> None:
    wt.inject("IE", FaultKind.INVALID_SCOPE)
    signals = stack.signals([stack.watttime(wt), stack.electricitymaps(em)], signal=SignalKind.MARGINAL,
                            time_budget_seconds=5.0)
    service = GreenPlacementService(BACKENDS, signals=signals)
    for _ in range(3):
        decision = service.select_greenest_backend(None, 1_000_000)
        assert decision.signal is SignalKind.AVERAGE
        assert {(g.source, g.signal) for g in decision.grid_data.values()} == {
            (GridDataSource.ELECTRICITY_MAPS, SignalKind.AVERAGE)}
        assert any("watttime" in r and "eu-west-1" in r and "invalid scope" in r for r in decision.fallback_reasons)
    assert decision.grid_data["b-eu-north-1"].carbon_intensity_g_per_kwh == 27.0
    assert decision.backend_id == "b-eu-north-1"
    assert wt.count("/v3/forecast", key="IE") == 1  # the denial is remembered by the client


def test_when_electricity_maps_fails_too_the_whole_decision_is_embedded(
        wt: FakeWattTime, em: FakeElectricityMaps, stack: Stack) -> None:
    wt.inject("IE", FaultKind.INVALID_SCOPE)
    em.inject("*", FaultKind.SERVER_ERROR)
    signals = stack.signals([stack.watttime(wt), stack.electricitymaps(em)], signal=SignalKind.MARGINAL,
                            time_budget_seconds=5.0)
    decision = GreenPlacementService(BACKENDS, signals=signals).select_greenest_backend(None, 1_000_000)
    assert decision.signal is SignalKind.AVERAGE
    assert {(g.source, g.signal) for g in decision.grid_data.values()} == {
        (GridDataSource.EMBEDDED, SignalKind.AVERAGE)}
    reasons = " | ".join(decision.fallback_reasons)
    assert "watttime" in reasons and "eu-west-1" in reasons
    assert "electricitymaps" in reasons and "500" in reasons


def test_null_intensity_never_becomes_zero_in_a_decision(em: FakeElectricityMaps, stack: Stack) -> None:
    em.inject("SE-SE3", FaultKind.NULL_INTENSITY)
    signals = stack.signals([stack.electricitymaps(em)], time_budget_seconds=5.0)
    resolution = signals.resolve(BACKENDS)
    assert _single_kind(resolution) == {(GridDataSource.EMBEDDED, SignalKind.AVERAGE)}
    assert all(v.carbon_intensity_g_per_kwh > 0 for v in resolution.values.values())
    assert any("null" in r and "eu-north-1" in r for r in resolution.fallback_reasons)
