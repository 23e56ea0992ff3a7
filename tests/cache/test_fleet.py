"""A fleet of processes sharing grid values through real Redis, against greenroute's fake grid APIs.

Every member is a separate process (``tests/cache/fleet.py``) with its own GridSignals, talking to
Redis and to the fake servers over loopback. The fakes record each request's arrival time, which is
how upstream calls per region per TTL window are counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.cache.fleet import start_fleet, write_config
from tests.fakes import FakeElectricityMaps, FakeWattTime, FaultKind
from tests.servers.local import LocalServer
from tests.servers.redis import TestRedis

from greenroute.embedded import embedded_data

REGIONS = ("us-west-2", "eu-north-1", "eu-west-2", "eu-central-1", "us-east-1")
LATEST = "/v3/carbon-intensity/latest"
FORECAST = "/v3/forecast"
EM_KEY_VAR = "GREENROUTE_TEST_FLEET_EM_KEY"
WT_USER_VAR = "GREENROUTE_TEST_FLEET_WT_USER"
WT_PASS_VAR = "GREENROUTE_TEST_FLEET_WT_PASSWORD"


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most of ``times`` (sorted) in any half-open interval of length ``window``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def calls_by_zone(fake: Any, path: str, param: str, start: float = 0.0,
                  end: float = float("inf")) -> dict[str, list[float]]:
    zones: dict[str, list[float]] = {}
    for r in fake.requests:
        if r.path == path and start <= r.at < end:
            zones.setdefault(r.params.get(param, ""), []).append(r.at)
    return {z: sorted(ts) for z, ts in zones.items()}


def em_zone(region: str) -> str:
    zone = embedded_data().region(region).em_zone
    assert zone is not None
    return zone


def em_config(tmp: Path, em: FakeElectricityMaps, cache: dict[str, Any] | None, *, ttl: float,
              budget_ms: float, name: str = "fleet.toml") -> Path:
    return write_config(
        tmp / name, regions=REGIONS,
        placement={"sources": ["electricitymaps", "embedded"], "cache_ttl_seconds": ttl,
                   "time_budget_ms": budget_ms},
        sources={"electricitymaps": {"api_key_env": EM_KEY_VAR, "base_url": f"{em.url}/v3",
                                     "cache_ttl_seconds": 0, "timeout_seconds": 5, "max_retries": 0}},
        cache=cache)


def _no_errors(results: list[dict[str, Any]]) -> None:
    assert [r["errors"] for r in results if r["error_count"]] == []
    assert all(r["decisions"] > 0 for r in results)


def test_8_processes_x_16_threads_make_at_most_one_upstream_call_per_region_per_ttl(
        tmp_path: Path, em: FakeElectricityMaps, redis_run: TestRedis, prefix: str) -> None:
    em.inject("*", FaultKind.HANG, hang_seconds=0.05)  # each upstream answer takes 50 ms
    # Generous cache timeout and decision budget: on a 2-core machine 128 busy threads can starve Redis
    # for longer than the 50 ms default, and a member that falls back to its own cache calls upstream
    # itself. This test is about sharing; the fault tests hold the defaults.
    config = em_config(tmp_path, em, {"url": redis_run.url, "key_prefix": prefix, "timeout_ms": 1000},
                       ttl=1.0, budget_ms=2000)
    seconds = 10.0
    # A 1 ms pause between a thread's decisions leaves the 2 cores some room for the fake server, whose
    # recorded arrival times are what is counted; without it they lag by up to hundreds of ms.
    fleet = start_fleet(config, 8, threads=16, seconds=seconds, pause_ms=1.0, env={EM_KEY_VAR: em.api_key},
                        limit_ms=2050)
    em.reset_counts()
    go = fleet.go()
    results = fleet.results()
    _no_errors(results)
    per_zone = calls_by_zone(em, LATEST, "zone", start=go)
    for region in REGIONS:
        times = per_zone.get(em_zone(region), [])
        assert max_in_window(times, 1.0) == 1, (region, [round(t - go, 3) for t in times],
                                                [r["reasons"] for r in results])
        # Refreshed all along, not fetched once and frozen. Each refresh takes a TTL plus the time to notice
        # and fetch, and under stale-while-revalidate a starved machine serves the stale value meanwhile, so
        # the bound is loose: a refresh at least every 2.5 s on average, and one in the last 4 s.
        assert len(times) >= seconds / 4 and times[-1] > go + seconds - 4.0, (region, len(times))
    assert sum(r["decisions_with_cache_reason"] for r in results) == 0


def test_redis_killed_at_3_s_and_restarted_at_6_s(
        tmp_path: Path, em: FakeElectricityMaps, redis_run: TestRedis,
        redis_server_factory: Callable[..., LocalServer]) -> None:
    server = redis_server_factory()
    port = server.port
    budget_ms = 250.0
    config = em_config(tmp_path, em, {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": "greenroute-killtest:"},
                       ttl=1.0, budget_ms=budget_ms)
    fleet = start_fleet(config, 3, threads=4, seconds=10.0, pause_ms=2.0, env={EM_KEY_VAR: em.api_key},
                        limit_ms=budget_ms + 50)
    em.reset_counts()
    go = fleet.go()
    try:
        time.sleep(max(0.0, go + 3.0 - time.monotonic()))
        server.kill()
        time.sleep(max(0.0, go + 6.0 - time.monotonic()))
        redis_server_factory(port)
    finally:
        results = fleet.results()
    _no_errors(results)
    assert [r["max_ms"] for r in results if r["over_limit"]] == []  # no decision over budget + 50 ms
    # The outage was noticed and said once per decision, and it ended after the restart.
    assert sum(r["decisions_with_cache_reason"] for r in results) > 0
    assert max(r["max_cache_reasons_in_one_decision"] for r in results) == 1
    for r in results:
        early = [b for k, b in r["buckets"].items() if int(k) < 5]   # before 2.5 s
        late = [b for k, b in r["buckets"].items() if int(k) >= 16]  # from 8 s on
        assert sum(b[2] for b in early) == 0
        assert late and sum(b[2] for b in late) == 0
    zone_times = calls_by_zone(em, LATEST, "zone", start=go)
    during = {z: [t for t in ts if go + 3.5 <= t < go + 6.0] for z, ts in zone_times.items()}
    after = {z: [t for t in ts if go + 8.0 <= t < go + 10.0] for z, ts in zone_times.items()}
    # During the outage every member called upstream on its own; after the restart, one did.
    assert max(max_in_window(ts, 1.0) for ts in during.values()) > 1
    for region in REGIONS:
        times = after.get(em_zone(region), [])
        assert max_in_window(times, 1.0) <= 1, (region, [round(t - go, 3) for t in times])


def test_a_fleet_budget_of_20_calls_per_5_s_across_4_processes(
        tmp_path: Path, wt: FakeWattTime, redis_run: TestRedis, prefix: str) -> None:
    config = write_config(
        tmp_path / "budget.toml", regions=REGIONS,
        placement={"signal": "marginal", "sources": ["watttime", "embedded"], "cache_ttl_seconds": 0.2,
                   "time_budget_ms": 500},
        sources={"watttime": {"username_env": WT_USER_VAR, "password_env": WT_PASS_VAR, "base_url": wt.url,
                              "cache_ttl_seconds": 0, "timeout_seconds": 5, "max_retries": 0}},
        cache={"url": redis_run.url, "key_prefix": prefix},
        budgets={"watttime": {"calls": 20, "window_seconds": 5}})
    env = {WT_USER_VAR: wt.username, WT_PASS_VAR: wt.password}
    fleet = start_fleet(config, 4, threads=4, seconds=4.0, pause_ms=5.0, env=env, limit_ms=550)
    wt.reset_counts()
    fleet.go()
    results = fleet.results()
    _no_errors(results)
    # The whole run is shorter than one window, so the fake sees at most the budget.
    assert 15 <= wt.count(FORECAST) <= 20
    assert sum(r["budget_decisions"] for r in results) > 0
    reasons = {reason for r in results for reason in r["reasons"]}
    assert any(reason.startswith("watttime: fleet rate budget spent (20 calls per 5 s) for ") for reason in reasons)


def test_values_written_by_process_a_carry_a_s_provenance_in_process_b(
        tmp_path: Path, em: FakeElectricityMaps, redis_run: TestRedis, prefix: str) -> None:
    cache = {"url": redis_run.url, "key_prefix": prefix}
    config_a = em_config(tmp_path, em, cache, ttl=300.0, budget_ms=2000, name="a.toml")
    fleet_a = start_fleet(config_a, 1, threads=1, seconds=0.3, env={EM_KEY_VAR: em.api_key})
    fleet_a.go()
    [a] = fleet_a.results()
    with FakeElectricityMaps() as other:  # B's own upstream: it must not be called
        config_b = em_config(tmp_path, other, cache, ttl=300.0, budget_ms=2000, name="b.toml")
        fleet_b = start_fleet(config_b, 1, threads=1, seconds=0.3, env={EM_KEY_VAR: other.api_key})
        fleet_b.go()
        [b] = fleet_b.results()
        assert other.count(LATEST) == 0
    assert a["pid"] != b["pid"] and os.getpid() not in (a["pid"], b["pid"])
    assert set(b["first_grid"]) == {f"fleet-{r}" for r in REGIONS}
    for backend, theirs in a["last_grid"].items():
        ours = b["first_grid"][backend]
        assert ours["source"] == "electricitymaps"
        for field in ("source", "signal", "fetched_at", "observed_at", "is_estimated", "carbon_intensity_g_per_kwh",
                      "grid_zone", "renewable_pct"):
            assert ours[field] == theirs[field], (backend, field)
        assert ours["is_stale"] is False
    assert em.count(LATEST) == len(REGIONS)
