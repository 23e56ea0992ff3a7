"""Grid signals: one signal kind per decision, from a chain of sources, cached and time-boxed.

:class:`GridSignals` is what the placement service asks for grid data. For a set of candidate
backends it returns one :class:`GridResolution` in which every value has the same
:class:`~greenroute.model.SignalKind`:

1. Sources whose signal is the preferred one are tried in configured order (then, when marginal
   was preferred, the average sources). A source is used only if it can give *every* candidate a
   value, fresh or stale-but-allowed.
2. If none can, the embedded annual averages are used for the whole decision.
3. Every fallback is recorded as a short line ("watttime: 403 invalid scope for IE").

Fresh values are kept in a TTL cache per (source, region, zone, signal). Concurrent misses for
one key make one upstream call (single-flight). A decision waits at most its time budget for
upstream calls; a call that is still running then completes in the background and fills the
cache. When a source fails, its last good value is served, marked ``is_stale``, up to
``max_staleness_seconds``.

Placement never raises because of grid data: source errors become fallback reasons here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import MappingProxyType

import cachetools

from .embedded import EmbeddedGridSource
from .errors import GreenrouteError, GridDataUnavailableError
from .model import Backend, GridCarbonData, GridDataSource, SignalKind, utcnow
from .ports import GridSource

__all__ = ["GridResolution", "GridSignals", "ManualGridSource"]

log = logging.getLogger(__name__)

_CacheKey = tuple[str, str, str | None, SignalKind]

#: Sources that answer from memory: called inline, never cached, never timed out.
_INLINE_SOURCES = frozenset({GridDataSource.EMBEDDED.value, GridDataSource.MANUAL.value})


class ManualGridSource:
    """A :class:`~greenroute.ports.GridSource` answering with values an operator (or a test) pins.

    Example:
        >>> manual = ManualGridSource({"us-west-2": 120.0})
        >>> manual.get_grid_carbon_data("us-west-2").carbon_intensity_g_per_kwh
        120.0
    """

    name = GridDataSource.MANUAL.value

    def __init__(self, intensities: Mapping[str, float] | None = None, *,
                 signal: SignalKind = SignalKind.AVERAGE,
                 renewable_pct: Mapping[str, float] | None = None) -> None:
        self.signal = signal
        self._lock = threading.Lock()
        self._intensities: dict[str, float] = dict(intensities or {})
        self._renewable: dict[str, float] = dict(renewable_pct or {})

    def set(self, region: str, carbon_intensity_g_per_kwh: float) -> None:
        """Pin (or change) the value for ``region``."""
        with self._lock:
            self._intensities[region] = float(carbon_intensity_g_per_kwh)

    def is_available(self) -> bool:
        """True when at least one value is pinned."""
        return bool(self._intensities)

    def get_grid_carbon_data(self, region: str, *, zone: str | None = None) -> GridCarbonData:
        """The pinned value for ``zone`` if one is pinned, else for ``region``.

        Raises:
            GridDataUnavailableError: Nothing is pinned for either.
        """
        with self._lock:
            key = zone if zone is not None and zone in self._intensities else region
            value = self._intensities.get(key)
            renewable = self._renewable.get(key)
        if value is None:
            raise GridDataUnavailableError("manual: no value pinned",
                                           source=self.name, region=region)
        now = utcnow()
        return GridCarbonData(region=region, grid_zone=zone, carbon_intensity_g_per_kwh=value,
                              signal=self.signal, source=GridDataSource.MANUAL,
                              renewable_pct=renewable, observed_at=now, fetched_at=now)


@dataclass(frozen=True, slots=True)
class GridResolution:
    """Grid values for a set of backends, all of one signal kind.

    Attributes:
        signal: The signal kind of every value.
        values: The value for each backend that has one, by backend id.
        missing: Backends no source could describe, with the reason.
        fallback_reasons: Every fallback that happened, one line each.
    """

    signal: SignalKind
    values: Mapping[str, GridCarbonData]
    missing: Mapping[str, str]
    fallback_reasons: tuple[str, ...]

    @property
    def fallback(self) -> bool:
        """Whether any value is stale or came from a later source than the first."""
        return bool(self.fallback_reasons)


class GridSignals:
    """Cached, single-flight, time-boxed access to a chain of grid sources.

    Args:
        sources: Live or pinned sources in order of preference. The embedded source need not be
            listed; it is always the last resort.
        signal: The preferred signal kind.
        cache_ttl_seconds: How long a fetched value is fresh.
        max_staleness_seconds: How long a value may be served after its source starts failing.
        time_budget_seconds: How long one decision may wait on upstream calls. When a later live
            source could still answer, an earlier one gets at most half of what is left.
        failure_backoff_seconds: After a call for a key fails or times out, how long decisions
            skip calling it again (serving stale or falling through at once).
        max_workers: Upstream calls in flight at once.
        clock: Monotonic clock, injectable for tests.

    Example:
        >>> signals = GridSignals([])
        >>> from greenroute.profiles import default_backends
        >>> signals.resolve(default_backends()[:1]).signal
        <SignalKind.AVERAGE: 'average'>
    """

    def __init__(self, sources: Sequence[GridSource] = (), *,
                 signal: SignalKind = SignalKind.AVERAGE,
                 embedded: EmbeddedGridSource | None = None,
                 cache_ttl_seconds: float = 300.0,
                 max_staleness_seconds: float = 24 * 3600.0,
                 time_budget_seconds: float = 0.25,
                 failure_backoff_seconds: float = 30.0,
                 max_workers: int = 8,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.signal = signal
        self.sources: tuple[GridSource, ...] = tuple(
            s for s in sources if s.name != GridDataSource.EMBEDDED.value
        )
        self.embedded = embedded or EmbeddedGridSource()
        self.time_budget_seconds = time_budget_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self.failure_backoff_seconds = failure_backoff_seconds
        self._clock = clock
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._fresh: cachetools.TTLCache[_CacheKey, GridCarbonData] = cachetools.TTLCache(
            maxsize=8192, ttl=cache_ttl_seconds, timer=clock
        )
        self._last_good: dict[_CacheKey, tuple[GridCarbonData, float]] = {}
        self._inflight: dict[_CacheKey, Future[GridCarbonData]] = {}
        self._backoff: dict[_CacheKey, tuple[float, str]] = {}
        self._embedded_memo: dict[tuple[str, ...], tuple[tuple[Backend, ...], GridResolution]] = {}
        self._executor: ThreadPoolExecutor | None = None

    # -- public -----------------------------------------------------------------------------

    def ordered_sources(self) -> list[GridSource]:
        """The chain actually tried, embedded last.

        Sources of the preferred signal come first, in configured order. When the preferred signal
        is marginal, the average sources follow, because the embedded last resort is an average
        anyway. When it is average, marginal sources are never used: greenroute does not switch a
        user who asked for averages to marginal rates behind their back.
        """
        preferred = [s for s in self.sources if s.signal == self.signal]
        others = [s for s in self.sources if s.signal != self.signal] if self.signal is SignalKind.MARGINAL else []
        return [*preferred, *others, self.embedded]

    def resolve(self, backends: Sequence[Backend]) -> GridResolution:
        """Grid values for every backend, all of one signal kind. Never raises for grid data."""
        deadline = self._clock() + self.time_budget_seconds
        reasons: list[str] = []
        chain = self.ordered_sources()[:-1]
        live = [s for s in chain if s.name not in _INLINE_SOURCES and _available(s)]
        for source in chain:
            if source not in live and source.name not in _INLINE_SOURCES:
                reasons.append(f"{source.name}: {getattr(source, 'unavailable_reason', 'not configured')}")
                continue
            share = deadline
            if source in live and source is not live[-1]:
                share = self._clock() + max(0.0, deadline - self._clock()) / 2
            values, why = self._try_source(source, backends, share, reasons)
            if values is not None:
                if source.signal != self.signal:
                    reasons.append(f"signal: no {self.signal.value} source could serve every "
                                   f"candidate; used {source.signal.value} from {source.name}")
                return GridResolution(source.signal, values, {}, tuple(reasons))
            reasons.append(why)
        if not self.sources:
            return self._embedded_only(backends)
        values, missing = self._embedded(backends)
        reasons.append("embedded: using annual averages for every candidate")
        return GridResolution(SignalKind.AVERAGE, values, missing, tuple(reasons))

    def get(self, source: GridSource, region: str, zone: str | None = None) -> GridCarbonData:
        """One value from one source, through the cache, waiting at most the time budget.

        Raises:
            GridDataError: The source failed and no value within the staleness limit is cached.
            UnknownRegionError: The source does not know the region.
        """
        if source.name in _INLINE_SOURCES:
            return source.get_grid_carbon_data(region, zone=zone)
        key = (source.name, region, zone, source.signal)
        with self._lock:
            hit = self._fresh.get(key)
        if hit is not None:
            return hit
        future = self._fetch(source, key)
        try:
            return future.result(timeout=self.time_budget_seconds)
        except FutureTimeout:
            raise GridDataUnavailableError(
                f"{source.name}: no answer within {self.time_budget_seconds * 1000:.0f} ms for {region}",
                source=source.name, region=region) from None

    def refresh(self, backends: Sequence[Backend]) -> dict[str, str]:
        """Fetch every backend's value from every available source, at most once per TTL.

        Returns:
            ``"source/region"`` mapped to ``"ok"`` or the error, for each call that was needed.
        """
        results: dict[str, str] = {}
        futures: dict[str, Future[GridCarbonData]] = {}
        for source in self.sources:
            if not _available(source):
                continue
            for b in backends:
                zone = _zone_for(source, b)
                key = (source.name, b.region, zone, source.signal)
                with self._lock:
                    if key in self._fresh:
                        continue
                futures[f"{source.name}/{b.region}"] = self._fetch(source, key)
        for label, fut in futures.items():
            try:
                fut.result()
                results[label] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported per source, never raised
                results[label] = _describe(exc)
        return results

    def close(self) -> None:
        """Stop the background workers (running calls finish on their own) and close the sources."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()

    # -- internals --------------------------------------------------------------------------

    def _try_source(self, source: GridSource, backends: Sequence[Backend], deadline: float,
                    reasons: list[str]) -> tuple[dict[str, GridCarbonData] | None, str]:
        """All backends' values from ``source``, or ``None`` and why it could not serve them."""
        allowed_ms = max(0.0, deadline - self._clock()) * 1000
        values: dict[str, GridCarbonData] = {}
        pending: list[tuple[Backend, _CacheKey, Future[GridCarbonData] | None]] = []
        inline = source.name in _INLINE_SOURCES
        for b in backends:
            zone = _zone_for(source, b)
            if inline:
                try:
                    values[b.id] = source.get_grid_carbon_data(b.region, zone=zone)
                except Exception as exc:  # noqa: BLE001 - any failure falls through
                    return None, f"{source.name}: {_describe(exc)} for {b.region}"
                continue
            key = (source.name, b.region, zone, source.signal)
            with self._lock:
                hit = self._fresh.get(key)
                backoff = self._backoff.get(key)
            if hit is not None:
                values[b.id] = hit
            elif backoff is not None and backoff[0] > self._clock():
                pending.append((b, key, None))  # failed recently: do not call, do not wait
            else:
                pending.append((b, key, self._fetch(source, key)))
        stale_notes: list[str] = []
        for b, key, future in pending:
            if future is None:
                why = self._backoff.get(key, (0.0, "failed recently"))[1]
            else:
                try:
                    values[b.id] = future.result(timeout=max(0.0, deadline - self._clock()))
                    continue
                except FutureTimeout:
                    why = f"no answer within {allowed_ms:.0f} ms"
                    with self._lock:  # later decisions should not wait on it too
                        self._backoff[key] = (self._clock() + self.failure_backoff_seconds, why)
                except Exception as exc:  # noqa: BLE001 - any failure falls through
                    why = _describe(exc)
            stale = self._stale(key)
            if stale is None:
                return None, f"{source.name}: {why} for {b.region}"
            values[b.id] = stale
            stale_notes.append(f"{source.name}: {why} for {b.region}; served the value fetched "
                               f"{(utcnow() - stale.fetched_at).total_seconds():.0f} s ago")
        reasons.extend(stale_notes)
        return values, ""

    def _embedded_only(self, backends: Sequence[Backend]) -> GridResolution:
        """With no other source the answer never changes for the same backends: reuse it."""
        key = tuple(b.id for b in backends)
        hit = self._embedded_memo.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], backends, strict=True)):
            return hit[1]
        values, missing = self._embedded(backends)
        resolution = GridResolution(SignalKind.AVERAGE, MappingProxyType(values), MappingProxyType(missing), ())
        if len(self._embedded_memo) > 1024:
            self._embedded_memo.clear()
        self._embedded_memo[key] = (tuple(backends), resolution)
        return resolution

    def _embedded(self, backends: Sequence[Backend]) -> tuple[dict[str, GridCarbonData], dict[str, str]]:
        values: dict[str, GridCarbonData] = {}
        missing: dict[str, str] = {}
        for b in backends:
            try:
                values[b.id] = self.embedded.get_grid_carbon_data(b.region, zone=b.grid_zone)
            except GreenrouteError as exc:
                missing[b.id] = f"no grid data: {exc}"
        return values, missing

    def _stale(self, key: _CacheKey) -> GridCarbonData | None:
        with self._lock:
            entry = self._last_good.get(key)
        if entry is None or self._clock() - entry[1] > self.max_staleness_seconds:
            return None
        return entry[0].as_stale()

    def _fetch(self, source: GridSource, key: _CacheKey) -> Future[GridCarbonData]:
        """The one in-flight upstream call for ``key``, started if there is none."""
        with self._lock:
            future = self._inflight.get(key)
            if future is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._max_workers,
                                                        thread_name_prefix="greenroute-grid")
                future = self._executor.submit(self._call, source, key)
                self._inflight[key] = future
            return future

    def _call(self, source: GridSource, key: _CacheKey) -> GridCarbonData:
        _, region, zone, _ = key
        try:
            value = source.get_grid_carbon_data(region, zone=zone)
            with self._lock:
                self._fresh[key] = value
                self._last_good[key] = (value, self._clock())
                self._backoff.pop(key, None)
            return value
        except Exception as exc:
            why = _describe(exc)
            log.warning("grid source %s failed for %s: %s", source.name, region, why)
            with self._lock:
                self._backoff[key] = (self._clock() + self.failure_backoff_seconds, why)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)


def _zone_for(source: GridSource, backend: Backend) -> str | None:
    """The backend's zone override in the source's own vocabulary."""
    return backend.watttime_region if source.signal is SignalKind.MARGINAL else backend.grid_zone


def _available(source: GridSource) -> bool:
    try:
        return bool(source.is_available())
    except Exception:
        log.exception("grid source %s failed its availability check", source.name)
        return False


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a source failure."""
    if isinstance(exc, GreenrouteError):
        text = str(exc)
        return text.split(": ", 1)[1] if text.startswith(f"{getattr(exc, 'source', None)}: ") else text
    return type(exc).__name__
