"""Exports: CSV and Parquet round-trip through pandas with the stated columns and units; JSON; the CLI.

Every file states the units and the carbon model version; the values read back equal the report's.
"""

from __future__ import annotations

import io
import json
import math
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from greenroute.cli import main
from greenroute.reporting.export import object_columns, read_csv_metadata, row_columns, write_report
from greenroute.reporting.ledger import Grouping, Report, ReportRequest, build_report, iter_objects, parse_by
from greenroute.router import GreenRouter

from .conftest import BASELINE, T0, FrozenClock
from .test_ledger_arithmetic import scenario

UNTIL = T0 + timedelta(hours=10)
UNITS = {"objects": "count", "bytes": "bytes", "write_gco2e": "gCO2e", "at_rest_gco2e": "gCO2e",
         "gco2e_per_month": "gCO2e/month", "baseline_gco2e": "gCO2e", "saved_gco2e": "gCO2e", "saved_pct": "%",
         "stale_or_fallback_pct": "%", "mean_intensity_g_per_kwh": "gCO2e/kWh", "market_gco2e": "gCO2e"}


def _report(router: GreenRouter, by: str) -> Report:
    return build_report(router.catalog, ReportRequest(until=UNTIL, by=parse_by(by),
                                                      market_factors={"green-north": 5.0}))


def _same(a: object, b: object) -> bool:
    if b is None:
        return a is None or (isinstance(a, float) and math.isnan(a))
    if isinstance(b, float):
        return isinstance(a, float | int) and a == pytest.approx(b, rel=1e-15)
    return bool(a == b)


@pytest.mark.parametrize("by", ["backend", "namespace", "prefix:2", "hour", "total"])
def test_csv_round_trips_through_pandas_with_units_and_model(by: str, router: GreenRouter, clock: FrozenClock,
                                                             tmp_path: Path) -> None:
    scenario(router, clock)
    report = _report(router, by)
    path = tmp_path / "report.csv"
    with path.open("w", newline="") as f:
        n = write_report(report, "csv", f)
    cols = row_columns(report)
    df = pd.read_csv(path, comment="#")
    assert list(df.columns) == [c.name for c in cols]
    assert len(df) == n == (len(report.rows) if by != "total" else 1)
    meta, units = read_csv_metadata(path.read_text())
    assert meta["model_version"] == router.placement.carbon_model.version
    assert meta["baseline"] == BASELINE and meta["basis"].startswith("location-based")
    assert meta["until"] == "2026-03-02T18:00:00Z" and meta["by"] == by
    assert set(units) == set(df.columns)
    assert {k: units[k] for k in UNITS} == UNITS
    rows = report.rows if by != "total" else [report.total]
    for (_, got), want in zip(df.iterrows(), rows, strict=True):
        assert want is not None
        for c in cols[1:]:
            assert _same(got[c.name], c.get(want)), (c.name, got[c.name], c.get(want))


def test_object_csv_keeps_deleted_objects_and_their_inputs(router: GreenRouter, clock: FrozenClock,
                                                           tmp_path: Path) -> None:
    scenario(router, clock)
    report = _report(router, "object")
    path = tmp_path / "objects.csv"
    with path.open("w", newline="") as f:
        write_report(report, "csv", f, objects=iter_objects(router.catalog, report.request))
    df = pd.read_csv(path, comment="#", keep_default_na=False, na_values=[""])
    assert list(df.columns) == [c.name for c in object_columns(report)]
    assert list(df["path"]) == ["lake/a.bin", "lake/b.bin", "logs/c.bin", "lake/a.bin"]
    assert list(df["closed_reason"].fillna("")) == ["overwritten", "deleted", "", ""]
    assert list(df["held_hours"]) == [5.0, 6.0, 8.0, 5.0]
    entries = {e.decision_id: e for e in router.catalog.history()}
    for _, row in df.iterrows():
        entry = entries[row["decision_id"]]
        assert row["write_gco2e"] == entry.write_gco2e and row["bytes"] == entry.size
        assert row["intensity_g_per_kwh"] == entry.carbon_intensity_g_per_kwh
        assert row["model_version"] == entry.model_version and row["signal"] == "average"
        assert row["saved_gco2e"] == pytest.approx(row["baseline_gco2e"] - row["total_gco2e"], rel=1e-12)
    _, units = read_csv_metadata(path.read_text())
    assert units["held_hours"] == "h" and units["created_at"] == "UTC" and units["market_gco2e"] == "gCO2e"
    assert sum(df["total_gco2e"]) == pytest.approx(report.total.total_gco2e if report.total else 0, rel=1e-12)


@pytest.mark.parametrize("by", ["backend", "day", "object"])
def test_parquet_round_trips_with_schema_metadata_and_units(by: str, router: GreenRouter, clock: FrozenClock,
                                                            tmp_path: Path) -> None:
    scenario(router, clock)
    report = _report(router, by)
    path = tmp_path / "report.parquet"
    objects = iter_objects(router.catalog, report.request) if by == "object" else None
    n = write_report(report, "parquet", objects=objects, path=str(path))
    df = pd.read_parquet(path)
    cols = object_columns(report) if by == "object" else row_columns(report)
    assert list(df.columns) == [c.name for c in cols] and len(df) == n
    schema = pq.read_schema(path)
    meta = json.loads(schema.metadata[b"greenroute"])
    assert meta["model_version"] == router.placement.carbon_model.version and meta["by"] == by
    assert meta["units"] == {c.name: c.unit for c in cols}
    for c in cols:
        assert schema.field(c.name).metadata[b"unit"] == c.unit.encode()
    if by == "object":
        assert str(df["created_at"].dtype).startswith("datetime64") and df["created_at"].iloc[0] == T0
        assert df["closed_at"].isna().tolist() == [False, False, True, True]
    else:
        for (_, got), want in zip(df.iterrows(), report.rows, strict=True):
            for c in cols[1:]:
                assert _same(got[c.name], c.get(want)), c.name


def test_json_has_columns_rows_and_totals(router: GreenRouter, clock: FrozenClock) -> None:
    scenario(router, clock)
    report = _report(router, "backend")
    out = io.StringIO()
    write_report(report, "json", out)
    doc = json.loads(out.getvalue())
    assert doc["report"]["model_version"] == router.placement.carbon_model.version
    assert [c["name"] for c in doc["columns"]] == [c.name for c in row_columns(report)]
    assert [r["backend"] for r in doc["rows"]] == [r.label for r in report.rows]
    assert report.total is not None
    assert doc["totals"]["objects"] == 4 and doc["totals"]["saved_gco2e"] == report.total.saved_gco2e


def _config(tmp_path: Path, catalog: Path) -> Path:
    lines = ['[placement]\nsources = ["embedded"]\n', f'[catalog]\nurl = "sqlite:///{catalog}"\n',
             f'[report]\nbaseline = "{BASELINE}"\n']
    for backend, region in (("base-east", "us-east-1"), ("green-north", "eu-north-1"), ("mid-west", "us-west-2")):
        extra = "market_factor_g_per_kwh = 5.0\n" if backend == "green-north" else ""
        lines.append(f'[[backends]]\nid = "{backend}"\nprovider = "memory"\nregion = "{region}"\n'
                     f'root = "memory://cli-test/{backend}"\n{extra}')
    path = tmp_path / "greenroute.toml"
    path.write_text("\n".join(lines))
    return path


def test_the_cli_writes_every_format(router: GreenRouter, clock: FrozenClock, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    scenario(router, clock)
    config = _config(tmp_path, Path(str(router.catalog.path)))  # type: ignore[attr-defined]
    common = ["report", "--config", str(config), "--until", "2026-03-02T18:00:00Z"]
    assert main([*common, "--by", "object", "--format", "csv", "--output", str(tmp_path / "o.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "o.csv", comment="#")) == 4
    assert main([*common, "--by", "day", "--format", "parquet", "--output", str(tmp_path / "d.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "d.parquet")) == 1
    capsys.readouterr()
    assert main([*common, "--prefix", "lake/", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["objects"] == 3 and doc["report"]["prefix"] == "lake/"
    assert doc["rows"][0]["market_gco2e"] > 0  # green-north declares a market-based factor in the config
    assert main([*common, "--since", "2026-03-02T11:00Z", "--by", "namespace"]) == 0
    text = capsys.readouterr().out
    assert "Carbon by namespace" in text and "lake" in text and "location-based" in text
    # with --html, the table by backend comes from the HTML's own query: the same figures
    capsys.readouterr()
    assert main([*common, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main([*common, "--json", "--html", str(tmp_path / "r.html")]) == 0
    with_html = json.loads(capsys.readouterr().out)
    assert with_html["html"] == str(tmp_path / "r.html") and (tmp_path / "r.html").read_text().count("<svg") == 4
    assert with_html["rows"] == plain["rows"] and with_html["totals"] == plain["totals"]
    assert main([*common, "--by", "total", "--json", "--html", str(tmp_path / "t.html")]) == 0
    assert json.loads(capsys.readouterr().out)["totals"] == plain["totals"]
    assert main([*common, "--by", "colour"]) == 2
    assert "cannot group by 'colour'" in capsys.readouterr().err
    assert main([*common, "--format", "parquet"]) == 2  # binary: needs --output


def test_grouping_and_time_arguments_are_checked() -> None:
    from greenroute.errors import ConfigError
    from greenroute.reporting.command import parse_time

    assert parse_by("prefix:3") == Grouping("key", "prefix", depth=3)
    for bad in ("prefix:0", "prefix:x", "fortnight"):
        with pytest.raises(ConfigError):
            parse_by(bad)
    assert parse_time("2026-03-02T08:00", key="--since") == T0
    with pytest.raises(ConfigError):
        parse_time("yesterday", key="--since")
