"""The ``greenroute`` command, run in-process on the built-in profiles and on config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from greenroute.cli import main, parse_size


@pytest.fixture(autouse=True)
def _no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GREENROUTE_CONFIG", raising=False)
    for var in ("WATTTIME_USERNAME", "WATTTIME_PASSWORD", "ELECTRICITYMAPS_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, object]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_scores_json_with_no_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["scores", "--json"])
    assert code == 0
    assert isinstance(out, dict)
    assert out["signal"] == "average"
    ids = [s["backend_id"] for s in out["scores"]]
    assert ids == ["aws-eu-north-1", "aws-us-west-2", "azure-westeurope", "gcp-us-central1", "on-prem"]
    first = out["scores"][0]
    assert first["score"] == pytest.approx(92.37)
    assert set(first["components"]) == {"renewable", "carbon", "pue", "wue"}
    assert first["grid"]["source"] == "embedded"
    assert out["weights"] == {"renewable": 0.4, "carbon": 0.3, "pue": 0.2, "wue": 0.1}


def test_scores_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scores"]) == 0
    text = capsys.readouterr().out
    assert "aws-eu-north-1" in text and "92.37" in text
    assert "Open Database License" in text  # the ODbL notice travels with embedded values


def test_place_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["place", "--size", "10MB", "--retention-days", "30", "--json"])
    assert code == 0
    assert isinstance(out, dict)
    assert out["backend_id"] == "aws-eu-north-1"
    assert out["data_size_bytes"] == 10_000_000
    assert out["write_gco2e"] == pytest.approx(0.01 * 1.10 * 21 / 1000)
    assert len(out["alternatives"]) == 4
    assert out["signal"] == "average"


def test_place_with_candidates_and_objective(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["place", "--size", "1GiB", "--candidates", "on-prem", "gcp-us-central1",
                               "--objective", "min_carbon", "--json"])
    assert code == 0
    assert isinstance(out, dict)
    assert out["data_size_bytes"] == 2**30
    assert out["objective"] == "min_carbon"
    assert out["backend_id"] == "gcp-us-central1"


def test_place_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["place", "--size", "1GB"]) == 0
    text = capsys.readouterr().out
    assert "aws-eu-north-1" in text and "Alternatives" in text and "largest gap" in text


def test_grid_reports_each_region_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["grid", "us-west-2", "eu-north-1", "us-west-9", "--json"])
    assert code == 0
    assert isinstance(out, list)
    assert [r["region"] for r in out] == ["us-west-2", "eu-north-1", "us-west-9"]
    assert out[0]["carbon_intensity_g_per_kwh"] == 197.0 and out[0]["signal"] == "average"
    assert out[1]["source"] == "embedded" and out[1]["age_seconds"] > 0
    assert "unknown region 'us-west-9'" in out[2]["error"] and "us-west-2" in out[2]["error"]


def test_grid_exits_non_zero_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "nowhere-1"]) == 1
    assert "nowhere-1" in capsys.readouterr().out


def test_config_check_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[backends]]\nid = "b"\nprovider = "memory"\nregion = "eu-west-1"\nroot = "memory://b"\n')
    code, out = _json(capsys, ["config", "check", "--config", str(good), "--json"])
    assert code == 0
    assert isinstance(out, dict) and out["ok"] is True and out["backends"][0]["id"] == "b"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[backends]]\nid = "b"\nprovider = "memory"\nregion = "eu-west-1"\nroot = "memory://b"\npue = 0\n')
    assert main(["config", "check", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "backends[0].pue" in err and "expected a number >= 1" in err
    code, out = _json(capsys, ["scores", "--config", str(bad), "--json"])
    assert code == 2 and isinstance(out, dict) and out["error"] == "ConfigError"


def test_unknown_source_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grid", "us-west-2", "--source", "nope"]) == 2
    assert "unknown or unconfigured source 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "size"), [("10MB", 10**7), ("1.5GiB", 3 * 2**29), ("4096", 4096), ("2 kb", 2000)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["place", "--size", "ten"])
    assert info.value.code == 2
    assert "not a size" in capsys.readouterr().err
