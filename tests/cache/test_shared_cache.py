"""The Redis shared grid cache in one process: format, prefix, fencing, foreign values and faults.

Real Redis over loopback (see ``tests/servers/redis.py``) and the fake Electricity Maps server; the
fault tests start throwaway servers of their own, which they may pause, kill or start late.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_py
from tests.fakes import FakeElectricityMaps, FaultKind
from tests.servers.local import LocalServer, free_port
from tests.servers.redis import TestRedis

from greenroute.adapters.cache.redis import FORMAT, RedisGridCache, from_settings
from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
from greenroute.config import CacheSettings, RateBudget, UnavailableCache, parse_config
from greenroute.model import Backend, GridCarbonData, GridDataSource, Provider, SignalKind
from greenroute.signals import GridSignals

FAST = RetryPolicy(max_retries=0, backoff_initial_seconds=0.001, backoff_max_seconds=0.002, jitter_seconds=0.001)
REGIONS = ("us-west-2", "eu-north-1")
LATEST = "/v3/carbon-intensity/latest"
KEY = ("electricitymaps", "us-west-2", None, SignalKind.AVERAGE)


def backends(*regions: str) -> list[Backend]:
    return [Backend(id=f"b-{r}", provider=Provider.MEMORY, region=r, root=f"memory://{r}", pue=1.1)
            for r in regions or REGIONS]


class Parts:
    """What one test built; closed at its end (signals first, so their calls drain)."""

    def __init__(self) -> None:
        self.closers: list[Any] = []

    def cache(self, url: str, prefix: str, **kwargs: Any) -> RedisGridCache:
        return from_settings(CacheSettings(url=url, key_prefix=prefix, **kwargs))

    def signals(self, em: FakeElectricityMaps, cache: RedisGridCache | None, **kwargs: Any) -> GridSignals:
        source = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", retry=FAST,
                                            timeout_seconds=5.0, cache_ttl_seconds=0)
        options: dict[str, Any] = {"time_budget_seconds": 1.0, "cache_ttl_seconds": 60.0, "shared_cache": cache}
        options.update(kwargs)
        signals = GridSignals([source], **options)
        self.closers.append(signals)
        return signals


@pytest.fixture
def parts() -> Iterator[Parts]:
    built = Parts()
    yield built
    for thing in built.closers:
        thing.close()


def _keys(redis_run: TestRedis, prefix: str) -> dict[str, bytes | None]:
    client = redis_run.client()
    try:
        return {k.decode(): client.get(k) if client.type(k) == b"string" else None
                for k in client.scan_iter(match=prefix + "*")}
    finally:
        client.close()


def test_values_are_json_with_full_provenance_under_the_prefix_and_no_credentials(
        em: FakeElectricityMaps, redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    signals = parts.signals(em, parts.cache(redis_run.url, prefix))
    resolution = signals.resolve(backends())
    assert resolution.fallback_reasons == ()
    stored = _keys(redis_run, prefix)
    assert stored and all(k.startswith(prefix) for k in stored)
    value_key = prefix + "grid:electricitymaps:us-west-2:-:average"
    doc = json.loads(stored[value_key] or b"")
    ours = resolution.values["b-us-west-2"]
    assert doc == {"format": FORMAT, "fence": doc["fence"], "source": "electricitymaps", "region": "us-west-2",
                   "zone": None, "signal": "average", "value": ours.carbon_intensity_g_per_kwh, "unit": "g/kWh",
                   "grid_zone": "US-NW-PACW", "renewable_pct": ours.renewable_pct,
                   "observed_at": ours.observed_at.isoformat() if ours.observed_at else None,
                   "fetched_at": ours.fetched_at.isoformat(), "is_estimated": True}
    everything = b" ".join(v for v in stored.values() if v)
    assert em.api_key.encode() not in everything


def test_a_second_process_cache_reads_instead_of_calling_upstream(
        em: FakeElectricityMaps, redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    first = parts.signals(em, parts.cache(redis_run.url, prefix))
    second = parts.signals(em, parts.cache(redis_run.url, prefix))
    a = first.resolve(backends())
    b = second.resolve(backends())
    assert em.count(LATEST) == len(REGIONS)
    for backend_id, value in a.values.items():
        assert b.values[backend_id] == value  # same provenance, fetched_at included


@pytest.mark.parametrize("garbage", [
    b"not json", b'{"format": "greenroute.grid/1"}', b"[1, 2, 3]", b"null",
    json.dumps({"format": FORMAT, "fence": 99999999999999999, "source": "watttime", "region": "us-west-2",
                "zone": None, "signal": "average", "value": 1.0, "unit": "g/kWh", "grid_zone": None,
                "renewable_pct": None, "observed_at": None, "fetched_at": "2024-01-01T00:00:00+00:00",
                "is_estimated": False}).encode(),
    "hash",
])
def test_malformed_or_foreign_values_are_ignored_and_overwritten(
        em: FakeElectricityMaps, redis_run: TestRedis, prefix: str, parts: Parts, garbage: bytes | str) -> None:
    base = prefix + "grid:electricitymaps:us-west-2:-:average"
    client = redis_run.client()
    if garbage == "hash":
        client.hset(base, mapping={"value": "1"})
    else:
        client.set(base, garbage)  # no expiry, as a foreign writer might
    client.set(base + ":fresh", b"99999999999999999")
    client.set(base + ":lock", b"someone-else")  # a lock without expiry is not ours either
    signals = parts.signals(em, parts.cache(redis_run.url, prefix))
    value = signals.resolve(backends("us-west-2")).values["b-us-west-2"]
    assert value.source is GridDataSource.ELECTRICITY_MAPS and value.carbon_intensity_g_per_kwh == 118.0
    assert em.count(LATEST) == 1
    doc = json.loads(client.get(base) or b"")
    assert doc["format"] == FORMAT and doc["source"] == "electricitymaps"
    assert client.pttl(base) > 0 and client.get(base + ":lock") is None
    client.close()


def test_stale_while_revalidate_nobody_waits_at_ttl_expiry(
        em: FakeElectricityMaps, redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    signals = parts.signals(em, parts.cache(redis_run.url, prefix), cache_ttl_seconds=0.3, local_ttl_seconds=0.1)
    old = signals.resolve(backends("us-west-2")).values["b-us-west-2"]
    time.sleep(0.35)
    em.inject("US-NW-PACW", FaultKind.HANG, hang_seconds=0.5, times=1)
    started = time.monotonic()
    during = signals.resolve(backends("us-west-2"))
    assert time.monotonic() - started < 0.1  # did not wait for the 0.5 s refresh
    assert during.values["b-us-west-2"] == old and during.fallback_reasons == ()
    time.sleep(0.7)
    after = signals.resolve(backends("us-west-2")).values["b-us-west-2"]
    assert after.fetched_at > old.fetched_at
    assert em.count(LATEST) == 2


def test_fencing_a_late_store_never_replaces_a_newer_value(redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    cache = parts.cache(redis_run.url, prefix, lock_seconds=0.1)
    parts.closers.append(cache)
    [slow] = cache.claim([KEY])
    time.sleep(0.15)  # the slow fetcher's claim expires, and another process claims
    [quick] = cache.claim([KEY])
    assert slow.outcome == quick.outcome == "claimed" and slow.token and quick.token
    new = GridCarbonData("us-west-2", None, 200.0, SignalKind.AVERAGE, GridDataSource.ELECTRICITY_MAPS)
    old = GridCarbonData("us-west-2", None, 100.0, SignalKind.AVERAGE, GridDataSource.ELECTRICITY_MAPS)
    assert cache.store(KEY, new, quick.token, ttl_seconds=60, keep_seconds=600) is True
    assert cache.store(KEY, old, slow.token, ttl_seconds=60, keep_seconds=600) is False
    [entry] = cache.read([KEY])
    assert entry.value is not None and entry.value.carbon_intensity_g_per_kwh == 200.0 and entry.fresh


def test_a_claim_is_released_only_by_its_owner(redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    cache = parts.cache(redis_run.url, prefix)
    parts.closers.append(cache)
    [mine] = cache.claim([KEY])
    assert mine.token is not None
    cache.fail(KEY, "1:not-the-owner", "", backoff_seconds=0)
    assert cache.claim([KEY])[0].outcome == "busy"
    cache.fail(KEY, mine.token, "HTTP 503 server error", backoff_seconds=5)
    entry = cache.read([KEY])[0]
    assert not entry.refreshing and entry.failure == "HTTP 503 server error"
    assert cache.claim([KEY])[0] == ("failed", None, None, "HTTP 503 server error")


def test_the_rate_budget_is_fleet_wide(redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    budgets = {"electricitymaps": RateBudget(2, 60.0)}
    caches = [parts.cache(redis_run.url, prefix, budgets=budgets) for _ in range(2)]
    parts.closers.extend(caches)
    keys = [("electricitymaps", r, None, SignalKind.AVERAGE) for r in ("a", "b", "c")]
    outcomes = [caches[0].claim(keys[:1])[0].outcome, caches[1].claim(keys[1:2])[0].outcome,
                caches[0].claim(keys[2:])[0]]
    assert outcomes[:2] == ["claimed", "claimed"]
    assert outcomes[2] == ("budget", None, None, "2 calls per 60 s")


def test_redis_errors_are_oserrors_not_the_drivers(
        redis_server_factory: Callable[..., LocalServer], parts: Parts) -> None:
    dead = parts.cache(f"redis://127.0.0.1:{free_port()}/0", "greenroute-x:")
    with pytest.raises(ConnectionError) as refused:
        dead.read([KEY])
    assert not isinstance(refused.value, redis_py.RedisError)
    server = redis_server_factory()
    slow = parts.cache(f"redis://127.0.0.1:{server.port}/0", "greenroute-x:", timeout_ms=50)
    admin = redis_py.Redis(port=server.port)
    admin.execute_command("CLIENT", "PAUSE", "1000", "ALL")
    with pytest.raises(TimeoutError) as timed_out:
        slow.claim([KEY])
    assert not isinstance(timed_out.value, redis_py.RedisError)
    assert "timed out after 50 ms" in str(timed_out.value)
    admin.close()
    parts.closers += [dead, slow]


def test_down_at_startup_then_shared_once_it_starts(
        em: FakeElectricityMaps, redis_server_factory: Callable[..., LocalServer], parts: Parts) -> None:
    port = free_port()
    cache = parts.cache(f"redis://127.0.0.1:{port}/0", "greenroute-late:")
    signals = parts.signals(em, cache, time_budget_seconds=0.25, shared_retry_seconds=0.2, cache_ttl_seconds=0.1)
    expected = (f"cache: redis 127.0.0.1:{port}/0 unreachable (Error 111 connecting to 127.0.0.1:{port}. "
                "Connection refused.); used this process's cache")
    for _ in range(3):
        started = time.monotonic()
        resolution = signals.resolve(backends())
        assert time.monotonic() - started < 0.3
        assert {v.source for v in resolution.values.values()} == {GridDataSource.ELECTRICITY_MAPS}
        assert [r for r in resolution.fallback_reasons if r.startswith("cache:")] == [expected]
        time.sleep(0.12)  # past the TTL: the next decision needs the shared cache again
    server = redis_server_factory(port)
    time.sleep(0.25)
    assert signals.resolve(backends()).fallback_reasons == ()  # shared again, without a restart
    client = redis_py.Redis(port=server.port)
    deadline = time.monotonic() + 3.0  # the refresh it claimed runs in the background
    while client.get("greenroute-late:grid:electricitymaps:us-west-2:-:average") is None:
        assert time.monotonic() < deadline, "the value never reached the restarted server"
        time.sleep(0.02)
    client.close()


def test_a_slow_redis_costs_a_decision_at_most_its_budget_and_says_so_once(
        em: FakeElectricityMaps, redis_server_factory: Callable[..., LocalServer], parts: Parts) -> None:
    server = redis_server_factory()
    url = f"redis://127.0.0.1:{server.port}/0"
    signals = parts.signals(em, parts.cache(url, "greenroute-slow:"), time_budget_seconds=0.25,
                            cache_ttl_seconds=0.2, local_ttl_seconds=0.05, shared_retry_seconds=0.1)
    signals.resolve(backends())  # warm: values in Redis and in this process
    admin = redis_py.Redis(port=server.port)
    admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    worst = 0.0
    noted = 0
    until = time.monotonic() + 1.2
    while time.monotonic() < until:
        started = time.monotonic()
        resolution = signals.resolve(backends())
        worst = max(worst, time.monotonic() - started)
        lines = [r for r in resolution.fallback_reasons if r.startswith("cache:")]
        assert len(lines) <= 1
        noted += len(lines)
        assert {v.source for v in resolution.values.values()} == {GridDataSource.ELECTRICITY_MAPS}
        time.sleep(0.02)
    assert worst <= 0.25 + 0.05
    assert noted > 0
    time.sleep(0.5)  # the pause is over
    signals.resolve(backends())
    time.sleep(0.3)
    assert [r for r in signals.resolve(backends()).fallback_reasons if r.startswith("cache:")] == []
    admin.close()


def test_refresh_fetches_once_for_the_fleet(
        em: FakeElectricityMaps, redis_run: TestRedis, prefix: str, parts: Parts) -> None:
    first = parts.signals(em, parts.cache(redis_run.url, prefix))
    second = parts.signals(em, parts.cache(redis_run.url, prefix))
    assert first.refresh(backends()) == {f"electricitymaps/{r}": "ok" for r in REGIONS}
    assert second.refresh(backends()) == {}  # fresh in the fleet: nothing to fetch
    assert em.count(LATEST) == len(REGIONS)


def test_a_cache_whose_adapter_is_missing_is_said_once_per_decision(em: FakeElectricityMaps) -> None:
    config = parse_config({"placement": {"sources": ["embedded"]}})
    config = dataclasses.replace(config, cache=CacheSettings(url="memcached://127.0.0.1:11211"))
    signals = config.build_signals()
    assert isinstance(signals.shared_cache, UnavailableCache)
    source = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", cache_ttl_seconds=0)
    signals = GridSignals([source], shared_cache=signals.shared_cache, time_budget_seconds=1.0)
    try:
        assert signals.resolve(backends()).fallback_reasons == (
            "cache: memcached adapter not installed; install greenroute[redis]; used this process's cache",)
        assert signals.resolve(backends()).fallback_reasons == ()  # served from this process's cache alone
        assert em.count(LATEST) == len(REGIONS)
    finally:
        signals.close()
