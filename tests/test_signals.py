"""GridSignals: TTL cache, single-flight, time budget, stale-on-error and the source chain.

The sources here are small classes implementing the ``GridSource`` port, standing in for an
outside API; greenroute's own code runs unpatched.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest

from greenroute import (
    Backend,
    GridCarbonData,
    GridDataSource,
    GridDataUnavailableError,
    GridSignals,
    Provider,
    SignalKind,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingSource:
    """An average source whose answers, failures and latency a test controls."""

    name = "electricitymaps"
    signal = SignalKind.AVERAGE

    def __init__(self, values: dict[str, float], delay: float = 0.0) -> None:
        self.values = values
        self.delay = delay
        self.failing: set[str] = set()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def is_available(self) -> bool:
        return True

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        with self._lock:
            self.calls[region] += 1
        if self.delay:
            time.sleep(self.delay)
        if region in self.failing:
            raise GridDataUnavailableError("electricitymaps: 503 from upstream", source=self.name, region=region)
        return GridCarbonData(region=region, grid_zone=zone, carbon_intensity_g_per_kwh=self.values[region],
                              signal=self.signal, source=GridDataSource.ELECTRICITY_MAPS)


def _backends(*regions: str) -> list[Backend]:
    return [Backend(id=f"b-{r}", provider=Provider.MEMORY, region=r, root=f"memory://{r}", pue=1.1) for r in regions]


def test_values_are_cached_for_the_ttl() -> None:
    clock = FakeClock()
    source = CountingSource({"us-west-2": 150.0, "eu-north-1": 30.0})
    signals = GridSignals([source], cache_ttl_seconds=300, clock=clock)
    backends = _backends("us-west-2", "eu-north-1")
    for _ in range(5):
        res = signals.resolve(backends)
        assert {v.source for v in res.values.values()} == {GridDataSource.ELECTRICITY_MAPS}
    assert source.calls == {"us-west-2": 1, "eu-north-1": 1}
    clock.now += 301
    signals.resolve(backends)
    assert source.calls == {"us-west-2": 2, "eu-north-1": 2}
    signals.close()


def test_concurrent_misses_make_one_upstream_call() -> None:
    source = CountingSource({"us-west-2": 150.0}, delay=0.05)
    signals = GridSignals([source], time_budget_seconds=2.0)
    backends = _backends("us-west-2")
    barrier = threading.Barrier(64)
    results: list[float] = []

    def ask() -> None:
        barrier.wait()
        results.append(signals.resolve(backends).values["b-us-west-2"].carbon_intensity_g_per_kwh)

    threads = [threading.Thread(target=ask) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [150.0] * 64
    assert source.calls["us-west-2"] == 1
    signals.close()


def test_a_hung_source_costs_at_most_the_budget_then_embedded_answers() -> None:
    source = CountingSource({"us-west-2": 150.0}, delay=1.0)
    signals = GridSignals([source], time_budget_seconds=0.1)
    start = time.perf_counter()
    res = signals.resolve(_backends("us-west-2"))
    elapsed = time.perf_counter() - start
    assert elapsed < 0.1 + 0.05
    assert res.values["b-us-west-2"].source is GridDataSource.EMBEDDED
    assert re.fullmatch(r"electricitymaps: no answer within (100|99) ms for us-west-2", res.fallback_reasons[0])
    signals.close()


def test_stale_value_is_served_after_failure_until_max_staleness() -> None:
    clock = FakeClock()
    source = CountingSource({"us-west-2": 150.0})
    signals = GridSignals([source], cache_ttl_seconds=60, max_staleness_seconds=3600, clock=clock)
    backends = _backends("us-west-2")
    assert not signals.resolve(backends).values["b-us-west-2"].is_stale
    source.failing.add("us-west-2")
    clock.now += 120  # past the TTL, within the staleness limit
    res = signals.resolve(backends)
    value = res.values["b-us-west-2"]
    assert value.is_stale and value.source is GridDataSource.ELECTRICITY_MAPS
    assert value.carbon_intensity_g_per_kwh == 150.0
    assert res.fallback_reasons[0].startswith("electricitymaps: 503 from upstream for us-west-2; served the value")
    clock.now += 3600  # now too old
    res = signals.resolve(backends)
    assert res.values["b-us-west-2"].source is GridDataSource.EMBEDDED
    assert not res.values["b-us-west-2"].is_stale
    signals.close()


def test_a_source_that_fails_one_region_is_not_used_for_any() -> None:
    source = CountingSource({"us-west-2": 150.0, "eu-north-1": 30.0})
    source.failing.add("eu-north-1")
    signals = GridSignals([source])
    res = signals.resolve(_backends("us-west-2", "eu-north-1"))
    assert {v.source for v in res.values.values()} == {GridDataSource.EMBEDDED}
    assert res.signal is SignalKind.AVERAGE
    assert "electricitymaps: 503 from upstream for eu-north-1" in res.fallback_reasons
    signals.close()


def test_unavailable_sources_are_skipped_with_a_reason() -> None:
    class NoKey(CountingSource):
        def is_available(self) -> bool:
            return False

    source = NoKey({"us-west-2": 1.0})
    res = GridSignals([source]).resolve(_backends("us-west-2"))
    assert source.calls == {}
    assert res.fallback_reasons[0] == "electricitymaps: not configured"


def test_a_source_raising_anything_never_reaches_the_caller() -> None:
    class Broken(CountingSource):
        def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
            raise RuntimeError("bug in an adapter")

    signals = GridSignals([Broken({})])
    res = signals.resolve(_backends("us-west-2"))
    assert res.values["b-us-west-2"].source is GridDataSource.EMBEDDED
    assert res.fallback_reasons[0] == "electricitymaps: RuntimeError for us-west-2"
    signals.close()


def test_get_and_refresh() -> None:
    source = CountingSource({"us-west-2": 150.0, "eu-north-1": 30.0})
    signals = GridSignals([source])
    assert signals.get(source, "us-west-2").carbon_intensity_g_per_kwh == 150.0
    assert signals.refresh(_backends("us-west-2", "eu-north-1")) == {"electricitymaps/eu-north-1": "ok"}
    assert signals.refresh(_backends("us-west-2", "eu-north-1")) == {}  # at most once per TTL
    assert source.calls == {"us-west-2": 1, "eu-north-1": 1}
    source.failing.add("nowhere")
    with pytest.raises(GridDataUnavailableError):
        signals.get(source, "nowhere")
    signals.close()


def test_a_failing_key_is_not_called_again_during_its_backoff() -> None:
    clock = FakeClock()
    source = CountingSource({"us-west-2": 150.0})
    source.failing.add("us-west-2")
    signals = GridSignals([source], failure_backoff_seconds=30, clock=clock)
    backends = _backends("us-west-2")
    first = signals.resolve(backends)
    assert first.values["b-us-west-2"].source is GridDataSource.EMBEDDED
    for _ in range(5):
        again = signals.resolve(backends)
        assert again.fallback_reasons[0] == "electricitymaps: 503 from upstream for us-west-2"
    assert source.calls["us-west-2"] == 1
    clock.now += 31
    source.failing.clear()
    assert signals.resolve(backends).values["b-us-west-2"].source is GridDataSource.ELECTRICITY_MAPS
    assert source.calls["us-west-2"] == 2
    signals.close()


def test_a_hung_first_source_leaves_time_for_the_next_one() -> None:
    class Hung(CountingSource):
        name = "watttime-average-stand-in"

    hung = Hung({"us-west-2": 1.0}, delay=2.0)
    healthy = CountingSource({"us-west-2": 150.0}, delay=0.02)
    signals = GridSignals([hung, healthy], time_budget_seconds=0.3)
    start = time.perf_counter()
    res = signals.resolve(_backends("us-west-2"))
    elapsed = time.perf_counter() - start
    assert res.values["b-us-west-2"].source is GridDataSource.ELECTRICITY_MAPS
    assert res.values["b-us-west-2"].carbon_intensity_g_per_kwh == 150.0
    assert elapsed < 0.3 + 0.05
    assert len(res.fallback_reasons) == 1
    pattern = r"watttime-average-stand-in: no answer within 1[45]\d ms for us-west-2"
    assert re.fullmatch(pattern, res.fallback_reasons[0])
    signals.close()
