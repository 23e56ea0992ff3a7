"""A fleet member process, and the helpers that start a fleet of them.

Each member loads a greenroute config (with ``[cache]`` pointing at Redis and live sources pointing
at greenroute's fake grid servers), says ``ready``, waits for ``go`` on stdin, then makes placement
decisions from ``--threads`` threads for ``--seconds`` and prints one JSON summary line::

    python -m tests.cache.fleet --config fleet.toml --threads 16 --seconds 10

The summary counts decisions, exceptions that reached the caller, decision times (and how many took
longer than ``--limit-ms``), fallback reasons, per-0.5 s buckets of the run, and the grid values
(with their provenance) of the first and last decision. Times are ``time.monotonic()``, which is
one clock for every process on Linux, so they line up with the fake servers' request times.

Used by the tests in this folder and by ``benchmarks/shared_cache.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BUCKET_SECONDS = 0.5


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, *, regions: Sequence[str], placement: Mapping[str, Any],
                 sources: Mapping[str, Mapping[str, Any]], cache: Mapping[str, Any] | None = None,
                 budgets: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """A greenroute TOML config with one memory backend per region."""
    lines = ["[placement]"] + [f"{k} = {toml_value(v)}" for k, v in placement.items()]
    for name, table in sources.items():
        lines += ["", f"[sources.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    if cache is not None:
        lines += ["", "[cache]"] + [f"{k} = {toml_value(v)}" for k, v in cache.items()]
        for name, table in (budgets or {}).items():
            lines += ["", f"[cache.budgets.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in table.items()]
    for region in regions:
        lines += ["", "[[backends]]", f'id = "fleet-{region}"', 'provider = "memory"', f'region = "{region}"',
                  f'root = "memory://gr-fleet-{region}"']
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Fleet:
    """Member processes started together; :meth:`go` starts their decisions at one instant."""

    processes: list[subprocess.Popen[str]]
    go_at: float = 0.0

    def go(self) -> float:
        self.go_at = time.monotonic()
        for p in self.processes:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        return self.go_at

    def results(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for p in self.processes:
            stdout, stderr = p.communicate(timeout=timeout)
            lines = [line for line in stdout.splitlines() if line.startswith("{")]
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"fleet member exited {p.returncode}: {stderr[-2000:]}")
            out.append(json.loads(lines[-1]))
        return out

    def kill(self) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def start_fleet(config: Path, members: int, *, threads: int, seconds: float, pause_ms: float = 0.0,
                limit_ms: float = 300.0, env: Mapping[str, str] | None = None, ready_timeout: float = 60.0) -> Fleet:
    """Start ``members`` processes on ``config`` and wait until each is ready."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    environ = {**os.environ, **(env or {}), "PYTHONPATH": path}
    argv = [sys.executable, "-m", "tests.cache.fleet", "--config", str(config), "--threads", str(threads),
            "--seconds", str(seconds), "--pause-ms", str(pause_ms), "--limit-ms", str(limit_ms)]
    fleet = Fleet([subprocess.Popen(argv, cwd=REPO, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(members)])
    try:
        deadline = time.monotonic() + ready_timeout
        for p in fleet.processes:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready" or time.monotonic() > deadline:
                raise RuntimeError(f"fleet member not ready: {line!r}")
    except BaseException:
        fleet.kill()
        raise
    return fleet


# -- the member -----------------------------------------------------------------------------------


def _member(args: argparse.Namespace) -> dict[str, Any]:
    from greenroute import load_config

    service = load_config(args.config).build_service()
    print("ready", flush=True)
    sys.stdin.readline()
    go = time.monotonic()
    stop_at = go + args.seconds
    lock = threading.Lock()
    times: list[float] = []
    errors: list[str] = []
    reasons: Counter[str] = Counter()
    buckets: dict[int, list[float]] = {}
    flags = Counter[str]()
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    pause = args.pause_ms / 1000.0

    def worker() -> None:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                decision = service.select_greenest_backend(None, 1 << 20)
            except BaseException as exc:  # what the test is about: nothing may reach the caller
                with lock:
                    errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
                continue
            ms = (time.monotonic() - started) * 1000
            cache_lines = sum(1 for r in decision.fallback_reasons if r.startswith("cache:"))
            budget = any("fleet rate budget spent" in r for r in decision.fallback_reasons)
            grid = {k: v.to_dict() for k, v in decision.grid_data.items()}
            with lock:
                times.append(ms)
                reasons.update(decision.fallback_reasons)
                b = buckets.setdefault(int((started - go) / BUCKET_SECONDS), [0, 0.0, 0, 0])
                b[0] += 1
                b[1] = max(b[1], ms)
                b[2] += 1 if cache_lines else 0
                b[3] += 1 if decision.fallback else 0
                flags["decisions_with_cache_reason"] += 1 if cache_lines else 0
                flags["max_cache_reasons_in_one_decision"] = max(flags["max_cache_reasons_in_one_decision"],
                                                                 cache_lines)
                flags["budget_decisions"] += 1 if budget else 0
                flags["fallback_decisions"] += 1 if decision.fallback else 0
                if not first:
                    first.update(grid)
                last.clear()
                last.update(grid)
            if pause:
                time.sleep(pause)

    threads = [threading.Thread(target=worker, name=f"fleet-{i}") for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    service.signals.close()
    ordered = sorted(times)
    return {
        "pid": os.getpid(),
        "go": go,
        "decisions": len(times),
        "errors": errors[:20],
        "error_count": len(errors),
        "p50_ms": statistics.median(ordered) if ordered else None,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None,
        "max_ms": ordered[-1] if ordered else None,
        "over_limit": sum(1 for t in times if t > args.limit_ms),
        "reasons": dict(reasons.most_common(40)),
        "buckets": {str(k): v for k, v in sorted(buckets.items())},
        **flags,
        "first_grid": first,
        "last_grid": last,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pause-ms", type=float, default=0.0)
    parser.add_argument("--limit-ms", type=float, default=300.0)
    args = parser.parse_args(argv)
    print(json.dumps(_member(args)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
