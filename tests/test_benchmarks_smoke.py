"""The benchmark suite's smoke run: every benchmark runs and writes valid output.

Runs ``benchmarks/run.py --smoke --out <tmp>`` in a subprocess (tiny sizes and counts), so the
committed results in ``benchmarks/results`` are never touched, and checks the JSON and markdown it
writes. Nothing about timings is asserted: this only keeps the benchmarks from rotting.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "benchmarks" / "run.py"
COMMITTED = REPO / "benchmarks" / "results"

#: Fields every row of each section must carry as numbers.
NUMERIC = {
    "decision_latency": ("candidates", "p50_us", "p99_us", "decisions_per_second"),
    "write_overhead": ("size_bytes", "direct_p50_ms", "routed_p50_ms", "ratio", "added_ms", "paired_added_ms"),
    "cold_path": ("budget_ms", "first_p50_ms", "first_max_ms", "second_p50_ms", "upstream_per_decision"),
    "coalescing": ("calls", "ttl_windows", "calls_per_window", "max_per_ttl_window", "decisions_per_second"),
    "catalog_scaling": ("entries", "lookup_p50_us", "lookup_p99_us", "begin_p50_us", "commit_p50_us"),
    "streaming": ("seconds", "mib_per_s", "baseline_rss_mb", "peak_rss_mb"),
    "shared_cache": ("processes",),
    "import_time": ("n", "p50_ms", "min_ms", "over_python_ms"),
    "catalog_postgres": (),  # rows of three kinds (latency, size, throughput): no numeric field common to all
    "report_scale": ("entries", "p50_s", "min_s", "max_s"),
    "bulk_async": ("objects", "size_bytes", "sequential_ms", "bulk_ms", "ratio", "speedup", "s3fs_bulk_ms"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _snapshot(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.glob("*")} if folder.is_dir() else {}


def test_smoke_run_writes_every_section(tmp_path: Path) -> None:
    before = _snapshot(COMMITTED)
    done = subprocess.run([sys.executable, str(RUN), "--smoke", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"benchmarks/run.py --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert _snapshot(COMMITTED) == before, "the smoke run must not touch benchmarks/results"

    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["smoke"] is True
    assert report["failed"] == []
    assert report["date"]
    assert {"cpu", "cores", "python"} <= set(report["machine"])
    assert set(report["sections"]) == set(NUMERIC)
    for name, fields in NUMERIC.items():
        section = report["sections"][name]
        assert section["rows"], f"{name}: no rows"
        for row in section["rows"]:
            for key in fields:
                assert _is_number(row.get(key)), f"{name}: {key} = {row.get(key)!r} is not a number in {row}"
        assert json.loads((tmp_path / f"{name}.json").read_text())["section"] == name
        for target in section["targets"]:
            assert {"target", "goal", "measured", "met"} <= set(target)
            assert target["met"] is None, "a smoke run judges no timing target"

    markdown = (tmp_path / "latest.md").read_text()
    assert markdown.startswith("# greenroute benchmarks")
    for name in NUMERIC:
        assert report["sections"][name]["title"] in markdown
