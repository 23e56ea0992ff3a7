"""The grid clients' ``forecast(region, hours)``, against the fakes' settable forecasts over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.fakes import FakeElectricityMaps, FakeWattTime, FaultKind

from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy
from greenroute.adapters.grid.watttime import WattTimeGridApiStrategy, lbs_per_mwh_to_g_per_kwh
from greenroute.errors import GridDataUnavailableError, UnknownRegionError
from greenroute.rebalance import ForecastSource


def test_watttime_forecast_serves_the_set_series_converted_and_cut_to_the_horizon() -> None:
    series = [900.0 - i for i in range(36)]  # three hours of 5-minute points
    with FakeWattTime() as wt, WattTimeGridApiStrategy(username=wt.username, password=wt.password,
                                                       base_url=wt.url, max_retries=0) as client:
        wt.set_forecast("CAISO_NORTH", series)
        assert isinstance(client, ForecastSource)
        forecast = client.forecast("us-west-1", 2, zone="CAISO_NORTH")
        assert [p.carbon_intensity_g_per_kwh for p in forecast.points] == \
            [pytest.approx(lbs_per_mwh_to_g_per_kwh(v)) for v in series[:24]]
        steps = {b.point_time - a.point_time for a, b in zip(forecast.points, forecast.points[1:], strict=False)}
        assert steps == {timedelta(minutes=5)}
        request = wt.requests[-1]
        assert request.path == "/v3/forecast" and request.params["horizon_hours"] == "2"
        assert request.params["signal_type"] == "co2_moer"


def test_watttime_forecast_without_a_set_series_keeps_its_old_shape() -> None:
    with FakeWattTime() as wt, WattTimeGridApiStrategy(username=wt.username, password=wt.password,
                                                       base_url=wt.url, max_retries=0) as client:
        points = client.forecast("us-west-1", 1, zone="CAISO_NORTH").points
        assert len(points) == 12
        assert points[1].carbon_intensity_g_per_kwh - points[0].carbon_intensity_g_per_kwh == \
            pytest.approx(lbs_per_mwh_to_g_per_kwh(0.25))


def test_electricitymaps_forecast_by_region_cut_to_hours() -> None:
    with FakeElectricityMaps() as em, ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3",
                                                                 max_retries=0) as client:
        em.set_forecast("SE-SE3", [30, 20, 10, 25, 35])
        assert isinstance(client, ForecastSource)
        forecast = client.forecast("eu-north-1", 2, zone="SE-SE3")
        assert forecast.zone == "SE-SE3"
        # points at the hour plus 1, 2, 3... h: only those before now + 2 h are kept
        assert [p.carbon_intensity_g_per_kwh for p in forecast.points] == [30, 20]
        assert em.requests[-1].params == {"zone": "SE-SE3"}  # only the documented parameter is sent
        whole = client.forecast("eu-north-1", zone="SE-SE3")
        assert [p.carbon_intensity_g_per_kwh for p in whole.points] == [30, 20, 10, 25, 35]


def test_electricitymaps_forecast_maps_a_region_and_still_takes_a_zone() -> None:
    with FakeElectricityMaps() as em, ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3",
                                                                 max_retries=0) as client:
        em.set_forecast("DE", [400, 380])
        assert client.forecast("DE").zone == "DE"  # a zone, as before
        assert client.forecast("eu-central-1").zone == "DE"  # a cloud region, through the embedded mapping
        assert [p.carbon_intensity_g_per_kwh for p in client.forecast("DE").points] == [400, 380]


def test_electricitymaps_forecast_errors_are_typed() -> None:
    with FakeElectricityMaps() as em, ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3",
                                                                 max_retries=0) as client:
        em.inject("NL", FaultKind.SERVER_ERROR)
        with pytest.raises(GridDataUnavailableError):
            client.forecast("NL")
        with pytest.raises(UnknownRegionError):
            client.forecast("jioindiawest")  # a known cloud region with no Electricity Maps zone
        assert em.count("/v3/carbon-intensity/forecast") == 1  # the NL attempt only
