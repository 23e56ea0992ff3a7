"""The placement service: which eligible backend is greenest for this write, right now.

:meth:`GreenPlacementService.select_greenest_backend` follows the seed's seven steps:

1. Resolve the candidates (ids or :class:`~greenroute.model.Backend` values; all when none given).
2. Filter eligibility before scoring: allowed providers, regions and countries (data residency),
   never a read-only or no-create backend, and no backend cooling down after a failed write
   (unless all are). Nothing eligible raises
   :class:`~greenroute.errors.NoEligibleBackendError` with each backend's reason.
3. Get grid data for every eligible candidate, all of one signal kind (:mod:`greenroute.signals`).
4. Update the registry's intensities, and score each candidate with the green score.
5. Estimate each candidate's gCO2e for the write and at rest (:mod:`greenroute.carbon`).
6. Rank by the objective (score, or least carbon), ties broken by backend id.
7. Build the :class:`~greenroute.model.CarbonPlacementDecision` and publish it on the event bus.

With cached grid data the whole path does no I/O, and a warm decision does little more than check
that its memos still hold: eligibility, scores and the ranking are reused while their inputs are
the same objects, the losing candidates' :class:`~greenroute.model.Alternative` values are built
only when someone reads them, and the decision id is a per-process random prefix and a counter.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple, cast

from .carbon import HOURS_PER_MONTH, CarbonModel
from .embedded import embedded_data
from .errors import ConfigError, NoEligibleBackendError, UnknownRegionError
from .events import BACKEND_REGISTERED, PLACEMENT_DECISION, EventBus
from .health import BackendHealth
from .model import (
    Alternative,
    Backend,
    CarbonPlacementDecision,
    Deferred,
    GreenScore,
    GridCarbonData,
    Objective,
    Provider,
    utcnow,
)
from .scoring import BackendGreenScoreRegistry, green_score, rank_key
from .signals import GridSignals

__all__ = ["GreenPlacementService", "PlacementPolicy"]


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """Which backends may receive writes. ``None`` means "no restriction".

    Attributes:
        allowed_providers: Provider kinds that may be chosen.
        allowed_regions: Regions that may be chosen.
        allowed_countries: ISO 3166-1 alpha-2 countries that may be chosen (data residency).
    """

    allowed_providers: frozenset[Provider] | None = None
    allowed_regions: frozenset[str] | None = None
    allowed_countries: frozenset[str] | None = None

    def reason_to_exclude(self, backend: Backend, country: str | None) -> str | None:
        """Why ``backend`` may not be chosen, or ``None`` when it may."""
        if backend.read_only:
            return "read-only backend"
        if backend.no_create:
            return "no-create backend (existing objects only)"
        if self.allowed_providers is not None and backend.provider not in self.allowed_providers:
            return f"provider {backend.provider.value} not allowed"
        if self.allowed_regions is not None and backend.region not in self.allowed_regions:
            return f"region {backend.region} not allowed"
        if self.allowed_countries is not None:
            if country is None:
                return "country unknown, so residency cannot be shown (set country_code)"
            if country not in self.allowed_countries:
                return f"country {country} not allowed (residency)"
        return None


_NO_INELIGIBLE: Mapping[str, str] = MappingProxyType({})

#: The ranking memo's order key when candidates are ranked by score (retention does not matter).
_BY_SCORE = "score"


class _Candidate(NamedTuple):
    backend: Backend
    grid: GridCarbonData
    score: GreenScore
    write_per_byte: float       # gCO2e per byte written
    rest_per_byte_hour: float   # gCO2e per byte per hour at rest


class GreenPlacementService:
    """Chooses the greenest eligible backend for each write.

    Args:
        backends: The configured backends.
        registry: Keeps every backend's latest score; a new one with default weights if omitted.
        signals: Grid data access; embedded annual averages only if omitted.
        carbon_model: The gCO2e estimate's coefficients.
        policy: Eligibility rules applied to every decision.
        objective: Default ranking.
        bus: Event bus; a private one if omitted.
        health: The backends' circuit breakers; a fresh one if omitted.

    Example:
        >>> from greenroute.profiles import default_backends
        >>> service = GreenPlacementService(default_backends())
        >>> decision = service.select_greenest_backend(None, 10_000_000)
        >>> decision.backend_id
        'aws-eu-north-1'
    """

    def __init__(self, backends: Iterable[Backend] = (), *,
                 registry: BackendGreenScoreRegistry | None = None,
                 signals: GridSignals | None = None,
                 carbon_model: CarbonModel | None = None,
                 policy: PlacementPolicy | None = None,
                 objective: Objective = Objective.SCORE,
                 bus: EventBus | None = None,
                 health: BackendHealth | None = None) -> None:
        self.registry = registry or BackendGreenScoreRegistry()
        self.signals = signals or GridSignals()
        self.carbon_model = carbon_model or CarbonModel()
        self.policy = policy or PlacementPolicy()
        self.objective = objective
        self.bus = bus or EventBus()
        self.health = health or BackendHealth()
        self._lock = threading.Lock()
        self._backends: dict[str, Backend] = {}
        self._countries: dict[str, str | None] = {}
        self._generation = 0  # bumped on every registration; part of the eligibility memo's key
        self._eligibility: dict[tuple[object, ...], tuple[tuple[Backend, ...], Mapping[str, str]]] = {}
        self._scores: dict[str, tuple[Backend, GridCarbonData, GreenScore]] = {}
        self._rankings: dict[tuple[object, ...],
                             tuple[tuple[Backend, ...], tuple[GridCarbonData, ...], tuple[_Candidate, ...]]] = {}
        # The last ranking per order, checked by identity of the eligible tuple and the grid mapping:
        # O(1) whatever the number of candidates while both are the memoised objects.
        self._recent: dict[object, tuple[Sequence[Backend], Mapping[str, GridCarbonData],
                                         tuple[_Candidate, ...]]] = {}
        self.bus.subscribe(BACKEND_REGISTERED, self._on_backend_registered)
        for backend in backends:
            self.register_backend(backend)

    # -- backends ---------------------------------------------------------------------------

    def register_backend(self, backend: Backend) -> None:
        """Announce a backend on the bus; this service (and any other subscriber) registers it."""
        self.bus.publish(BACKEND_REGISTERED, backend)

    def _on_backend_registered(self, backend: Backend) -> None:
        with self._lock:
            self._backends[backend.id] = backend
            self._countries[backend.id] = _country(backend)
            self._generation += 1
        self.registry.register_backend(backend.id, backend.region,
                                       backend.renewable_pct if backend.renewable_pct is not None else 0.0,
                                       backend.pue, backend.wue)

    @property
    def backends(self) -> list[Backend]:
        """The registered backends, by id."""
        with self._lock:
            return [self._backends[k] for k in sorted(self._backends)]

    def backend(self, backend_id: str) -> Backend:
        """One registered backend.

        Raises:
            KeyError: No backend has that id.
        """
        with self._lock:
            return self._backends[backend_id]

    # -- decisions --------------------------------------------------------------------------

    def select_greenest_backend(self, candidates: Sequence[str | Backend] | None = None,
                                data_size_bytes: int = 0, *,
                                retention_days: float | None = None,
                                objective: Objective | str | None = None,
                                policy: PlacementPolicy | None = None) -> CarbonPlacementDecision:
        """Choose where a write of ``data_size_bytes`` should go.

        Args:
            candidates: Backend ids or backends to choose from; all registered ones when ``None``.
            data_size_bytes: The size of the write.
            retention_days: How long the object will be kept, for the at-rest estimate.
            objective: ``"score"`` or ``"min_carbon"``; the service's default when ``None``.
            policy: Eligibility rules for this decision; the service's when ``None``.

        Raises:
            ConfigError: A negative size or retention, or an unknown objective.
            NoEligibleBackendError: No candidate is eligible or has grid data; the reasons are kept.
        """
        if data_size_bytes < 0:
            raise ConfigError(f"must not be negative, got {data_size_bytes}", key="data_size_bytes")
        if retention_days is not None and retention_days < 0:
            raise ConfigError(f"must not be negative, got {retention_days}", key="retention_days")
        ranking = _objective(objective, self.objective)
        rules = policy or self.policy

        # 1-2: candidates and eligibility
        eligible, ineligible = self._eligible(candidates, rules)
        if not eligible:
            raise NoEligibleBackendError(ineligible)

        # 3: grid data, one signal kind for all
        resolution = self.signals.resolve(eligible)
        values = resolution.values
        if resolution.missing:
            ineligible = MappingProxyType({**ineligible, **resolution.missing})
            eligible = tuple(b for b in eligible if b.id in values)
            if not eligible:
                raise NoEligibleBackendError(ineligible)

        # 4-6: score, per-byte carbon rates and rank (memoised while inputs are unchanged)
        ranked = self._ranked(eligible, values, ranking, retention_days, data_size_bytes > 0)
        best = ranked[0]
        hours = (retention_days or 0.0) * 24.0
        best_write = data_size_bytes * best.write_per_byte
        best_rest = data_size_bytes * best.rest_per_byte_hour
        # A Deferred in the slot builds the tuple when (if ever) someone reads it.
        alternatives: tuple[Alternative, ...] = ()
        if len(ranked) > 1:
            alternatives = cast("tuple[Alternative, ...]",
                                Deferred(_alternatives, (ranked, data_size_bytes, hours, ranking)))

        # 7: decide and publish. Positional arguments, in field order: passing 17 by keyword costs
        # more than 2 µs, a tenth of the decision's budget.
        decision = CarbonPlacementDecision(
            _decision_id(),                                                 # decision_id
            best.backend,                                                   # backend
            best.backend.root,                                              # target_url
            best.score,                                                     # score
            alternatives,                                                   # alternatives
            ineligible,                                                     # ineligible
            best_write,                                                     # write_gco2e
            best_rest * HOURS_PER_MONTH,                                    # at_rest_gco2e_per_month
            best_rest * hours,                                              # retention_gco2e
            values,                                                         # grid_data
            resolution.signal,                                              # signal
            bool(resolution.fallback_reasons),                              # fallback
            resolution.fallback_reasons,                                    # fallback_reasons
            data_size_bytes,                                                # data_size_bytes
            retention_days,                                                 # retention_days
            ranking,                                                        # objective
            utcnow(),                                                       # decided_at
        )
        self.bus.publish(PLACEMENT_DECISION, decision)
        return decision

    def get_green_scores(self) -> list[GreenScore]:
        """Every backend's current score, best first (ties by backend id)."""
        backends = self.backends
        resolution = self.signals.resolve(backends)
        scores = [self._score(b, resolution.values[b.id]) for b in backends if b.id in resolution.values]
        return sorted(scores, key=rank_key)

    def get_grid_carbon_data(self, region: str) -> GridCarbonData:
        """The grid value the service would use now for ``region``.

        A configured backend in that region lends its zone overrides.

        Raises:
            UnknownRegionError: No source knows the region.
        """
        backend = next((b for b in self.backends if b.region == region), None)
        if backend is None:
            backend = Backend(id=region, provider=Provider.MEMORY, region=region, root="memory://", pue=1.0)
        resolution = self.signals.resolve([backend])
        value = resolution.values.get(backend.id)
        if value is None:
            raise UnknownRegionError(region, embedded_data().suggest(region))
        return value

    def refresh_grid_data(self) -> dict[str, str]:
        """Fetch every backend's region from every live source, at most once per TTL."""
        return self.signals.refresh(self.backends)

    # -- internals --------------------------------------------------------------------------

    def _eligible(self, candidates: Sequence[str | Backend] | None,
                  rules: PlacementPolicy) -> tuple[tuple[Backend, ...], Mapping[str, str]]:
        """The eligible candidates and why the others are not; both shared, read-only memo values."""
        # Eligibility depends only on the candidates, the rules and the registered backends while no
        # circuit breaker is open, so the common case is a dictionary lookup.
        key: tuple[object, ...] | None = None
        if not self.health.any_open() and (candidates is None or all(isinstance(c, str) for c in candidates)):
            key = (None if candidates is None else tuple(candidates), rules, self._generation)
            hit = self._eligibility.get(key)
            if hit is not None:
                return hit
        eligible, ineligible = self._check_eligibility(candidates, rules)
        result = (tuple(eligible), MappingProxyType(ineligible) if ineligible else _NO_INELIGIBLE)
        if key is not None:
            if len(self._eligibility) > 1024:
                self._eligibility.clear()
            self._eligibility[key] = result
        return result

    def _check_eligibility(self, candidates: Sequence[str | Backend] | None,
                           rules: PlacementPolicy) -> tuple[list[Backend], dict[str, str]]:
        with self._lock:
            known = dict(self._backends)
            countries = dict(self._countries)
        chosen: list[Backend] = []
        if candidates is None:
            chosen = [known[k] for k in sorted(known)]
        ineligible: dict[str, str] = {}
        for c in candidates or ():
            if isinstance(c, Backend):
                chosen.append(c)
            elif c in known:
                chosen.append(known[c])
            else:
                ineligible[c] = "not a configured backend"
        eligible: list[Backend] = []
        cooling: dict[str, str] = {}
        for b in chosen:
            why = rules.reason_to_exclude(b, countries[b.id] if b.id in countries else _country(b))
            if why is None:
                why = self.health.unhealthy_reason(b.id)
                if why is not None:
                    cooling[b.id] = why
                    continue
                eligible.append(b)
            else:
                ineligible[b.id] = why
        if not eligible and cooling:
            # Every otherwise-eligible backend is cooling down: try them anyway (half-open).
            eligible = [b for b in chosen if b.id in cooling]
        else:
            ineligible.update(cooling)
        return eligible, ineligible

    def _score(self, backend: Backend, grid: GridCarbonData) -> GreenScore:
        # Grid values are cached objects, so while neither the backend nor its value changes the
        # score cannot change either: reuse it (checked by identity, which is cheap).
        memo = self._scores.get(backend.id)
        if memo is not None and memo[0] is backend and memo[1] is grid:
            return memo[2]
        renewable = backend.renewable_pct
        if renewable is None:
            renewable = grid.renewable_pct if grid.renewable_pct is not None else 0.0
        score = green_score(backend.id, backend.region, carbon_intensity_g_per_kwh=grid.carbon_intensity_g_per_kwh,
                            renewable_pct=renewable, pue=backend.pue, wue=backend.wue,
                            weights=self.registry.weights, updated_at=grid.fetched_at)
        if backend.id in self._backends:
            # Keep the registry's view current; it changes only when the grid value does.
            self.registry.register_backend(backend.id, backend.region, renewable, backend.pue, backend.wue,
                                           carbon_intensity_g_per_kwh=grid.carbon_intensity_g_per_kwh)
        self._scores[backend.id] = (backend, grid, score)
        return score

    def _ranked(self, eligible: Sequence[Backend], grid: Mapping[str, GridCarbonData], ranking: Objective,
                retention_days: float | None, sized: bool) -> tuple[_Candidate, ...]:
        """The eligible candidates, best first, with their scores and per-byte carbon rates.

        The ranking depends on the backends, their grid values, the objective and the retention,
        never on the size (both estimates are linear in it). Grid values are cached objects, so
        while none of these change the previous ranking is reused, checked by identity.
        """
        min_carbon = ranking is Objective.MIN_CARBON and sized
        order: object = (retention_days or 0.0) if min_carbon else _BY_SCORE
        recent = self._recent.get(order)
        if recent is not None and recent[0] is eligible and recent[1] is grid:
            return recent[2]
        ids = tuple(b.id for b in eligible)
        now = tuple(map(grid.__getitem__, ids))
        key = (ids, order)
        memo = self._rankings.get(key)
        # Tuple equality checks identity first, so these compare cheaply when nothing changed.
        if memo is not None and memo[0] == tuple(eligible) and memo[1] == now:
            ranked = memo[2]
        else:
            scored = []
            for b, g in zip(eligible, now, strict=True):
                write, rest = self.carbon_model.coefficients(provider=b.provider, pue=b.pue,
                                                             carbon_intensity_g_per_kwh=g.carbon_intensity_g_per_kwh)
                scored.append(_Candidate(b, g, self._score(b, g), write, rest))
            if min_carbon:
                hours = (retention_days or 0.0) * 24.0
                scored.sort(key=lambda c: (c.write_per_byte + c.rest_per_byte_hour * hours, *rank_key(c.score)))
            else:
                scored.sort(key=lambda c: rank_key(c.score))
            ranked = tuple(scored)
            if len(self._rankings) > 1024:
                self._rankings.clear()
            self._rankings[key] = (tuple(eligible), now, ranked)
        self._recent[order] = (eligible, grid, ranked)
        return ranked


def _alternatives(ranked: tuple[_Candidate, ...], data_size_bytes: int, hours: float,
                  ranking: Objective) -> tuple[Alternative, ...]:
    """The losing candidates of a decision, best first (built when ``decision.alternatives`` is read)."""
    best = ranked[0]
    best_gco2e = data_size_bytes * best.write_per_byte + data_size_bytes * best.rest_per_byte_hour * hours
    # tuple.__new__ is what Alternative._make does, without the named tuple's Python-level __new__
    # (half the cost; audit logs read every decision's alternatives).
    return tuple(
        _new_tuple(Alternative, (c.backend.id, c.score.score, data_size_bytes * c.write_per_byte,
                                 data_size_bytes * c.rest_per_byte_hour * hours, ranking, c.score, best.score,
                                 best_gco2e))
        for c in ranked[1:]
    )


_new_tuple = tuple.__new__


# Decision ids are stamped on every object and are the catalog entry's key, so they must be unique
# across the fleet, but they need not be secret: 64 random bits per process and a 64-bit counter
# cost about half of os.urandom(16).hex() (a system call) per id. A forked child draws a new prefix.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count()


def _decision_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def _new_id_prefix() -> None:
    global _ID_PREFIX, _ID_COUNTER  # noqa: PLW0603 - process-wide state, reset after fork
    _ID_PREFIX = os.urandom(8).hex()
    _ID_COUNTER = itertools.count()


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere a child process imports this module afresh
    os.register_at_fork(after_in_child=_new_id_prefix)


def _objective(value: Objective | str | None, default: Objective) -> Objective:
    if value is None:
        return default
    try:
        return Objective(value)
    except ValueError:
        choices = ", ".join(o.value for o in Objective)
        raise ConfigError(f"unknown objective {value!r} (expected one of {choices})", key="objective") from None


def _country(backend: Backend) -> str | None:
    if backend.country_code:
        return backend.country_code
    data = embedded_data()
    return data.region(backend.region).country_code if data.has_region(backend.region) else None
