"""Test doubles for outside systems: real local servers that speak the documented APIs.

:mod:`tests.fakes.grid_servers` has fake WattTime, Electricity Maps and UK Carbon Intensity
servers listening on 127.0.0.1, with faults a test can switch on per region or zone.
"""

from __future__ import annotations

from .grid_servers import (
    FakeElectricityMaps,
    FakeGridServer,
    FakeUkCarbonIntensity,
    FakeWattTime,
    Fault,
    FaultKind,
    RecordedRequest,
)

__all__ = [
    "FakeElectricityMaps",
    "FakeGridServer",
    "FakeUkCarbonIntensity",
    "FakeWattTime",
    "Fault",
    "FaultKind",
    "RecordedRequest",
]
