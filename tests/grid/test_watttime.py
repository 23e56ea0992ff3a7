"""WattTime client: units, tokens, scope denials, retries, region resolution and secrets.

Most tests talk to :class:`tests.fakes.FakeWattTime` over loopback HTTP; a few use
:class:`httpx.MockTransport` to serve exact bodies.
"""

from __future__ import annotations

import itertools
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from tests.fakes import FakeWattTime, FaultKind

from greenroute.adapters.grid._http import RetryPolicy
from greenroute.adapters.grid.watttime import (
    GRAMS_PER_POUND,
    WattTimeGridApiStrategy,
    from_settings,
    lbs_per_mwh_to_g_per_kwh,
)
from greenroute.config import PlacementSettings, SourceSettings, parse_config
from greenroute.errors import (
    ConfigError,
    GridAccessDeniedError,
    GridDataError,
    GridDataUnavailableError,
    GridUnitsError,
    UnknownRegionError,
)
from greenroute.model import GridDataSource, SignalKind


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def make_client(wt_server: FakeWattTime, fast_retry: RetryPolicy) -> Iterator[Callable[..., WattTimeGridApiStrategy]]:
    made: list[WattTimeGridApiStrategy] = []

    def make(**kwargs: Any) -> WattTimeGridApiStrategy:
        options: dict[str, Any] = {"username": wt_server.username, "password": wt_server.password,
                                   "base_url": wt_server.url, "retry": fast_retry, "timeout_seconds": 2.0}
        options.update(kwargs)
        client = WattTimeGridApiStrategy(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _mock(body: dict[str, Any]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            return httpx.Response(200, json={"token": "tok-123"})
        assert request.headers["Authorization"] == "Bearer tok-123"
        return httpx.Response(200, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _forecast_body(value: float, units: str = "lbs_co2_per_mwh") -> dict[str, Any]:
    return {"data": [{"point_time": "2024-06-18T18:40:00+00:00", "value": value}],
            "meta": {"data_point_period_seconds": 300, "region": "CAISO_NORTH", "warnings": [],
                     "signal_type": "co2_moer", "model": {"date": "2023-03-01"}, "units": units,
                     "generated_at_period_seconds": 300, "generated_at": "2024-06-18T18:40:00+00:00"}}


# -- units ----------------------------------------------------------------------------------------


def test_1000_lbs_per_mwh_is_exactly_453_59237_g_per_kwh() -> None:
    with _mock(_forecast_body(1000.0)) as http:
        wt = WattTimeGridApiStrategy(username="u", password="p", client=http)
        value = wt.get_grid_carbon_data("us-west-2")
    assert value.carbon_intensity_g_per_kwh == 453.59237
    assert value.signal is SignalKind.MARGINAL
    assert value.source is GridDataSource.WATTTIME
    assert value.grid_zone == "BPA"
    assert value.observed_at == datetime(2024, 6, 18, 18, 40, tzinfo=UTC)
    assert lbs_per_mwh_to_g_per_kwh(812.4) == 812.4 * GRAMS_PER_POUND / 1000.0


def test_unknown_units_raise_and_are_never_converted() -> None:
    with _mock(_forecast_body(1000.0, units="kg_co2_per_mwh")) as http:
        wt = WattTimeGridApiStrategy(username="u", password="p", client=http)
        with pytest.raises(GridUnitsError, match="kg_co2_per_mwh"):
            wt.get_grid_carbon_data("us-west-2")


def test_unexpected_units_from_the_fake_raise_grid_units_error(make_client: Callable[..., WattTimeGridApiStrategy],
                                                               wt_server: FakeWattTime) -> None:
    wt_server.inject("BPA", FaultKind.UNEXPECTED_UNITS)
    with pytest.raises(GridUnitsError):
        make_client().get_grid_carbon_data("us-west-2")


def test_signal_index_is_a_percentile_never_converted(make_client: Callable[..., WattTimeGridApiStrategy],
                                                      wt_server: FakeWattTime) -> None:
    wt_server.signal_index["BPA"] = 96.0
    index = make_client().signal_index("us-west-2")
    assert index.percentile == 96.0
    assert index.grid_zone == "BPA"
    wt_server.inject("SE", FaultKind.UNEXPECTED_UNITS)  # signal-index answering in lbs/MWh
    with pytest.raises(GridUnitsError, match="percentile"):
        make_client().signal_index("eu-north-1")


def test_null_and_malformed_answers_are_typed_errors(make_client: Callable[..., WattTimeGridApiStrategy],
                                                     wt_server: FakeWattTime) -> None:
    wt_server.inject("BPA", FaultKind.NULL_INTENSITY)
    wt_server.inject("SE", FaultKind.MALFORMED_JSON)
    client = make_client()
    with pytest.raises(GridDataUnavailableError, match="no usable value"):
        client.get_grid_carbon_data("us-west-2")
    with pytest.raises(GridDataUnavailableError, match="malformed JSON"):
        client.get_grid_carbon_data("eu-north-1")


def test_forecast_converts_every_point(make_client: Callable[..., WattTimeGridApiStrategy],
                                       wt_server: FakeWattTime) -> None:
    wt_server.set_moer("CAISO_NORTH", 800.0)
    forecast = make_client().forecast("anything", horizon_hours=2, zone="CAISO_NORTH")
    assert len(forecast.points) == 24
    assert forecast.points[0].carbon_intensity_g_per_kwh == lbs_per_mwh_to_g_per_kwh(800.0)
    assert forecast.points[4].carbon_intensity_g_per_kwh == lbs_per_mwh_to_g_per_kwh(801.0)
    assert forecast.generated_at is not None
    with pytest.raises(ConfigError):
        make_client().forecast("us-west-2", horizon_hours=73)


# -- tokens ---------------------------------------------------------------------------------------


def test_many_calls_log_in_once(make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime) -> None:
    client = make_client(cache_ttl_seconds=0)
    for region in ["us-west-2", "eu-north-1", "eu-west-1", "us-east-1"] * 5:
        client.get_grid_carbon_data(region)
    assert wt_server.count("/login") == 1
    assert wt_server.count("/v3/forecast") == 20


def test_a_token_that_expires_mid_run_costs_exactly_one_extra_login(
        make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime) -> None:
    client = make_client(cache_ttl_seconds=0)
    for _ in range(5):
        client.get_grid_carbon_data("us-west-2")
    wt_server.expire_tokens()
    for _ in range(5):
        client.get_grid_carbon_data("us-west-2")
    assert wt_server.count("/login") == 2
    assert wt_server.count("/v3/forecast") == 11  # one rejected request, retried once


def test_concurrent_401s_share_one_relogin(make_client: Callable[..., WattTimeGridApiStrategy],
                                           wt_server: FakeWattTime) -> None:
    client = make_client(cache_ttl_seconds=0)
    client.get_grid_carbon_data("us-west-2")
    wt_server.expire_tokens()
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            client.get_grid_carbon_data("us-west-2")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert wt_server.count("/login") == 2


def test_the_token_is_renewed_before_its_30_minutes_run_out(make_client: Callable[..., WattTimeGridApiStrategy],
                                                            wt_server: FakeWattTime) -> None:
    clock = Clock()
    client = make_client(cache_ttl_seconds=0, clock=clock)
    client.get_grid_carbon_data("us-west-2")
    clock.now += 24 * 60
    client.get_grid_carbon_data("us-west-2")
    assert wt_server.count("/login") == 1
    clock.now += 2 * 60  # 26 minutes old: renewed proactively, no 401 round trip
    client.get_grid_carbon_data("us-west-2")
    assert wt_server.count("/login") == 2
    assert wt_server.count("/v3/forecast") == 3


def test_rejected_credentials_fail_fast_without_hammering_login(
        make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime) -> None:
    client = make_client(password="wrong-password-1", cache_ttl_seconds=0)
    with pytest.raises(GridAccessDeniedError, match="login rejected"):
        client.get_grid_carbon_data("us-west-2")
    with pytest.raises(GridAccessDeniedError, match="login rejected"):
        client.get_grid_carbon_data("eu-north-1")
    assert wt_server.count("/login") == 1
    assert wt_server.count("/v3/forecast") == 0


# -- retries and denials --------------------------------------------------------------------------


def test_a_429_storm_backs_off_and_stops_after_the_configured_attempts(
        make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime, sleeps: Any) -> None:
    wt_server.inject("BPA", FaultKind.RATE_LIMITED)
    client = make_client(max_retries=3)
    with pytest.raises(GridDataUnavailableError, match="429"):
        client.get_grid_carbon_data("us-west-2")
    assert wt_server.count("/v3/forecast") == 1 + 3
    assert len(sleeps.waits) == 3
    assert all(0 < w <= 0.005 for w in sleeps.waits)


def test_retry_after_is_honoured(make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime,
                                 sleeps: Any) -> None:
    wt_server.inject("BPA", FaultKind.RATE_LIMITED_RETRY_AFTER, retry_after="7", times=2)
    value = make_client(max_retries=3).get_grid_carbon_data("us-west-2")
    assert value.grid_zone == "BPA"
    assert sleeps.waits == [7.0, 7.0]
    assert wt_server.count("/v3/forecast") == 3


def test_5xx_is_retried_then_succeeds(make_client: Callable[..., WattTimeGridApiStrategy],
                                      wt_server: FakeWattTime) -> None:
    wt_server.inject("BPA", FaultKind.SERVER_ERROR, times=2)
    assert make_client().get_grid_carbon_data("us-west-2").source is GridDataSource.WATTTIME
    assert wt_server.count("/v3/forecast") == 3


def test_invalid_scope_is_not_retried_and_is_remembered(make_client: Callable[..., WattTimeGridApiStrategy]) -> None:
    with FakeWattTime(allowed_regions={"CAISO_NORTH"}) as basic:
        client = make_client(base_url=basic.url, username=basic.username, password=basic.password,
                             cache_ttl_seconds=0)
        with pytest.raises(GridAccessDeniedError, match="invalid scope") as first:
            client.get_grid_carbon_data("eu-west-1")
        assert "IE" in str(first.value)
        assert basic.count("/v3/forecast") == 1
        before = basic.count()
        with pytest.raises(GridAccessDeniedError, match="remembered"):
            client.get_grid_carbon_data("eu-west-1")
        assert basic.count() == before  # not even a login
        assert client.get_grid_carbon_data("x", zone="CAISO_NORTH").grid_zone == "CAISO_NORTH"


def test_a_remembered_denial_expires(make_client: Callable[..., WattTimeGridApiStrategy],
                                     wt_server: FakeWattTime) -> None:
    clock = Clock()
    wt_server.inject("IE", FaultKind.INVALID_SCOPE, times=1)
    client = make_client(clock=clock, denied_ttl_seconds=3600, cache_ttl_seconds=0)
    with pytest.raises(GridAccessDeniedError):
        client.get_grid_carbon_data("eu-west-1")
    clock.now += 3601
    assert client.get_grid_carbon_data("eu-west-1").grid_zone == "IE"
    assert wt_server.count("/v3/forecast") == 2


def test_answers_are_cached_for_the_ttl(make_client: Callable[..., WattTimeGridApiStrategy],
                                        wt_server: FakeWattTime) -> None:
    clock = Clock()
    client = make_client(clock=clock, cache_ttl_seconds=300)
    first = client.get_grid_carbon_data("us-west-2")
    assert client.get_grid_carbon_data("us-west-2") == first
    assert wt_server.count("/v3/forecast") == 1
    clock.now += 301
    client.get_grid_carbon_data("us-west-2")
    assert wt_server.count("/v3/forecast") == 2


# -- regions --------------------------------------------------------------------------------------


def test_regions_resolve_from_zone_then_embedded_mapping(make_client: Callable[..., WattTimeGridApiStrategy],
                                                         wt_server: FakeWattTime) -> None:
    client = make_client()
    assert client.get_grid_carbon_data("us-west-2").grid_zone == "BPA"
    assert client.get_grid_carbon_data("us-west-2", zone="CAISO_NORTH").grid_zone == "CAISO_NORTH"
    assert [r.params["region"] for r in wt_server.requests if r.path == "/v3/forecast"] == ["BPA", "CAISO_NORTH"]
    with pytest.raises(UnknownRegionError):
        client.get_grid_carbon_data("us-west-99")
    assert wt_server.count("/v3/forecast") == 2


def test_region_from_loc_resolves_once_and_caches_no_coverage(
        make_client: Callable[..., WattTimeGridApiStrategy]) -> None:
    with FakeWattTime(locations={(40.0, -105.0): "PSCO"}) as wt:
        client = make_client(base_url=wt.url, username=wt.username, password=wt.password,
                             coordinates={"denver-dc": (40.0, -105.0), "mid-ocean": (0.0, -30.0)})
        assert client.get_grid_carbon_data("denver-dc").grid_zone == "PSCO"
        assert client.resolve_region("denver-dc") == "PSCO"
        assert wt.count("/v3/region-from-loc") == 1
        for _ in range(2):
            with pytest.raises(GridDataUnavailableError, match="no coverage"):
                client.get_grid_carbon_data("mid-ocean")
        assert wt.count("/v3/region-from-loc") == 2


def test_historical_needs_aware_datetimes_and_splits_into_32_day_chunks(
        make_client: Callable[..., WattTimeGridApiStrategy], wt_server: FakeWattTime) -> None:
    client = make_client()
    with pytest.raises(ConfigError, match="timezone-aware"):
        client.historical("us-west-2", datetime(2024, 1, 1), datetime(2024, 1, 2, tzinfo=UTC))
    with pytest.raises(ConfigError):
        client.historical("us-west-2", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC))
    assert wt_server.count() == 0
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC)  # 70 days
    points = client.historical("us-west-2", start, end)
    calls = [r for r in wt_server.requests if r.path == "/v3/historical"]
    assert len(calls) == 3
    spans = [(datetime.fromisoformat(c.params["start"]), datetime.fromisoformat(c.params["end"])) for c in calls]
    assert all(e - s <= timedelta(days=32) for s, e in spans)
    assert spans[0][0] == start and spans[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    times = [p.point_time for p in points]
    assert times == sorted(set(times))
    assert len(points) == 70 * 24 + 1
    assert points[0].carbon_intensity_g_per_kwh == lbs_per_mwh_to_g_per_kwh(1050.0)


# -- availability, settings, secrets --------------------------------------------------------------


def test_without_both_credentials_it_is_unavailable_and_makes_no_request(wt_server: FakeWattTime) -> None:
    for username, password in ((None, "p"), ("u", None), (None, None), ("", "")):
        with WattTimeGridApiStrategy(username=username, password=password, base_url=wt_server.url) as client:
            assert client.is_available() is False
            with pytest.raises(GridDataUnavailableError, match="no credentials"):
                client.get_grid_carbon_data("us-west-2")
    assert wt_server.count() == 0


def test_from_settings_reads_credentials_only_from_the_named_env_vars(
        monkeypatch: pytest.MonkeyPatch, wt_server: FakeWattTime) -> None:
    for var in ("WATTTIME_USERNAME", "WATTTIME_PASSWORD", "WATTTIME_USER", "GR_TEST_WT_USER", "GR_TEST_WT_PASS"):
        monkeypatch.delenv(var, raising=False)
    settings = SourceSettings("watttime", MappingProxyType({
        "username_env": "GR_TEST_WT_USER", "password_env": "GR_TEST_WT_PASS", "base_url": wt_server.url,
        "max_retries": 0, "cache_ttl_seconds": 0}))
    monkeypatch.setenv("WATTTIME_USERNAME", wt_server.username)  # not the named variables: ignored
    monkeypatch.setenv("WATTTIME_PASSWORD", wt_server.password)
    with from_settings(settings, PlacementSettings()) as client:
        assert client.is_available() is False
        assert "GR_TEST_WT_USER" in client.unavailable_reason
    monkeypatch.setenv("GR_TEST_WT_USER", wt_server.username)
    monkeypatch.setenv("GR_TEST_WT_PASS", wt_server.password)
    with from_settings(settings, PlacementSettings()) as client:
        assert client.is_available() is True
        assert client.get_grid_carbon_data("us-west-2").grid_zone == "BPA"
    assert wt_server.count("/login") == 1
    defaults = SourceSettings("watttime", MappingProxyType({"base_url": wt_server.url}))
    with from_settings(defaults, PlacementSettings()) as client:
        assert client.is_available() is True  # WATTTIME_USERNAME / WATTTIME_PASSWORD by default
    monkeypatch.delenv("WATTTIME_PASSWORD")
    monkeypatch.setenv("WATTTIME_USER", "official-client-variable")
    with from_settings(defaults, PlacementSettings()) as client:
        assert client.is_available() is False


def test_the_config_loads_the_client_through_its_entry_point(monkeypatch: pytest.MonkeyPatch,
                                                            wt_server: FakeWattTime) -> None:
    monkeypatch.setenv("GR_TEST_WT_USER", wt_server.username)
    monkeypatch.setenv("GR_TEST_WT_PASS", wt_server.password)
    cfg = parse_config({"placement": {"sources": ["watttime"], "signal": "marginal"},
                        "sources": {"watttime": {"username_env": "GR_TEST_WT_USER", "password_env": "GR_TEST_WT_PASS",
                                                 "base_url": wt_server.url}}})
    (source,) = cfg.build_sources()
    assert isinstance(source, WattTimeGridApiStrategy)
    try:
        assert source.is_available()
        assert source.name == "watttime" and source.signal is SignalKind.MARGINAL
    finally:
        source.close()


def test_secrets_never_reach_reprs_errors_or_logs(make_client: Callable[..., WattTimeGridApiStrategy],
                                                  wt_server: FakeWattTime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(cache_ttl_seconds=0)
    failures: list[BaseException] = []
    client.get_grid_carbon_data("us-west-2")  # holds a token now
    for region, kind in (("IE", FaultKind.INVALID_SCOPE), ("SE", FaultKind.SERVER_ERROR),
                         ("PJM_DC", FaultKind.RATE_LIMITED), ("DE", FaultKind.MALFORMED_JSON),
                         ("SGP", FaultKind.EXPIRED_TOKEN), ("UK", FaultKind.UNEXPECTED_UNITS)):
        wt_server.inject(region, kind)
    for region in ("eu-west-1", "eu-north-1", "us-east-1", "eu-central-1", "ap-southeast-1", "eu-west-2"):
        try:
            client.get_grid_carbon_data(region)
        except GridDataError as exc:
            failures.append(exc)
    bad = make_client(password="wrong-" + wt_server.password)
    try:
        bad.get_grid_carbon_data("us-west-2")
    except GridDataError as exc:
        failures.append(exc)
    assert len(failures) == 7
    secrets = [wt_server.username, wt_server.password, *wt_server.issued_tokens]
    assert len(wt_server.issued_tokens) >= 2
    texts = [repr(client), repr(bad), str(vars(client)), *(m.getMessage() for m in caplog.records)]
    for exc in failures:
        texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert any("retry" in r.getMessage() for r in caplog.records)  # the log did capture the failures
