"""The ``greenroute`` command, run in-process on the built-in profiles and on config files."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.fakes import FakeUkCarbonIntensity
from tests.servers.local import closed_port

from greenroute import GreenRouter
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
    err = capsys.readouterr().err
    assert "unknown source 'nope'" in err and "ukcarbon" in err


@pytest.mark.parametrize(("text", "size"), [("10MB", 10**7), ("1.5GiB", 3 * 2**29), ("4096", 4096), ("2 kb", 2000)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["place", "--size", "ten"])
    assert info.value.code == 2
    assert "not a size" in capsys.readouterr().err


# -- the CLI as a new user meets it (issue 17) ---------------------------------------------------------


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"greenroute {importlib.metadata.version('greenroute')}"


@pytest.mark.parametrize("argv", [
    ["grid", "us-west-2", "nowhere-1"],
    ["scores"],
    ["place", "--size", "1kB"],
    ["report"],
    ["fsck"],
    ["reindex"],
    ["config", "check"],
    ["demo", "--dir", "demo-out", "--files", "3"],
    ["demo", "--dir", "demo-out", "--files", "2", "--live"],
    ["scores", "--config", "missing.toml"],  # an error is JSON too
])
def test_every_json_output_is_one_json_document_and_nothing_else(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    main([*argv, "--json"])
    out = capsys.readouterr().out
    json.loads(out)  # raises if anything but one JSON document is on stdout


def test_demo_json_in_a_fresh_process_prints_only_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "greenroute.cli", "demo", "--json", "--files", "5",
                           "--dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"] == 5 and report["verified"] == 5
    assert sum(b["files"] for b in report["backends"]) == 5
    assert report["simulated_on"] == "local folders"


@pytest.mark.parametrize("files", ["0", "-5"])
def test_demo_refuses_no_files(files: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--files", files])
    assert info.value.code == 2
    assert "expected at least 1" in capsys.readouterr().err
    assert _tree(tmp_path) == []  # not even the demo folder


def test_demo_live_without_keys_says_why_it_fell_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--live", "--files", "3", "--dir", str(tmp_path / "d")]) == 0
    text = capsys.readouterr().out
    assert "--live" in text and "embedded annual averages" in text
    assert "electricitymaps: no API key (set $ELECTRICITYMAPS_API_KEY)" in text
    code, out = _json(capsys, ["demo", "--live", "--files", "3", "--dir", str(tmp_path / "d"), "--json"])
    assert code == 0 and isinstance(out, dict)
    assert out["live"] is True and out["sources"] == ["embedded"]
    assert out["fallback_reasons"]["electricitymaps: no API key (set $ELECTRICITYMAPS_API_KEY)"] == 3


def test_keyless_source_by_name_needs_no_place_in_the_chain(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # placement.sources stays the default (watttime, electricitymaps, embedded): ukcarbon is not in it.
    config = tmp_path / "greenroute.toml"
    with FakeUkCarbonIntensity() as uk:
        config.write_text(f'[placement]\ntime_budget_ms = 5000\n\n[sources.ukcarbon]\nbase_url = "{uk.url}"\n')
        code, rows = _json(capsys, ["grid", "eu-west-2", "--source", "ukcarbon", "--json", "--config", str(config)])
        assert uk.count() == 1
    assert code == 0 and isinstance(rows, list)
    assert rows[0]["source"] == "ukcarbon" and rows[0]["carbon_intensity_g_per_kwh"] == 212


def test_keyless_source_with_no_config_is_asked_not_refused(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # No config at all. The real API is kept out of reach behind a closed proxy port, so the row says
    # the source could not be reached, which is what asking it (not refusing it) looks like offline.
    proxy = f"http://127.0.0.1:{closed_port()}"
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(var, proxy)
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    code, rows = _json(capsys, ["grid", "eu-west-2", "--source", "ukcarbon", "--json"])
    assert code == 1 and isinstance(rows, list)  # 1: no answer; 2 would be "refused"
    assert rows[0]["error"].startswith("GridDataUnavailableError: ukcarbon")


_MASS = re.compile(r"\b([kmµn]?gCO2e)(?!/kWh)")


@pytest.mark.parametrize("size", ["1kB", "1MB", "10GB", "5TB"])
def test_place_prints_one_unit_and_never_zero(size: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["place", "--size", size, "--retention-days", "30"]) == 0
    text = capsys.readouterr().out
    assert len(set(_MASS.findall(text))) == 1, text
    assert not re.search(r"(?<![\d.])0\.0+(?![\d.]*[1-9])", text), text  # no 0.0000 anywhere


def test_scores_label_points_and_show_the_renewable_share(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scores"]) == 0
    text = capsys.readouterr().out
    assert "renew. %" in text and "renew. pts" in text and "carbon pts" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("azure-westeurope"))
    assert row.split()[3:5] == ["79", "31.60"]  # the share (79 %) beside its points (0.4 x 79)


@pytest.mark.parametrize("argv", [["report"], ["fsck"], ["reindex"], ["config", "check"]])
def test_read_only_commands_create_nothing_with_no_config(argv: list[str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    assert _tree(tmp_path) == []
    assert main([*argv, "--json"]) == 0
    assert _tree(tmp_path) == []
    if argv == ["report"]:
        assert "no catalog yet" in capsys.readouterr().out


def _file_config(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "store"
    root.mkdir()
    catalog = tmp_path / "state" / "catalog.db"
    config = tmp_path / "greenroute.toml"
    config.write_text(f'[catalog]\nurl = "sqlite:///{catalog}"\n\n[[backends]]\nid = "local"\nprovider = "file"\n'
                      f'region = "eu-north-1"\nroot = "{root.as_uri()}"\n')
    return config, catalog


@pytest.mark.parametrize("argv", [["report"], ["fsck"], ["reindex"], ["config", "check"]])
def test_read_only_commands_do_not_create_a_configured_catalog(argv: list[str], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, catalog = _file_config(tmp_path)
    before = _tree(tmp_path)
    code, out = _json(capsys, [*argv, "--config", str(config), "--json"])
    assert code == 0 and isinstance(out, dict)
    assert _tree(tmp_path) == before and not catalog.exists()
    assert out["catalog_exists"] is False
    assert main([*argv, "--config", str(config)]) == 0
    assert "no catalog yet" in capsys.readouterr().out
    assert _tree(tmp_path) == before


def test_reindex_still_rebuilds_a_lost_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, catalog = _file_config(tmp_path)
    with GreenRouter.from_config(config) as router:
        router.write("ns/kept.bin", b"abc")
    catalog.unlink()
    code, out = _json(capsys, ["reindex", "--config", str(config), "--json"])
    assert code == 0 and isinstance(out, dict)
    assert out["entries"] == 1 and out["catalog_exists"] is True and catalog.exists()
    code, out = _json(capsys, ["report", "--config", str(config), "--json"])
    assert isinstance(out, dict) and out["totals"]["objects"] == 1


def test_config_check_json_lists_embedded(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _json(capsys, ["config", "check", "--json"])
    assert code == 0 and isinstance(out, dict)
    by_name = {s["name"]: s for s in out["sources"]}
    assert by_name["embedded"] == {"name": "embedded", "signal": "average", "available": True}
    assert main(["config", "check"]) == 0
    assert "source embedded (average): available" in capsys.readouterr().out


def test_with_no_config_a_later_process_reports_no_vanished_objects(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = ("import greenroute\n"
            "with greenroute.GreenRouter.from_config(None) as r:\n"
            "    r.write('ns/gone-with-the-process.bin', b'x' * 1000)\n"
            "    print(len(r.list('ns')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          check=False)
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    assert _tree(tmp_path) == []  # no catalog file left behind for the memory backends
    code_, out = _json(capsys, ["report", "--json"])
    assert code_ == 0 and isinstance(out, dict) and out["totals"]["objects"] == 0
