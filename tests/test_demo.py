"""``greenroute demo`` end to end, on local directories and the embedded data."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.demo import BASELINE, NAMESPACES, run_demo


def test_demo_writes_places_reports_and_verifies(tmp_path: Path) -> None:
    console = Console(record=True, width=120)
    report = run_demo(tmp_path / "demo", files=200, console=console)
    assert report.files == 200
    assert report.verified == 25
    assert report.sources == {"embedded"} and report.signal == "average"
    assert sum(int(v[0]) for v in report.per_backend.values()) == 200
    assert len(report.per_backend) >= 3
    assert 0 < report.write_gco2e < report.baseline_write_gco2e
    assert 0 < report.gco2e_month < report.baseline_gco2e_month
    text = console.export_text()
    assert "embedded annual averages" in text and f"all to {BASELINE} instead" in text and "saved" in text

    catalog = SqliteCatalog(tmp_path / "demo" / "catalog.db")
    entries = catalog.list()
    catalog.close()
    assert len(entries) == 200
    for entry in entries:
        allowed = NAMESPACES[entry.path.split("/", 1)[0]][0]
        assert not allowed or entry.backend_id in allowed, entry  # residency held
        assert (tmp_path / "demo" / entry.backend_id / entry.path).is_file()
    sizes = [e.size for e in entries]
    assert min(sizes) < 100_000 and max(sizes) > 8_000_000  # kB to tens of MB


def test_demo_is_repeatable(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "d", files=200, console=Console(file=io.StringIO()))
    second = run_demo(tmp_path / "d", files=200, console=Console(file=io.StringIO()))
    assert first.per_backend.keys() == second.per_backend.keys()
    assert first.bytes_written == second.bytes_written
