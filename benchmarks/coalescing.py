"""Benchmark 4: request coalescing. Upstream calls per region per TTL window under 64 threads.

64 threads make placement decisions as fast as they can for 10 s (1 s in the smoke run) through
one service whose ``GridSignals`` has a 1 s TTL, over a fake Electricity Maps API (real HTTP,
answering after 50 ms). The fake records every request with its arrival time; for each region we
count ``carbon-intensity/latest`` requests and find the most that fall in any window of one TTL.
The ideal is exactly one per region per TTL window.

Two configurations run one after the other:

* ``source cache off``: the Electricity Maps client's own response cache is disabled
  (``cache_ttl_seconds = 0``), so only ``GridSignals`` coalesces;
* ``source cache on``: the client inherits the 1 s TTL, as a user's config would have it.

    python benchmarks/coalescing.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from _common import (
    Context,
    Section,
    clock,
    percentile,
    section_main,
    setup_paths,
    temp_dir,
    write_config,
)

from greenroute import load_config

THREADS = 64
TTL_S = 1.0
API_DELAY_S = 0.05
REGIONS = ("eu-north-1", "us-west-2", "eu-west-1")
KEY_VAR = "GREENROUTE_BENCH_EM_KEY"
LATEST = "/v3/carbon-intensity/latest"


def _config(tmp: Path, base_url: str, source_cache: bool) -> Path:
    backends = [{"id": f"co-{r}", "provider": "memory", "region": r, "root": f"memory://gr-bench-co-{r}"}
                for r in REGIONS]
    source: dict[str, Any] = {"api_key_env": KEY_VAR, "base_url": base_url}
    if not source_cache:
        source["cache_ttl_seconds"] = 0
    return write_config(tmp / f"cache-{'on' if source_cache else 'off'}.toml", backends=backends,
                        placement={"sources": ["electricitymaps", "embedded"], "cache_ttl_seconds": TTL_S},
                        sources={"electricitymaps": source})


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) that fall in any half-open interval of length ``window``."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _hammer(config: Path, fake: Any, seconds: float) -> dict[str, Any]:
    service = load_config(config).build_service()
    zones = {b.region: (b.grid_zone or _zone(b.region)) for b in service.backends}
    barrier = threading.Barrier(THREADS + 1)
    stop = threading.Event()
    latencies: list[list[int]] = [[] for _ in range(THREADS)]
    fallbacks = [0] * THREADS

    def worker(k: int) -> None:
        out = latencies[k]
        select = service.select_greenest_backend
        barrier.wait()
        while not stop.is_set():
            start = clock()
            decision = select(None, 1 << 20)
            out.append(clock() - start)
            if decision.fallback:
                fallbacks[k] += 1

    threads = [threading.Thread(target=worker, args=(k,), name=f"bench-co-{k}") for k in range(THREADS)]
    for t in threads:
        t.start()
    fake.reset_counts()
    barrier.wait()
    started = time.monotonic()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    service.signals.close()
    requests = [r for r in fake.requests if r.path == LATEST]
    per_region: dict[str, dict[str, Any]] = {}
    for region, zone in zones.items():
        times = sorted(r.at for r in requests if r.params.get("zone") == zone)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        per_region[region] = {"calls": len(times), "max_per_ttl_window": max_in_window(times, TTL_S),
                              "min_gap_s": min(gaps) if gaps else None}
    flat = sorted(x for lat in latencies for x in lat)
    return {"seconds": elapsed, "decisions": len(flat), "fallback_decisions": sum(fallbacks),
            "p50_ms": statistics.median(flat) / 1e6 if flat else None,
            "p99_ms": percentile(flat, 99) / 1e6 if flat else None, "regions": per_region}


def _zone(region: str) -> str:
    from greenroute.embedded import embedded_data

    return embedded_data().region(region).em_zone or region


def run(ctx: Context) -> Section:
    setup_paths()
    from tests.fakes.grid_servers import FakeElectricityMaps, FaultKind

    section = Section("coalescing", "4. Coalescing: 64 threads, 1 s TTL, upstream calls per region per TTL window")
    seconds = 1.0 if ctx.smoke else 10.0
    section.params = {"threads": THREADS, "seconds": seconds, "ttl_s": TTL_S, "api_delay_ms": API_DELAY_S * 1000,
                      "regions": list(REGIONS)}
    section.table = [("config", "config"), ("region", "region"), ("calls", "upstream calls"),
                     ("ttl_windows", "TTL windows"), ("calls_per_window", "calls per window (mean)"),
                     ("max_per_ttl_window", "max in any TTL window"), ("min_gap_s", "min gap (s)"),
                     ("decisions_per_second", "decisions/s (64 threads)"), ("p99_ms", "decision p99 (ms)")]
    previous = os.environ.get(KEY_VAR)
    try:
        with temp_dir("coalescing") as tmp, FakeElectricityMaps() as fake:
            os.environ[KEY_VAR] = fake.api_key
            fake.inject("*", FaultKind.HANG, hang_seconds=API_DELAY_S)
            for label, source_cache in (("source cache off", False), ("source cache on", True)):
                result = _hammer(_config(tmp, f"{fake.url}/v3", source_cache), fake, seconds)
                windows = result["seconds"] / TTL_S
                for region, r in result["regions"].items():
                    section.rows.append({
                        "config": label, "region": region, "calls": r["calls"], "ttl_windows": windows,
                        "calls_per_window": r["calls"] / windows, "max_per_ttl_window": r["max_per_ttl_window"],
                        "min_gap_s": r["min_gap_s"], "decisions": result["decisions"],
                        "decisions_per_second": result["decisions"] / result["seconds"],
                        "fallback_decisions": result["fallback_decisions"],
                        "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"]})
    finally:
        if previous is None:
            os.environ.pop(KEY_VAR, None)
        else:
            os.environ[KEY_VAR] = previous
    worst = max(r["max_per_ttl_window"] for r in section.rows)
    section.target("exactly one upstream call per region per TTL window (64 threads)", goal="max 1 per window",
                   measured=f"max {worst} in any {TTL_S:g} s window; "
                            + ", ".join(f"{r['config']} {r['region']}: {r['calls']} calls" for r in section.rows),
                   met=None if ctx.smoke else worst <= 1)
    section.notes.append("A window is any interval of one TTL (sliding); calls are the fake's arrivals of "
                         "carbon-intensity/latest for the region's zone. Decisions that waited on a refresh "
                         "show in the p99.")
    return section


def main() -> int:
    return section_main(run, __doc__, "1 s instead of 10 s")


if __name__ == "__main__":
    raise SystemExit(main())
