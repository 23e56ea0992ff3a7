"""Rebalancing: move long-lived objects to greener backends when the move pays for itself.

Most of an object's carbon is at rest, and grids and configurations change after a write. A
*plan* (:func:`plan`) proposes moving an object only when the move passes a break-even test; an
*apply* (:func:`apply`) carries the plan out, crash-safe, optionally in the greenest window of the
next hours.

The break-even test, per committed object (one grid resolution for every backend, so every number
in a plan is of one signal kind)::

    remaining  = retention_days - age            (or the default horizon when no retention is known)
    at_rest(b) = bytes/1e12 TB * 0.65 Wh/TB·h * remaining h * replication(b) * pue(b) * I(b) / 1000
    saving     = at_rest(current) - at_rest(candidate)
    move       = read + transfer + write
      read     = bytes * energy_wh_per_byte * pue(current) * I(current) / 1000
      transfer = bytes * 1e-9 Wh (CCF's 0.001 kWh/GB), half at each end: * (I(current) + I(candidate)) / 2 / 1000
      write    = bytes * energy_wh_per_byte * pue(candidate) * I(candidate) / 1000
    payback    = move / (saving / remaining)     (days)
    propose when  saving - move > min_saving_g  and  payback < remaining

Candidates pass the placement service's own eligibility rules (residency, providers, regions, never
a read-only or no-create backend); the best is the one that saves the most net of its move.

A move is copy -> verify -> commit -> delete:

1. the object is streamed from the current backend to the candidate with its metadata, under a
   new decision id fixed in the plan (``greenroute_move_of`` names the entry it copies);
2. the copy is read back and its size and SHA-256 compared with the bytes read from the source;
3. one compare-and-set commit against the entry the plan saw makes the copy the path's live entry
   and closes the old one as ``"moved"``; the move (from, to, bytes, gCO2e, at) is appended to the
   entry's ``moves`` and stamped on the object as ``greenroute_moves``;
4. the old copy is deleted only while it still holds the old decision.

Crash safety: before step 3 the old entry is live and its copy untouched, so a crash leaves at
most an uncommitted copy, which a re-run reuses (or rewrites) and ``fsck`` removes, never adopts.
The commit is atomic and conditional, so a path never has two live entries and a re-run that
finds the plan's decision already live only deletes the old copy. Step 4 runs only after the
commit, and only on the old decision's bytes, so the only copy is never deleted.

Time-shifting: with a window, the moves wait (bounded, interruptible) for the hour whose forecast
intensities, weighted by the energy each region's side of the moves uses, are lowest; without a
forecast the embedded annual averages apply, which are flat, so the moves run at once and the
report says why.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from .carbon import HOURS_PER_MONTH, CarbonModel
from .embedded import embedded_data
from .errors import CommitConflictError, ConfigError, GreenrouteError, TargetUnavailableError
from .model import Backend, CatalogEntry, EntryState, GridCarbonData, GridDataSource, SignalKind, utcnow
from .ports import ObjectInfo, StorageTarget

if TYPE_CHECKING:
    from .router import GreenRouter

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "PLAN_FORMAT",
    "TRANSFER_WH_PER_BYTE",
    "ApplyReport",
    "ForecastSource",
    "KeptObject",
    "MoveCarbon",
    "MoveFailedError",
    "MoveOutcome",
    "MoveSkippedError",
    "Mover",
    "PlannedMove",
    "RebalanceError",
    "RebalancePlan",
    "Window",
    "apply",
    "choose_window",
    "move_carbon",
    "plan",
]

log = logging.getLogger(__name__)

#: The remaining horizon of an object with no declared retention (``[rebalance] default_horizon_days``).
DEFAULT_HORIZON_DAYS = 365.0
#: The plan file's format tag; :meth:`RebalancePlan.load` refuses anything else.
PLAN_FORMAT = "greenroute.rebalance.plan/1"
#: CCF's network coefficient: 0.001 kWh per (decimal) GB moved between regions.
TRANSFER_WH_PER_BYTE = 1e-9
#: How long the moves are expected to take: the length of the window a forecast is searched for.
WINDOW_LENGTH = timedelta(hours=1)
#: An uncommitted copy younger than this is reused by a re-run; an older one is written again, so
#: that ``fsck`` (which leaves objects younger than 300 s alone) cannot remove it under the commit.
REUSE_WITHIN_SECONDS = 120.0
#: Writes younger than this at the destination may be in flight: the move waits for a later run.
IN_FLIGHT_SECONDS = 300.0
#: S3 allows 2 KB of user metadata; older moves are dropped from ``greenroute_moves`` to stay inside it.
_MAX_METADATA_BYTES = 2048
_CHUNK = 1024 * 1024
_PAGE = 1000


# -- the carbon of a move ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveCarbon:
    """The estimated gCO2e of moving one object: reading it, sending it and writing it."""

    read_gco2e: float
    transfer_gco2e: float
    write_gco2e: float

    @property
    def total_gco2e(self) -> float:
        """Read plus transfer plus write."""
        return self.read_gco2e + self.transfer_gco2e + self.write_gco2e


def move_carbon(model: CarbonModel, size: int, source: Backend, target: Backend, source_intensity: float,
                target_intensity: float) -> MoveCarbon:
    """The carbon of moving ``size`` bytes from ``source`` to ``target``.

    Reading out of storage is costed like writing into it (the model's per-byte energy times the
    data centre's PUE). The transfer uses CCF's 0.001 kWh/GB, half of it at each end's intensity.

    Example:
        >>> from greenroute.model import Provider
        >>> a = Backend(id="a", provider=Provider.S3, region="us-east-1", root="s3://a", pue=1.0)
        >>> b = Backend(id="b", provider=Provider.S3, region="us-west-2", root="s3://b", pue=1.0)
        >>> round(move_carbon(CarbonModel(), 10**9, a, b, 500.0, 100.0).total_gco2e, 6)
        0.9
    """
    read = model.write_gco2e(size, pue=source.pue, carbon_intensity_g_per_kwh=source_intensity)
    transfer = size * TRANSFER_WH_PER_BYTE * (source_intensity + target_intensity) / 2.0 / 1000.0
    write = model.write_gco2e(size, pue=target.pue, carbon_intensity_g_per_kwh=target_intensity)
    return MoveCarbon(read, transfer, write)


def _side_energy_wh(model: CarbonModel, size: int, source: Backend, target: Backend) -> tuple[float, float]:
    """The energy of a move spent at each end (source, target), in Wh: what a window weighs."""
    half = size * TRANSFER_WH_PER_BYTE / 2.0
    return model.write_energy_wh(size, pue=source.pue) + half, model.write_energy_wh(size, pue=target.pue) + half


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedMove:
    """One proposed move, with its break-even numbers.

    Attributes:
        path: The logical path.
        decision_id: The live entry the plan saw (the commit's compare-and-set expectation).
        move_id: The decision id of the moved entry (fixed, so a re-run reuses its own copy).
        from_backend: Where the object is.
        to_backend: Where it goes.
        size: Bytes.
        remaining_days: The horizon the saving is computed over.
        horizon: ``"retention"`` (declared retention minus age) or ``"default"``.
        intensity_from: The current backend's intensity (g/kWh, the plan's signal kind).
        intensity_to: The target backend's intensity.
        at_rest_from_gco2e: At rest over the horizon where it is.
        at_rest_to_gco2e: At rest over the horizon where it would go.
        read_gco2e: The move's read.
        transfer_gco2e: The move's transfer.
        write_gco2e: The move's write.
        payback_days: How long the lower at-rest rate takes to repay the move.
    """

    path: str
    decision_id: str
    move_id: str
    from_backend: str
    to_backend: str
    size: int
    remaining_days: float
    horizon: str
    intensity_from: float
    intensity_to: float
    at_rest_from_gco2e: float
    at_rest_to_gco2e: float
    read_gco2e: float
    transfer_gco2e: float
    write_gco2e: float
    payback_days: float

    @property
    def saving_gco2e(self) -> float:
        """At rest over the horizon where it is, minus where it would go."""
        return self.at_rest_from_gco2e - self.at_rest_to_gco2e

    @property
    def move_gco2e(self) -> float:
        """Read plus transfer plus write."""
        return self.read_gco2e + self.transfer_gco2e + self.write_gco2e

    @property
    def net_gco2e(self) -> float:
        """The saving minus the move's carbon."""
        return self.saving_gco2e - self.move_gco2e

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the derived figures included, for people reading the file)."""
        return {
            "path": self.path, "decision_id": self.decision_id, "move_id": self.move_id,
            "from": self.from_backend, "to": self.to_backend, "bytes": self.size,
            "remaining_days": self.remaining_days, "horizon": self.horizon,
            "intensity_from": self.intensity_from, "intensity_to": self.intensity_to,
            "at_rest_from_gco2e": self.at_rest_from_gco2e, "at_rest_to_gco2e": self.at_rest_to_gco2e,
            "saving_gco2e": self.saving_gco2e, "read_gco2e": self.read_gco2e,
            "transfer_gco2e": self.transfer_gco2e, "write_gco2e": self.write_gco2e,
            "move_gco2e": self.move_gco2e, "net_gco2e": self.net_gco2e, "payback_days": self.payback_days,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedMove:
        """The move a plan file describes (derived figures are recomputed, not trusted)."""
        return cls(
            path=str(d["path"]), decision_id=str(d["decision_id"]), move_id=str(d["move_id"]),
            from_backend=str(d["from"]), to_backend=str(d["to"]), size=int(d["bytes"]),
            remaining_days=float(d["remaining_days"]), horizon=str(d["horizon"]),
            intensity_from=float(d["intensity_from"]), intensity_to=float(d["intensity_to"]),
            at_rest_from_gco2e=float(d["at_rest_from_gco2e"]), at_rest_to_gco2e=float(d["at_rest_to_gco2e"]),
            read_gco2e=float(d["read_gco2e"]), transfer_gco2e=float(d["transfer_gco2e"]),
            write_gco2e=float(d["write_gco2e"]), payback_days=float(d["payback_days"]),
        )


@dataclass(frozen=True, slots=True)
class KeptObject:
    """An object the plan leaves where it is, and why.

    Attributes:
        path: The logical path.
        backend_id: Where it stays.
        code: ``costs_more``, ``below_min_saving``, ``payback_too_long``, ``not_eligible`` (a greener
            backend exists but placement's rules forbid it), ``no_greener_backend``,
            ``retention_ended``, ``empty``, ``read_only`` (its backend is read-only, so the old copy
            could not be deleted), ``unknown_backend`` or ``no_grid_data``.
        reason: The same in words, with the numbers.
        best_backend: The best candidate considered, when there was one.
        net_gco2e: Its saving minus its move's carbon.
    """

    path: str
    backend_id: str
    code: str
    reason: str
    best_backend: str | None = None
    net_gco2e: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": self.path, "backend_id": self.backend_id, "code": self.code, "reason": self.reason,
                "best_backend": self.best_backend, "net_gco2e": self.net_gco2e}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KeptObject:
        """The kept object a plan file describes."""
        net = d.get("net_gco2e")
        return cls(str(d["path"]), str(d["backend_id"]), str(d["code"]), str(d["reason"]),
                   None if d.get("best_backend") is None else str(d["best_backend"]),
                   None if net is None else float(net))


@dataclass(frozen=True, slots=True)
class RebalancePlan:
    """What a rebalance would move, and what it would leave, with the grid data it used.

    Attributes:
        plan_id: Unique id, recorded with every move.
        created_at: When the plan was made.
        prefix: Only paths under it were considered.
        min_saving_gco2e: A move must save more than this net of its own carbon.
        default_horizon_days: The horizon of objects with no declared retention.
        signal: The one signal kind of every intensity in the plan.
        grid: Each backend's grid value used (JSON-ready dicts), by backend id.
        fallback_reasons: How the grid resolution fell back, one line each.
        moves: The proposed moves, best net saving first.
        kept: The objects left where they are.
        considered: How many committed objects were examined.
    """

    plan_id: str
    created_at: datetime
    prefix: str
    min_saving_gco2e: float
    default_horizon_days: float
    signal: SignalKind
    grid: Mapping[str, Mapping[str, Any]]
    fallback_reasons: tuple[str, ...]
    moves: tuple[PlannedMove, ...]
    kept: tuple[KeptObject, ...]
    considered: int

    @property
    def totals(self) -> dict[str, float]:
        """Moves, bytes, saving, move carbon and net saving (gCO2e) over the whole plan."""
        return {
            "considered": self.considered,
            "moves": len(self.moves),
            "kept": len(self.kept),
            "bytes": sum(m.size for m in self.moves),
            "saving_gco2e": sum(m.saving_gco2e for m in self.moves),
            "move_gco2e": sum(m.move_gco2e for m in self.moves),
            "net_gco2e": sum(m.net_gco2e for m in self.moves),
        }

    def kept_by_code(self) -> dict[str, int]:
        """How many objects stay, per reason code."""
        counts: dict[str, int] = {}
        for k in self.kept:
            counts[k.code] = counts.get(k.code, 0) + 1
        return dict(sorted(counts.items()))

    def to_dict(self) -> dict[str, Any]:
        """The plan file's content."""
        return {
            "format": PLAN_FORMAT, "plan_id": self.plan_id, "created_at": self.created_at.isoformat(),
            "prefix": self.prefix, "min_saving_gco2e": self.min_saving_gco2e,
            "default_horizon_days": self.default_horizon_days, "signal": self.signal.value,
            "grid": {k: dict(v) for k, v in self.grid.items()}, "fallback_reasons": list(self.fallback_reasons),
            "totals": self.totals, "kept_by_code": self.kept_by_code(),
            "moves": [m.to_dict() for m in self.moves], "kept": [k.to_dict() for k in self.kept],
            "considered": self.considered,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, path: str | None = None) -> RebalancePlan:
        """The plan a file's content describes.

        Raises:
            ConfigError: Not a greenroute rebalance plan, or a field is missing or malformed.
        """
        if not isinstance(d, Mapping) or d.get("format") != PLAN_FORMAT:
            raise ConfigError(f"not a greenroute rebalance plan (expected format {PLAN_FORMAT!r})",
                              path=path, key="format")
        try:
            return cls(
                plan_id=str(d["plan_id"]), created_at=datetime.fromisoformat(str(d["created_at"])),
                prefix=str(d.get("prefix", "")), min_saving_gco2e=float(d["min_saving_gco2e"]),
                default_horizon_days=float(d["default_horizon_days"]), signal=SignalKind(str(d["signal"])),
                grid={str(k): dict(v) for k, v in dict(d.get("grid", {})).items()},
                fallback_reasons=tuple(str(r) for r in d.get("fallback_reasons", ())),
                moves=tuple(PlannedMove.from_dict(m) for m in d["moves"]),
                kept=tuple(KeptObject.from_dict(k) for k in d.get("kept", ())),
                considered=int(d.get("considered", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed rebalance plan ({type(exc).__name__}: {exc})", path=path) from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the plan as JSON to ``path`` (atomically: a temp file renamed over it)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RebalancePlan:
        """Read a plan file written by :meth:`save`.

        Raises:
            ConfigError: The file cannot be read or is not a plan.
        """
        where = str(path)
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the plan ({exc.strerror or exc})", path=where) from None
        except ValueError as exc:
            raise ConfigError(f"not JSON ({exc})", path=where) from None
        return cls.from_dict(raw, path=where)


def plan(router: GreenRouter, *, prefix: str = "", min_saving_g: float = 0.0,
         horizon_days: float | None = None, candidates: Sequence[str] | None = None) -> RebalancePlan:
    """Propose the moves that pay for themselves (see the module docstring for the rule).

    Args:
        router: Whose catalog, backends, grid signals and carbon model to use.
        prefix: Only paths under it.
        min_saving_g: A move must save more than this (gCO2e) net of its own carbon.
        horizon_days: The horizon of objects with no declared retention (default: the router's
            ``[rebalance] default_horizon_days``, 365 days).
        candidates: Backend ids objects may move to (default: all configured).

    Example:
        >>> from greenroute import GreenRouter
        >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
        >>> from greenroute.placement import GreenPlacementService
        >>> from greenroute.profiles import default_backends
        >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
        >>> _ = router.write("logs/a.bin", b"x" * 1000, candidates=["aws-us-west-2"], retention_days=365)
        >>> p = plan(router)
        >>> [(m.from_backend, m.to_backend) for m in p.moves]
        [('aws-us-west-2', 'aws-eu-north-1')]
    """
    if horizon_days is None:
        horizon_days = router.rebalance_horizon_days
    if horizon_days < 0:
        raise ConfigError(f"must not be negative, got {horizon_days}", key="horizon_days")
    placement = router.placement
    model = placement.carbon_model
    backends = {b.id: b for b in placement.backends}
    resolution = placement.signals.resolve(list(backends.values()))
    grid = dict(resolution.values)
    allowed = None if candidates is None else set(candidates)
    unknown = sorted((allowed or set()) - set(backends))
    if unknown:
        raise ConfigError(f"not configured backends: {', '.join(unknown)}", key="candidates")
    why_not: dict[str, str] = {}
    for b in backends.values():
        reason = placement.policy.reason_to_exclude(b, _country(b))
        if reason is None and allowed is not None and b.id not in allowed:
            reason = "not among the candidates"
        if reason is None and b.id not in grid:
            reason = resolution.missing.get(b.id, "no grid data")
        if reason is not None:
            why_not[b.id] = reason
    rates = {bid: model.coefficients(provider=b.provider, pue=b.pue,
                                     carbon_intensity_g_per_kwh=grid[bid].carbon_intensity_g_per_kwh)[1]
             for bid, b in backends.items() if bid in grid}
    max_path: dict[str, int] = {}
    now = utcnow()
    moves: list[PlannedMove] = []
    kept: list[KeptObject] = []
    considered = 0
    for entry in _entries(router, prefix):
        considered += 1
        planned = _plan_one(router, entry, now, horizon_days, min_saving_g, backends, grid, why_not, rates,
                            max_path, model)
        if isinstance(planned, PlannedMove):
            moves.append(planned)
        else:
            kept.append(planned)
    moves.sort(key=lambda m: (-m.net_gco2e, m.path))
    return RebalancePlan(
        plan_id=os.urandom(16).hex(), created_at=now, prefix=prefix, min_saving_gco2e=min_saving_g,
        default_horizon_days=horizon_days, signal=resolution.signal,
        grid={bid: _grid_summary(g) for bid, g in sorted(grid.items())},
        fallback_reasons=tuple(resolution.fallback_reasons), moves=tuple(moves), kept=tuple(kept),
        considered=considered,
    )


def _plan_one(router: GreenRouter, entry: CatalogEntry, now: datetime, default_days: float, min_saving_g: float,
              backends: Mapping[str, Backend], grid: Mapping[str, GridCarbonData], why_not: Mapping[str, str],
              rates: Mapping[str, float], max_path: dict[str, int], model: CarbonModel) -> PlannedMove | KeptObject:
    """The move for one entry, or why it stays."""
    here = entry.backend_id

    def keep(code: str, reason: str, best: str | None = None, net: float | None = None) -> KeptObject:
        return KeptObject(entry.path, here, code, reason, best, net)

    source = backends.get(here)
    if source is None:
        return keep("unknown_backend", f"backend {here} is not configured")
    if source.read_only:
        return keep("read_only", f"{here} is read-only: greenroute never deletes the old copy there")
    if here not in grid:
        return keep("no_grid_data", f"no grid data for {here}")
    if entry.size <= 0:
        return keep("empty", "an empty object has no at-rest carbon to save")
    if entry.retention_days is not None:
        age_days = max(0.0, (now - _born(entry)).total_seconds() / 86400.0)
        remaining, horizon = entry.retention_days - age_days, "retention"
        if remaining <= 0:
            return keep("retention_ended", f"its {entry.retention_days:g}-day retention has ended")
    else:
        remaining, horizon = default_days, "default"
    hours = remaining * 24.0
    here_rate = rates[here]
    best: PlannedMove | None = None
    greener_forbidden: list[str] = []
    for bid, target in sorted(backends.items()):
        if bid == here or bid not in rates or rates[bid] >= here_rate:
            continue
        reason = why_not.get(bid) or _path_problem(router, bid, entry.path, max_path)
        if reason is None and target.root.rstrip("/") == source.root.rstrip("/"):
            reason = "same storage location"
        if reason is not None:
            greener_forbidden.append(f"{bid} ({reason})")
            continue
        i_from = grid[here].carbon_intensity_g_per_kwh
        i_to = grid[bid].carbon_intensity_g_per_kwh
        cost = move_carbon(model, entry.size, source, target, i_from, i_to)
        rest_from = entry.size * here_rate * hours
        rest_to = entry.size * rates[bid] * hours
        daily = (rest_from - rest_to) / remaining if remaining > 0 else 0.0
        candidate = PlannedMove(
            path=entry.path, decision_id=entry.decision_id, move_id=os.urandom(16).hex(), from_backend=here,
            to_backend=bid, size=entry.size, remaining_days=remaining, horizon=horizon, intensity_from=i_from,
            intensity_to=i_to, at_rest_from_gco2e=rest_from, at_rest_to_gco2e=rest_to,
            read_gco2e=cost.read_gco2e, transfer_gco2e=cost.transfer_gco2e, write_gco2e=cost.write_gco2e,
            payback_days=cost.total_gco2e / daily if daily > 0 else math.inf,
        )
        if best is None or candidate.net_gco2e > best.net_gco2e:
            best = candidate
    if best is None:
        if greener_forbidden:
            return keep("not_eligible", "greener backends are not eligible: " + "; ".join(greener_forbidden))
        return keep("no_greener_backend", "no eligible backend keeps it at rest for less")
    over = f"over {remaining:.4g} days ({horizon})"
    if best.net_gco2e <= 0:
        return keep("costs_more", f"moving to {best.to_backend} costs {best.move_gco2e:.4g} gCO2e and saves "
                    f"{best.saving_gco2e:.4g} gCO2e {over}", best.to_backend, best.net_gco2e)
    if best.net_gco2e <= min_saving_g:
        return keep("below_min_saving", f"moving to {best.to_backend} saves {best.net_gco2e:.4g} gCO2e net {over}, "
                    f"not more than {min_saving_g:g}", best.to_backend, best.net_gco2e)
    if not best.payback_days < remaining:
        return keep("payback_too_long", f"moving to {best.to_backend} pays back in {best.payback_days:.4g} days, "
                    f"not within {remaining:.4g}", best.to_backend, best.net_gco2e)
    return best


def _entries(router: GreenRouter, prefix: str) -> Iterator[CatalogEntry]:
    """Every committed entry under ``prefix``, a page at a time."""
    after: str | None = None
    while True:
        page = router.catalog.list(prefix, start_after=after, limit=_PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].path


def _path_problem(router: GreenRouter, backend_id: str, path: str, max_path: dict[str, int]) -> str | None:
    limit = max_path.get(backend_id)
    if limit is None:
        try:
            limit = max_path[backend_id] = router.target(backend_id).max_path_bytes
        except (ConfigError, OSError) as exc:
            return f"target unavailable: {exc}"
    return f"path longer than {limit} bytes" if len(path.encode()) > limit else None


def _country(backend: Backend) -> str | None:
    # The placement service's own rule: the backend's declared country, else its region's.
    if backend.country_code:
        return backend.country_code
    data = embedded_data()
    return data.region(backend.region).country_code if data.has_region(backend.region) else None


def _grid_summary(g: GridCarbonData) -> dict[str, Any]:
    return {"intensity": g.carbon_intensity_g_per_kwh, "signal": g.signal.value, "source": g.source.value,
            "region": g.region, "grid_zone": g.grid_zone,
            "observed_at": g.observed_at.isoformat() if g.observed_at else None,
            "is_estimated": g.is_estimated, "is_stale": g.is_stale}


def _born(entry: CatalogEntry) -> datetime:
    """When the object's data was first committed: a moved entry's own commit is only the move."""
    for text in entry.moves[:1]:
        try:
            since = json.loads(text).get("since")
            if since:
                return datetime.fromisoformat(since)
        except (ValueError, AttributeError):
            break
    return entry.created_at


# -- the window -------------------------------------------------------------------------------------


class ForecastPoint(Protocol):
    """One forecast point: g/kWh from ``point_time`` until the next point."""

    @property
    def point_time(self) -> datetime: ...

    @property
    def carbon_intensity_g_per_kwh(self) -> float: ...


class Forecast(Protocol):
    """A grid forecast: its points, in time order."""

    @property
    def points(self) -> Sequence[ForecastPoint]: ...


@runtime_checkable
class ForecastSource(Protocol):
    """A grid source that can forecast (WattTime ``/v3/forecast``, Electricity Maps ``carbon-intensity/forecast``)."""

    name: str
    signal: SignalKind

    def forecast(self, region: str, hours: int, /, *, zone: str | None = None) -> Forecast:
        """The next ``hours`` of ``region``'s intensity, in this source's signal kind."""
        ...


@dataclass(frozen=True, slots=True)
class Window:
    """When the moves run, and why then.

    Attributes:
        start: When the moves start.
        end: When the window ends (``start`` plus one hour, or less when the horizon is shorter).
        source: ``"electricitymaps forecast"``, ``"watttime forecast"``, or ``"embedded profile"``.
        signal: The signal kind of the intensities.
        intensities: Each involved backend's mean intensity in the window (g/kWh).
        gco2e: The moves' estimated carbon in the window.
        gco2e_now: Their estimated carbon if they ran now.
        fallback: Why no forecast was used, when none was.
    """

    start: datetime
    end: datetime
    source: str
    signal: SignalKind
    intensities: Mapping[str, float]
    gco2e: float
    gco2e_now: float
    fallback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "source": self.source,
                "signal": self.signal.value, "intensities": dict(self.intensities), "gco2e": self.gco2e,
                "gco2e_now": self.gco2e_now, "fallback": self.fallback}


def choose_window(router: GreenRouter, rebalance: RebalancePlan, hours: float, *,
                  now: datetime | None = None) -> Window:
    """The greenest window of :data:`WINDOW_LENGTH` within the next ``hours`` for the plan's moves.

    Each involved backend's forecast comes from the first configured source of the plan's signal
    kind that can forecast. A window's cost is the moves' carbon in it: each backend's mean
    forecast intensity over the window times the energy its side of the moves uses (read and half
    the transfer at a source, write and the other half at a target). The first forecast point
    stands for the time before it. Ties go to the earliest window. When no forecast can be had,
    the embedded annual averages apply; they are flat, so the window starts now and ``fallback``
    says why.

    Raises:
        ConfigError: ``hours`` is not positive.
    """
    if not hours > 0:
        raise ConfigError(f"expected a positive number of hours, got {hours!r}", key="window_hours")
    now = now or utcnow()
    length = min(WINDOW_LENGTH, timedelta(hours=hours))
    weights, involved = _weights(router, rebalance)
    planned = {bid: float(g["intensity"]) for bid, g in rebalance.grid.items() if bid in weights}

    def flat(why: str) -> Window:
        cost = sum(w * planned.get(bid, 0.0) for bid, w in weights.items()) / 1000.0
        return Window(now, now + length, "embedded profile", rebalance.signal, planned, cost, cost,
                      f"{why}; the embedded annual averages are flat, so the moves run now")

    if not weights:
        return flat("no moves")
    source = next((s for s in router.placement.signals.sources
                   if s.signal is rebalance.signal and isinstance(s, ForecastSource) and _available(s)), None)
    if source is None:
        return flat(f"no {rebalance.signal.value} forecast source is configured and available "
                    "(watttime gives marginal forecasts, electricitymaps average ones)")
    series: dict[str, list[tuple[datetime, float]]] = {}
    fetched: dict[tuple[str, str | None], list[tuple[datetime, float]]] = {}
    for bid, backend in involved.items():
        zone = backend.watttime_region if source.signal is SignalKind.MARGINAL else backend.grid_zone
        key = (backend.region, zone)
        if key not in fetched:
            try:
                answer = source.forecast(backend.region, min(72, max(1, math.ceil(hours))), zone=zone)
                points = sorted((p.point_time, float(p.carbon_intensity_g_per_kwh)) for p in answer.points)
            except (GreenrouteError, OSError) as exc:
                return flat(f"{source.name} forecast for {backend.region}: {exc}")
            if not points:
                return flat(f"{source.name} forecast for {backend.region}: no points")
            fetched[key] = points
        series[bid] = fetched[key]
    horizon_end = now + timedelta(hours=hours)
    starts = sorted({now} | {t for pts in series.values() for t, _ in pts if now < t <= horizon_end - length})
    best: tuple[float, datetime, dict[str, float]] | None = None
    now_cost: float | None = None
    for start in starts:
        end = start + length
        means: dict[str, float] = {}
        for bid, pts in series.items():
            mean = _mean(pts, start, end)
            if mean is None:
                break
            means[bid] = mean
        else:
            cost = sum(weights[bid] * means[bid] for bid in weights) / 1000.0
            if start == now:
                now_cost = cost
            if best is None or cost < best[0] - 1e-12:
                best = (cost, start, means)
    if best is None:
        return flat(f"{source.name} forecast covers less than one window of the next {hours:g} h")
    cost, start, means = best
    if now_cost is None:
        now_cost = sum(w * planned.get(bid, 0.0) for bid, w in weights.items()) / 1000.0
    return Window(start, start + length, f"{source.name} forecast", source.signal, means, cost, now_cost)


def _weights(router: GreenRouter, rebalance: RebalancePlan) -> tuple[dict[str, float], dict[str, Backend]]:
    """Energy (Wh) the plan's moves spend at each backend, and those backends."""
    model = router.placement.carbon_model
    weights: dict[str, float] = {}
    involved: dict[str, Backend] = {}
    for move in rebalance.moves:
        try:
            source = router.placement.backend(move.from_backend)
            target = router.placement.backend(move.to_backend)
        except KeyError:
            continue  # reported as skipped by apply
        at_source, at_target = _side_energy_wh(model, move.size, source, target)
        weights[source.id] = weights.get(source.id, 0.0) + at_source
        weights[target.id] = weights.get(target.id, 0.0) + at_target
        involved[source.id], involved[target.id] = source, target
    return weights, involved


def _mean(points: Sequence[tuple[datetime, float]], start: datetime, end: datetime) -> float | None:
    """The mean of a step function over ``[start, end)``; ``None`` past the forecast's end."""
    period = points[-1][0] - points[-2][0] if len(points) > 1 else WINDOW_LENGTH
    if end > points[-1][0] + period:
        return None
    total = 0.0
    for i, (t, value) in enumerate(points):
        seg_start = start if i == 0 else t  # the first point stands for the time before it
        seg_end = points[i + 1][0] if i + 1 < len(points) else t + period
        overlap = (min(end, seg_end) - max(start, seg_start)).total_seconds()
        if overlap > 0:
            total += overlap * value
    return total / (end - start).total_seconds()


def _available(source: ForecastSource) -> bool:
    try:
        return bool(cast(Any, source).is_available())
    except Exception:  # noqa: BLE001 - a source that cannot say is not available
        return False


# -- apply ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveOutcome:
    """What happened to one planned move.

    Attributes:
        path: The logical path.
        status: ``"moved"``, ``"skipped"`` or ``"failed"``.
        reason: Why, for skipped and failed moves; notes (a resumed move, an old copy left for
            ``fsck``) for moved ones.
        from_backend: Where it was.
        to_backend: Where it was to go.
        gco2e: The move's carbon, for moved objects.
    """

    path: str
    status: str
    reason: str
    from_backend: str
    to_backend: str
    gco2e: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"path": self.path, "status": self.status, "reason": self.reason, "from": self.from_backend,
                "to": self.to_backend, "gco2e": self.gco2e}


@dataclass(slots=True)
class ApplyReport:
    """What :func:`apply` did.

    Attributes:
        plan_id: The plan applied.
        outcomes: One per planned move, in the order they finished.
        window: When the moves ran and why then (``None`` without ``window_hours``).
        unreachable: Backends found dead during the run, with why; their moves were skipped.
        interrupted: The run was stopped (before the window, or part-way); the rest were skipped.
    """

    plan_id: str
    outcomes: list[MoveOutcome] = field(default_factory=list)
    window: Window | None = None
    unreachable: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def _with(self, status: str) -> list[MoveOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def moved(self) -> list[MoveOutcome]:
        """Moves done (including ones a crashed run had committed)."""
        return self._with("moved")

    @property
    def skipped(self) -> list[MoveOutcome]:
        """Moves not attempted or given up safely (changed since the plan, dead backend, interrupted)."""
        return self._with("skipped")

    @property
    def failed(self) -> list[MoveOutcome]:
        """Moves that went wrong (verification, access denied); the object stays where it was."""
        return self._with("failed")

    @property
    def gco2e(self) -> float:
        """The carbon of the moves done."""
        return sum(o.gco2e for o in self.moved)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with the summary counts."""
        return {"plan_id": self.plan_id, "moved": len(self.moved), "skipped": len(self.skipped),
                "failed": len(self.failed), "gco2e": self.gco2e, "interrupted": self.interrupted,
                "unreachable": dict(self.unreachable),
                "window": self.window.to_dict() if self.window is not None else None,
                "outcomes": [o.to_dict() for o in self.outcomes]}


class RebalanceError(GreenrouteError):
    """A planned move cannot go on; the object stays where it was, and its message says why."""


class MoveSkippedError(RebalanceError):
    """The move was given up safely and a later plan may try again (the path changed, a destination
    holds something else, a write there may be in flight)."""


class MoveFailedError(RebalanceError):
    """The move went wrong (the copy did not verify, the metadata has no room for the move record)."""


@dataclass(frozen=True, slots=True)
class Copied:
    """A verified copy at the target: its object info and the source bytes' size and SHA-256."""

    info: ObjectInfo
    size: int
    sha256: str
    reused: bool


class Mover:
    """Carries out planned moves, one step at a time (copy, verify, commit, delete the old copy).

    :meth:`run` does all of them and never raises for one object; the steps are public so that the
    state a crash leaves between them can be produced and examined.

    Args:
        router: The router whose catalog and targets to use.
        rebalance: The plan the moves come from.
        window: The window the moves run in (its intensities cost the moves), if any.
    """

    def __init__(self, router: GreenRouter, rebalance: RebalancePlan, window: Window | None = None) -> None:
        self.router = router
        self.plan = rebalance
        self.window = window
        self.unreachable: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- one move, all steps ------------------------------------------------------------------

    def run(self, move: PlannedMove) -> MoveOutcome:
        """Do one move end to end; its outcome, never an exception (but ``KeyboardInterrupt``)."""
        def outcome(status: str, reason: str, gco2e: float = 0.0) -> MoveOutcome:
            return MoveOutcome(move.path, status, reason, move.from_backend, move.to_backend, gco2e)

        try:
            live = self.router.catalog.placement(move.path)
            if live is not None and live.decision_id == move.move_id:
                # A crashed run committed this move: only the old copy may be left.
                if self._dead(move.from_backend):
                    return outcome("moved", f"old copy left for fsck ({move.from_backend} unreachable)",
                                   self._recorded_gco2e(move))
                note = self._finish(move, resumed=True)
                return outcome("moved", note, self._recorded_gco2e(move))
            if live is None or live.decision_id != move.decision_id:
                self._discard_copy(move)
                raise MoveSkippedError("deleted since the plan" if live is None else
                            f"changed since the plan (now decision {live.decision_id})")
            dead = self._dead(move.from_backend, move.to_backend)
            if dead:
                raise MoveSkippedError(dead)
            copied = self.copy(move)
            entry = self.commit(move, copied)
            if entry is None:
                self._discard_copy(move)
                raise MoveSkippedError("changed since the plan (another write committed first)")
            note = self._finish(move, resumed=False)
            gco2e = json.loads(entry.moves[-1])["gco2e"] if entry.moves else 0.0
            return outcome("moved", ("reused the copy of an interrupted run; " if copied.reused else "") + note,
                           float(gco2e))
        except MoveSkippedError as exc:
            return outcome("skipped", str(exc))
        except MoveFailedError as exc:
            return outcome("failed", str(exc))
        except TargetUnavailableError as exc:
            backend = exc.backend_id or move.to_backend
            self._mark_dead(backend, _short(exc))
            return outcome("skipped", f"backend {backend} unreachable: {_short(exc)}")
        except KeyError as exc:
            return outcome("skipped", f"backend {exc.args[0] if exc.args else '?'} is not configured")
        except (GreenrouteError, OSError) as exc:
            return outcome("failed", f"{type(exc).__name__}: {_short(exc)}")

    # -- the steps ------------------------------------------------------------------------------

    def copy(self, move: PlannedMove) -> Copied:
        """Copy the object to the target with its metadata, and verify size and SHA-256 (steps 1-2).

        A copy of this move already at the target (a crashed run's) is reused when it is recent
        and verifies; a foreign object or a recent write of another decision there makes the move
        wait for a later run.

        Raises:
            MoveSkippedError: The source changed, or the destination holds a foreign object or a
                recent write of another decision.
            MoveFailedError: The copy did not verify (it was removed), or no room for the move record.
            OSError: A target failed.
        """
        source = self.router.target(move.from_backend)
        target = self.router.target(move.to_backend)
        info = source.stat(move.path)
        if info.metadata.get("greenroute_decision") != move.decision_id:
            raise MoveSkippedError("the source object holds another write's bytes")
        if info.size != move.size:
            raise MoveSkippedError(f"the source object is {info.size} bytes, the plan says {move.size}")
        existing = _stat_or_none(target, move.path)
        if existing is not None:
            holder = existing.metadata.get("greenroute_decision")
            if holder is None:
                raise MoveSkippedError(f"{move.to_backend} holds an object at this path that greenroute did not write")
            age = _age_seconds(existing)
            if holder == move.move_id and existing.size == move.size and age is not None \
                    and age < REUSE_WITHIN_SECONDS:
                size, digest = _digest(source, move.path)
                if (existing.size, _digest(target, move.path)[1]) == (size, digest):
                    return Copied(existing, size, digest, True)
            elif holder != move.move_id and (age is None or age < IN_FLIGHT_SECONDS):
                raise MoveSkippedError(f"{move.to_backend} has a recent write of this path that may be in flight")
        metadata = self._metadata(move, info)
        with source.open_read(move.path) as stream:
            hashing = _HashingReader(stream)
            written = target.write(move.path, cast(IO[bytes], hashing), metadata)
        copied = Copied(written, hashing.size, hashing.hexdigest(), False)
        self.verify(move, copied)
        return copied

    def verify(self, move: PlannedMove, copied: Copied) -> None:
        """Read the copy back and compare its size and SHA-256 with the source's; remove it if they differ.

        Raises:
            MoveFailedError: They differ.
        """
        target = self.router.target(move.to_backend)
        size, digest = _digest(target, move.path)
        if copied.size != move.size or size != copied.size or digest != copied.sha256:
            target.delete_if(move.path, move.move_id)
            raise MoveFailedError(f"verification failed: source {copied.size} bytes sha256 {copied.sha256[:16]}, "
                        f"copy {size} bytes sha256 {digest[:16]}")

    def commit(self, move: PlannedMove, copied: Copied) -> CatalogEntry | None:
        """Make the copy the path's one live entry, closing the old entry as ``"moved"`` (step 3).

        One compare-and-set against the entry the plan saw: ``None`` when another write committed
        first (the copy is then not the path's), the committed entry otherwise.
        """
        live = self.router.catalog.lookup(move.path)
        if live is None or live.decision_id != move.decision_id:
            return live if live is not None and live.decision_id == move.move_id else None
        entry = self._entry(move, copied, live)
        try:
            committed, _ = self.router.catalog.commit(entry, expected=move.decision_id, reason="moved",
                                                      at=entry.created_at)
        except CommitConflictError as conflict:
            current = conflict.current
            if current is not None and getattr(current, "decision_id", None) == move.move_id:
                return self.router.catalog.lookup(move.path)  # committed by a concurrent run of this plan
            return None
        return committed

    def remove_old(self, move: PlannedMove) -> bool:
        """Delete the old copy, only while it still holds the old decision (step 4); whether it did."""
        return self.router.target(move.from_backend).delete_if(move.path, move.decision_id)

    # -- internals ------------------------------------------------------------------------------

    def _finish(self, move: PlannedMove, *, resumed: bool) -> str:
        prefix = "resumed after the commit; " if resumed else ""
        try:
            removed = self.remove_old(move)
        except TargetUnavailableError as exc:
            self._mark_dead(move.from_backend, _short(exc))
            return prefix + f"old copy left for fsck ({move.from_backend} unreachable)"
        except OSError as exc:
            return prefix + f"old copy left for fsck ({_short(exc)})"
        return prefix + ("old copy deleted" if removed else "old copy already gone")

    def _discard_copy(self, move: PlannedMove) -> None:
        """Remove this move's uncommitted copy, if one is there (never anything else)."""
        if self._dead(move.to_backend):
            return  # fsck removes it once the backend is back
        try:
            self.router.target(move.to_backend).delete_if(move.path, move.move_id)
        except TargetUnavailableError as exc:
            self._mark_dead(move.to_backend, _short(exc))
        except (OSError, KeyError) as exc:
            log.info("could not remove the uncommitted copy of %s on %s: %s", move.path, move.to_backend,
                     _short(exc))

    def _recorded_gco2e(self, move: PlannedMove) -> float:
        entry = self.router.catalog.lookup(move.path)
        for text in reversed(entry.moves if entry is not None else ()):
            record = json.loads(text)
            if record.get("decision") == move.move_id:
                return float(record.get("gco2e", 0.0))
        return 0.0

    def _intensities(self, move: PlannedMove) -> tuple[float, float]:
        if self.window is not None and self.window.fallback is None:
            return (self.window.intensities.get(move.from_backend, move.intensity_from),
                    self.window.intensities.get(move.to_backend, move.intensity_to))
        return move.intensity_from, move.intensity_to

    def _record(self, move: PlannedMove, live: CatalogEntry, at: datetime) -> dict[str, Any]:
        """The move as the ledger keeps it (one JSON object in the entry's ``moves``)."""
        placement = self.router.placement
        source, target = placement.backend(move.from_backend), placement.backend(move.to_backend)
        i_from, i_to = self._intensities(move)
        cost = move_carbon(placement.carbon_model, move.size, source, target, i_from, i_to)
        window = self.window.source if self.window is not None else "now"
        return {"from": move.from_backend, "to": move.to_backend, "bytes": move.size,
                "gco2e": cost.total_gco2e, "read_gco2e": cost.read_gco2e, "transfer_gco2e": cost.transfer_gco2e,
                "write_gco2e": cost.write_gco2e, "intensity_from": i_from, "intensity_to": i_to,
                "signal": self.plan.signal.value, "window": window, "at": at.isoformat(),
                "since": _born(live).isoformat(), "decision": move.move_id, "replaced": move.decision_id,
                "plan": self.plan.plan_id}

    def _move_gco2e(self, move: PlannedMove) -> float:
        placement = self.router.placement
        i_from, i_to = self._intensities(move)
        return move_carbon(placement.carbon_model, move.size, placement.backend(move.from_backend),
                           placement.backend(move.to_backend), i_from, i_to).total_gco2e

    def _metadata(self, move: PlannedMove, info: ObjectInfo) -> dict[str, str]:
        placement = self.router.placement
        target = placement.backend(move.to_backend)
        intensity = move.intensity_to
        model = placement.carbon_model
        month = model.at_rest_gco2e(move.size, hours=HOURS_PER_MONTH, provider=target.provider, pue=target.pue,
                                    carbon_intensity_g_per_kwh=intensity)
        grid = self.plan.grid.get(move.to_backend, {})
        md = {k: v for k, v in info.metadata.items() if not k.startswith("greenroute_")}
        md.update({
            # The copy's write is the move (read + transfer + write); greenroute_moves says where from.
            "greenroute_gco2e": f"{self._move_gco2e(move):.6g}",
            "greenroute_gco2e_month": f"{month:.6g}",
            "greenroute_intensity": f"{intensity:g}",
            "greenroute_signal": self.plan.signal.value,
            "greenroute_source": str(grid.get("source", GridDataSource.EMBEDDED.value)),
            "greenroute_backend": move.to_backend,
            "greenroute_decision": move.move_id,
            "greenroute_path": move.path,
            "greenroute_model": model.version,
            "greenroute_move_of": move.decision_id,
        })
        live = self.router.catalog.lookup(move.path)
        history = [json.loads(t) for t in (live.moves if live is not None else ())]
        history.append({"from": move.from_backend, "to": move.to_backend, "bytes": move.size,
                        "at": utcnow().isoformat(timespec="seconds")})
        brief = [{k: h[k] for k in ("from", "to", "bytes", "at") if k in h} for h in history]
        while brief:
            md["greenroute_moves"] = json.dumps(brief, separators=(",", ":"))
            if _metadata_bytes(md) <= _MAX_METADATA_BYTES:
                return md
            brief = brief[1:]  # the oldest moves are still in the ledger
        raise MoveFailedError(f"the object's metadata leaves no room for the move record within "
                              f"{_MAX_METADATA_BYTES} bytes")

    def _entry(self, move: PlannedMove, copied: Copied, live: CatalogEntry) -> CatalogEntry:
        placement = self.router.placement
        target = placement.backend(move.to_backend)
        model = placement.carbon_model
        now = utcnow()
        grid = self.plan.grid.get(move.to_backend, {})
        month = model.at_rest_gco2e(move.size, hours=HOURS_PER_MONTH, provider=target.provider, pue=target.pue,
                                    carbon_intensity_g_per_kwh=move.intensity_to)
        record = self._record(move, live, now)
        observed = grid.get("observed_at")
        # The copy's "write" is the move: its read, transfer and write carbon, so the ledger's sums
        # include every move. The baseline would not have moved (0), so a move counts against savings.
        return CatalogEntry(
            path=move.path, backend_id=move.to_backend, url=copied.info.url, size=copied.size,
            etag=copied.info.etag, write_gco2e=float(record["gco2e"]), gco2e_month=month,
            carbon_intensity_g_per_kwh=move.intensity_to, signal=self.plan.signal,
            source=GridDataSource(str(grid.get("source", GridDataSource.EMBEDDED.value))),
            decision_id=move.move_id, state=EntryState.COMMITTED, created_at=now, updated_at=now,
            region=target.region, grid_zone=grid.get("grid_zone"),
            observed_at=datetime.fromisoformat(observed) if observed else None,
            is_estimated=bool(grid.get("is_estimated", False)), is_stale=bool(grid.get("is_stale", False)),
            fallback=bool(self.plan.fallback_reasons), model_version=model.version,
            retention_days=live.retention_days, baseline_backend=live.baseline_backend,
            baseline_write_gco2e=0.0 if live.baseline_write_gco2e is not None else None,
            baseline_gco2e_month=live.baseline_gco2e_month, baseline_note=live.baseline_note,
            moves=(*live.moves, json.dumps(record, separators=(",", ":"), sort_keys=True)),
        )

    def _dead(self, *backend_ids: str) -> str | None:
        with self._lock:
            for bid in backend_ids:
                if bid in self.unreachable:
                    return f"backend {bid} unreachable: {self.unreachable[bid]}"
        return None

    def _mark_dead(self, backend_id: str, why: str) -> None:
        with self._lock:
            self.unreachable.setdefault(backend_id, why)
        log.warning("rebalance: backend %s unreachable (%s); skipping its other moves", backend_id, why)


def apply(router: GreenRouter, rebalance: RebalancePlan, *, window_hours: float | None = None, workers: int = 4,
          progress: Callable[[MoveOutcome], None] | None = None, stop: threading.Event | None = None,
          on_wait: Callable[[Window], None] | None = None) -> ApplyReport:
    """Carry out a plan's moves: copy, verify, commit, delete the old copy (see the module docstring).

    Args:
        router: The router whose catalog and targets to use.
        rebalance: The plan (from :func:`plan` or :meth:`RebalancePlan.load`).
        window_hours: Run in the greenest window within this many hours (waiting for it, bounded by
            it and interruptible); ``None`` runs now.
        workers: Moves in flight at once.
        progress: Called with each outcome as it finishes (for a progress bar).
        stop: Set it to stop: before the window, no move starts; during the run, the moves in
            flight finish and the rest are skipped. Ctrl-C does the same.
        on_wait: Called once with the window before waiting for it.

    Returns:
        What happened to every move; it never raises for one object, and a dead backend only
        skips the moves that touch it.

    Example:
        >>> from greenroute import GreenRouter
        >>> from greenroute.adapters.catalog.sqlite import SqliteCatalog
        >>> from greenroute.placement import GreenPlacementService
        >>> from greenroute.profiles import default_backends
        >>> router = GreenRouter(GreenPlacementService(default_backends()), SqliteCatalog(":memory:"))
        >>> _ = router.write("logs/a.bin", b"x" * 1000, candidates=["aws-us-west-2"], retention_days=365)
        >>> report = apply(router, plan(router))
        >>> len(report.moved), router.lookup("logs/a.bin").backend_id, router.read("logs/a.bin") == b"x" * 1000
        (1, 'aws-eu-north-1', True)
    """
    stop = stop or threading.Event()
    report = ApplyReport(rebalance.plan_id)
    window = None
    if window_hours is not None:
        window = report.window = choose_window(router, rebalance, window_hours)
        if window.start > utcnow():
            if on_wait is not None:
                on_wait(window)
            if not _wait_until(window.start, stop):
                report.interrupted = True
                report.outcomes = [MoveOutcome(m.path, "skipped", f"interrupted while waiting for the window at "
                                               f"{window.start.isoformat(timespec='minutes')}", m.from_backend,
                                               m.to_backend) for m in rebalance.moves]
                return report
    mover = Mover(router, rebalance, window)
    pending = list(rebalance.moves)
    running: dict[Future[MoveOutcome], PlannedMove] = {}

    def finished(outcome: MoveOutcome) -> None:
        report.outcomes.append(outcome)
        if progress is not None:
            progress(outcome)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="greenroute-rebalance") as pool:
        try:
            while pending or running:
                while pending and len(running) < max(1, workers) and not stop.is_set():
                    move = pending.pop(0)
                    running[pool.submit(mover.run, move)] = move
                if stop.is_set() and not running:
                    break
                done, _ = wait_futures(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    finished(future.result())
        except KeyboardInterrupt:
            stop.set()
            for future in list(running):  # the moves in flight finish: each step is safe to stop after
                finished(future.result())
            running.clear()
    if stop.is_set():
        report.interrupted = bool(pending)
        for move in pending:
            finished(MoveOutcome(move.path, "skipped", "interrupted", move.from_backend, move.to_backend))
    report.unreachable = dict(mover.unreachable)
    return report


def _wait_until(when: datetime, stop: threading.Event) -> bool:
    """Wait until ``when``; False when stopped first (by ``stop`` or Ctrl-C)."""
    try:
        while True:
            left = (when - utcnow()).total_seconds()
            if left <= 0:
                return True
            if stop.wait(min(left, 1.0)):
                return False
    except KeyboardInterrupt:
        stop.set()
        return False


# -- small helpers ----------------------------------------------------------------------------------


class _HashingReader(io.RawIOBase):
    """A readable stream that hashes (SHA-256) and counts what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self._sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self._sha.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def _digest(target: StorageTarget, path: str) -> tuple[int, str]:
    """Size and SHA-256 of an object, read as a stream."""
    sha = hashlib.sha256()
    size = 0
    with target.open_read(path) as stream:
        while chunk := stream.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _stat_or_none(target: StorageTarget, path: str) -> ObjectInfo | None:
    try:
        return target.stat(path)
    except FileNotFoundError:
        return None


def _age_seconds(info: ObjectInfo) -> float | None:
    return None if info.modified is None else (utcnow() - info.modified).total_seconds()


def _metadata_bytes(md: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in md.items())


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."

