"""Shared HTTP plumbing for greenroute's grid API clients.

Every live grid client (WattTime, Electricity Maps, the UK Carbon Intensity API) goes through this
module for three things:

* :class:`RetryPolicy`: a tenacity policy that retries HTTP 429, 5xx and transport errors with
  exponential backoff and jitter, honours a ``Retry-After`` header (capped), and gives up after
  ``max_retries`` retries, returning the last response so the caller can turn it into an error.
* :class:`ApiClient`: one shared :class:`httpx.Client` per source (created only when the caller
  gives none), and the request log lines, which never contain headers and so never a credential.
* Turning responses into typed greenroute errors (:func:`error_for_status`, :func:`parse_json`,
  :func:`transport_error`), with any credential scrubbed out of provider-supplied text.

:class:`LiveGridSource` is the clients' shared shell (``close``, the context manager, and the one
place an answer becomes a :class:`~greenroute.model.GridCarbonData`); :func:`mapped_zone` and
:func:`unknown_region` resolve cloud regions through the embedded mapping.

Credentials are held in :class:`Secret`, whose ``repr`` and ``str`` never show the value.
"""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import httpx
import tenacity

from greenroute import __version__
from greenroute.embedded import RegionInfo, embedded_data
from greenroute.errors import (
    ConfigError,
    GridAccessDeniedError,
    GridDataError,
    GridDataUnavailableError,
    UnknownRegionError,
)
from greenroute.model import GridCarbonData, GridDataSource, SignalKind

from ._settings import Secret, client_options, env_secret, option_float, option_int, scrub

__all__ = [
    "RETRYABLE_STATUS",
    "ApiClient",
    "IntensityPoint",
    "LiveGridSource",
    "RetryPolicy",
    "Secret",
    "client_options",
    "env_secret",
    "error_for_status",
    "mapped_zone",
    "number",
    "option_float",
    "option_int",
    "parse_json",
    "parse_time",
    "retry_after_seconds",
    "scrub",
    "transport_error",
    "unknown_region",
]

#: Statuses worth another try: rate limited, or a transient server fault.
RETRYABLE_STATUS: frozenset[int] = frozenset({429, 500, 502, 503, 504})

_USER_AGENT = f"greenroute/{__version__} (+https://pypi.org/project/greenroute/)"
_DETAIL_MAX = 160


@dataclass(frozen=True, slots=True)
class IntensityPoint:
    """One point of a time series: gCO2(e)/kWh at ``point_time``."""

    point_time: datetime
    carbon_intensity_g_per_kwh: float


# -- retries ------------------------------------------------------------------------------------


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or ``None``."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a grid client retries: which answers, how often, and how long it waits in between.

    The wait before retry ``n`` (1-based) is ``min(backoff_max, backoff_initial * 2 ** (n - 1))``
    plus a random jitter in ``[0, jitter_seconds]``, unless the answer carried ``Retry-After``, in
    which case it is that many seconds, capped at ``retry_after_cap_seconds``.

    Attributes:
        max_retries: Retries after the first attempt (so at most ``1 + max_retries`` requests).
        backoff_initial_seconds: The first backoff.
        backoff_max_seconds: The largest exponential backoff.
        jitter_seconds: The largest random addition to a backoff.
        retry_after_cap_seconds: The longest ``Retry-After`` that is honoured as given.
        retry_statuses: HTTP statuses that are retried (transport errors always are).
        sleep: How to wait; tests inject a recorder.
    """

    max_retries: int = 3
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    jitter_seconds: float = 0.5
    retry_after_cap_seconds: float = 30.0
    retry_statuses: frozenset[int] = RETRYABLE_STATUS
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"must be >= 0, got {self.max_retries}", key="max_retries")
        for name in ("backoff_initial_seconds", "backoff_max_seconds", "jitter_seconds", "retry_after_cap_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)}", key=name)

    def with_overrides(self, *, max_retries: int | None = None,
                       sleep: Callable[[float], None] | None = None) -> RetryPolicy:
        """A copy with ``max_retries`` and ``sleep`` replaced where given."""
        changes: dict[str, Any] = {}
        if max_retries is not None:
            changes["max_retries"] = int(max_retries)
        if sleep is not None:
            changes["sleep"] = sleep
        return dataclasses.replace(self, **changes) if changes else self

    def retryable(self, status: int) -> bool:
        """Whether an answer with ``status`` is retried."""
        return status in self.retry_statuses or 500 <= status <= 599

    def wait_seconds(self, state: tenacity.RetryCallState) -> float:
        """The wait before the next attempt (tenacity ``wait`` callback)."""
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            if isinstance(response, httpx.Response):
                after = retry_after_seconds(response.headers.get("Retry-After"))
                if after is not None:
                    return min(after, self.retry_after_cap_seconds)
        exponent = max(0, state.attempt_number - 1)
        backoff = min(self.backoff_max_seconds, self.backoff_initial_seconds * (2.0 ** min(exponent, 60)))
        return backoff + random.uniform(0.0, self.jitter_seconds)

    def run(self, call: Callable[[], httpx.Response], *,
            on_retry: Callable[[tenacity.RetryCallState], None] | None = None) -> httpx.Response:
        """Call ``call`` until it gives a non-retryable answer or the retries run out.

        Returns:
            The last response, which may still carry a retryable status (429, 5xx) when every
            attempt failed; the caller turns it into an error.

        Raises:
            httpx.TransportError: The last attempt failed without an answer.
        """

        def give_up(state: tenacity.RetryCallState) -> httpx.Response:
            assert state.outcome is not None
            result: httpx.Response = state.outcome.result()  # re-raises a transport error
            return result

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self.wait_seconds,
            retry=(tenacity.retry_if_exception_type(httpx.TransportError)
                   | tenacity.retry_if_result(lambda r: isinstance(r, httpx.Response)
                                              and self.retryable(r.status_code))),
            sleep=self.sleep,
            before_sleep=on_retry,
            retry_error_callback=give_up,
            reraise=True,
        )
        response: httpx.Response = retrying(call)
        return response


# -- the shared client --------------------------------------------------------------------------


class ApiClient:
    """One source's HTTP access: a shared :class:`httpx.Client`, a base URL and a retry policy.

    Args:
        source: The source's name, used in log lines and error messages.
        base_url: The API's base URL; request paths are appended to it.
        client: A client to use (never closed here). One is created only when none is given.
        timeout_seconds: Per-request timeout; ``None`` keeps the client's own (10 s when created here).
        policy: Retry policy for every request.
        logger: Where request and retry lines go (they never contain headers).
    """

    def __init__(self, *, source: str, base_url: str, client: httpx.Client | None,
                 timeout_seconds: float | None, policy: RetryPolicy, logger: logging.Logger) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"expected an http:// or https:// URL, got {base_url!r}", key="base_url")
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.policy = policy
        self.log = logger
        self._owns_client = client is None
        self._given = client
        self._default_timeout = timeout_seconds if timeout_seconds is not None else 10.0
        self._timeout: httpx.Timeout | None = (
            httpx.Timeout(timeout_seconds) if timeout_seconds is not None else None
        )

    @functools.cached_property
    def _client(self) -> httpx.Client:
        """The HTTP client, made on the first request (loading its CA bundle costs tens of milliseconds)."""
        if self._given is not None:
            return self._given
        return httpx.Client(timeout=httpx.Timeout(self._default_timeout),
                            headers={"User-Agent": _USER_AGENT, "Accept": "application/json"},
                            follow_redirects=False)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` under the base URL."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def get(self, path: str, *, params: Mapping[str, Any] | None = None,
            headers: Mapping[str, str] | None = None, auth: httpx.Auth | None = None,
            policy: RetryPolicy | None = None) -> httpx.Response:
        """``GET path`` with retries (see :meth:`RetryPolicy.run`).

        Raises:
            httpx.TransportError: Every attempt failed without an answer.
        """
        url = self.url(path)
        used = policy or self.policy
        timeout: Any = self._timeout if self._timeout is not None else httpx.USE_CLIENT_DEFAULT
        auth_arg: Any = auth if auth is not None else httpx.USE_CLIENT_DEFAULT

        def call() -> httpx.Response:
            started = time.monotonic()
            response = self._client.get(url, params=dict(params or {}), headers=dict(headers or {}),
                                        auth=auth_arg, timeout=timeout)
            self.log.debug("%s: GET %s -> HTTP %d in %.0f ms", self.source, path, response.status_code,
                           (time.monotonic() - started) * 1000)
            return response

        def on_retry(state: tenacity.RetryCallState) -> None:
            outcome = state.outcome
            if outcome is None:
                return
            what = type(outcome.exception()).__name__ if outcome.failed else f"HTTP {outcome.result().status_code}"
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            self.log.info("%s: %s from %s; retry %d of %d in %.2f s", self.source, what, path,
                          state.attempt_number, used.max_retries, wait)

        return used.run(call, on_retry=on_retry)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client and "_client" in self.__dict__:
            self._client.close()


class LiveGridSource:
    """The shell every live grid client shares: its :class:`ApiClient` and what a source gives back.

    Subclasses set :attr:`name` (a :class:`~greenroute.model.GridDataSource` value), :attr:`signal`
    and ``_api``.
    """

    name: str
    signal: SignalKind
    _api: ApiClient

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        self._api.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _grid_data(self, region: str, grid_zone: str, intensity: float, *, renewable_pct: float | None,
                   observed_at: datetime | None, fetched_at: datetime, is_estimated: bool) -> GridCarbonData:
        """A value of this source's signal kind for ``region``, with its provenance."""
        return GridCarbonData(region=region, grid_zone=grid_zone, carbon_intensity_g_per_kwh=intensity,
                              signal=self.signal, source=GridDataSource(self.name), renewable_pct=renewable_pct,
                              observed_at=observed_at, fetched_at=fetched_at, is_estimated=is_estimated)


def mapped_zone(region: str, zone: str | None, pick: Callable[[RegionInfo], str | None]) -> str | None:
    """``zone`` when given, else the provider zone that ``pick`` reads from the embedded row of ``region``.

    ``None`` (or an empty string) when neither names one.
    """
    if zone:
        return zone
    data = embedded_data()
    return pick(data.region(region)) if data.has_region(region) else None


def unknown_region(region: str) -> UnknownRegionError:
    """The error for a region no mapping covers, suggesting known names when ``region`` is not one itself."""
    data = embedded_data()
    return UnknownRegionError(region, () if data.has_region(region) else data.suggest(region))


# -- responses to typed errors ----------------------------------------------------------------


def provider_detail(response: httpx.Response, secrets: Iterable[Secret | str | None] = ()) -> str:
    """A short, secret-free message from an error body (``error``, ``message`` or ``msg``)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    parts: list[str] = []

    def collect(obj: Any) -> None:
        if isinstance(obj, str):
            parts.append(obj)
        elif isinstance(obj, Mapping):
            for key in ("error", "message", "msg", "code"):
                if key in obj:
                    collect(obj[key])
            if "detail" in obj and isinstance(obj["detail"], list):
                for item in obj["detail"][:2]:
                    collect(item)

    collect(body)
    seen: list[str] = []
    for part in parts:
        squeezed = " ".join(part.split())
        if squeezed and squeezed not in seen:
            seen.append(squeezed)
    text = scrub("; ".join(seen), secrets)
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


_LABELS = {400: "bad request", 401: "unauthorized", 403: "forbidden", 404: "not found",
           422: "invalid request", 429: "rate limited"}


def error_for_status(response: httpx.Response, *, source: str, region: str | None, where: str,
                     secrets: Iterable[Secret | str | None] = ()) -> GridDataError:
    """The typed error for an unsuccessful answer.

    401 and 403 become :class:`~greenroute.errors.GridAccessDeniedError`; everything else
    :class:`~greenroute.errors.GridDataUnavailableError`.

    Args:
        response: The failed answer.
        source: The source's name (the message's prefix).
        region: The cloud region asked for, kept on the error.
        where: What was asked, for the message (``"WattTime region IE"``).
        secrets: Values to scrub from any provider text.
    """
    status = response.status_code
    label = _LABELS.get(status, "server error" if status >= 500 else "error")
    detail = provider_detail(response, secrets)
    message = f"{source}: HTTP {status} {label} ({where})" + (f": {detail}" if detail else "")
    cls = GridAccessDeniedError if status in (401, 403) else GridDataUnavailableError
    return cls(message, source=source, region=region)


def transport_error(exc: httpx.TransportError, *, source: str, region: str | None,
                    where: str) -> GridDataUnavailableError:
    """The typed error for a request that got no answer (timeout, refused, reset)."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else f"network error ({type(exc).__name__})"
    return GridDataUnavailableError(f"{source}: {kind} ({where})", source=source, region=region)


def parse_json(response: httpx.Response, *, source: str, region: str | None, where: str) -> Any:
    """The response's JSON body.

    Raises:
        GridDataUnavailableError: The body is not valid JSON.
    """
    try:
        return response.json()
    except ValueError:
        raise GridDataUnavailableError(f"{source}: malformed JSON in the answer ({where})",
                                       source=source, region=region) from None


def number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when it is not a JSON number (``bool`` is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 timestamp (``Z`` allowed) as an aware UTC datetime, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# -- settings helpers ---------------------------------------------------------------------------
