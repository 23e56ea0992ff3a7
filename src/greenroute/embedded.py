"""The embedded grid dataset: annual average intensity for every AWS, GCP and Azure region.

It is what greenroute answers with when no live source is configured or reachable, so it works
with no keys and no network. The data ships as package data built by
``tools/build_embedded_data.py``:

* ``regions.csv``: region -> provider, country, Electricity Maps zone, WattTime region.
* ``region_intensity.csv``: the region's annual average (Electricity Maps 2024 under ODbL-1.0,
  Google's 2024 grid figures for GCP under Apache-2.0, Cloud Carbon Footprint factors where no
  zone is known).
* ``zone_intensity.csv``: Electricity Maps 2024 yearly average per zone (ODbL-1.0), used when a
  backend names a zone explicitly.

Outputs derived from this data carry the notice in :data:`ATTRIBUTION`.
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from .errors import UnknownRegionError
from .model import GridCarbonData, GridDataSource, SignalKind, utcnow

__all__ = ["ATTRIBUTION", "EmbeddedGridData", "EmbeddedGridSource", "RegionInfo", "embedded_data"]

ATTRIBUTION = (
    "Contains Electricity Maps yearly grid-intensity data, republished via CO2.js, licensed under the "
    "Open Database License (ODbL) 1.0 - https://www.electricitymaps.com; data from Google Cloud "
    "region-carbon-info (Apache-2.0); coefficients from Cloud Carbon Footprint, (c) 2021 Thoughtworks, "
    "Inc. (Apache-2.0); region mappings from the Green Software Foundation if-plugins project (MIT)."
)


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """What the embedded dataset knows about one cloud region."""

    provider: str
    region: str
    location: str
    country_code: str
    em_zone: str | None
    watttime_region: str | None
    carbon_intensity_g_per_kwh: float
    grid_renewable_pct: float | None
    year: int
    basis: str
    licence: str
    source: str


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    """An Electricity Maps zone's yearly average."""

    zone: str
    zone_name: str
    year: int
    carbon_intensity_g_per_kwh: float
    renewable_pct: float | None


def _opt_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("greenroute").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


class EmbeddedGridData:
    """Lookups over the embedded dataset. Use :func:`embedded_data` for the shared instance."""

    def __init__(self) -> None:
        intensity = {r["region"]: r for r in _rows("region_intensity.csv")}
        self._regions: dict[str, RegionInfo] = {}
        for r in _rows("regions.csv"):
            i = intensity[r["region"]]
            self._regions[r["region"]] = RegionInfo(
                provider=r["provider"],
                region=r["region"],
                location=r["location"],
                country_code=r["country_code"],
                em_zone=r["em_zone"] or None,
                watttime_region=r["watttime_region"] or None,
                carbon_intensity_g_per_kwh=float(i["gco2e_per_kwh"]),
                grid_renewable_pct=_opt_float(i["grid_renewable_pct"]),
                year=int(i["year"]),
                basis=i["basis"],
                licence=i["licence"],
                source=i["source"],
            )
        self._zones: dict[str, ZoneInfo] = {
            z["zone"]: ZoneInfo(
                zone=z["zone"],
                zone_name=z["zone_name"],
                year=int(z["year"]),
                carbon_intensity_g_per_kwh=float(z["gco2e_per_kwh"]),
                renewable_pct=_opt_float(z["renewable_pct"]),
            )
            for z in _rows("zone_intensity.csv")
        }

    @property
    def regions(self) -> tuple[str, ...]:
        """Every known cloud region, sorted."""
        return tuple(sorted(self._regions))

    @property
    def zones(self) -> tuple[str, ...]:
        """Every known Electricity Maps zone, sorted."""
        return tuple(sorted(self._zones))

    def has_region(self, region: str) -> bool:
        """Whether ``region`` is a known cloud region."""
        return region in self._regions

    def region(self, region: str) -> RegionInfo:
        """The dataset's row for ``region``.

        Raises:
            UnknownRegionError: With the closest known region names as suggestions.
        """
        try:
            return self._regions[region]
        except KeyError:
            raise UnknownRegionError(region, self.suggest(region)) from None

    def zone(self, zone: str) -> ZoneInfo:
        """The yearly average of an Electricity Maps ``zone``.

        Raises:
            UnknownRegionError: With the closest known zones as suggestions.
        """
        try:
            return self._zones[zone]
        except KeyError:
            import difflib  # only a failed lookup needs it

            close = difflib.get_close_matches(zone, self._zones, n=3, cutoff=0.6)
            raise UnknownRegionError(zone, close) from None

    def suggest(self, region: str, n: int = 3) -> list[str]:
        """The known regions whose names are closest to ``region``."""
        import difflib  # only a failed lookup needs it

        return difflib.get_close_matches(region.strip().lower(), self._regions, n=n, cutoff=0.5)


@functools.cache
def embedded_data() -> EmbeddedGridData:
    """The process-wide embedded dataset, loaded on first use."""
    return EmbeddedGridData()


class EmbeddedGridSource:
    """A :class:`~greenroute.ports.GridSource` answering from the embedded annual averages.

    Values are ``AVERAGE`` signals from source ``EMBEDDED``, marked ``is_estimated`` because an
    annual average stands in for the current hour.

    Example:
        >>> source = EmbeddedGridSource()
        >>> source.get_grid_carbon_data("eu-north-1").carbon_intensity_g_per_kwh
        21.0
    """

    name = GridDataSource.EMBEDDED.value
    signal = SignalKind.AVERAGE

    def __init__(self, data: EmbeddedGridData | None = None) -> None:
        self._data = data or embedded_data()
        # Values never change, so each is built once; fetched_at is when it was first read.
        self._values: dict[tuple[str, str | None], GridCarbonData] = {}

    def is_available(self) -> bool:
        """Always true: the data ships with the package."""
        return True

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The annual average for ``region``, or for ``zone`` when one is given.

        Raises:
            UnknownRegionError: Neither the region nor the zone is in the dataset.
        """
        value = self._values.get((region, zone))
        if value is None:
            value = self._values[(region, zone)] = self._build(region, zone)
        return value

    def _build(self, region: str, zone: str | None) -> GridCarbonData:
        grid_zone: str | None
        if zone is not None:
            z = self._data.zone(zone)
            grid_zone, intensity, renewable, year = z.zone, z.carbon_intensity_g_per_kwh, z.renewable_pct, z.year
        else:
            info = self._data.region(region)
            grid_zone, intensity, renewable, year = (info.em_zone, info.carbon_intensity_g_per_kwh,
                                                     info.grid_renewable_pct, info.year)
        return GridCarbonData(
            region=region,
            grid_zone=grid_zone,
            carbon_intensity_g_per_kwh=intensity,
            signal=SignalKind.AVERAGE,
            source=GridDataSource.EMBEDDED,
            renewable_pct=renewable,
            observed_at=_start_of(year),
            fetched_at=utcnow(),
            is_estimated=True,
        )


def _start_of(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=UTC)
