"""The carbon model: estimated gCO2e of writing bytes, and of keeping them at rest.

Writing (the seed's formula)::

    energy_wh = bytes * energy_wh_per_byte * pue
    gco2e     = energy_wh * intensity_g_per_kwh / 1000

The default ``energy_wh_per_byte`` is 1e-9: Cloud Carbon Footprint's network coefficient of
0.001 kWh per GB (decimal GB), the only open per-byte transfer figure with a cloud scope.

At rest (Cloud Carbon Footprint's storage method)::

    gco2e_per_month = TB * wh_per_tb_hour * 730 h * replication * pue * intensity / 1000

with CCF's HDD coefficient of 0.65 Wh per TB-hour and its replication factors per service
(S3 6, GCS 2, Azure LRS 3; 1 for a local disk or memory). At rest quickly dominates: 1 GB kept a
month on S3 costs about 2.8 times its write, so the ``min_carbon`` objective ranks by both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .model import Provider

__all__ = ["DEFAULT_REPLICATION", "HOURS_PER_MONTH", "CarbonEstimate", "CarbonModel"]

#: Hours in an average month, as in CCF's kWh per GB-month figures.
HOURS_PER_MONTH = 730.0

#: CCF replication factors per storage service (Methodology.md; S3 changed from 3 to 6).
DEFAULT_REPLICATION: Mapping[Provider, float] = MappingProxyType({
    Provider.S3: 6.0,
    Provider.GCS: 2.0,
    Provider.AZURE: 3.0,
    Provider.FILE: 1.0,
    Provider.MEMORY: 1.0,
})


@dataclass(frozen=True, slots=True)
class CarbonEstimate:
    """What one placement is estimated to emit, in gCO2e."""

    write_gco2e: float
    at_rest_gco2e_per_month: float
    retention_gco2e: float

    @property
    def total_gco2e(self) -> float:
        """Write plus the retention period at rest."""
        return self.write_gco2e + self.retention_gco2e


@dataclass(frozen=True, slots=True)
class CarbonModel:
    """The coefficients of the carbon estimate. Every default is CCF's and can be overridden.

    Attributes:
        version: Stamped on every object as ``greenroute_model``.
        energy_wh_per_byte: Energy to move one byte into storage (Wh).
        storage_wh_per_tb_hour: Energy to keep one TB for an hour (Wh), before replication and PUE.
        replication: Copies kept per provider.

    Example:
        >>> from greenroute.model import Provider
        >>> model = CarbonModel()
        >>> round(model.write_gco2e(10**9, pue=1.1, carbon_intensity_g_per_kwh=400), 6)
        0.44
    """

    version: str = "ccf-2024.1"
    energy_wh_per_byte: float = 1e-9
    storage_wh_per_tb_hour: float = 0.65
    replication: Mapping[Provider, float] = field(default_factory=lambda: DEFAULT_REPLICATION)

    def write_energy_wh(self, data_size_bytes: int, *, pue: float) -> float:
        """Energy of writing ``data_size_bytes`` (Wh)."""
        return data_size_bytes * self.energy_wh_per_byte * pue

    def write_gco2e(self, data_size_bytes: int, *, pue: float, carbon_intensity_g_per_kwh: float) -> float:
        """Emissions of writing ``data_size_bytes`` (gCO2e)."""
        return self.write_energy_wh(data_size_bytes, pue=pue) * carbon_intensity_g_per_kwh / 1000.0

    def at_rest_gco2e(self, data_size_bytes: int, *, hours: float, provider: Provider, pue: float,
                      carbon_intensity_g_per_kwh: float) -> float:
        """Emissions of keeping ``data_size_bytes`` for ``hours`` (gCO2e)."""
        terabytes = data_size_bytes / 1e12
        energy_wh = (terabytes * self.storage_wh_per_tb_hour * hours
                     * self.replication.get(provider, 1.0) * pue)
        return energy_wh * carbon_intensity_g_per_kwh / 1000.0

    def coefficients(self, *, provider: Provider, pue: float,
                     carbon_intensity_g_per_kwh: float) -> tuple[float, float]:
        """Per-byte rates: (gCO2e per byte written, gCO2e per byte per hour at rest).

        Both estimates are linear in size, so the placement service computes these once per grid
        value and multiplies; ``estimate`` gives the same numbers.
        """
        per_byte_written = self.energy_wh_per_byte * pue * carbon_intensity_g_per_kwh / 1000.0
        per_byte_hour = (self.storage_wh_per_tb_hour / 1e12 * self.replication.get(provider, 1.0) * pue
                         * carbon_intensity_g_per_kwh / 1000.0)
        return per_byte_written, per_byte_hour

    def estimate(self, data_size_bytes: int, *, provider: Provider, pue: float,
                 carbon_intensity_g_per_kwh: float, retention_days: float | None = None) -> CarbonEstimate:
        """The write, the monthly at-rest figure and the retention period's at-rest figure."""
        write = self.write_gco2e(data_size_bytes, pue=pue, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
        month = self.at_rest_gco2e(data_size_bytes, hours=HOURS_PER_MONTH, provider=provider, pue=pue,
                                   carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
        retention = 0.0
        if retention_days:
            retention = self.at_rest_gco2e(data_size_bytes, hours=retention_days * 24.0, provider=provider,
                                           pue=pue, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh)
        return CarbonEstimate(write, month, retention)
