"""The shared HTTP plumbing: retry policy, Retry-After, typed errors and secret handling.

These are unit tests over :class:`httpx.MockTransport`; nothing leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from greenroute.adapters.grid._http import (
    ApiClient,
    RetryPolicy,
    Secret,
    error_for_status,
    parse_json,
    parse_time,
    retry_after_seconds,
    scrub,
)
from greenroute.errors import ConfigError, GridAccessDeniedError, GridDataUnavailableError


def _api(handler: Callable[[httpx.Request], httpx.Response], policy: RetryPolicy) -> tuple[ApiClient, httpx.Client]:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return ApiClient(source="test", base_url="https://api.example", client=client, timeout_seconds=1.0,
                     policy=policy, logger=logging.getLogger("test.http")), client


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def test_a_429_storm_stops_after_the_configured_retries_with_growing_backoff() -> None:
    calls: list[httpx.Request] = []
    sleep = Recorder()

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, json={"error": "slow down"})

    policy = RetryPolicy(max_retries=4, backoff_initial_seconds=0.5, backoff_max_seconds=3.0, jitter_seconds=0.25,
                         sleep=sleep)
    api, client = _api(handler, policy)
    with client:
        response = api.get("/v3/forecast")
    assert response.status_code == 429
    assert len(calls) == 5
    assert len(sleep.waits) == 4
    for wait, base in zip(sleep.waits, (0.5, 1.0, 2.0, 3.0), strict=True):
        assert base <= wait <= base + 0.25


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0.5", 0.5), ("120", 30.0)])
def test_retry_after_seconds_are_honoured_and_capped(header: str, expected: float) -> None:
    sleep = Recorder()
    answers = iter([httpx.Response(429, headers={"Retry-After": header}),
                    httpx.Response(503, headers={"Retry-After": header}),
                    httpx.Response(200, json={"ok": True})])
    policy = RetryPolicy(max_retries=3, retry_after_cap_seconds=30.0, jitter_seconds=5.0, sleep=sleep)
    api, client = _api(lambda request: next(answers), policy)
    with client:
        assert api.get("/x").status_code == 200
    assert sleep.waits == [expected, expected]


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=42), usegmt=True), now=now) == 42.0
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=42), usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_client_errors_other_than_429_are_not_retried() -> None:
    for status in (400, 401, 403, 404, 422):
        calls: list[int] = []

        def handler(request: httpx.Request, status: int = status, calls: list[int] = calls) -> httpx.Response:
            calls.append(status)
            return httpx.Response(status, json={"error": "no"})

        api, client = _api(handler, RetryPolicy(max_retries=3, sleep=Recorder()))
        with client:
            assert api.get("/x").status_code == status
        assert calls == [status], status


def test_transport_errors_are_retried_then_raised() -> None:
    attempts: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        raise httpx.ConnectError("refused", request=request)

    api, client = _api(handler, RetryPolicy(max_retries=2, backoff_initial_seconds=0.0, jitter_seconds=0.0,
                                            sleep=Recorder()))
    with client, pytest.raises(httpx.ConnectError):
        api.get("/x")
    assert len(attempts) == 3


def test_a_transient_failure_then_success_returns_the_success() -> None:
    answers = iter([httpx.Response(502), httpx.Response(500), httpx.Response(200, json={"v": 1})])
    api, client = _api(lambda request: next(answers), RetryPolicy(max_retries=3, sleep=Recorder()))
    with client:
        assert api.get("/x").json() == {"v": 1}


def test_statuses_map_to_typed_errors_with_the_provider_message() -> None:
    def err(status: int, body: object) -> Exception:
        return error_for_status(httpx.Response(status, json=body), source="watttime", region="eu-west-1",
                                where="WattTime region IE")

    denied = err(403, {"error": "Invalid query parameters", "message": "Invalid scope. No access."})
    assert isinstance(denied, GridAccessDeniedError)
    assert str(denied).startswith("watttime: HTTP 403 forbidden (WattTime region IE)")
    assert "Invalid scope" in str(denied)
    assert isinstance(err(401, {}), GridAccessDeniedError)
    unavailable = err(503, {"error": {"code": "503", "message": "maintenance"}})
    assert isinstance(unavailable, GridDataUnavailableError)
    assert "maintenance" in str(unavailable)
    assert isinstance(err(429, {}), GridDataUnavailableError)
    assert "rate limited" in str(err(429, {}))
    validation = err(422, {"detail": [{"loc": ["query", "start"], "msg": "tz required", "type": "value_error"}]})
    assert "tz required" in str(validation)


def test_malformed_json_is_a_typed_error() -> None:
    response = httpx.Response(200, content=b'{"data": [', headers={"Content-Type": "application/json"})
    with pytest.raises(GridDataUnavailableError, match="malformed JSON"):
        parse_json(response, source="electricitymaps", region="eu-north-1", where="zone SE-SE3")


def test_secrets_never_show_and_are_scrubbed_from_provider_text() -> None:
    secret = Secret("hunter2-very-secret")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2-very-secret"
    assert not Secret("") and not Secret(None)
    echoed = httpx.Response(401, json={"error": "bad token hunter2-very-secret for user"})
    error = error_for_status(echoed, source="electricitymaps", region=None, where="zone DE", secrets=[secret])
    assert "hunter2" not in str(error)
    assert "***" in str(error)
    assert scrub("a hunter2-very-secret b", [secret, None, ""]) == "a *** b"


def test_invalid_policies_and_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ConfigError):
        ApiClient(source="x", base_url="ftp://nope", client=None, timeout_seconds=None, policy=RetryPolicy(),
                  logger=logging.getLogger("x"))


def test_timestamps_parse_to_aware_utc() -> None:
    assert parse_time("2018-01-20T12:00Z") == datetime(2018, 1, 20, 12, 0, tzinfo=UTC)
    assert parse_time("2024-06-18T20:40:00+02:00") == datetime(2024, 6, 18, 18, 40, tzinfo=UTC)
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
