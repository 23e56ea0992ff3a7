"""Benchmark 8: ``import greenroute`` and ``greenroute place --json`` as whole processes.

Each command is a fresh interpreter, timed from ``subprocess.run`` to its exit, beside plain
``python -c pass``: the commands are interleaved (A B C D, then D C B A, ...), 20 rounds, and the
medians are reported. The processes run as an installed package would: bytecode cached (in a
temporary ``PYTHONPYCACHEPREFIX``, filled by one warm-up run of each command; the source tree is
not written), no ``GREENROUTE_CONFIG`` and no grid credentials in the environment, in an empty
folder, so ``place`` uses the five built-in profiles and the embedded data.

Rows:

* ``python -c pass``: the interpreter and ``site`` alone (the floor).
* ``import greenroute``: the package (target ≤ 150 ms).
* ``first decision``: import the placement service and make one decision on the built-in profiles.
* ``greenroute place --size 10MB --json``: the console script (target ≤ 400 ms). With no config the
  built-in ``[placement] sources`` name WattTime and Electricity Maps, whose adapters are loaded to
  find that no credentials are set.
* the same with a config whose ``sources = ["embedded"]``: what ``place`` costs without grid adapters.

It also times, in this process, an entry-point lookup that scans its group (the first per process)
against one served from the cache (``greenroute.plugins.load_entry_point``). For ``import
greenroute`` and ``place --json`` it records which heavy libraries each process
loaded (cloud SDKs, pandas, rich, httpx, ...) and, from ``-X importtime`` (fastest of three runs per
module), the modules that cost ``place --json`` the most, so a missed target says where the time goes.

    python benchmarks/import_time.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import collections
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import Context, Section, clock, section_main, temp_dir

TARGET_IMPORT_MS = 150.0
TARGET_PLACE_MS = 400.0
ROUNDS = 20

#: Libraries that ``import greenroute`` or ``place --json`` should not load before they are used.
HEAVY = ("boto3", "botocore", "s3fs", "gcsfs", "adlfs", "azure", "google", "fsspec", "pandas", "pyarrow", "numpy",
         "rich", "httpx", "httpcore", "tenacity", "asyncio", "click", "pygments", "importlib.metadata", "sqlite3")
#: Environment variables that would change what ``place`` loads (a config file, grid credentials).
_UNSET = ("PYTHONDONTWRITEBYTECODE", "GREENROUTE_CONFIG", "WATTTIME_USERNAME", "WATTTIME_PASSWORD",
          "ELECTRICITYMAPS_API_KEY")

_PLACE_ARGS = ["place", "--size", "10MB", "--json"]
_FIRST_DECISION = ("from greenroute import GreenPlacementService\n"
                   "from greenroute.profiles import default_backends\n"
                   "GreenPlacementService(default_backends()).select_greenest_backend(None, 10_000_000)\n")


def _place_command() -> list[str]:
    script = Path(sys.executable).with_name("greenroute")
    if script.is_file():
        return [str(script), *_PLACE_ARGS]
    return [sys.executable, "-c", "import sys; from greenroute.cli import main; sys.exit(main())", *_PLACE_ARGS]


def _loaded(code: str, env: dict[str, str], cwd: Path) -> list[str]:
    """The heavy libraries a process running ``code`` has loaded when it ends."""
    probe = (f"{code}\nimport sys\n"
             f"print(','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True,
                          check=True)
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
    return [m for m in last.split(",") if m]


def _importtime(code: str, env: dict[str, str], cwd: Path, runs: int) -> dict[str, tuple[float, float, int]]:
    """Per module: (fastest cumulative ms, fastest own ms, nesting depth) over ``runs`` runs of ``-X importtime``."""
    best: dict[str, list[float]] = collections.defaultdict(lambda: [float("inf"), float("inf"), 0.0])
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, cwd=cwd,
                              capture_output=True, text=True, check=True)
        for line in done.stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if match:
                entry = best[match[4]]
                entry[0] = min(entry[0], int(match[2]) / 1000)
                entry[1] = min(entry[1], int(match[1]) / 1000)
                entry[2] = (len(match[3]) - 1) // 2
    return {name: (v[0], v[1], int(v[2])) for name, v in best.items()}


def _where_time_goes(profile: dict[str, tuple[float, float, int]], top: int = 12) -> list[dict[str, Any]]:
    """The costliest greenroute modules and top-level packages (cumulative ms, which includes what each imports)."""
    rows = [{"module": name, "cumulative_ms": cum, "own_ms": own, "depth": depth}
            for name, (cum, own, depth) in profile.items()
            if "." not in name or name.startswith("greenroute.")]
    rows.sort(key=lambda r: -r["cumulative_ms"])
    return rows[:top]


def _entry_point_lookups(rounds: int) -> dict[str, float]:
    """Median ms of a lookup that scans ``greenroute.targets`` and of one answered from the cache."""
    from greenroute.plugins import clear_entry_point_cache, load_entry_point

    load_entry_point("greenroute.targets", "memory")  # importlib.metadata's own import is not the scan's cost
    scans, cached = [], []
    for _ in range(max(rounds, 5)):
        clear_entry_point_cache()
        start = clock()
        load_entry_point("greenroute.targets", "memory")
        scans.append(clock() - start)
        start = clock()
        load_entry_point("greenroute.targets", "memory")
        cached.append(clock() - start)
    return {"scan_ms": statistics.median(scans) / 1e6, "cached_ms": statistics.median(cached) / 1e6}


def run(ctx: Context) -> Section:
    section = Section("import_time", "8. Whole processes: import greenroute and greenroute place --json")
    rounds = 2 if ctx.smoke else ROUNDS
    with temp_dir("import") as tmp:
        env = {k: v for k, v in os.environ.items() if k not in _UNSET}
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        cwd = tmp / "empty"
        cwd.mkdir()
        place = _place_command()
        embedded_only = tmp / "embedded-only.toml"
        embedded_only.write_text('[placement]\nsources = ["embedded"]\n')
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import greenroute": [sys.executable, "-c", "import greenroute"],
            "first decision (built-in profiles)": [sys.executable, "-c", _FIRST_DECISION],
            "greenroute place --size 10MB --json": place,
            "greenroute place --size 10MB --json (sources = embedded)": [*place, "--config", str(embedded_only)],
        }
        section.params = {"rounds": rounds, "python": sys.executable, "place": " ".join(place[1:]),
                          "bytecode": "cached (PYTHONPYCACHEPREFIX, warmed once)", "config": "none (built-in)"}
        for argv in commands.values():  # warm-up: fills the bytecode cache, and checks every command works
            subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        samples: dict[str, list[int]] = {name: [] for name in commands}
        names = list(commands)
        for i in range(rounds):
            for name in names if i % 2 == 0 else names[::-1]:
                start = clock()
                subprocess.run(commands[name], env=env, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
                samples[name].append(clock() - start)
        floor = statistics.median(samples["python -c pass"]) / 1e6
        place_code = f"from greenroute.cli import main\nmain({_PLACE_ARGS!r})"
        loaded = {"import greenroute": _loaded("import greenroute", env, cwd),
                  "first decision (built-in profiles)": _loaded(_FIRST_DECISION, env, cwd),
                  "greenroute place --size 10MB --json": _loaded(place_code, env, cwd),
                  "greenroute place --size 10MB --json (sources = embedded)": _loaded(
                      f"from greenroute.cli import main\nmain({[*_PLACE_ARGS, '--config', str(embedded_only)]!r})",
                      env, cwd)}
        for name, values in samples.items():
            median = statistics.median(values) / 1e6
            section.rows.append({"command": name, "n": len(values), "p50_ms": median, "min_ms": min(values) / 1e6,
                                 "over_python_ms": median - floor,
                                 "heavy_modules_loaded": ", ".join(loaded.get(name, [])) or "none"})
        profile = _importtime(place_code, env, cwd, 1 if ctx.smoke else 3)
    section.table = [("command", "command"), ("n", "runs"), ("p50_ms", "p50 (ms)"), ("min_ms", "min (ms)"),
                     ("over_python_ms", "over `python -c pass` (ms)"), ("heavy_modules_loaded", "heavy modules loaded")]
    by = {r["command"]: r for r in section.rows}
    imported, placed = by["import greenroute"], by["greenroute place --size 10MB --json"]
    section.target("`python -c \"import greenroute\"` ≤ 150 ms (whole process, median of 20)",
                   goal=f"≤ {TARGET_IMPORT_MS:g} ms",
                   measured=f"{imported['p50_ms']:.0f} ms (python -c pass {floor:.0f} ms)",
                   met=None if ctx.smoke else imported["p50_ms"] <= TARGET_IMPORT_MS)
    section.target("`greenroute place --json` ≤ 400 ms (whole process, median of 20)",
                   goal=f"≤ {TARGET_PLACE_MS:g} ms",
                   measured=f"{placed['p50_ms']:.0f} ms (python -c pass {floor:.0f} ms)",
                   met=None if ctx.smoke else placed["p50_ms"] <= TARGET_PLACE_MS)
    lookups = _entry_point_lookups(rounds)
    section.extra["entry_point_lookup"] = lookups
    section.notes.append(f"Entry-point lookup (greenroute.targets, median of {max(rounds, 5)}): "
                         f"{lookups['scan_ms']:.1f} ms when it scans the group (once per process), "
                         f"{lookups['cached_ms'] * 1000:.1f} µs after.")
    costly = _where_time_goes(profile)
    section.extra["place_importtime_top"] = costly
    section.notes.append("Where `place --json` spends its imports (-X importtime, fastest of 3, cumulative ms; "
                         "importtime's own overhead inflates these): "
                         + "; ".join(f"{r['module']} {r['cumulative_ms']:.0f}" for r in costly) + ".")
    return section


def main() -> int:
    return section_main(run, __doc__, "2 rounds")


if __name__ == "__main__":
    raise SystemExit(main())
