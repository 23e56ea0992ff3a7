"""UK Carbon Intensity API client (NESO): average intensity for Great Britain and its regions.

:class:`UkCarbonIntensitySource` is a keyless :class:`greenroute.ports.GridSource` of
:attr:`~greenroute.model.SignalKind.AVERAGE` values in gCO2/kWh, from
``https://api.carbonintensity.org.uk``:

* National: ``GET /intensity`` answers ``{"data": [{"from", "to", "intensity": {"forecast",
  "actual", "index"}}]}``. ``actual`` (itself an estimate) is used when present, else ``forecast``.
* Regional: ``GET /regional/regionid/{id}`` answers ``{"data": [{"regionid", "shortname", ...,
  "data": [{"from", "to", "intensity": {"forecast", "index"}, "generationmix": [...]}]}]}``:
  the values sit one level deeper than the national ones, and only a forecast is given. The
  generation mix gives the renewable share (biomass, hydro, solar, wind).

Cloud regions map to UK region ids through the ``regions`` table (by default ``eu-west-2``,
``europe-west2`` and ``uksouth`` to 13, London). A region id of 0 means the national value, as
does the zone ``GB``. Any other region raises :class:`~greenroute.errors.UnknownRegionError`.
Every value is marked estimated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import cachetools
import httpx

from greenroute.config import PlacementSettings, SourceSettings
from greenroute.errors import ConfigError, GridDataUnavailableError, UnknownRegionError
from greenroute.model import GridCarbonData, GridDataSource, SignalKind, utcnow

from ._http import (
    ApiClient,
    LiveGridSource,
    RetryPolicy,
    client_options,
    error_for_status,
    number,
    parse_json,
    parse_time,
    transport_error,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_REGIONS",
    "NATIONAL",
    "REGION_NAMES",
    "UkCarbonIntensitySource",
    "UkIntensity",
    "from_settings",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
#: The region id that stands for the national (Great Britain) value.
NATIONAL = 0
#: The API's region ids (1-17).
REGION_NAMES: Mapping[int, str] = MappingProxyType({
    1: "North Scotland", 2: "South Scotland", 3: "North West England", 4: "North East England",
    5: "Yorkshire", 6: "North Wales & Merseyside", 7: "South Wales", 8: "West Midlands",
    9: "East Midlands", 10: "East England", 11: "South West England", 12: "South England",
    13: "London", 14: "South East England", 15: "England", 16: "Scotland", 17: "Wales",
})
#: Cloud regions in London, mapped to region 13.
DEFAULT_REGIONS: Mapping[str, int] = MappingProxyType({"eu-west-2": 13, "europe-west2": 13, "uksouth": 13})
_RENEWABLE_FUELS = frozenset({"biomass", "hydro", "solar", "wind"})
_SOURCE = GridDataSource.UK_CARBON_INTENSITY.value


@dataclass(frozen=True, slots=True)
class UkIntensity:
    """One half-hour of the UK Carbon Intensity API.

    Attributes:
        regionid: The region id, or 0 for the national value.
        shortname: The region's name (``"London"``, ``"Great Britain"``).
        period_from: Start of the half hour.
        period_to: End of the half hour.
        forecast: Forecast gCO2/kWh.
        actual: Estimated actual gCO2/kWh (national only; may be ``None``).
        index: ``very low`` ... ``very high``.
        renewable_pct: Biomass, hydro, solar and wind share of the generation mix (regional only).
    """

    regionid: int
    shortname: str
    period_from: datetime | None
    period_to: datetime | None
    forecast: float | None
    actual: float | None
    index: str | None
    renewable_pct: float | None

    @property
    def carbon_intensity_g_per_kwh(self) -> float | None:
        """``actual`` when present, else ``forecast``."""
        return self.actual if self.actual is not None else self.forecast


class UkCarbonIntensitySource(LiveGridSource):
    """A :class:`~greenroute.ports.GridSource` for the UK Carbon Intensity API (no key needed).

    Args:
        regions: Cloud region -> UK region id (1-17, or 0 for national).
        client: An HTTP client to share; one is created (once) when none is given.
        base_url: The API root.
        timeout_seconds: Per-request timeout (``None``: the client's own, 10 s when created here).
        cache_ttl_seconds: How long an answer is reused (the data is half-hourly).
        max_retries: Retries after a 429, 5xx or network error (overrides ``retry``'s).
        retry: Backoff settings; ``max_retries`` and ``sleep`` override its fields when given.
        sleep: How to wait between retries (tests inject a recorder).
        clock: Monotonic clock for the cache (injectable for tests).

    Example:
        >>> uk = UkCarbonIntensitySource()
        >>> uk.is_available(), uk.region_id("eu-west-2")
        (True, 13)
    """

    name = _SOURCE
    signal = SignalKind.AVERAGE

    def __init__(self, *, regions: Mapping[str, int] | None = None, client: httpx.Client | None = None,
                 base_url: str = DEFAULT_BASE_URL, timeout_seconds: float | None = None,
                 cache_ttl_seconds: float = 300.0, max_retries: int | None = None, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.regions: Mapping[str, int] = MappingProxyType(_check_regions(
            DEFAULT_REGIONS if regions is None else regions))
        policy = (retry or RetryPolicy()).with_overrides(max_retries=max_retries, sleep=sleep)
        self._api = ApiClient(source=_SOURCE, base_url=base_url, client=client,
                              timeout_seconds=timeout_seconds, policy=policy, logger=log)
        self._lock = threading.Lock()
        self._responses: cachetools.TTLCache[str, tuple[Any, datetime]] = cachetools.TTLCache(
            maxsize=64, ttl=cache_ttl_seconds, timer=clock)

    def is_available(self) -> bool:
        """Always true: the API needs no key."""
        return True

    def region_id(self, region: str, *, zone: str | None = None) -> int:
        """The UK region id for ``region`` (0 for national).

        Raises:
            UnknownRegionError: ``zone`` is not ``GB`` and ``region`` is not in :attr:`regions`.
        """
        if zone is not None and zone.upper() in {"GB", "UK"}:
            return NATIONAL
        if zone is None and region in self.regions:
            return self.regions[region]
        raise UnknownRegionError(zone or region, sorted(self.regions) if zone is None else ())

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The current average intensity for ``region`` (regional when mapped, national for ``GB``).

        Raises:
            UnknownRegionError: The region is not mapped to a UK region.
            GridDataUnavailableError: No usable answer.
        """
        regionid = self.region_id(region, zone=zone)
        value, fetched_at = self._intensity(regionid, region)
        intensity = value.carbon_intensity_g_per_kwh
        if intensity is None:
            raise GridDataUnavailableError(f"ukcarbon: neither actual nor forecast given ({_where(regionid)})",
                                           source=_SOURCE, region=region)
        return self._grid_data(region, "GB" if regionid == NATIONAL else f"GB/{value.shortname}", intensity,
                               renewable_pct=value.renewable_pct, observed_at=value.period_from,
                               fetched_at=fetched_at, is_estimated=True)  # "actual" is itself an estimate

    def national(self) -> UkIntensity:
        """The current half hour for Great Britain (``GET /intensity``).

        Raises:
            GridDataUnavailableError: No usable answer.
        """
        return self._intensity(NATIONAL, None)[0]

    def regional(self, regionid: int) -> UkIntensity:
        """The current half hour for one region (``GET /regional/regionid/{regionid}``).

        Raises:
            ConfigError: ``regionid`` is not 1-17.
            GridDataUnavailableError: No usable answer.
        """
        if regionid not in REGION_NAMES:
            raise ConfigError(f"expected a UK region id from 1 to 17, got {regionid!r}", key="regionid")
        return self._intensity(regionid, None)[0]

    def __repr__(self) -> str:
        return f"UkCarbonIntensitySource(base_url={self._api.base_url!r}, regions={dict(self.regions)!r})"

    # -- internals ------------------------------------------------------------------------------

    def _intensity(self, regionid: int, region: str | None) -> tuple[UkIntensity, datetime]:
        path = "/intensity" if regionid == NATIONAL else f"/regional/regionid/{regionid}"
        body, fetched_at = self._get(path, regionid, region)
        shape = GridDataUnavailableError(f"ukcarbon: unexpected answer shape from {path}", source=_SOURCE,
                                         region=region)
        outer = _first(body.get("data") if isinstance(body, Mapping) else None)
        if outer is None:
            raise shape
        period: Mapping[str, Any] | None = outer
        shortname = "Great Britain"
        if regionid != NATIONAL:
            period = _first(outer.get("data"))
            name = outer.get("shortname")
            shortname = name if isinstance(name, str) and name else REGION_NAMES.get(regionid, str(regionid))
        if period is None or not isinstance(period.get("intensity"), Mapping):
            raise shape
        intensity = period["intensity"]
        index = intensity.get("index")
        return UkIntensity(
            regionid=regionid,
            shortname=shortname,
            period_from=parse_time(period.get("from")),
            period_to=parse_time(period.get("to")),
            forecast=number(intensity.get("forecast")),
            actual=number(intensity.get("actual")),
            index=index if isinstance(index, str) else None,
            renewable_pct=_renewable(period.get("generationmix")),
        ), fetched_at

    def _get(self, path: str, regionid: int, region: str | None) -> tuple[Any, datetime]:
        with self._lock:
            if path in self._responses:
                return self._responses[path]
        where = _where(regionid)
        try:
            response = self._api.get(path)
        except httpx.TransportError as exc:
            raise transport_error(exc, source=_SOURCE, region=region, where=where) from None
        if response.is_error:
            raise error_for_status(response, source=_SOURCE, region=region, where=where)
        body = parse_json(response, source=_SOURCE, region=region, where=where)
        fetched = utcnow()
        with self._lock:
            self._responses[path] = (body, fetched)
        return body, fetched


def _where(regionid: int) -> str:
    return "national" if regionid == NATIONAL else f"regionid {regionid}"


def _first(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        first: Mapping[str, Any] = value[0]
        return first
    return None


def _renewable(mix: Any) -> float | None:
    if not isinstance(mix, list) or not mix:
        return None
    total = 0.0
    for item in mix:
        if not isinstance(item, Mapping):
            return None
        perc = number(item.get("perc"))
        if perc is None:
            return None
        if item.get("fuel") in _RENEWABLE_FUELS:
            total += perc
    return round(min(100.0, total), 6)


def _check_regions(regions: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, value in regions.items():
        if isinstance(value, bool) or not isinstance(value, int) or (value != NATIONAL and value not in REGION_NAMES):
            raise ConfigError(f"expected a UK region id from 1 to 17 (or 0 for national), got {value!r}",
                              key=f"sources.ukcarbon.regions.{name}")
        out[str(name)] = value
    return out


def from_settings(settings: SourceSettings, placement: PlacementSettings) -> UkCarbonIntensitySource:
    """Build the source from ``[sources.ukcarbon]`` (the ``greenroute.grid_sources`` entry point).

    Args:
        settings: The ``[sources.ukcarbon]`` table: ``base_url``, ``regions`` (cloud region ->
            UK region id; replaces the default London mapping), ``timeout_seconds``,
            ``cache_ttl_seconds``, ``max_retries``.
        placement: The ``[placement]`` table; its ``cache_ttl_seconds`` is the default TTL.
    """
    regions = settings.options.get("regions")
    if regions is not None and not isinstance(regions, Mapping):
        raise ConfigError("expected a table of cloud region = UK region id", key="sources.ukcarbon.regions")
    return UkCarbonIntensitySource(
        regions=regions,
        **client_options(settings, placement, default_base_url=DEFAULT_BASE_URL),
    )
