"""UK Carbon Intensity client: national and regional shapes, region mapping, errors."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest
from tests.fakes import FakeUkCarbonIntensity, FaultKind

from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.ukcarbon import UkCarbonIntensitySource, from_settings
from greenroute.config import PlacementSettings, SourceSettings
from greenroute.errors import ConfigError, GridDataUnavailableError, UnknownRegionError
from greenroute.model import GridDataSource, SignalKind


def _client(server: FakeUkCarbonIntensity, retry: RetryPolicy, **kwargs: Any) -> UkCarbonIntensitySource:
    return UkCarbonIntensitySource(base_url=server.url, retry=retry, timeout_seconds=2.0, **kwargs)


def test_mapped_regions_use_the_nested_regional_answer(uk_server: FakeUkCarbonIntensity,
                                                       fast_retry: RetryPolicy) -> None:
    with _client(uk_server, fast_retry) as uk:
        value = uk.get_grid_carbon_data("eu-west-2")
        assert uk.is_available() is True
    assert value.carbon_intensity_g_per_kwh == 212.0
    assert value.grid_zone == "GB/London"
    assert value.signal is SignalKind.AVERAGE
    assert value.source is GridDataSource.UK_CARBON_INTENSITY
    assert value.renewable_pct == pytest.approx(4.2 + 2.2 + 6.8 + 18.1)
    assert value.is_estimated is True
    assert uk_server.counts() == {"/regional/regionid/13": 1}


def test_national_prefers_actual_then_forecast(fast_retry: RetryPolicy) -> None:
    with FakeUkCarbonIntensity(national={"forecast": 266, "actual": 263}) as server, _client(server, fast_retry) as uk:
        assert uk.get_grid_carbon_data("eu-west-2", zone="GB").carbon_intensity_g_per_kwh == 263.0
        assert uk.national().forecast == 266.0
    with FakeUkCarbonIntensity(national={"forecast": 266, "actual": None}) as server, _client(server, fast_retry) as uk:
        value = uk.get_grid_carbon_data("anything", zone="GB")
        assert value.carbon_intensity_g_per_kwh == 266.0
        assert value.grid_zone == "GB"


def test_unmapped_regions_are_unknown_without_a_request(uk_server: FakeUkCarbonIntensity,
                                                        fast_retry: RetryPolicy) -> None:
    with _client(uk_server, fast_retry) as uk:
        for region, zone in (("us-west-2", None), ("eu-north-1", "SE-SE3")):
            with pytest.raises(UnknownRegionError):
                uk.get_grid_carbon_data(region, zone=zone)
    assert uk_server.count() == 0


def test_errors_are_typed(uk_server: FakeUkCarbonIntensity, fast_retry: RetryPolicy) -> None:
    uk_server.inject("13", FaultKind.SERVER_ERROR)
    uk_server.inject("national", FaultKind.NULL_INTENSITY)
    uk_server.inject("3", FaultKind.MALFORMED_JSON)
    with _client(uk_server, fast_retry, regions={"eu-west-2": 13, "manchester": 3}) as uk:
        with pytest.raises(GridDataUnavailableError, match="500"):
            uk.get_grid_carbon_data("eu-west-2")
        assert uk_server.count("/regional/regionid/13") == 4
        with pytest.raises(GridDataUnavailableError, match="neither actual nor forecast"):
            uk.get_grid_carbon_data("x", zone="GB")
        with pytest.raises(GridDataUnavailableError, match="malformed JSON"):
            uk.get_grid_carbon_data("manchester")
        with pytest.raises(ConfigError):
            uk.regional(42)


def test_from_settings_reads_the_region_table(uk_server: FakeUkCarbonIntensity) -> None:
    settings = SourceSettings("ukcarbon", MappingProxyType({"base_url": uk_server.url,
                                                            "regions": {"on-prem-leeds": 5, "eu-west-2": 0}}))
    with from_settings(settings, PlacementSettings()) as uk:
        assert uk.region_id("on-prem-leeds") == 5
        assert uk.get_grid_carbon_data("eu-west-2").grid_zone == "GB"
        with pytest.raises(UnknownRegionError):
            uk.region_id("uksouth")  # the table replaces the defaults
    with from_settings(SourceSettings("ukcarbon", MappingProxyType({})), PlacementSettings()) as uk:
        assert {uk.region_id(r) for r in ("eu-west-2", "europe-west2", "uksouth")} == {13}
    bad = SourceSettings("ukcarbon", MappingProxyType({"regions": {"eu-west-2": 99}}))
    with pytest.raises(ConfigError, match=r"regions\.eu-west-2"):
        from_settings(bad, PlacementSettings())
