"""The domain's values: grid data, backends, green scores and placement decisions.

All of them are frozen dataclasses, so they can be shared between threads and cached freely.
Every number carries its unit in its name (``carbon_intensity_g_per_kwh``, ``write_gco2e``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "Alternative",
    "Backend",
    "CarbonPlacementDecision",
    "CatalogEntry",
    "Deferred",
    "EntryState",
    "GreenScore",
    "GridCarbonData",
    "GridDataSource",
    "Objective",
    "Provider",
    "SignalKind",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class SignalKind(enum.StrEnum):
    """What a grid intensity measures. Values of different kinds are never ranked together.

    ``MARGINAL`` is the emission rate of the generator that answers the next kWh (WattTime MOER,
    CO2 only). ``AVERAGE`` is the consumption-weighted average of the grid mix (Electricity Maps,
    the UK Carbon Intensity API and the embedded annual averages, CO2eq lifecycle).
    """

    MARGINAL = "marginal"
    AVERAGE = "average"


class GridDataSource(enum.StrEnum):
    """Where a grid value came from."""

    WATTTIME = "watttime"
    ELECTRICITY_MAPS = "electricitymaps"
    UK_CARBON_INTENSITY = "ukcarbon"
    EMBEDDED = "embedded"
    MANUAL = "manual"


class Provider(enum.StrEnum):
    """The kind of storage target a backend writes to."""

    S3 = "s3"
    GCS = "gcs"
    AZURE = "azure"
    FILE = "file"
    MEMORY = "memory"


class Objective(enum.StrEnum):
    """How the placement service ranks eligible backends.

    ``SCORE`` ranks by the green score (the seed's formula, higher is better). ``MIN_CARBON`` ranks
    by the estimated gCO2e of the write plus ``retention_days`` at rest (lower is better).
    """

    SCORE = "score"
    MIN_CARBON = "min_carbon"


@dataclass(frozen=True, slots=True)
class GridCarbonData:
    """One grid carbon-intensity value, with its provenance.

    Attributes:
        region: The cloud region (or ``on-prem`` name) the value was asked for.
        grid_zone: The grid zone the value describes (an Electricity Maps zone or WattTime region).
        carbon_intensity_g_per_kwh: gCO2(e) per kWh.
        signal: Marginal or average; see :class:`SignalKind`.
        source: Which source answered.
        renewable_pct: The grid's renewable share in percent, when the source gives one.
        observed_at: When the value was true (for annual averages: the start of that year).
        fetched_at: When greenroute obtained it.
        is_estimated: The provider marked the value as estimated, or it is an annual average.
        is_stale: It is an older cached value served because the source failed.
    """

    region: str
    grid_zone: str | None
    carbon_intensity_g_per_kwh: float
    signal: SignalKind
    source: GridDataSource
    renewable_pct: float | None = None
    observed_at: datetime | None = None
    fetched_at: datetime = field(default_factory=utcnow)
    is_estimated: bool = False
    is_stale: bool = False

    def age_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds since :attr:`observed_at`, or ``None`` when it is unknown."""
        if self.observed_at is None:
            return None
        return ((now or utcnow()) - self.observed_at).total_seconds()

    def as_stale(self) -> GridCarbonData:
        """A copy marked as served from cache after a failure."""
        return dataclasses.replace(self, is_stale=True)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "region": self.region,
            "grid_zone": self.grid_zone,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "signal": self.signal.value,
            "source": self.source.value,
            "renewable_pct": self.renewable_pct,
            "observed_at": _iso(self.observed_at),
            "fetched_at": _iso(self.fetched_at),
            "is_estimated": self.is_estimated,
            "is_stale": self.is_stale,
        }


@dataclass(frozen=True, slots=True)
class Backend:
    """A storage backend: one concrete target in one place on the grid.

    Attributes:
        id: Unique name, used in metadata, the catalog and the CLI.
        provider: The target kind.
        region: The cloud region (``us-west-2``, ``europe-west4``) or an on-prem name.
        root: Root URL of the concrete target (``s3://bucket/prefix``, ``file:///data``).
        pue: Power usage effectiveness of the data centre (>= 1.0).
        renewable_pct: The operator's renewable (or carbon-free) share in percent. When ``None``
            the grid's renewable share is used in the score.
        wue: Water usage effectiveness in litres per kWh, when published.
        grid_zone: Electricity Maps zone to use instead of the region's mapped zone.
        watttime_region: WattTime region to use instead of the region's mapped one.
        country_code: ISO 3166-1 alpha-2 country, for data residency. Defaults to the region's.
        storage_options: Keyword arguments for the target's filesystem (never logged).
        read_only: Never write here (rclone's ``ro``).
        no_create: Never create new objects here; existing ones may be read (rclone's ``nc``).
        market_factor_g_per_kwh: A market-based emission factor (gCO2e/kWh: the supplier's or a
            residual-mix factor) the operator declares. Reports show it in its own column; it never
            changes a location-based figure or a placement.
    """

    id: str
    provider: Provider
    region: str
    root: str
    pue: float
    renewable_pct: float | None = None
    wue: float | None = None
    grid_zone: str | None = None
    watttime_region: str | None = None
    country_code: str | None = None
    storage_options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    read_only: bool = False
    no_create: bool = False
    market_factor_g_per_kwh: float | None = None

    def __repr__(self) -> str:
        # storage_options may hold credentials: show only which keys are set.
        keys = ",".join(sorted(self.storage_options))
        return (
            f"Backend(id={self.id!r}, provider={self.provider.value!r}, region={self.region!r}, "
            f"root={self.root!r}, pue={self.pue!r}, renewable_pct={self.renewable_pct!r}, "
            f"wue={self.wue!r}, storage_options=<{keys}>)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without the storage options, which may hold secrets."""
        return {
            "id": self.id,
            "provider": self.provider.value,
            "region": self.region,
            "root": self.root,
            "pue": self.pue,
            "renewable_pct": self.renewable_pct,
            "wue": self.wue,
            "grid_zone": self.grid_zone,
            "watttime_region": self.watttime_region,
            "country_code": self.country_code,
            "read_only": self.read_only,
            "no_create": self.no_create,
            "market_factor_g_per_kwh": self.market_factor_g_per_kwh,
        }


@dataclass(frozen=True, slots=True)
class GreenScore:
    """A backend's green score, its four components, and the inputs that produced it.

    ``score == renewable_component + carbon_component + pue_component + wue_component``.
    """

    backend_id: str
    region: str
    score: float
    renewable_component: float
    carbon_component: float
    pue_component: float
    wue_component: float
    carbon_intensity_g_per_kwh: float
    renewable_pct: float
    pue: float
    wue: float | None
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "backend_id": self.backend_id,
            "region": self.region,
            "score": self.score,
            "components": {
                "renewable": self.renewable_component,
                "carbon": self.carbon_component,
                "pue": self.pue_component,
                "wue": self.wue_component,
            },
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "renewable_pct": self.renewable_pct,
            "pue": self.pue,
            "wue": self.wue,
            "updated_at": _iso(self.updated_at),
        }


class Alternative(NamedTuple):
    """A candidate that was eligible but not chosen, and why it lost.

    (A named tuple, not a dataclass: a decision builds one per losing candidate, on the hot path.)

    Attributes:
        backend_id: The candidate.
        score: Its green score value.
        write_gco2e: Its estimated gCO2e for the write.
        retention_gco2e: Its estimated gCO2e at rest over the decision's retention.
        objective: How the decision ranked candidates.
        green_score: Its full score, with components and inputs.
        chosen: The chosen backend's full score.
        chosen_gco2e: The chosen backend's write plus retention gCO2e.
    """

    backend_id: str
    score: float
    write_gco2e: float
    retention_gco2e: float
    objective: Objective
    green_score: GreenScore
    chosen: GreenScore
    chosen_gco2e: float

    @property
    def reason(self) -> str:
        """Why it lost, in one line (built on demand; the decision path never formats it)."""
        mine, best = self.green_score, self.chosen
        if self.objective is Objective.MIN_CARBON:
            return (f"{self.write_gco2e + self.retention_gco2e:.4g} gCO2e vs {self.chosen_gco2e:.4g} "
                    f"(intensity {mine.carbon_intensity_g_per_kwh:g} vs {best.carbon_intensity_g_per_kwh:g} g/kWh, "
                    f"PUE {mine.pue:g} vs {best.pue:g})")
        if mine.score == best.score:
            return f"tied at score {mine.score:.2f}; {best.backend_id!r} sorts first"
        gaps = {
            f"renewable {mine.renewable_pct:g}% vs {best.renewable_pct:g}%":
                best.renewable_component - mine.renewable_component,
            f"intensity {mine.carbon_intensity_g_per_kwh:g} vs {best.carbon_intensity_g_per_kwh:g} g/kWh":
                best.carbon_component - mine.carbon_component,
            f"PUE {mine.pue:g} vs {best.pue:g}": best.pue_component - mine.pue_component,
            f"WUE {mine.wue} vs {best.wue}": best.wue_component - mine.wue_component,
        }
        largest = max(gaps, key=lambda k: gaps[k])
        return f"score {mine.score:.2f} vs {best.score:.2f}; largest gap: {largest}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"backend_id": self.backend_id, "score": self.score, "write_gco2e": self.write_gco2e,
                "retention_gco2e": self.retention_gco2e, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class CarbonPlacementDecision:
    """Where one write goes, why, and what it is estimated to emit.

    Attributes:
        decision_id: Unique id, stamped on the object and the catalog entry.
        backend: The chosen backend.
        target_url: The chosen backend's root URL (the router appends the logical path).
        score: The chosen backend's green score.
        alternatives: The other eligible candidates, best first, each with why it lost. Built on
            first read (the placement service leaves a :class:`Deferred` in the slot), so a write
            that never looks at them does not pay for them.
        ineligible: Candidates filtered out before scoring, each with the reason.
        write_gco2e: Estimated gCO2e of writing ``data_size_bytes`` to the chosen backend.
        at_rest_gco2e_per_month: Projected gCO2e per month of keeping the object there.
        retention_gco2e: Projected gCO2e at rest over ``retention_days`` (0 when not given).
        grid_data: The grid value used for every scored candidate, by backend id.
        signal: The one signal kind every candidate was scored with.
        fallback: Whether any source fell back (stale value, next source, embedded data).
        fallback_reasons: Why, one line per event ("watttime: 403 invalid scope for IE").
        data_size_bytes: The size the decision was made for.
        retention_days: The retention the decision was made for, if any.
        objective: How candidates were ranked.
        decided_at: When the decision was made.
        failovers: Backends tried before this one for the same write, each with what failed.
    """

    decision_id: str
    backend: Backend
    target_url: str
    score: GreenScore
    alternatives: tuple[Alternative, ...]
    ineligible: Mapping[str, str]
    write_gco2e: float
    at_rest_gco2e_per_month: float
    retention_gco2e: float
    grid_data: Mapping[str, GridCarbonData]
    signal: SignalKind
    fallback: bool
    fallback_reasons: tuple[str, ...]
    data_size_bytes: int
    retention_days: float | None
    objective: Objective
    decided_at: datetime
    failovers: tuple[str, ...] = ()

    @property
    def backend_id(self) -> str:
        """The chosen backend's id."""
        return self.backend.id

    @property
    def grid(self) -> GridCarbonData:
        """The grid value used for the chosen backend."""
        return self.grid_data[self.backend.id]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the audit log's line format)."""
        return {
            "decision_id": self.decision_id,
            "backend_id": self.backend.id,
            "target_url": self.target_url,
            "score": self.score.to_dict(),
            "alternatives": [a.to_dict() for a in self.alternatives],
            "ineligible": dict(self.ineligible),
            "write_gco2e": self.write_gco2e,
            "at_rest_gco2e_per_month": self.at_rest_gco2e_per_month,
            "retention_gco2e": self.retention_gco2e,
            "grid_data": {k: v.to_dict() for k, v in self.grid_data.items()},
            "signal": self.signal.value,
            "fallback": self.fallback,
            "fallback_reasons": list(self.fallback_reasons),
            "data_size_bytes": self.data_size_bytes,
            "retention_days": self.retention_days,
            "objective": self.objective.value,
            "decided_at": _iso(self.decided_at),
            "failovers": list(self.failovers),
        }


class Deferred:
    """A field value computed on its first read: ``fn(*args)``.

    Only fields wrapped in :class:`_DeferredSlot` accept one; readers never see it, because the slot
    swaps in the built value (so it is built at most once, barring a harmless race between two
    first readers that build equal values).
    """

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., object], args: tuple[object, ...]) -> None:
        self.fn = fn
        self.args = args


class _DeferredSlot:
    """Wraps a dataclass slot so that a :class:`Deferred` stored in it is built when first read.

    The field stays a plain dataclass field (``fields()``, the constructor, ``replace``, equality,
    ``repr`` and pickling all go through attribute access and see the built value); only the
    storage is lazy.
    """

    __slots__ = ("_member",)

    def __init__(self, member: Any) -> None:
        self._member = member

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self._member.__get__(obj, owner)
        if type(value) is Deferred:
            value = value.fn(*value.args)
            self._member.__set__(obj, value)
        return value

    def __set__(self, obj: object, value: object) -> None:
        self._member.__set__(obj, value)

    def __delete__(self, obj: object) -> None:
        self._member.__delete__(obj)


# ``alternatives`` is the one costly field of a decision (a named tuple per losing candidate) and
# most writes never read it.
type.__setattr__(CarbonPlacementDecision, "alternatives",
                 _DeferredSlot(CarbonPlacementDecision.__dict__["alternatives"]))


class EntryState(enum.StrEnum):
    """A catalog entry's state in the two-phase write."""

    PENDING = "pending"
    COMMITTED = "committed"
    CLOSED = "closed"  # overwritten, deleted or moved: kept as ledger history


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """Where one logical path lives, and what writing it cost.

    Attributes:
        path: The logical path (``namespace/key...``).
        backend_id: The backend holding the object.
        url: The physical URL.
        size: Size in bytes (for a pending streamed write: the size hint).
        etag: The target's etag, once committed.
        write_gco2e: Estimated gCO2e of the write.
        gco2e_month: Projected gCO2e per month at rest.
        carbon_intensity_g_per_kwh: The grid intensity used.
        signal: The signal kind of that intensity.
        source: The grid data source of that intensity.
        decision_id: The placement decision (also the entry's unique id).
        state: Pending (an exclusive create's reservation), committed (the path's live entry), or closed
            (overwritten, deleted or moved; kept as ledger history).
        created_at: When the entry was committed (its at-rest period starts here).
        updated_at: When it last changed.
        failovers: Backends that failed before this one, with what failed.
        region: The backend's region, as placed.
        grid_zone: The grid zone the intensity describes.
        observed_at: When the intensity was true.
        is_estimated: The intensity was an estimate or an annual average.
        is_stale: The intensity was a cached value served because its source failed.
        fallback: The decision fell back from the configured live sources.
        model_version: The carbon model that made the estimates.
        retention_days: The retention the caller declared, if any.
        baseline_backend: The backend the ledger compares this write with.
        baseline_write_gco2e: What the write would have emitted there (same signal kind and model).
        baseline_gco2e_month: What it would have emitted there per month at rest.
        baseline_note: Why there is no baseline, when there is none.
        closed_at: When the at-rest period ended (overwrite, delete or move).
        closed_reason: ``overwritten``, ``deleted``, ``moved`` or ``reindexed``.
        moves: The rebalance moves this object has made, one JSON object each.
    """

    path: str
    backend_id: str
    url: str
    size: int
    etag: str | None
    write_gco2e: float
    gco2e_month: float
    carbon_intensity_g_per_kwh: float
    signal: SignalKind
    source: GridDataSource
    decision_id: str
    state: EntryState
    created_at: datetime
    updated_at: datetime
    failovers: tuple[str, ...] = ()
    region: str | None = None
    grid_zone: str | None = None
    observed_at: datetime | None = None
    is_estimated: bool = False
    is_stale: bool = False
    fallback: bool = False
    model_version: str | None = None
    retention_days: float | None = None
    baseline_backend: str | None = None
    baseline_write_gco2e: float | None = None
    baseline_gco2e_month: float | None = None
    baseline_note: str | None = None
    closed_at: datetime | None = None
    closed_reason: str | None = None
    moves: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "path": self.path, "backend_id": self.backend_id, "url": self.url, "size": self.size,
            "etag": self.etag, "write_gco2e": self.write_gco2e, "gco2e_month": self.gco2e_month,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh, "signal": self.signal.value,
            "source": self.source.value, "decision_id": self.decision_id, "state": self.state.value,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
            "failovers": list(self.failovers), "region": self.region, "grid_zone": self.grid_zone,
            "observed_at": _iso(self.observed_at), "is_estimated": self.is_estimated, "is_stale": self.is_stale,
            "fallback": self.fallback, "model_version": self.model_version, "retention_days": self.retention_days,
            "baseline_backend": self.baseline_backend, "baseline_write_gco2e": self.baseline_write_gco2e,
            "baseline_gco2e_month": self.baseline_gco2e_month, "baseline_note": self.baseline_note,
            "closed_at": _iso(self.closed_at), "closed_reason": self.closed_reason, "moves": list(self.moves),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
