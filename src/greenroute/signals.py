"""Grid signals: one signal kind per decision, from a chain of sources, cached and time-boxed.

:class:`GridSignals` is what the placement service asks for grid data. For a set of candidate
backends it returns one :class:`GridResolution` in which every value has the same
:class:`~greenroute.model.SignalKind`:

1. Sources whose signal is the preferred one are tried in configured order (then, when marginal
   was preferred, the average sources). A source is used only if it can give *every* candidate a
   value, fresh or stale-but-allowed.
2. If none can, the embedded annual averages are used for the whole decision.
3. Every fallback is recorded as a short line ("watttime: 403 invalid scope for IE").

Fresh values are kept in a TTL cache per (source, region, zone, signal); one decision looks up all
its candidates under one lock. Concurrent misses for one key make one upstream call
(single-flight). A decision waits at most its time budget for upstream calls; a call that is still
running then completes in the background and fills the cache. When a source fails, its last good
value is served, marked ``is_stale``, up to ``max_staleness_seconds``.

With a shared cache (:class:`~greenroute.ports.SharedGridCache`, Redis or Valkey) the fleet shares
values and the single-flight: a miss is one batched read for every candidate; one process claims
each stale key (a lock with a fencing token, and one call of the source's fleet-wide rate budget)
and fetches it while the others serve the stale value (stale-while-revalidate) or, with none, wait
within their budget. The per-process cache stays in front as a short local layer, and behind as
the fallback: when the shared cache fails, decisions carry on with it, say so once per decision,
and try the shared cache again ``shared_retry_seconds`` later.

Placement never raises because of grid data: source and cache errors become fallback reasons here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from types import MappingProxyType

import cachetools

from .embedded import EmbeddedGridSource
from .errors import GreenrouteError, GridDataUnavailableError
from .model import Backend, GridCarbonData, GridDataSource, SignalKind, utcnow
from .ports import GridKey, GridSource, SharedGridCache, SharedGridClaim

__all__ = ["GridResolution", "GridSignals", "ManualGridSource"]

log = logging.getLogger(__name__)

_CacheKey = GridKey
#: (backend id, region, key): one candidate's lookup.
_Slot = tuple[str, str, GridKey]

#: Sources that answer from memory: called inline, never cached, never timed out.
_INLINE_SOURCES = frozenset({GridDataSource.EMBEDDED.value, GridDataSource.MANUAL.value})

#: How often a decision waiting on another process's fetch looks at the shared cache again.
_SHARED_POLL_SECONDS = 0.01


def _expires(_key: GridKey, entry: tuple[GridCarbonData, float], now: float) -> float:
    return now + entry[1]


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


class _Decision:
    """What one decision has said about the shared cache, so the reason is recorded once."""

    __slots__ = ("noted", "reasons")

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        self.noted = False


class GridSignals:
    """Cached, single-flight, time-boxed access to a chain of grid sources.

    Args:
        sources: Live or pinned sources in order of preference. The embedded source need not be
            listed; it is always the last resort.
        signal: The preferred signal kind.
        cache_ttl_seconds: How long a fetched value is fresh (in the fleet, with a shared cache).
        max_staleness_seconds: How long a value may be served after its source starts failing.
        time_budget_seconds: How long one decision may wait on upstream calls. When a later live
            source could still answer, an earlier one gets at most half of what is left.
        failure_backoff_seconds: After a call for a key fails or times out, how long decisions
            skip calling it again (serving stale or falling through at once).
        max_workers: Upstream calls in flight at once.
        shared_cache: A cache shared by the fleet; ``None`` keeps everything in this process.
        local_ttl_seconds: With a shared cache, how long this process reuses a value it read from
            it before reading again (at most ``cache_ttl_seconds``).
        shared_retry_seconds: After the shared cache fails, how long to use only this process's
            cache before trying it again.
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
                 shared_cache: SharedGridCache | None = None,
                 local_ttl_seconds: float = 1.0,
                 shared_retry_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.signal = signal
        self.sources: tuple[GridSource, ...] = tuple(
            s for s in sources if s.name != GridDataSource.EMBEDDED.value
        )
        self.embedded = embedded or EmbeddedGridSource()
        self.cache_ttl_seconds = cache_ttl_seconds
        self.time_budget_seconds = time_budget_seconds
        self.max_staleness_seconds = max_staleness_seconds
        self.failure_backoff_seconds = failure_backoff_seconds
        self.shared_cache = shared_cache
        self.local_ttl_seconds = min(local_ttl_seconds, cache_ttl_seconds)
        self.shared_retry_seconds = shared_retry_seconds
        self._clock = clock
        self._max_workers = max_workers
        self._lock = threading.Lock()
        # Each entry carries its own lifetime: the TTL for values this process fetched, the short
        # local TTL for values read from the shared cache.
        self._fresh: cachetools.TLRUCache[_CacheKey, tuple[GridCarbonData, float]] = cachetools.TLRUCache(
            maxsize=8192, ttu=_expires, timer=clock
        )
        self._last_good: dict[_CacheKey, tuple[GridCarbonData, float]] = {}
        self._inflight: dict[_CacheKey, Future[GridCarbonData]] = {}
        self._backoff: dict[_CacheKey, tuple[float, str]] = {}
        self._embedded_memo: dict[tuple[str, ...], tuple[tuple[Backend, ...], GridResolution]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False
        self._shared_down_until = 0.0
        self._shared_why: str | None = None

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
        decision = _Decision(reasons)
        chain = self.ordered_sources()[:-1]
        live = [s for s in chain if s.name not in _INLINE_SOURCES and _available(s)]
        for source in chain:
            if source not in live and source.name not in _INLINE_SOURCES:
                reasons.append(f"{source.name}: {getattr(source, 'unavailable_reason', 'not configured')}")
                continue
            share = deadline
            if source in live and source is not live[-1]:
                share = self._clock() + max(0.0, deadline - self._clock()) / 2
            values, why = self._try_source(source, backends, share, decision)
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
        """One value from one source, through this process's cache, waiting at most the time budget.

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
            return hit[0]
        future = self._fetch(source, key)
        try:
            return future.result(timeout=self.time_budget_seconds)
        except FutureTimeout:
            raise GridDataUnavailableError(
                f"{source.name}: no answer within {self.time_budget_seconds * 1000:.0f} ms for {region}",
                source=source.name, region=region) from None

    def refresh(self, backends: Sequence[Backend]) -> dict[str, str]:
        """Fetch every backend's value from every available source, at most once per TTL.

        With a shared cache, a value that is fresh in the fleet is not fetched again, and a value
        another process is fetching is left to it.

        Returns:
            ``"source/region"`` mapped to ``"ok"`` or the error, for each call that was needed.
        """
        results: dict[str, str] = {}
        wanted: dict[_CacheKey, tuple[GridSource, str]] = {}
        for source in self.sources:
            if not _available(source):
                continue
            for b in backends:
                key = (source.name, b.region, _zone_for(source, b), source.signal)
                with self._lock:
                    if key in self._fresh:
                        continue
                wanted[key] = (source, f"{source.name}/{b.region}")
        futures: dict[str, Future[GridCarbonData]] = {}
        tokens: dict[_CacheKey, str | None] = dict.fromkeys(wanted)
        cache = self.shared_cache
        if cache is not None and wanted and self._shared_usable(None):
            keys = list(wanted)
            try:
                entries = cache.read(keys)
                stale = [k for k, e in zip(keys, entries, strict=True) if not (e.fresh and e.value is not None)]
                force = [e.foreign for e in entries if not (e.fresh and e.value is not None)]
                claims = cache.claim(stale, force=force) if stale else []
            except OSError as exc:
                self._shared_failed(exc, None)
            else:
                self._shared_ok()
                for key in keys:
                    if key not in stale:
                        del tokens[key]
                for key, claim in zip(stale, claims, strict=True):
                    if claim.outcome == "claimed":
                        tokens[key] = claim.token
                    else:
                        del tokens[key]
                        if claim.outcome != "fresh":
                            results[wanted[key][1]] = _claim_words(claim)
        for key, token in tokens.items():
            source, label = wanted[key]
            futures[label] = self._fetch(source, key, token)
        for label, fut in futures.items():
            try:
                fut.result()
                results[label] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported per source, never raised
                results[label] = _describe(exc)
        return results

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Stop the background workers, then close the sources and the shared cache.

        Calls already running are waited for, up to ``timeout_seconds`` in all, before their HTTP
        clients are closed: closing a client under a running call would make that call fail.
        Queued calls are cancelled.
        """
        with self._lock:
            self._closing = True
            executor, self._executor = self._executor, None
            running = list(self._inflight.values())
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if running:
            wait_futures(running, timeout=timeout_seconds)
        with self._lock:  # cancelled calls never ran, so nothing else removes them
            self._inflight = {k: f for k, f in self._inflight.items() if not f.cancelled()}
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                close()
        if self.shared_cache is not None:
            self.shared_cache.close()

    # -- one source, every candidate --------------------------------------------------------

    def _try_source(self, source: GridSource, backends: Sequence[Backend], deadline: float,
                    decision: _Decision) -> tuple[dict[str, GridCarbonData] | None, str]:
        """All backends' values from ``source``, or ``None`` and why it could not serve them."""
        values: dict[str, GridCarbonData] = {}
        if source.name in _INLINE_SOURCES:
            for b in backends:
                try:
                    values[b.id] = source.get_grid_carbon_data(b.region, zone=_zone_for(source, b))
                except Exception as exc:  # noqa: BLE001 - any failure falls through
                    return None, f"{source.name}: {_describe(exc)} for {b.region}"
            return values, ""
        name, signal, marginal = source.name, source.signal, source.signal is SignalKind.MARGINAL
        missing: list[_Slot] = []
        with self._lock:  # one lock for every candidate's cached value, not one per candidate
            fresh = self._fresh
            for b in backends:
                key = (name, b.region, b.watttime_region if marginal else b.grid_zone, signal)
                hit = fresh.get(key)
                if hit is not None:
                    values[b.id] = hit[0]
                else:
                    missing.append((b.id, b.region, key))
        if not missing:
            return values, ""
        allowed_ms = max(0.0, deadline - self._clock()) * 1000
        notes: list[str] = []
        if self.shared_cache is not None and self._shared_usable(decision):
            missing, failure = self._fill_shared(source, missing, values, deadline, allowed_ms, decision, notes)
            if failure:
                return None, failure
        if missing:
            failure = self._fill_local(source, missing, values, deadline, allowed_ms, notes)
            if failure:
                return None, failure
        decision.reasons.extend(notes)
        return values, ""

    def _fill_local(self, source: GridSource, missing: list[_Slot], values: dict[str, GridCarbonData],
                    deadline: float, allowed_ms: float, notes: list[str]) -> str:
        """Fill ``values`` from this process's cache and its own upstream calls; a failure, or ``""``."""
        pending: list[tuple[str, str, _CacheKey, Future[GridCarbonData] | None]] = []
        now = self._clock()
        with self._lock:
            known = [(slot, self._last_good.get(slot[2]), self._backoff.get(slot[2])) for slot in missing]
        for (bid, region, key), good, backoff in known:
            if good is not None and now - good[1] < self.cache_ttl_seconds:
                values[bid] = good[0]  # fetched (here or in the fleet) within the TTL
            elif backoff is not None and backoff[0] > now:
                pending.append((bid, region, key, None))  # failed recently: do not call, do not wait
            else:
                pending.append((bid, region, key, self._fetch(source, key)))
        for bid, region, key, future in pending:
            if future is None:
                why = self._backoff.get(key, (0.0, "failed recently"))[1]
            else:
                try:
                    values[bid] = future.result(timeout=max(0.0, deadline - self._clock()))
                    continue
                except FutureTimeout:
                    why = f"no answer within {allowed_ms:.0f} ms"
                    with self._lock:  # later decisions should not wait on it too
                        self._backoff[key] = (self._clock() + self.failure_backoff_seconds, why)
                except Exception as exc:  # noqa: BLE001 - any failure falls through
                    why = _describe(exc)
            stale = self._stale(key)
            if stale is None:
                return f"{source.name}: {why} for {region}"
            values[bid] = stale
            notes.append(_stale_note(source.name, why, region, stale))
        return ""

    def _fill_shared(self, source: GridSource, missing: list[_Slot], values: dict[str, GridCarbonData],
                     deadline: float, allowed_ms: float, decision: _Decision,
                     notes: list[str]) -> tuple[list[_Slot], str]:
        """Fill ``values`` through the shared cache.

        Returns:
            The slots left for this process's own cache (the shared cache failed on the way), and
            a failure (a candidate has no value at all), or ``""``.
        """
        cache = self.shared_cache
        assert cache is not None
        keys = list(dict.fromkeys(slot[2] for slot in missing))
        try:
            entries = cache.read(keys)
        except OSError as exc:
            self._shared_failed(exc, decision)
            return missing, ""
        self._shared_ok()
        got: dict[_CacheKey, GridCarbonData] = {}      # fresh, or stale-while-revalidate
        fallback: dict[_CacheKey, GridCarbonData] = {}  # what may be served, marked stale, if no better comes
        why: dict[_CacheKey, str] = {}                  # why a key has no fresh value
        futures: dict[_CacheKey, Future[GridCarbonData]] = {}
        waiting: set[_CacheKey] = set()
        claim_keys: list[_CacheKey] = []
        force: list[bool] = []
        foreign: set[_CacheKey] = set()
        for key, entry in zip(keys, entries, strict=True):
            value = self._remember(key, entry.value, entry.fresh) if entry.value is not None else None
            if value is not None and entry.fresh:
                got[key] = value
                continue
            usable = self._stale_candidate(key, value)
            if usable is not None:
                fallback[key] = usable
            if entry.failure is not None:
                why[key] = entry.failure
                continue
            if usable is not None:
                got[key] = usable  # stale-while-revalidate: nobody waits on the refresh
            with self._lock:
                running = self._inflight.get(key)
            if running is not None:
                if usable is None:
                    futures[key] = running
            elif entry.refreshing:
                if usable is None:
                    waiting.add(key)
            else:
                claim_keys.append(key)
                force.append(entry.foreign)
            if entry.foreign:
                foreign.add(key)
        left: set[_CacheKey] = set()
        if claim_keys:
            left = self._claim(source, claim_keys, force, got, why, futures, waiting, decision)
        # Wait, within the budget, for this process's fetches and for other processes' ones.
        while (futures or waiting) and not left and self._clock() < deadline:
            remaining = deadline - self._clock()
            if futures:
                wait_futures(list(futures.values()), timeout=min(_SHARED_POLL_SECONDS, remaining),
                             return_when=FIRST_COMPLETED)
                for key, future in list(futures.items()):
                    if future.done():
                        del futures[key]
                        try:
                            got[key] = future.result()
                        except Exception as exc:  # noqa: BLE001 - any failure falls through
                            why[key] = _describe(exc)
            else:
                time.sleep(max(0.0, min(_SHARED_POLL_SECONDS, remaining)))
            if waiting and self._clock() < deadline:
                # Claiming again is the look: it answers with the value once stored, takes over a key
                # whose fetcher gave up or died, and clears a lock greenroute did not write.
                look = list(waiting)
                waiting.clear()
                left = self._claim(source, look, [k in foreign for k in look], got, why, futures, waiting,
                                   decision)
        if left:  # the shared cache failed: this process's cache takes over every open key
            left.update(futures)
            left.update(waiting)
            futures.clear()
            waiting.clear()
        for key in futures:
            why.setdefault(key, f"no answer within {allowed_ms:.0f} ms")
            with self._lock:  # later decisions should not wait on it too
                self._backoff[key] = (self._clock() + self.failure_backoff_seconds, why[key])
        for key in waiting:
            why.setdefault(key, f"no answer within {allowed_ms:.0f} ms (another process is fetching it)")
        rest: list[_Slot] = []
        for bid, region, key in missing:
            value = got.get(key)
            if value is not None:
                values[bid] = value
            elif key in left:
                rest.append((bid, region, key))
            else:
                reason = why.get(key, "no value")
                stale = fallback.get(key)
                if stale is None:
                    return [], f"{source.name}: {reason} for {region}"
                values[bid] = stale.as_stale()
                notes.append(_stale_note(source.name, reason, region, stale))
        return rest, ""

    def _claim(self, source: GridSource, keys: list[_CacheKey], force: list[bool],
               got: dict[_CacheKey, GridCarbonData], why: dict[_CacheKey, str],
               futures: dict[_CacheKey, Future[GridCarbonData]], waiting: set[_CacheKey],
               decision: _Decision) -> set[_CacheKey]:
        """Claim ``keys`` in the fleet and act on each answer; the keys left to this process's cache."""
        cache = self.shared_cache
        assert cache is not None
        try:
            claims = cache.claim(keys, force=force)
        except OSError as exc:
            self._shared_failed(exc, decision)
            return {k for k in keys if k not in got}
        for key, claim in zip(keys, claims, strict=True):
            if claim.outcome == "fresh" and claim.value is not None:
                got[key] = self._remember(key, claim.value, True)
            elif claim.outcome == "claimed" and claim.token is not None:
                future = self._fetch(source, key, claim.token)
                if key not in got:
                    futures[key] = future
            elif claim.outcome in ("busy", "fresh"):  # fresh but unreadable: look again
                if key not in got:
                    waiting.add(key)
            else:
                why[key] = _claim_words(claim)
                got.pop(key, None)  # a value past its TTL that cannot be refreshed is served marked stale
        return set()

    # -- the per-process cache --------------------------------------------------------------

    def _remember(self, key: _CacheKey, value: GridCarbonData, fresh: bool) -> GridCarbonData:
        """Keep a value read from the shared cache (in the local layer too when ``fresh``); returns the
        object to use.

        An equal value this process already holds is reused, so that memoised scores and rankings
        (checked by identity) stay valid.
        """
        age = max(0.0, (utcnow() - value.fetched_at).total_seconds())
        now = self._clock()
        with self._lock:
            known = self._last_good.get(key)
            if known is not None and known[0] == value:
                value = known[0]
            elif known is None or known[0].fetched_at <= value.fetched_at:
                self._last_good[key] = (value, now - age)
            if fresh:
                self._fresh[key] = (value, self.local_ttl_seconds)
        return value

    def _stale_candidate(self, key: _CacheKey, value: GridCarbonData | None) -> GridCarbonData | None:
        """The newest value of ``key`` within the staleness limit, from the fleet or this process."""
        if value is not None and (utcnow() - value.fetched_at).total_seconds() <= self.max_staleness_seconds:
            return value
        with self._lock:
            entry = self._last_good.get(key)
        if entry is None or self._clock() - entry[1] > self.max_staleness_seconds:
            return None
        return entry[0]

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

    # -- upstream calls ---------------------------------------------------------------------

    def _fetch(self, source: GridSource, key: _CacheKey, token: str | None = None) -> Future[GridCarbonData]:
        """The one in-flight upstream call for ``key``, started if there is none.

        ``token`` is this process's claim on the key in the shared cache: the call stores its value
        there (or its failure) and so releases the claim.
        """
        with self._lock:
            future = self._inflight.get(key)
            if future is None:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._max_workers,
                                                        thread_name_prefix="greenroute-grid")
                future = self._executor.submit(self._call, source, key, token)
                self._inflight[key] = future
                return future
        if token is not None:  # a call started here meanwhile: give the claim back at once
            self._shared_do(lambda cache: cache.fail(key, token, "", backoff_seconds=0.0))
        return future

    def _call(self, source: GridSource, key: _CacheKey, token: str | None) -> GridCarbonData:
        _, region, zone, _ = key
        try:
            try:
                value = source.get_grid_carbon_data(region, zone=zone)
            except Exception as exc:
                why = _describe(exc)
                (log.debug if self._closing else log.warning)("grid source %s failed for %s: %s",
                                                              source.name, region, why)
                with self._lock:
                    self._backoff[key] = (self._clock() + self.failure_backoff_seconds, why)
                if token is not None:
                    self._shared_do(lambda cache: cache.fail(key, token, why,
                                                             backoff_seconds=self.failure_backoff_seconds))
                raise
            with self._lock:
                self._fresh[key] = (value, self.cache_ttl_seconds)
                self._last_good[key] = (value, self._clock())
                self._backoff.pop(key, None)
            if token is not None:
                self._shared_do(lambda cache: cache.store(key, value, token, ttl_seconds=self.cache_ttl_seconds,
                                                          keep_seconds=self.max_staleness_seconds))
            return value
        finally:
            with self._lock:  # only now: until the fleet has the value, this process's askers wait on this call
                self._inflight.pop(key, None)

    # -- the shared cache's health ----------------------------------------------------------

    def _shared_usable(self, decision: _Decision | None) -> bool:
        """Whether to use the shared cache now; when not, the decision says why (once)."""
        if self._clock() >= self._shared_down_until:
            return True
        if decision is not None:
            self._note_shared(decision)
        return False

    def _note_shared(self, decision: _Decision) -> None:
        if not decision.noted and self.shared_cache is not None:
            decision.noted = True
            decision.reasons.append(f"cache: {self.shared_cache.description} {self._shared_why or 'unavailable'}; "
                                    "used this process's cache")

    def _shared_failed(self, exc: OSError, decision: _Decision | None) -> None:
        why = str(exc) or type(exc).__name__
        with self._lock:
            first = self._shared_why is None
            self._shared_why = why
            self._shared_down_until = self._clock() + self.shared_retry_seconds
        if first and self.shared_cache is not None:
            log.warning("shared grid cache %s: %s; using this process's cache, trying again every %g s",
                        self.shared_cache.description, why, self.shared_retry_seconds)
        if decision is not None:
            self._note_shared(decision)

    def _shared_ok(self) -> None:
        if self._shared_why is not None:
            with self._lock:
                was, self._shared_why = self._shared_why, None
            if was is not None and self.shared_cache is not None:
                log.info("shared grid cache %s answers again", self.shared_cache.description)

    def _shared_do(self, op: Callable[[SharedGridCache], object]) -> None:
        """Run one write to the shared cache from a background call; failures only open the breaker."""
        cache = self.shared_cache
        if cache is None:
            return
        try:
            op(cache)
        except OSError as exc:
            self._shared_failed(exc, None)
        else:
            self._shared_ok()


def _stale_note(source: str, why: str, region: str, stale: GridCarbonData) -> str:
    return (f"{source}: {why} for {region}; served the value fetched "
            f"{(utcnow() - stale.fetched_at).total_seconds():.0f} s ago")


def _claim_words(claim: SharedGridClaim) -> str:
    """Why a claim gave no value, in a fallback reason's words."""
    if claim.outcome == "budget":
        return f"fleet rate budget spent ({claim.detail})"
    if claim.outcome == "failed":
        return claim.detail or "failed recently in another process"
    if claim.outcome == "busy":
        return "being fetched by another process"
    return claim.outcome


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
