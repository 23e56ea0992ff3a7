"""Benchmark 7: the shared grid cache (Redis). Decision cost warm, and upstream calls per region per TTL.

Two parts, both against greenroute's fake Electricity Maps server (real HTTP on loopback) and a Redis
server (a throwaway ``redis-server`` when the system has one, so its command counters are ours alone;
else the test Redis, see ``tests/servers/redis.py``):

* **Decision cost, warm**, 5 candidates, interleaved in one process: the in-process cache; the shared
  cache with its local layer (the default: a value read from Redis is reused for 1 s); and the shared
  cache with the local layer off, so every decision reads Redis. Redis's own ``INFO commandstats``
  counts the round trips per decision, which must be one ``MGET`` whatever the number of candidates.
* **Upstream calls per region per TTL** for 1, 4 and 8 processes (``tests/cache/fleet.py``, 4 threads
  each, 1 s TTL, an API answering in 50 ms), without and with Redis.

    python benchmarks/shared_cache.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

from _common import Context, Section, interleave, section_main, setup_paths, summary, temp_dir

REGIONS = ("us-west-2", "eu-north-1", "eu-west-2", "eu-central-1", "us-east-1")
KEY_VAR = "GREENROUTE_BENCH_SHARED_EM_KEY"
LATEST = "/v3/carbon-intensity/latest"
TTL_S = 1.0
API_DELAY_S = 0.05


def _redis() -> tuple[str, Any, str]:
    """A Redis URL, the thing to stop afterwards (or ``None``), and where it came from."""
    from tests.servers.local import ServerUnavailable
    from tests.servers.redis import redis_for_tests, start_redis_server

    try:
        server = start_redis_server()
        return f"redis://127.0.0.1:{server.port}/0", server, f"a throwaway redis-server on port {server.port}"
    except ServerUnavailable:
        target = redis_for_tests()
        return target.url, target, target.how


def _commandstats(url: str) -> dict[str, int]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def _decision_cost(section: Section, ctx: Context, url: str, prefix: str) -> None:
    from tests.fakes.grid_servers import FakeElectricityMaps

    from greenroute.adapters.cache.redis import from_settings
    from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
    from greenroute.config import CacheSettings
    from greenroute.model import Backend, Provider
    from greenroute.placement import GreenPlacementService
    from greenroute.signals import GridSignals

    backends = [Backend(id=f"sc-{r}", provider=Provider.MEMORY, region=r, root=f"memory://gr-bench-sc-{r}", pue=1.1)
                for r in REGIONS]
    rounds = 40 if ctx.smoke else 4000
    with FakeElectricityMaps() as fake:
        services: dict[str, GreenPlacementService] = {}
        for label, local_ttl, shared in (("in-process cache", 1.0, False),
                                         ("shared cache, local layer 1 s", 1.0, True),
                                         ("shared cache, local layer off", 0.0, True)):
            source = ElectricityMapsApiStrategy(api_key=fake.api_key, base_url=f"{fake.url}/v3", cache_ttl_seconds=0)
            cache = from_settings(CacheSettings(url=url, key_prefix=prefix)) if shared else None
            signals = GridSignals([source], cache_ttl_seconds=300.0, shared_cache=cache, local_ttl_seconds=local_ttl)
            services[label] = GreenPlacementService(backends, signals=signals)
            services[label].select_greenest_backend(None, 1 << 20)  # warm: values fetched and stored

        def decide(service: GreenPlacementService) -> Any:
            return lambda _i: service.select_greenest_backend(None, 1 << 20)

        before = _commandstats(url)
        samples = interleave({label: decide(s) for label, s in services.items()}, rounds, warmup=20)
        after = _commandstats(url)
        for service in services.values():
            service.signals.close()
    reads = after.get("mget", 0) - before.get("mget", 0)
    # The local-layer-off service reads on every decision; the local layer reads at most once per
    # second. Both read-only: any claim (evalsha) would mean a refresh, which a warm cache never needs.
    claims = after.get("evalsha", 0) - before.get("evalsha", 0)
    base = summary(samples["in-process cache"], "us")
    for label, ns in samples.items():
        s = summary(ns, "us")
        section.rows.append({"part": "decision cost (warm, 5 candidates)", "config": label, "processes": 1,
                             "p50_us": s["p50_us"], "p99_us": s["p99_us"],
                             "p50_vs_in_process": s["p50_us"] / base["p50_us"] if base["p50_us"] else None,
                             "redis_reads_per_decision": None if label == "in-process cache" else
                             (reads / (rounds + 20) if label.endswith("off") else None)})
    section.extra["decision_rounds"] = rounds
    section.extra["redis_mget_calls"] = reads
    section.extra["redis_claims_during_warm_decisions"] = claims
    off = next(r for r in section.rows if r["config"].endswith("off"))
    local = next(r for r in section.rows if r["config"].endswith("layer 1 s"))
    per_decision = reads / (rounds + 20)
    section.target("a shared-cache hit is one round trip for all 5 candidates (local layer off)",
                   goal="1 MGET per decision, no claims", measured=f"{per_decision:.2f} MGET per decision, "
                   f"{claims} claims; p50 {off['p50_us']:.0f} µs vs {base['p50_us']:.0f} µs in-process "
                   f"({local['p50_us']:.0f} µs with the 1 s local layer)",
                   met=None if ctx.smoke else (0.99 <= per_decision <= 1.01 and claims == 0))


def _fleet_calls(section: Section, ctx: Context, url: str, prefix: str) -> None:
    from tests.cache.fleet import start_fleet, write_config
    from tests.fakes.grid_servers import FakeElectricityMaps, FaultKind

    from greenroute.embedded import embedded_data

    seconds = 1.5 if ctx.smoke else 6.0
    sizes = (1, 2) if ctx.smoke else (1, 4, 8)
    zones = {embedded_data().region(r).em_zone: r for r in REGIONS}
    worst_shared = 0
    worst_alone: list[str] = []
    with temp_dir("shared-cache") as tmp, FakeElectricityMaps() as fake:
        fake.inject("*", FaultKind.HANG, hang_seconds=API_DELAY_S)
        for members, (label, shared) in itertools.product(sizes, (("without Redis", False), ("with Redis", True))):
            run_prefix = f"{prefix}{members}:"
            config = write_config(
                Path(tmp) / f"fleet-{members}-{shared}.toml", regions=REGIONS,
                placement={"sources": ["electricitymaps", "embedded"], "cache_ttl_seconds": TTL_S,
                           "time_budget_ms": 1000},
                sources={"electricitymaps": {"api_key_env": KEY_VAR, "base_url": f"{fake.url}/v3",
                                             "cache_ttl_seconds": 0, "timeout_seconds": 5, "max_retries": 0}},
                cache={"url": url, "key_prefix": run_prefix, "timeout_ms": 1000} if shared else None)
            fleet = start_fleet(config, members, threads=4, seconds=seconds, pause_ms=1.0,
                                env={KEY_VAR: fake.api_key}, limit_ms=1050)
            fake.reset_counts()
            go = fleet.go()
            results = fleet.results()
            windows = seconds / TTL_S
            per_zone: dict[str, list[float]] = {}
            for r in fake.requests:
                if r.path == LATEST and r.at >= go:
                    per_zone.setdefault(r.params.get("zone", ""), []).append(r.at)
            calls = [len(per_zone.get(z, [])) for z in zones]
            worst = max(_max_in_window(sorted(per_zone.get(z, [])), TTL_S) for z in zones)
            if shared:
                worst_shared = max(worst_shared, worst)
            else:
                worst_alone.append(str(worst))
            decisions = sum(r["decisions"] for r in results)
            section.rows.append({"part": "upstream calls per region per TTL", "config": label, "processes": members,
                                 "calls_per_region_per_ttl": sum(calls) / len(calls) / windows,
                                 "max_per_region_in_any_ttl_window": worst,
                                 "decisions_per_second": decisions / seconds,
                                 "errors": sum(r["error_count"] for r in results)})
    section.target("with Redis, at most one upstream call per region per TTL window for 1, 4 and 8 processes",
                   goal="max 1 per window", measured=f"max {worst_shared} in any {TTL_S:g} s window "
                   f"(without Redis: {', '.join(worst_alone)})",
                   met=None if ctx.smoke else worst_shared <= 1)


def _max_in_window(times: list[float], window: float) -> int:
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def run(ctx: Context) -> Section:
    setup_paths()
    section = Section("shared_cache", "7. Shared grid cache (Redis): warm decision cost, and upstream calls "
                                      "per region per TTL for 1/4/8 processes")
    section.table = [("part", "part"), ("config", "config"), ("processes", "processes"), ("p50_us", "p50 (µs)"),
                     ("p99_us", "p99 (µs)"), ("p50_vs_in_process", "p50 / in-process"),
                     ("redis_reads_per_decision", "Redis reads per decision"),
                     ("calls_per_region_per_ttl", "upstream calls per region per TTL"),
                     ("max_per_region_in_any_ttl_window", "max in any TTL window")]
    url, stoppable, how = _redis()
    prefix = f"greenroute-bench-{os.urandom(4).hex()}:"
    section.params = {"regions": list(REGIONS), "ttl_s": TTL_S, "api_delay_ms": API_DELAY_S * 1000, "redis": how}
    try:
        _decision_cost(section, ctx, url, prefix + "cost:")
        _fleet_calls(section, ctx, url, prefix + "fleet:")
    finally:
        if hasattr(stoppable, "delete_keys"):
            stoppable.stop()  # the test Redis: only this run's keys are deleted
        else:
            stoppable.stop()
    section.notes.append("Decision cost is measured interleaved in one process with warm caches; the local layer "
                         "makes a shared-cache hit cost what an in-process hit costs, and with it off each "
                         "decision is one MGET for all candidates. Upstream calls are the fake's arrivals of "
                         "carbon-intensity/latest per zone; 4 threads per process.")
    return section


def main() -> int:
    return section_main(run, __doc__, "tiny counts, 1 and 2 processes for 1.5 s")


if __name__ == "__main__":
    raise SystemExit(main())
