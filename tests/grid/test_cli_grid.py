"""``greenroute grid ... --source electricitymaps --json`` against the fake Electricity Maps server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.fakes import FakeElectricityMaps

from greenroute.cli import main


def test_grid_command_reads_electricity_maps_through_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        em_server: FakeElectricityMaps) -> None:
    monkeypatch.setenv("GR_TEST_CLI_EM_KEY", em_server.api_key)
    em_server.set_intensity("US-NW-PACW", 131)
    config = tmp_path / "greenroute.toml"
    config.write_text(
        '[placement]\nsources = ["electricitymaps"]\ntime_budget_ms = 5000\n\n'
        "[sources.electricitymaps]\n"
        f'base_url = "{em_server.url}/v3"\n'
        'api_key_env = "GR_TEST_CLI_EM_KEY"\n', encoding="utf-8")

    code = main(["grid", "us-west-2", "eu-north-1", "--source", "electricitymaps", "--json",
                 "--config", str(config)])

    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    by_region = {r["region"]: r for r in rows}
    assert set(by_region) == {"us-west-2", "eu-north-1"}
    west, north = by_region["us-west-2"], by_region["eu-north-1"]
    assert (west["grid_zone"], west["carbon_intensity_g_per_kwh"], west["renewable_pct"]) == ("US-NW-PACW", 131, 62.0)
    assert (north["grid_zone"], north["carbon_intensity_g_per_kwh"], north["renewable_pct"]) == ("SE-SE3", 27, 71.0)
    for row in rows:
        assert row["source"] == "electricitymaps"
        assert row["signal"] == "average"
        assert row["is_estimated"] is True
        assert row["is_stale"] is False
    assert em_server.count("/v3/carbon-intensity/latest") == 2
    assert em_server.api_key not in json.dumps(rows)


def test_grid_command_without_the_key_reports_an_error_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        em_server: FakeElectricityMaps) -> None:
    monkeypatch.delenv("GR_TEST_CLI_EM_KEY", raising=False)
    config = tmp_path / "greenroute.toml"
    config.write_text(
        '[placement]\nsources = ["electricitymaps"]\n\n[sources.electricitymaps]\n'
        f'base_url = "{em_server.url}/v3"\napi_key_env = "GR_TEST_CLI_EM_KEY"\n', encoding="utf-8")
    code = main(["grid", "eu-north-1", "--source", "electricitymaps", "--json", "--config", str(config)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "GR_TEST_CLI_EM_KEY" in rows[0]["error"]
    assert em_server.count() == 0
