"""Pre-registered backend profiles: published PUE and renewable figures, each with year and source.

The seed plan named five profiles. Several of its figures are outdated or misattributed (see the
README, "Where greenroute differs from the seed"); greenroute ships the published figures instead.
The on-prem profile keeps the seed's defaults (40 %, PUE 1.5) because they are a placeholder for
the operator's own numbers, which the config overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Backend, Provider

__all__ = ["FLEET_PUE", "PROFILES", "Profile", "default_backends", "profile_for"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Published efficiency figures for one backend, with provenance."""

    backend_id: str
    provider: Provider
    region: str
    renewable_pct: float
    pue: float
    wue: float | None
    grid_zone: str | None
    renewable_source: str
    pue_source: str
    seed_renewable_pct: float
    seed_pue: float

    def backend(self, root: str | None = None) -> Backend:
        """A :class:`Backend` with these figures, writing under ``root`` (in memory by default)."""
        return Backend(
            id=self.backend_id,
            provider=Provider.MEMORY if root is None else self.provider,
            region=self.region,
            root=root or f"memory://greenroute/{self.backend_id}",
            pue=self.pue,
            renewable_pct=self.renewable_pct,
            wue=self.wue,
            grid_zone=self.grid_zone,
        )


PROFILES: tuple[Profile, ...] = (
    Profile(
        "aws-us-west-2", Provider.S3, "us-west-2", renewable_pct=100.0, pue=1.12, wue=None, grid_zone=None,
        renewable_source="AWS 2022 list of Regions matched 100% with renewable energy (annual, market-based)",
        pue_source="AWS-published us-west-2 PUE, 2024",
        seed_renewable_pct=96.0, seed_pue=1.135,
    ),
    Profile(
        "aws-eu-north-1", Provider.S3, "eu-north-1", renewable_pct=100.0, pue=1.10, wue=None, grid_zone=None,
        renewable_source="AWS 2022 list of Regions matched 100% with renewable energy (annual, market-based)",
        pue_source="AWS-published eu-north-1 PUE, 2024",
        seed_renewable_pct=100.0, seed_pue=1.09,
    ),
    Profile(
        "azure-westeurope", Provider.AZURE, "westeurope", renewable_pct=79.0, pue=1.16, wue=None, grid_zone=None,
        renewable_source="Microsoft Netherlands region fact sheet, 2022 (via GSF real-time-cloud)",
        pue_source="Microsoft North Holland datacenters, 12 months to Feb 2022",
        seed_renewable_pct=100.0, seed_pue=1.12,
    ),
    Profile(
        "gcp-us-central1", Provider.GCS, "us-central1", renewable_pct=87.0, pue=1.10, wue=None, grid_zone=None,
        renewable_source="Google hourly carbon-free energy (CFE%) for us-central1, 2024",
        pue_source="Google us-central1 (Council Bluffs) trailing-twelve-month PUE, 2024",
        seed_renewable_pct=97.0, seed_pue=1.10,
    ),
    Profile(
        "on-prem", Provider.FILE, "on-prem", renewable_pct=40.0, pue=1.5, wue=None, grid_zone="US-MIDA-PJM",
        renewable_source="seed default, configurable (global low-carbon share 2024 is 40.9%, Ember)",
        pue_source="seed default, configurable (Uptime Institute industry average is 1.56 in 2024)",
        seed_renewable_pct=40.0, seed_pue=1.5,
    ),
)

#: Fleet-wide PUE per provider, used when a configured backend gives none.
FLEET_PUE: dict[Provider, tuple[float, str]] = {
    Provider.S3: (1.15, "AWS global PUE, 2024"),
    Provider.GCS: (1.10, "Google fleet PUE, 2023"),
    Provider.AZURE: (1.18, "Microsoft global facility average, reported Dec 2024"),
    Provider.FILE: (1.5, "seed on-prem default"),
    Provider.MEMORY: (1.5, "seed on-prem default"),
}


def profile_for(backend_id: str) -> Profile:
    """The pre-registered profile named ``backend_id``.

    Raises:
        KeyError: There is none.
    """
    for p in PROFILES:
        if p.backend_id == backend_id:
            return p
    raise KeyError(backend_id)


def default_backends() -> list[Backend]:
    """The five pre-registered profiles as in-memory backends (what runs with no config)."""
    return [p.backend() for p in PROFILES]
