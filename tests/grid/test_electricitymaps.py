"""Electricity Maps client: null intensity, breakdown failures, 401 throttling, denials, secrets."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import pytest
from tests.fakes import FakeElectricityMaps, FaultKind

from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.electricitymaps import ElectricityMapsApiStrategy, from_settings
from greenroute.config import PlacementSettings, SourceSettings, parse_config
from greenroute.errors import GridAccessDeniedError, GridDataError, GridDataUnavailableError, UnknownRegionError
from greenroute.model import GridDataSource, SignalKind


@pytest.fixture
def make_client(em_server: FakeElectricityMaps,
                fast_retry: RetryPolicy) -> Iterator[Callable[..., ElectricityMapsApiStrategy]]:
    made: list[ElectricityMapsApiStrategy] = []

    def make(**kwargs: Any) -> ElectricityMapsApiStrategy:
        options: dict[str, Any] = {"api_key": em_server.api_key, "base_url": f"{em_server.url}/v3",
                                   "retry": fast_retry, "timeout_seconds": 2.0}
        options.update(kwargs)
        client = ElectricityMapsApiStrategy(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_latest_value_with_renewable_share_and_provenance(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                          em_server: FakeElectricityMaps) -> None:
    value = make_client().get_grid_carbon_data("eu-north-1")
    assert value.carbon_intensity_g_per_kwh == 27.0
    assert value.grid_zone == "SE-SE3"
    assert value.renewable_pct == 71.0
    assert value.signal is SignalKind.AVERAGE
    assert value.source is GridDataSource.ELECTRICITY_MAPS
    assert value.is_estimated is True
    assert value.observed_at is not None
    latest = [r for r in em_server.requests if r.path == "/v3/carbon-intensity/latest"]
    assert [r.params for r in latest] == [{"zone": "SE-SE3"}]


def test_is_estimated_and_emission_factor_type_are_kept() -> None:
    with FakeElectricityMaps(is_estimated=False, emission_factor_type="direct") as em, \
            ElectricityMapsApiStrategy(api_key=em.api_key, base_url=f"{em.url}/v3") as client:
        latest = client.latest("DE")
        assert latest.emission_factor_type == "direct"
        assert latest.is_estimated is False and latest.estimation_method is None
        assert latest.carbon_intensity_g_per_kwh == 371.0
        assert client.get_grid_carbon_data("eu-central-1").is_estimated is False


def test_null_intensity_is_unavailable_never_zero(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                  em_server: FakeElectricityMaps) -> None:
    em_server.inject("SE-SE3", FaultKind.NULL_INTENSITY)
    client = make_client()
    with pytest.raises(GridDataUnavailableError, match="null"):
        client.get_grid_carbon_data("eu-north-1")
    with pytest.raises(GridDataUnavailableError, match="null"):
        client.latest("SE-SE3")


def test_a_failing_power_breakdown_keeps_the_intensity(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                       em_server: FakeElectricityMaps) -> None:
    em_server.inject("SE-SE3", FaultKind.SERVER_ERROR, path="power-breakdown/latest")
    value = make_client().get_grid_carbon_data("eu-north-1")
    assert value.carbon_intensity_g_per_kwh == 27.0
    assert value.renewable_pct is None
    assert em_server.count("/v3/power-breakdown/latest") == 1  # an optional extra: no retries


def test_malformed_json_is_a_typed_error(make_client: Callable[..., ElectricityMapsApiStrategy],
                                         em_server: FakeElectricityMaps) -> None:
    em_server.inject("DE", FaultKind.MALFORMED_JSON)
    with pytest.raises(GridDataUnavailableError, match="malformed JSON"):
        make_client().get_grid_carbon_data("eu-central-1")


def test_a_401_after_a_burst_is_retried_and_the_key_kept(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                         em_server: FakeElectricityMaps, sleeps: Any) -> None:
    em_server.inject("DE", FaultKind.EXPIRED_TOKEN, times=2, path="carbon-intensity/latest")
    client = make_client()
    assert client.get_grid_carbon_data("eu-central-1").carbon_intensity_g_per_kwh == 371.0
    assert em_server.count("/v3/carbon-intensity/latest") == 3
    assert len(sleeps.waits) == 2
    assert client.get_grid_carbon_data("eu-north-1").carbon_intensity_g_per_kwh == 27.0


def test_a_persistent_401_is_access_denied_but_the_key_is_not_dropped(
        make_client: Callable[..., ElectricityMapsApiStrategy], em_server: FakeElectricityMaps) -> None:
    em_server.inject("DE", FaultKind.EXPIRED_TOKEN)
    client = make_client(max_retries=2)
    with pytest.raises(GridAccessDeniedError, match="401 persisted"):
        client.get_grid_carbon_data("eu-central-1")
    assert em_server.count("/v3/carbon-intensity/latest") == 3
    em_server.clear_faults()
    assert client.is_available()
    assert client.get_grid_carbon_data("eu-central-1").carbon_intensity_g_per_kwh == 371.0


def test_a_zone_the_key_may_not_read_is_not_retried_and_remembered(
        make_client: Callable[..., ElectricityMapsApiStrategy], em_server: FakeElectricityMaps) -> None:
    em_server.inject("DE", FaultKind.INVALID_SCOPE)
    client = make_client()
    with pytest.raises(GridAccessDeniedError, match="Token unauthorized for zoneKey"):
        client.get_grid_carbon_data("eu-central-1")
    with pytest.raises(GridAccessDeniedError, match="remembered"):
        client.get_grid_carbon_data("eu-central-1")
    assert em_server.count() == 1


def test_429_storm_stops_after_max_retries(make_client: Callable[..., ElectricityMapsApiStrategy],
                                           em_server: FakeElectricityMaps) -> None:
    em_server.inject("*", FaultKind.RATE_LIMITED)
    with pytest.raises(GridDataUnavailableError, match="429"):
        make_client(max_retries=2).get_grid_carbon_data("eu-north-1")
    assert em_server.count() == 3


def test_zone_resolution_and_caching(make_client: Callable[..., ElectricityMapsApiStrategy],
                                     em_server: FakeElectricityMaps) -> None:
    client = make_client()
    assert client.get_grid_carbon_data("us-west-2").grid_zone == "US-NW-PACW"
    assert client.get_grid_carbon_data("anything", zone="FR").carbon_intensity_g_per_kwh == 33.0
    with pytest.raises(UnknownRegionError):
        client.get_grid_carbon_data("not-a-region")
    before = em_server.count()
    client.get_grid_carbon_data("us-west-2")
    assert em_server.count() == before


def test_forecast_and_v4(em_server: FakeElectricityMaps) -> None:
    with ElectricityMapsApiStrategy(api_key=em_server.api_key, base_url=f"{em_server.url}/v4") as client:
        forecast = client.forecast("SE-SE3")
        assert len(forecast.points) == 24
        assert forecast.points[0].carbon_intensity_g_per_kwh == 28.0
        assert forecast.updated_at is not None
    assert em_server.count("/v4/carbon-intensity/forecast") == 1


def test_without_a_key_it_is_unavailable(em_server: FakeElectricityMaps) -> None:
    with ElectricityMapsApiStrategy(api_key=None, base_url=f"{em_server.url}/v3") as client:
        assert client.is_available() is False
        with pytest.raises(GridDataUnavailableError):
            client.get_grid_carbon_data("eu-north-1")
    assert em_server.count() == 0


def test_from_settings_reads_the_key_only_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch,
                                                                em_server: FakeElectricityMaps) -> None:
    monkeypatch.delenv("ELECTRICITYMAPS_API_KEY", raising=False)
    monkeypatch.delenv("GR_TEST_EM_KEY", raising=False)
    settings = SourceSettings("electricitymaps", MappingProxyType({"api_key_env": "GR_TEST_EM_KEY",
                                                                   "base_url": f"{em_server.url}/v3"}))
    monkeypatch.setenv("ELECTRICITYMAPS_API_KEY", em_server.api_key)
    with from_settings(settings, PlacementSettings()) as client:
        assert client.is_available() is False
    monkeypatch.setenv("GR_TEST_EM_KEY", em_server.api_key)
    with from_settings(settings, PlacementSettings()) as client:
        assert client.get_grid_carbon_data("eu-north-1").carbon_intensity_g_per_kwh == 27.0
    defaults = SourceSettings("electricitymaps", MappingProxyType({"base_url": f"{em_server.url}/v3"}))
    with from_settings(defaults, PlacementSettings()) as client:
        assert client.is_available() is True
    cfg = parse_config({"placement": {"sources": ["electricitymaps"]},
                        "sources": {"electricitymaps": {"api_key_env": "GR_TEST_EM_KEY",
                                                        "base_url": f"{em_server.url}/v3"}}})
    (source,) = cfg.build_sources()
    assert isinstance(source, ElectricityMapsApiStrategy)
    source.close()


def test_the_key_never_reaches_reprs_errors_or_logs(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                    em_server: FakeElectricityMaps,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client()
    wrong = make_client(api_key="wrong-" + em_server.api_key)
    for zone, kind in (("DE", FaultKind.INVALID_SCOPE), ("SE-SE3", FaultKind.SERVER_ERROR),
                       ("GB", FaultKind.EXPIRED_TOKEN), ("FR", FaultKind.MALFORMED_JSON),
                       ("IE", FaultKind.NULL_INTENSITY)):
        em_server.inject(zone, kind)
    failures: list[BaseException] = []
    for c, region in ((client, "eu-central-1"), (client, "eu-north-1"), (client, "eu-west-2"),
                      (client, "eu-west-3"), (client, "eu-west-1"), (wrong, "us-west-2")):
        try:
            c.get_grid_carbon_data(region)
        except GridDataError as exc:
            failures.append(exc)
    assert len(failures) == 6
    texts = [repr(client), repr(wrong), str(vars(client)), *(r.getMessage() for r in caplog.records)]
    for exc in failures:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    assert caplog.records
    for text in texts:
        assert em_server.api_key not in text


def test_a_forecast_denial_does_not_block_the_latest_value(make_client: Callable[..., ElectricityMapsApiStrategy],
                                                           em_server: FakeElectricityMaps) -> None:
    em_server.inject("DE", FaultKind.INVALID_SCOPE, path="carbon-intensity/forecast")
    client = make_client()
    with pytest.raises(GridAccessDeniedError):
        client.forecast("DE")
    assert client.get_grid_carbon_data("eu-central-1").carbon_intensity_g_per_kwh == 371.0
