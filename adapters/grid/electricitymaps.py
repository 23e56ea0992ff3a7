"""Electricity Maps API v3 client: the current average carbon intensity of a grid zone.

:class:`ElectricityMapsApiStrategy` is a :class:`greenroute.ports.GridSource` of
:attr:`~greenroute.model.SignalKind.AVERAGE` values (consumption-based, lifecycle gCO2eq/kWh by
default). It follows the documented v3 API:

* Every request sends the key in the ``auth-token`` header; the base URL is configurable
  (``https://api.electricitymaps.com/v3`` by default).
* ``carbon-intensity/latest?zone=Z`` gives the value. A ``null`` ``carbonIntensity`` is "no
  value" (:class:`~greenroute.errors.GridDataUnavailableError`), never 0. ``isEstimated`` and
  ``emissionFactorType`` are kept (see :class:`ElectricityMapsLatest`).
* ``power-breakdown/latest?zone=Z`` fills ``renewable_pct``; if it fails, the intensity is still
  returned, without a renewable share.
* ``carbon-intensity/forecast?zone=Z`` (paid plans) via :meth:`ElectricityMapsApiStrategy.forecast`
  (``forecast(region, hours)``, as WattTime's client; rebalancing picks its window with it).
* Electricity Maps has been seen answering 401 to a valid key after a burst of requests. So a 401
  is retried with backoff like a 429 (bounded by ``max_retries``) and the key is kept; only a
  401 that persists becomes :class:`~greenroute.errors.GridAccessDeniedError`. A 403 (token not
  authorised for the zone; free keys cover one zone) is not retried and is remembered for an hour.

The zone comes from the ``zone`` argument, else the embedded cloud-region mapping.
"""

from __future__ import annotations

import dataclasses
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
from greenroute.embedded import embedded_data
from greenroute.errors import GridAccessDeniedError, GridDataError, GridDataUnavailableError
from greenroute.model import GridCarbonData, GridDataSource, SignalKind, utcnow

from ._http import (
    RETRYABLE_STATUS,
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
    "ElectricityMapsApiStrategy",
    "ElectricityMapsForecast",
    "ElectricityMapsLatest",
    "PowerBreakdown",
    "from_settings",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.electricitymaps.com/v3"
_SOURCE = GridDataSource.ELECTRICITY_MAPS.value


@dataclass(frozen=True, slots=True)
class ElectricityMapsLatest:
    """One ``carbon-intensity/latest`` answer, with the provider fields greenroute's model lacks.

    Attributes:
        zone: The Electricity Maps zone.
        carbon_intensity_g_per_kwh: gCO2eq/kWh (never ``None``: a null answer raises instead).
        observed_at: The hour the value describes (the answer's ``datetime``).
        updated_at: When Electricity Maps last updated it.
        emission_factor_type: ``"lifecycle"`` (default) or ``"direct"``.
        is_estimated: Electricity Maps marked the value as estimated.
        estimation_method: How it was estimated, when it was.
    """

    zone: str
    carbon_intensity_g_per_kwh: float
    observed_at: datetime | None
    updated_at: datetime | None
    emission_factor_type: str | None
    is_estimated: bool
    estimation_method: str | None


@dataclass(frozen=True, slots=True)
class PowerBreakdown:
    """The shares from one ``power-breakdown/latest`` answer, in percent (``None`` when absent)."""

    zone: str
    renewable_pct: float | None
    fossil_free_pct: float | None
    observed_at: datetime | None
    is_estimated: bool


@dataclass(frozen=True, slots=True)
class ElectricityMapsForecast:
    """A ``carbon-intensity/forecast`` answer; points with a null intensity are left out."""

    zone: str
    updated_at: datetime | None
    points: tuple[IntensityPoint, ...]


class ElectricityMapsApiStrategy(LiveGridSource):
    """A :class:`~greenroute.ports.GridSource` for Electricity Maps' average carbon intensity.

    Args:
        api_key: The Electricity Maps API key (sent as ``auth-token``).
        client: An HTTP client to share; one is created (once) when none is given.
        base_url: The API root including the version (``https://api.electricitymaps.com/v3``).
        timeout_seconds: Per-request timeout (``None``: the client's own, 10 s when created here).
        cache_ttl_seconds: How long an answer is reused (the data is hourly).
        max_retries: Retries after a 429, 5xx, 401 or network error (overrides ``retry``'s).
        retry: Backoff settings; ``max_retries`` and ``sleep`` override its fields when given.
        sleep: How to wait between retries (tests inject a recorder).
        clock: Monotonic clock for the caches (injectable for tests).
        denied_ttl_seconds: How long a 403 for a zone (on one endpoint) is remembered.
        credentials_hint: Where the key comes from, for :attr:`unavailable_reason`.

    Example:
        >>> em = ElectricityMapsApiStrategy(api_key=None)
        >>> em.is_available(), em.signal.value
        (False, 'average')
    """

    name = _SOURCE
    signal = SignalKind.AVERAGE

    def __init__(self, *, api_key: str | None, client: httpx.Client | None = None,
                 base_url: str = DEFAULT_BASE_URL, timeout_seconds: float | None = None,
                 cache_ttl_seconds: float = 300.0, max_retries: int | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 denied_ttl_seconds: float = 3600.0, credentials_hint: str = "an API key") -> None:
        self._key = Secret(api_key)
        self._credentials_hint = credentials_hint
        base = retry or RetryPolicy(retry_statuses=RETRYABLE_STATUS | {401})
        if 401 not in base.retry_statuses:
            base = dataclasses.replace(base, retry_statuses=base.retry_statuses | {401})
        policy = base.with_overrides(max_retries=max_retries, sleep=sleep)
        self._api = ApiClient(source=_SOURCE, base_url=base_url, client=client,
                              timeout_seconds=timeout_seconds, policy=policy, logger=log)
        self._lock = threading.Lock()
        self._responses: cachetools.TTLCache[tuple[str, str], tuple[Any, datetime]] = cachetools.TTLCache(
            maxsize=1024, ttl=cache_ttl_seconds, timer=clock)
        self._denied: cachetools.TTLCache[tuple[str, str], str] = cachetools.TTLCache(
            maxsize=1024, ttl=denied_ttl_seconds, timer=clock)

    # -- GridSource -----------------------------------------------------------------------------

    def is_available(self) -> bool:
        """True when an API key is configured."""
        return bool(self._key)

    @property
    def unavailable_reason(self) -> str:
        """Why :meth:`is_available` is false (shown in fallback reasons)."""
        return f"no API key (set {self._credentials_hint})"

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The current average intensity of ``region``'s zone, with its renewable share if known.

        Args:
            region: A cloud region (``eu-north-1``).
            zone: An Electricity Maps zone (``SE-SE3``) to use instead of the mapped one.

        Raises:
            GridAccessDeniedError: The key may not read the zone (403), or a 401 persisted.
            GridDataUnavailableError: No usable value (null intensity, down, malformed answer).
            UnknownRegionError: No zone is known for ``region``.
        """
        em_zone = self.zone_for(region, zone=zone)
        latest, fetched_at = self._latest(em_zone, region)
        renewable: float | None = None
        try:  # optional extra: one attempt, no backoff delaying the intensity
            renewable = self.power_breakdown(em_zone, region=region, retry=False).renewable_pct
        except GridDataError as exc:  # the intensity is still good without the share
            log.info("electricitymaps: no renewable share for %s: %s", em_zone, exc)
        return self._grid_data(region, em_zone, latest.carbon_intensity_g_per_kwh, renewable_pct=renewable,
                               observed_at=latest.observed_at, fetched_at=fetched_at,
                               is_estimated=latest.is_estimated)

    # -- Electricity Maps-specific --------------------------------------------------------------

    def zone_for(self, region: str, *, zone: str | None = None) -> str:
        """The Electricity Maps zone for ``region``: ``zone`` if given, else the embedded mapping.

        Raises:
            UnknownRegionError: The region has no mapped zone.
        """
        mapped = mapped_zone(region, zone, lambda info: info.em_zone)
        if mapped:
            return mapped
        raise unknown_region(region)

    def latest(self, zone: str) -> ElectricityMapsLatest:
        """The ``carbon-intensity/latest`` answer for ``zone``, with ``emissionFactorType`` kept.

        Raises:
            GridDataUnavailableError: ``carbonIntensity`` is null, or no usable answer.
            GridAccessDeniedError: As for :meth:`get_grid_carbon_data`.
        """
        return self._latest(zone, None)[0]

    def power_breakdown(self, zone: str, *, region: str | None = None, retry: bool = True) -> PowerBreakdown:
        """The renewable and fossil-free shares from ``power-breakdown/latest`` for ``zone``.

        Args:
            zone: The Electricity Maps zone.
            region: The cloud region, recorded on errors.
            retry: Retry per the policy; ``False`` makes a single attempt.

        Raises:
            GridDataError: No usable answer.
        """
        body, _ = self._get("power-breakdown/latest", zone, region, retry=retry)
        if not isinstance(body, Mapping):
            raise self._shape_error("power-breakdown/latest", zone, region)
        return PowerBreakdown(
            zone=str(body.get("zone") or zone),
            renewable_pct=_pct(body.get("renewablePercentage")),
            fossil_free_pct=_pct(body.get("fossilFreePercentage")),
            observed_at=parse_time(body.get("datetime")),
            is_estimated=body.get("isEstimated") is True,
        )

    def forecast(self, region: str, hours: int | None = None, *, zone: str | None = None) -> ElectricityMapsForecast:
        """The ``carbon-intensity/forecast`` answer (paid plans) for ``region``'s zone, in gCO2eq/kWh.

        Only ``zone`` is sent, as documented; the answer is cut to the next ``hours`` here.

        Args:
            region: A cloud region (its zone comes from the embedded mapping), or a zone itself
                (``"DE"``): a name the embedded data does not know as a region is taken as a zone.
            hours: Keep only points before now plus this many hours (``None``: all of them).
            zone: An Electricity Maps zone to use instead of the region's.

        Raises:
            GridDataError: No usable answer (including a plan without forecasts).
            UnknownRegionError: A known cloud region without a mapped zone.
        """
        em_zone = zone or (self.zone_for(region) if embedded_data().has_region(region) else region)
        asked = region if region != em_zone else None
        body, fetched = self._get("carbon-intensity/forecast", em_zone, asked)
        items = body.get("forecast") if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise self._shape_error("carbon-intensity/forecast", em_zone, asked)
        until = None if hours is None else fetched + timedelta(hours=hours)
        points: list[IntensityPoint] = []
        for item in items:
            if not isinstance(item, Mapping):
                raise self._shape_error("carbon-intensity/forecast", em_zone, asked)
            value = number(item.get("carbonIntensity"))
            when = parse_time(item.get("datetime"))
            if value is not None and when is not None and (until is None or when < until):
                points.append(IntensityPoint(when, value))
        return ElectricityMapsForecast(em_zone, parse_time(body.get("updatedAt")), tuple(points))

    def __repr__(self) -> str:
        return (f"ElectricityMapsApiStrategy(base_url={self._api.base_url!r}, "
                f"api_key={'set' if self._key else 'unset'})")

    # -- internals ------------------------------------------------------------------------------

    def _latest(self, zone: str, region: str | None) -> tuple[ElectricityMapsLatest, datetime]:
        path = "carbon-intensity/latest"
        body, fetched_at = self._get(path, zone, region)
        if not isinstance(body, Mapping) or "carbonIntensity" not in body:
            raise self._shape_error(path, zone, region)
        raw = body.get("carbonIntensity")
        value = number(raw)
        if value is None:
            shown = "null" if raw is None else "not a number"
            raise GridDataUnavailableError(f"electricitymaps: carbonIntensity is {shown} (zone {zone})",
                                           source=_SOURCE, region=region)
        factor = body.get("emissionFactorType")
        method = body.get("estimationMethod")
        return ElectricityMapsLatest(
            zone=str(body.get("zone") or zone),
            carbon_intensity_g_per_kwh=value,
            observed_at=parse_time(body.get("datetime")),
            updated_at=parse_time(body.get("updatedAt")),
            emission_factor_type=factor if isinstance(factor, str) else None,
            is_estimated=body.get("isEstimated") is True,
            estimation_method=method if isinstance(method, str) else None,
        ), fetched_at

    def _shape_error(self, path: str, zone: str, region: str | None) -> GridDataUnavailableError:
        return GridDataUnavailableError(f"electricitymaps: unexpected answer shape from {path} (zone {zone})",
                                        source=_SOURCE, region=region)

    def _get(self, path: str, zone: str, region: str | None, *, retry: bool = True) -> tuple[Any, datetime]:
        """The JSON answer of ``path?zone=zone``, through the TTL cache and the denial memory."""
        key = (path, zone)
        with self._lock:
            if key in self._responses:
                return self._responses[key]
            why = self._denied.get(key)
        if why is not None:
            raise GridAccessDeniedError(f"{why}; remembered, not asking again yet", source=_SOURCE, region=region)
        if not self.is_available():
            raise GridDataUnavailableError(f"electricitymaps: {self.unavailable_reason}", source=_SOURCE,
                                           region=region)
        where = f"zone {zone}"
        try:
            response = self._api.get(path, params={"zone": zone}, headers={"auth-token": self._key.reveal() or ""},
                                     policy=None if retry else self._api.policy.with_overrides(max_retries=0))
        except httpx.TransportError as exc:
            raise transport_error(exc, source=_SOURCE, region=region, where=where) from None
        if response.status_code == 401:
            retries = self._api.policy.max_retries if retry else 0
            raise GridAccessDeniedError(
                f"electricitymaps: HTTP 401 persisted after {retries} retries "
                f"({where}; invalid key, or throttling after a burst)", source=_SOURCE, region=region)
        if response.status_code == 403:
            err = error_for_status(response, source=_SOURCE, region=region, where=where, secrets=(self._key,))
            with self._lock:
                self._denied[key] = str(err)
            raise err
        if response.is_error:
            raise error_for_status(response, source=_SOURCE, region=region, where=where, secrets=(self._key,))
        body = parse_json(response, source=_SOURCE, region=region, where=f"{path}, {where}")
        fetched = utcnow()
        with self._lock:
            self._responses[key] = (body, fetched)
        return body, fetched


def _pct(value: Any) -> float | None:
    result = number(value)
    return result if result is not None and 0.0 <= result <= 100.0 else None


def from_settings(settings: SourceSettings, placement: PlacementSettings) -> ElectricityMapsApiStrategy:
    """Build the client from ``[sources.electricitymaps]`` (the ``greenroute.grid_sources`` entry point).

    The key is read only from the environment variable that ``api_key_env`` names (default
    ``ELECTRICITYMAPS_API_KEY``).

    Args:
        settings: The ``[sources.electricitymaps]`` table: ``api_key_env``, ``base_url``,
            ``timeout_seconds``, ``cache_ttl_seconds``, ``max_retries``.
        placement: The ``[placement]`` table; its ``cache_ttl_seconds`` is the default TTL.
    """
    var = env_var_name(settings, "api_key_env", "ELECTRICITYMAPS_API_KEY")
    return ElectricityMapsApiStrategy(
        api_key=env_secret(settings, "api_key_env", "ELECTRICITYMAPS_API_KEY").reveal(),
        **client_options(settings, placement, default_base_url=DEFAULT_BASE_URL),
        credentials_hint=f"${var}",
    )
