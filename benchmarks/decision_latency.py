"""Benchmark: how long one placement decision takes with warm caches.

Runs ``GreenPlacementService.select_greenest_backend`` over 3, 10 and 100 candidates on the
embedded data (no I/O), and reports p50 and p99 in microseconds and decisions per second on one
core. Writes JSON (machine-readable) and prints a markdown table.

    python benchmarks/decision_latency.py [--rounds 5000] [--json benchmarks/results/decision_latency.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from greenroute import Backend, GreenPlacementService, Provider
from greenroute.embedded import embedded_data


def _backends(n: int) -> list[Backend]:
    regions = embedded_data().regions
    providers = [Provider.S3, Provider.GCS, Provider.AZURE]
    return [Backend(id=f"b{i:03d}-{regions[i % len(regions)]}", provider=providers[i % 3],
                    region=regions[i % len(regions)], root=f"memory://b{i}", pue=1.1 + (i % 7) / 100,
                    renewable_pct=float(i % 101)) for i in range(n)]


def measure(n: int, rounds: int) -> dict[str, float]:
    service = GreenPlacementService(_backends(n))
    for _ in range(200):  # warm the caches and the interpreter
        service.select_greenest_backend(None, 1_000_000)
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        start = clock()
        service.select_greenest_backend(None, 1_000_000)
        samples.append((clock() - start) / 1000.0)
    samples.sort()
    p50 = statistics.median(samples)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return {"candidates": n, "rounds": rounds, "p50_us": p50, "p99_us": p99,
            "decisions_per_second": 1e6 / p50}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "decision_latency.json")
    args = parser.parse_args()
    results = [measure(n, args.rounds if n < 100 else max(200, args.rounds // 10)) for n in (3, 10, 100)]
    report = {
        "benchmark": "decision_latency",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "results": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("| candidates | p50 (µs) | p99 (µs) | decisions/s (one core) |")
    print("|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['candidates']} | {r['p50_us']:.0f} | {r['p99_us']:.0f} | {r['decisions_per_second']:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
