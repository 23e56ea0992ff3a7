"""WattTime API v3 client: the current marginal emission rate (MOER) of a grid region.

:class:`WattTimeGridApiStrategy` is a :class:`greenroute.ports.GridSource` of
:attr:`~greenroute.model.SignalKind.MARGINAL` values. It follows WattTime's documented v3 API:

* ``GET {base}/login`` with HTTP Basic auth gives a token (``{"token": ...}``) that lives 30
  minutes. It is cached and renewed 5 minutes before it runs out; a 401 on a data call logs in
  again once and retries once. So a process logs in about twice an hour, never per request.
* The current MOER is the first point of ``GET /v3/forecast?horizon_hours=0``, in
  ``lbs_co2_per_mwh``, converted with ``x 453.59237 / 1000`` to g/kWh. Any other unit raises
  :class:`~greenroute.errors.GridUnitsError`; greenroute never guesses a unit.
* ``GET /v3/signal-index`` is a 0-100 percentile of the region's own next 24 hours. It is returned
  as is by :meth:`WattTimeGridApiStrategy.signal_index`, never converted, and never ranks regions.
* A 403 ("Invalid scope": basic accounts may read only ``CAISO_NORTH``) means "this source cannot
  serve this region". It is not retried, and is remembered for an hour, so no further requests
  are spent on that region. 429 and 5xx are retried with backoff (see :mod:`._http`).

Region codes come from the ``zone`` argument, else the embedded cloud-region mapping, else
``GET /v3/region-from-loc`` for coordinates given to the constructor (cached for 30 days).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import cachetools
import httpx

from greenroute.config import PlacementSettings, SourceSettings
from greenroute.errors import ConfigError, GridAccessDeniedError, GridDataUnavailableError, GridUnitsError
from greenroute.model import GridCarbonData, GridDataSource, SignalKind, utcnow

from ._http import (
    ApiClient,
    IntensityPoint,
    LiveGridSource,
    RetryPolicy,
    Secret,
    client_options,
    env_secret,
    error_for_status,
    mapped_zone,
    number,
    parse_json,
    parse_time,
    transport_error,
    unknown_region,
)
from ._settings import env_var_name

__all__ = [
    "DEFAULT_BASE_URL",
    "GRAMS_PER_POUND",
    "MoerForecast",
    "SignalIndex",
    "WattTimeGridApiStrategy",
    "from_settings",
    "lbs_per_mwh_to_g_per_kwh",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.watttime.org"
#: Grams in one avoirdupois pound (exact, by definition).
GRAMS_PER_POUND = 453.59237
KWH_PER_MWH = 1000.0
LBS_PER_MWH = "lbs_co2_per_mwh"
PERCENTILE = "percentile"
SIGNAL_TYPE = "co2_moer"
#: WattTime tokens live 30 minutes.
TOKEN_LIFETIME_SECONDS = 30 * 60.0
#: ``/v3/historical`` answers at most 32 days per query.
MAX_HISTORICAL_SPAN = timedelta(days=32)

_SOURCE = GridDataSource.WATTTIME.value


def lbs_per_mwh_to_g_per_kwh(value: float) -> float:
    """Convert a MOER in lbs CO2/MWh to g CO2/kWh (``x 453.59237 / 1000``, as WattTime's SDKs do).

    Example:
        >>> lbs_per_mwh_to_g_per_kwh(1000.0)
        453.59237
    """
    return value * GRAMS_PER_POUND / KWH_PER_MWH


@dataclass(frozen=True, slots=True)
class MoerForecast:
    """A WattTime MOER forecast, converted to g/kWh.

    Attributes:
        region: The cloud region asked for.
        grid_zone: The WattTime region code.
        generated_at: When WattTime made the forecast.
        points: One point per ``data_point_period_seconds``, in g CO2/kWh (marginal).
    """

    region: str
    grid_zone: str
    generated_at: datetime | None
    points: tuple[IntensityPoint, ...]


@dataclass(frozen=True, slots=True)
class SignalIndex:
    """WattTime's signal index: where now sits among the region's next 24 hours.

    It is a 0-100 percentile (0 cleanest, 100 dirtiest) relative to the region itself. It cannot
    rank regions and is not an emission rate, so it is never converted to g/kWh.
    """

    region: str
    grid_zone: str
    percentile: float
    point_time: datetime | None


class WattTimeGridApiStrategy(LiveGridSource):
    """A :class:`~greenroute.ports.GridSource` for WattTime's marginal emission rate (MOER).

    Args:
        username: WattTime account name.
        password: WattTime password.
        client: An HTTP client to share; one is created (once) when none is given.
        base_url: The API root; ``/login`` and ``/v3/...`` are appended.
        timeout_seconds: Per-request timeout (``None``: the client's own, 10 s when created here).
        cache_ttl_seconds: How long an answer is reused before WattTime is asked again.
        max_retries: Retries after a 429, 5xx or network error (overrides ``retry``'s).
        coordinates: Cloud region -> ``(latitude, longitude)``, for regions the embedded mapping
            has no WattTime code for; resolved once with ``/v3/region-from-loc``.
        retry: Backoff settings; ``max_retries`` and ``sleep`` override its fields when given.
        sleep: How to wait between retries (tests inject a recorder).
        clock: Monotonic clock for the caches and the token's age (injectable for tests).
        region_cache_ttl_seconds: How long a region-from-loc answer is kept (WattTime advises
            re-checking monthly).
        denied_ttl_seconds: How long a 403 for a region is remembered.
        token_refresh_margin_seconds: Log in again this long before the token expires.
        login_backoff_seconds: After the credentials were rejected, how long to fail fast
            instead of spending WattTime's 100-logins-per-5-minutes limit.
        credentials_hint: Where the credentials come from, for :attr:`unavailable_reason`.

    Example:
        >>> wt = WattTimeGridApiStrategy(username=None, password=None)
        >>> wt.is_available(), wt.signal.value
        (False, 'marginal')
    """

    name = _SOURCE
    signal = SignalKind.MARGINAL

    def __init__(self, *, username: str | None, password: str | None, client: httpx.Client | None = None,
                 base_url: str = DEFAULT_BASE_URL, timeout_seconds: float | None = None,
                 cache_ttl_seconds: float = 300.0, max_retries: int | None = None,
                 coordinates: Mapping[str, tuple[float, float]] | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 region_cache_ttl_seconds: float = 30 * 86400.0, denied_ttl_seconds: float = 3600.0,
                 token_refresh_margin_seconds: float = 300.0, login_backoff_seconds: float = 60.0,
                 credentials_hint: str = "username and password") -> None:
        self._username = Secret(username)
        self._password = Secret(password)
        self._token = Secret(None)
        self._token_at = 0.0
        self._clock = clock
        self._token_max_age = max(0.0, TOKEN_LIFETIME_SECONDS - token_refresh_margin_seconds)
        self._login_backoff = login_backoff_seconds
        self._login_blocked_until = -1.0
        self._login_blocked_why = ""
        self._credentials_hint = credentials_hint
        self._coordinates = {k: (float(v[0]), float(v[1])) for k, v in (coordinates or {}).items()}
        policy = (retry or RetryPolicy()).with_overrides(max_retries=max_retries, sleep=sleep)
        self._api = ApiClient(source=_SOURCE, base_url=base_url, client=client,
                              timeout_seconds=timeout_seconds, policy=policy, logger=log)
        self._token_lock = threading.Lock()
        self._lock = threading.Lock()
        self._responses: cachetools.TTLCache[tuple[str, tuple[tuple[str, str], ...]], tuple[Any, datetime]] = (
            cachetools.TTLCache(maxsize=1024, ttl=cache_ttl_seconds, timer=clock))
        self._regions: cachetools.TTLCache[tuple[float, float], str | None] = cachetools.TTLCache(
            maxsize=1024, ttl=region_cache_ttl_seconds, timer=clock)
        self._denied: cachetools.TTLCache[tuple[str, str], str] = cachetools.TTLCache(
            maxsize=1024, ttl=denied_ttl_seconds, timer=clock)
        #: Logins made so far (for observability; WattTime allows 100 per 5 minutes).
        self.login_count = 0

    # -- GridSource -----------------------------------------------------------------------------

    def is_available(self) -> bool:
        """True when both a username and a password are configured."""
        return bool(self._username) and bool(self._password)

    @property
    def unavailable_reason(self) -> str:
        """Why :meth:`is_available` is false (shown in fallback reasons)."""
        return f"no credentials (set {self._credentials_hint})"

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The current MOER of ``region`` in g CO2/kWh (marginal, CO2 only).

        Args:
            region: A cloud region (``us-west-2``) or a name listed in ``coordinates``.
            zone: A WattTime region code (``CAISO_NORTH``) to use instead of the mapped one.

        Raises:
            GridAccessDeniedError: The account may not read the region (403), or the credentials
                were rejected.
            GridUnitsError: WattTime answered in a unit other than ``lbs_co2_per_mwh``.
            GridDataUnavailableError: No usable answer (down, rate limited, malformed, no coverage).
            UnknownRegionError: No WattTime region is known for ``region``.
        """
        wt_region = self.resolve_region(region, zone=zone)
        body, fetched_at = self._data("/v3/forecast", {"region": wt_region, "signal_type": SIGNAL_TYPE,
                                                       "horizon_hours": "0"}, region, wt_region)
        points = _moer_points(body, region=region, wt_region=wt_region)
        first = points[0]
        return self._grid_data(region, wt_region, first.carbon_intensity_g_per_kwh, renewable_pct=None,
                               observed_at=first.point_time, fetched_at=fetched_at,
                               is_estimated=True)  # the forecast's first point is a nowcast

    # -- WattTime-specific ----------------------------------------------------------------------

    def forecast(self, region: str, horizon_hours: int = 24, *, zone: str | None = None) -> MoerForecast:
        """WattTime's latest MOER forecast for ``region``, in g CO2/kWh.

        Args:
            region: A cloud region, or a name listed in ``coordinates``.
            horizon_hours: 0 to 72; 0 gives only the current point.
            zone: A WattTime region code to use instead of the mapped one.

        Raises:
            ConfigError: ``horizon_hours`` is outside 0..72.
            GridDataError: As for :meth:`get_grid_carbon_data`.
        """
        if isinstance(horizon_hours, bool) or not isinstance(horizon_hours, int) or not 0 <= horizon_hours <= 72:
            raise ConfigError(f"expected a whole number of hours from 0 to 72, got {horizon_hours!r}",
                              key="horizon_hours")
        wt_region = self.resolve_region(region, zone=zone)
        body, _ = self._data("/v3/forecast", {"region": wt_region, "signal_type": SIGNAL_TYPE,
                                              "horizon_hours": str(horizon_hours)}, region, wt_region)
        points = _moer_points(body, region=region, wt_region=wt_region)
        meta = body.get("meta") if isinstance(body, Mapping) else None
        generated = parse_time(meta.get("generated_at")) if isinstance(meta, Mapping) else None
        return MoerForecast(region, wt_region, generated, tuple(points))

    def historical(self, region: str, start: datetime, end: datetime, *,
                   zone: str | None = None) -> tuple[IntensityPoint, ...]:
        """Historical MOER for ``region`` from ``start`` to ``end`` (inclusive), in g CO2/kWh.

        Spans longer than 32 days are fetched in 32-day chunks; points are returned once each,
        sorted by time.

        Args:
            region: A cloud region, or a name listed in ``coordinates``.
            start: Timezone-aware start.
            end: Timezone-aware end, not before ``start``.
            zone: A WattTime region code to use instead of the mapped one.

        Raises:
            ConfigError: ``start`` or ``end`` is naive, or ``end`` is before ``start``.
            GridDataError: As for :meth:`get_grid_carbon_data`.
        """
        for key, value in (("start", start), ("end", end)):
            if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
                raise ConfigError("expected a timezone-aware datetime (WattTime v3 assumes no timezone)",
                                  key=key)
        if end < start:
            raise ConfigError("must not be before start", key="end")
        wt_region = self.resolve_region(region, zone=zone)
        points: dict[datetime, IntensityPoint] = {}
        for chunk_start, chunk_end in _chunks(start, end, MAX_HISTORICAL_SPAN):
            body, _ = self._data("/v3/historical", {"region": wt_region, "signal_type": SIGNAL_TYPE,
                                                    "start": chunk_start.isoformat(),
                                                    "end": chunk_end.isoformat()}, region, wt_region)
            for p in _moer_points(body, region=region, wt_region=wt_region, allow_empty=True):
                points[p.point_time] = p
        return tuple(points[k] for k in sorted(points))

    def signal_index(self, region: str, *, zone: str | None = None) -> SignalIndex:
        """WattTime's 0-100 signal index for ``region`` (a percentile, never converted).

        Raises:
            GridUnitsError: The answer is not in ``percentile``.
            GridDataError: As for :meth:`get_grid_carbon_data`.
        """
        wt_region = self.resolve_region(region, zone=zone)
        body, _ = self._data("/v3/signal-index", {"region": wt_region, "signal_type": SIGNAL_TYPE},
                             region, wt_region)
        where = f"WattTime region {wt_region}"
        meta, data = _meta_and_data(body, region=region, where=where)
        units = meta.get("units")
        if units != PERCENTILE:
            raise GridUnitsError(f"watttime: signal-index answered in {units!r}, expected {PERCENTILE!r} "
                                 f"({where})", source=_SOURCE, region=region)
        if not data:
            raise GridDataUnavailableError(f"watttime: empty signal-index ({where})", source=_SOURCE, region=region)
        item = data[0]
        value = number(item.get("value")) if isinstance(item, Mapping) else None
        if value is None or not 0.0 <= value <= 100.0:
            raise GridDataUnavailableError(f"watttime: no usable signal-index value ({where})",
                                           source=_SOURCE, region=region)
        return SignalIndex(region, wt_region, value, parse_time(item.get("point_time")))

    def resolve_region(self, region: str, *, zone: str | None = None) -> str:
        """The WattTime region code for ``region``: ``zone``, the embedded mapping, or region-from-loc.

        Raises:
            UnknownRegionError: Neither a mapping nor coordinates are known for ``region``.
            GridDataUnavailableError: WattTime has no coverage at the region's coordinates (404).
        """
        mapped = mapped_zone(region, zone, lambda info: info.watttime_region)
        if mapped:
            return mapped
        coords = self._coordinates.get(region)
        if coords is None:
            raise unknown_region(region)
        return self._region_from_loc(region, coords)

    def __repr__(self) -> str:
        return (f"WattTimeGridApiStrategy(base_url={self._api.base_url!r}, "
                f"credentials={'set' if self.is_available() else 'unset'}, "
                f"token={'held' if self._token else 'none'})")

    # -- internals ------------------------------------------------------------------------------

    def _secrets(self) -> tuple[Secret, ...]:
        return (self._username, self._password, self._token)

    def _region_from_loc(self, region: str, coords: tuple[float, float]) -> str:
        with self._lock:
            if coords in self._regions:
                cached = self._regions[coords]
                if cached is None:
                    raise GridDataUnavailableError(f"watttime: no coverage at {coords[0]:g},{coords[1]:g}",
                                                   source=_SOURCE, region=region)
                return cached
        where = f"region-from-loc {coords[0]:g},{coords[1]:g}"
        try:
            body, _ = self._data("/v3/region-from-loc", {"latitude": f"{coords[0]:g}",
                                                         "longitude": f"{coords[1]:g}",
                                                         "signal_type": SIGNAL_TYPE},
                                 region, f"{coords[0]:g},{coords[1]:g}", cache=False, not_found_ok=True)
        except _NotFound:
            with self._lock:
                self._regions[coords] = None
            raise GridDataUnavailableError(f"watttime: no coverage at {coords[0]:g},{coords[1]:g}",
                                           source=_SOURCE, region=region) from None
        code = body.get("region") if isinstance(body, Mapping) else None
        if not isinstance(code, str) or not code:
            raise GridDataUnavailableError(f"watttime: unexpected answer shape ({where})", source=_SOURCE,
                                           region=region)
        with self._lock:
            self._regions[coords] = code
        return code

    def _data(self, path: str, params: Mapping[str, str], region: str, wt_region: str, *,
              cache: bool = True, not_found_ok: bool = False) -> tuple[Any, datetime]:
        """The JSON answer of a data endpoint, through the TTL cache and the denial memory."""
        key = (path, tuple(sorted(params.items())))
        denied_key = (path, wt_region)
        with self._lock:
            if cache and key in self._responses:
                return self._responses[key]
            why = self._denied.get(denied_key)
        if why is not None:
            raise GridAccessDeniedError(f"{why}; remembered, not asking again yet", source=_SOURCE, region=region)
        if not self.is_available():
            raise GridDataUnavailableError(f"watttime: {self.unavailable_reason}", source=_SOURCE, region=region)
        where = f"WattTime region {wt_region}" if not path.endswith("region-from-loc") else f"{path} {wt_region}"
        token = self._current_token(region)
        response = self._send(path, params, token, region, where)
        if response.status_code == 401:
            token = self._renew_token(token, region)
            response = self._send(path, params, token, region, where)
            if response.status_code == 401:
                raise GridAccessDeniedError(f"watttime: HTTP 401 even with a fresh token ({where})",
                                            source=_SOURCE, region=region)
        if response.status_code == 403:
            err = error_for_status(response, source=_SOURCE, region=region, where=where, secrets=self._secrets())
            message = str(err)
            if "scope" in message.lower():
                message = f"watttime: 403 invalid scope ({where})"
            with self._lock:
                self._denied[denied_key] = message
            raise GridAccessDeniedError(message, source=_SOURCE, region=region)
        if response.status_code == 404 and not_found_ok:
            raise _NotFound
        if response.is_error:
            raise error_for_status(response, source=_SOURCE, region=region, where=where, secrets=self._secrets())
        body = parse_json(response, source=_SOURCE, region=region, where=where)
        fetched = utcnow()
        if cache:
            with self._lock:
                self._responses[key] = (body, fetched)
        return body, fetched

    def _send(self, path: str, params: Mapping[str, str], token: Secret, region: str, where: str) -> httpx.Response:
        try:
            return self._api.get(path, params=params, headers={"Authorization": f"Bearer {token.reveal()}"})
        except httpx.TransportError as exc:
            raise transport_error(exc, source=_SOURCE, region=region, where=where) from None

    def _current_token(self, region: str) -> Secret:
        with self._token_lock:
            if self._token and self._clock() - self._token_at < self._token_max_age:
                return self._token
            return self._login(region)

    def _renew_token(self, rejected: Secret, region: str) -> Secret:
        """A token other than ``rejected``: another thread's fresh one, or a new login."""
        with self._token_lock:
            if self._token and self._token.reveal() != rejected.reveal():
                return self._token
            return self._login(region)

    def _login(self, region: str) -> Secret:
        """Log in (the caller holds the token lock)."""
        if self._clock() < self._login_blocked_until:
            raise GridAccessDeniedError(self._login_blocked_why, source=_SOURCE, region=region)
        where = "login"
        auth = httpx.BasicAuth(self._username.reveal() or "", self._password.reveal() or "")
        try:
            response = self._api.get("/login", auth=auth)
        except httpx.TransportError as exc:
            raise transport_error(exc, source=_SOURCE, region=region, where=where) from None
        self.login_count += 1
        if response.status_code in (401, 403):
            self._login_blocked_why = (f"watttime: login rejected with HTTP {response.status_code} "
                                       f"(check {self._credentials_hint})")
            self._login_blocked_until = self._clock() + self._login_backoff
            raise GridAccessDeniedError(self._login_blocked_why, source=_SOURCE, region=region)
        if response.is_error:
            raise error_for_status(response, source=_SOURCE, region=region, where=where, secrets=self._secrets())
        body = parse_json(response, source=_SOURCE, region=region, where=where)
        token = body.get("token") if isinstance(body, Mapping) else None
        if not isinstance(token, str) or not token:
            raise GridDataUnavailableError("watttime: login answer has no token", source=_SOURCE, region=region)
        self._token = Secret(token)
        self._token_at = self._clock()
        log.debug("watttime: logged in (login %d)", self.login_count)
        return self._token


class _NotFound(Exception):
    """Internal: a 404 the caller handles (region-from-loc's "no coverage")."""


def _meta_and_data(body: Any, *, region: str, where: str) -> tuple[Mapping[str, Any], list[Any]]:
    meta = body.get("meta") if isinstance(body, Mapping) else None
    data = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(meta, Mapping) or not isinstance(data, list):
        raise GridDataUnavailableError(f"watttime: unexpected answer shape, expected data and meta ({where})",
                                       source=_SOURCE, region=region)
    for warning in meta.get("warnings") or ():
        log.info("watttime: API warning for %s: %s", where, warning)
    return meta, data


def _moer_points(body: Any, *, region: str, wt_region: str, allow_empty: bool = False) -> list[IntensityPoint]:
    """The MOER points of a forecast or historical answer, converted to g/kWh after checking units."""
    where = f"WattTime region {wt_region}"
    meta, data = _meta_and_data(body, region=region, where=where)
    units = meta.get("units")
    if units != LBS_PER_MWH:
        raise GridUnitsError(f"watttime: unexpected units {units!r}, expected {LBS_PER_MWH!r} ({where})",
                             source=_SOURCE, region=region)
    if not data and not allow_empty:
        raise GridDataUnavailableError(f"watttime: no data points ({where})", source=_SOURCE, region=region)
    points: list[IntensityPoint] = []
    for item in data:
        value = number(item.get("value")) if isinstance(item, Mapping) else None
        when = parse_time(item.get("point_time")) if isinstance(item, Mapping) else None
        if value is None or when is None:
            raise GridDataUnavailableError(f"watttime: a point has no usable value or time ({where})",
                                           source=_SOURCE, region=region)
        points.append(IntensityPoint(when, lbs_per_mwh_to_g_per_kwh(value)))
    return points


def _chunks(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end]`` split into consecutive spans of at most ``size``."""
    spans: list[tuple[datetime, datetime]] = []
    cursor = start
    while True:
        stop = min(end, cursor + size)
        spans.append((cursor, stop))
        if stop >= end:
            return spans
        cursor = stop


def from_settings(settings: SourceSettings, placement: PlacementSettings) -> WattTimeGridApiStrategy:
    """Build the client from ``[sources.watttime]`` (the ``greenroute.grid_sources`` entry point).

    Credentials are read only from the environment variables that ``username_env`` and
    ``password_env`` name (default ``WATTTIME_USERNAME`` and ``WATTTIME_PASSWORD``).

    Args:
        settings: The ``[sources.watttime]`` table: ``username_env``, ``password_env``,
            ``base_url``, ``timeout_seconds``, ``cache_ttl_seconds``, ``max_retries``.
        placement: The ``[placement]`` table; its ``cache_ttl_seconds`` is the default TTL.
    """
    user_var = env_var_name(settings, "username_env", "WATTTIME_USERNAME")
    pass_var = env_var_name(settings, "password_env", "WATTTIME_PASSWORD")
    return WattTimeGridApiStrategy(
        username=env_secret(settings, "username_env", "WATTTIME_USERNAME").reveal(),
        password=env_secret(settings, "password_env", "WATTTIME_PASSWORD").reveal(),
        **client_options(settings, placement, default_base_url=DEFAULT_BASE_URL),
        credentials_hint=f"${user_var} and ${pass_var}",
    )

