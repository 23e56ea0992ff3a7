"""Time-shifting: the greenest window from the Electricity Maps forecast, over the project's fake API.

The objects sit on local folders (real files); the forecast comes over HTTP from
:class:`tests.fakes.FakeElectricityMaps` with a known minimum. When the forecast source is down,
the embedded profile applies, the moves run at once, and the fallback is recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.fakes import FakeElectricityMaps, FakeWattTime

from greenroute import GreenRouter
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
from greenroute.adapters.grid.watttime import WattTimeGridApiStrategy, lbs_per_mwh_to_g_per_kwh
from greenroute.cli import main
from greenroute.model import Backend, Provider, SignalKind, utcnow
from greenroute.placement import GreenPlacementService
from greenroute.rebalance import RebalancePlan, choose_window
from greenroute.signals import GridSignals

# Hourly forecasts from the next hour on; the sum weighted by each side's energy is least at index 3.
DE = [300, 290, 280, 150, 260, 270, 280, 290, 300, 310, 320, 330]
SE = [40, 40, 40, 10, 40, 40, 40, 40, 40, 40, 40, 40]


@pytest.fixture
def em() -> Iterator[FakeElectricityMaps]:
    with FakeElectricityMaps() as fake:
        yield fake


def _router(tmp_path: Path, em: FakeElectricityMaps) -> GreenRouter:
    client = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", max_retries=0)
    backends = [Backend(id="dirty", provider=Provider.FILE, region="eu-central-1", root=(tmp_path / "dirty").as_uri(),
                        pue=1.2, grid_zone="DE"),
                Backend(id="clean", provider=Provider.FILE, region="eu-north-1", root=(tmp_path / "clean").as_uri(),
                        pue=1.1, grid_zone="SE-SE3")]
    signals = GridSignals([client], signal=SignalKind.AVERAGE, time_budget_seconds=5.0)
    return GreenRouter(GreenPlacementService(backends, signals=signals), SqliteCatalog(tmp_path / "catalog.db"))


def _planned(router: GreenRouter, count: int = 3) -> RebalancePlan:
    for i in range(count):
        router.write(f"logs/{i}.bin", bytes([i]) * 200_000, candidates=["dirty"], retention_days=365)
    plan = router.rebalance_plan()
    assert len(plan.moves) == count
    return plan


def _forecast_times(em: FakeElectricityMaps) -> list[object]:
    client = ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3", max_retries=0)
    try:
        return [p.point_time for p in client.forecast("eu-central-1", zone="DE").points]
    finally:
        client.close()


def test_the_window_is_the_forecast_minimum(tmp_path: Path, em: FakeElectricityMaps) -> None:
    em.set_forecast("DE", list(DE))
    em.set_forecast("SE-SE3", list(SE))
    with _router(tmp_path, em) as router:
        plan = _planned(router)
        assert plan.grid["dirty"]["source"] == "electricitymaps" and plan.signal is SignalKind.AVERAGE
        times = _forecast_times(em)
        before = em.count("/v3/carbon-intensity/forecast")
        window = choose_window(router, plan, 12)
        assert em.count("/v3/carbon-intensity/forecast") - before == 2  # one per zone, not per move
    assert window.fallback is None and window.source == "electricitymaps forecast"
    assert window.start == times[3] and window.end == times[3] + timedelta(hours=1)
    assert dict(window.intensities) == {"dirty": 150.0, "clean": 10.0}
    assert window.gco2e < window.gco2e_now


def test_the_window_ends_within_the_horizon(tmp_path: Path, em: FakeElectricityMaps) -> None:
    # The global minimum (index 3) ends past 3 h from now: the best window that fits starts at index 1.
    em.set_forecast("DE", [300, 200, 250, 100, 300])
    em.set_forecast("SE-SE3", [40, 40, 40, 10, 40])
    with _router(tmp_path, em) as router:
        plan = _planned(router, 1)
        times = _forecast_times(em)
        window = choose_window(router, plan, 3)
    assert window.start == times[1] and window.end <= utcnow() + timedelta(hours=3)


def test_apply_waits_for_the_window_and_stops_when_told(tmp_path: Path, em: FakeElectricityMaps) -> None:
    em.set_forecast("DE", list(DE))
    em.set_forecast("SE-SE3", list(SE))
    with _router(tmp_path, em) as router:
        plan = _planned(router)
        stop = threading.Event()
        waited: list[object] = []
        timer = threading.Timer(0.3, stop.set)
        timer.start()
        started = utcnow()
        report = router.rebalance_apply(plan, window_hours=12, stop=stop, on_wait=waited.append)
        timer.join()
        assert (utcnow() - started).total_seconds() < 5
        assert report.interrupted and report.window is not None and waited == [report.window]
        assert report.window.start == _forecast_times(em)[3]
        assert len(report.skipped) == 3 and not report.moved
        assert all("waiting for the window" in o.reason for o in report.skipped)
        assert {router.lookup(f"logs/{i}.bin").backend_id for i in range(3)} == {"dirty"}  # type: ignore[union-attr]


def test_apply_runs_now_when_now_is_greenest_and_records_the_window(tmp_path: Path, em: FakeElectricityMaps) -> None:
    em.set_forecast("DE", [120, 300, 300, 300])
    em.set_forecast("SE-SE3", [5, 40, 40, 40])
    with _router(tmp_path, em) as router:
        plan = _planned(router)
        report = router.rebalance_apply(plan, window_hours=3)
        assert len(report.moved) == 3 and report.window is not None and report.window.fallback is None
        for i in range(3):
            live = router.lookup(f"logs/{i}.bin")
            assert live is not None and live.backend_id == "clean"
            record = json.loads(live.moves[-1])
            assert record["window"] == "electricitymaps forecast"
            assert (record["intensity_from"], record["intensity_to"]) == (120.0, 5.0)  # the window's, not the plan's
            assert router.read(f"logs/{i}.bin") == bytes([i]) * 200_000


def test_forecast_source_down_falls_back_to_the_embedded_profile(tmp_path: Path, em: FakeElectricityMaps) -> None:
    with _router(tmp_path, em) as router:
        plan = _planned(router)
        em.stop()  # the forecast source is down: connection refused
        report = router.rebalance_apply(plan, window_hours=6)
        window = report.window
        assert window is not None and window.source == "embedded profile"
        assert window.fallback is not None and "electricitymaps forecast" in window.fallback
        assert "flat" in window.fallback and (window.start - utcnow()).total_seconds() < 5
        assert report.to_dict()["window"]["fallback"] == window.fallback
        assert len(report.moved) == 3
        live = router.lookup("logs/0.bin")
        assert live is not None and json.loads(live.moves[-1])["window"] == "embedded profile"


def test_cli_apply_with_the_forecast_down_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GR_TEST_EM_KEY", "gr-em-key-3f9c2b7d")
    with FakeElectricityMaps() as fake:
        url = f"{fake.url}/v3"
    config = tmp_path / "greenroute.toml"  # the fake is stopped: its port refuses connections
    config.write_text(f"""
[placement]
sources = ["electricitymaps"]
[sources.electricitymaps]
api_key_env = "GR_TEST_EM_KEY"
base_url = "{url}"
max_retries = 0
[sources.manual]
intensities = {{ "eu-central-1" = 400.0, "eu-north-1" = 20.0 }}
[catalog]
url = "sqlite:///{tmp_path}/catalog.db"
[[backends]]
id = "dirty"
provider = "file"
region = "eu-central-1"
root = "{(tmp_path / 'dirty').as_uri()}"
[[backends]]
id = "clean"
provider = "file"
region = "eu-north-1"
root = "{(tmp_path / 'clean').as_uri()}"
""")
    with GreenRouter.from_config(config) as router:
        router.write("logs/x.bin", b"x" * 100_000, candidates=["dirty"], retention_days=365)
    plan_file = tmp_path / "plan.json"
    assert main(["rebalance", "plan", "--config", str(config), "--output", str(plan_file)]) == 0
    assert "fallback: " in capsys.readouterr().out  # the plan used the embedded averages, and said so
    assert main(["rebalance", "apply", str(plan_file), "--config", str(config), "--window-hours", "4"]) == 0
    out = capsys.readouterr().out
    assert "embedded profile" in out and "electricitymaps forecast" in out and "moved 1," in out


def test_a_marginal_plan_takes_its_window_from_the_watttime_forecast(tmp_path: Path) -> None:
    # 5-minute points for 6 hours; both regions are cleanest for exactly the fourth hour (points 36-47).
    def series(base: float, low: float) -> list[float | None]:
        return [low if 36 <= i < 48 else base for i in range(72)]

    with FakeWattTime() as wt:
        wt.set_forecast("BPA", series(1000.0, 400.0))
        wt.set_forecast("CAISO_NORTH", series(100.0, 50.0))
        client = WattTimeGridApiStrategy(username=wt.username, password=wt.password, base_url=wt.url, max_retries=0)
        backends = [Backend(id="dirty", provider=Provider.FILE, region="us-west-2",
                            root=(tmp_path / "dirty").as_uri(), pue=1.2, watttime_region="BPA"),
                    Backend(id="clean", provider=Provider.FILE, region="us-west-1",
                            root=(tmp_path / "clean").as_uri(), pue=1.1, watttime_region="CAISO_NORTH")]
        signals = GridSignals([client], signal=SignalKind.MARGINAL, time_budget_seconds=5.0)
        with GreenRouter(GreenPlacementService(backends, signals=signals),
                         SqliteCatalog(tmp_path / "catalog.db")) as router:
            plan = _planned(router, 2)
            assert plan.signal is SignalKind.MARGINAL and plan.grid["dirty"]["source"] == "watttime"
            window = choose_window(router, plan, 6)
            points = client.forecast("us-west-2", 6, zone="BPA").points
        assert window.source == "watttime forecast" and window.signal is SignalKind.MARGINAL
        assert window.start == points[36].point_time and window.end == points[48].point_time
        assert dict(window.intensities) == pytest.approx({"dirty": lbs_per_mwh_to_g_per_kwh(400.0),
                                                          "clean": lbs_per_mwh_to_g_per_kwh(50.0)})
