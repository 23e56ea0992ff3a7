"""Ledger reports: what to ask the catalog for, and the rows people read.

A report covers a period ``[since, until)`` (``since`` defaults to the first write, ``until`` to
now), optionally a path prefix, grouped one way (``--by``): by a ledger key (backend, namespace,
``prefix:N``, region, signal, source, model), by time bucket (second to month, aligned in UTC), or
one row per object. The catalog does the sums (:meth:`~greenroute.ports.Catalog.aggregate`); this
module only derives what follows from them: totals, savings and shares.

Every carbon figure is location-based (the grid intensity where the bytes sit) and in gCO2e. The
saving compares like with like: only objects that have a baseline (same signal kind, same model,
priced at write time) count, on both sides, and a group without any has no saving at all.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ..errors import ConfigError
from ..model import utcnow
from ..ports import Catalog, LedgerObject, LedgerQuery, LedgerTotals

__all__ = [
    "MAX_BUCKETS",
    "TIME_UNITS",
    "Grouping",
    "Progress",
    "Report",
    "ReportRequest",
    "ReportRow",
    "auto_unit",
    "bucket_starts",
    "build_report",
    "iter_objects",
    "parse_by",
    "sum_totals",
    "zero_totals",
]

#: Time buckets, finest first. ``week`` starts on Monday (ISO 8601).
TIME_UNITS: tuple[str, ...] = ("second", "minute", "hour", "day", "week", "month")
#: The most time buckets one report may ask for (each is a row per group).
MAX_BUCKETS = 5000
_KEYS = ("backend", "namespace", "region", "signal", "source", "model")
_STEP = {"second": timedelta(seconds=1), "minute": timedelta(minutes=1), "hour": timedelta(hours=1),
         "day": timedelta(days=1), "week": timedelta(days=7)}

#: Called as work advances: ``(what, done, total)``; ``total`` is ``None`` when unknown.
Progress = Callable[[str, int, int | None], None]


def _quiet(_what: str, _done: int, _total: int | None) -> None:
    """No progress display."""


@dataclass(frozen=True, slots=True)
class Grouping:
    """How a report's rows are grouped.

    Attributes:
        kind: ``key`` (a ledger key), ``time`` (time buckets), ``object`` (one row per entry) or
            ``total`` (one row).
        key: The ledger key, for ``key``.
        depth: Directory levels, for the ``prefix`` key.
        unit: The bucket unit, for ``time``.
    """

    kind: Literal["key", "time", "object", "total"]
    key: str | None = None
    depth: int = 1
    unit: str | None = None

    @property
    def label(self) -> str:
        """The grouping as written on the command line (``prefix:2``, ``day``, ``backend``)."""
        if self.kind == "time":
            return str(self.unit)
        if self.kind == "key":
            return f"prefix:{self.depth}" if self.key == "prefix" else str(self.key)
        return self.kind

    @property
    def column(self) -> str:
        """The name of the grouping's column in exports."""
        if self.kind == "time":
            return f"{self.unit}_start"
        return "prefix" if self.key == "prefix" else str(self.key or self.kind)


def parse_by(text: str) -> Grouping:
    """Parse ``--by``: a key (``backend``, ``namespace``, ``prefix:N``, ``region``, ``signal``, ``source``,
    ``model``), a time unit (``second`` ... ``month``), ``object`` or ``total``.

    Raises:
        ConfigError: Anything else.

    Example:
        >>> parse_by("prefix:2"), parse_by("week").unit
        (Grouping(kind='key', key='prefix', depth=2, unit=None), 'week')
    """
    value = text.strip().lower()
    if value in _KEYS:
        return Grouping("key", value)
    if value.startswith("prefix"):
        _, _, depth = value.partition(":")
        if not depth.isdigit() or int(depth) < 1:
            raise ConfigError(f"expected prefix:N with N >= 1 (prefix:2 groups by lab/batch-00/), got {text!r}",
                              key="--by")
        return Grouping("key", "prefix", depth=int(depth))
    if value in TIME_UNITS:
        return Grouping("time", unit=value)
    if value in ("object", "total"):
        return Grouping("object" if value == "object" else "total")
    choices = ", ".join([*_KEYS, "prefix:N", *TIME_UNITS, "object", "total"])
    raise ConfigError(f"cannot group by {text!r} (expected one of {choices})", key="--by")


def _floor(t: datetime, unit: str) -> datetime:
    t = t.astimezone(UTC)
    if unit == "second":
        return t.replace(microsecond=0)
    if unit == "minute":
        return t.replace(second=0, microsecond=0)
    if unit == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _next(t: datetime, unit: str) -> datetime:
    if unit == "month":
        days = calendar.monthrange(t.year, t.month)[1]
        return t + timedelta(days=days)
    return t + _STEP[unit]


def bucket_starts(start: datetime, until: datetime, unit: str) -> tuple[datetime, ...]:
    """The starts of the ``unit`` buckets covering ``[start, until)``, aligned in UTC.

    Raises:
        ConfigError: More than :data:`MAX_BUCKETS` buckets (use a coarser unit).

    Example:
        >>> t = datetime(2026, 1, 30, 12, tzinfo=UTC)
        >>> [b.date().isoformat() for b in bucket_starts(t, t + timedelta(days=40), "month")]
        ['2026-01-01', '2026-02-01', '2026-03-01']
    """
    if unit not in TIME_UNITS:
        raise ConfigError(f"unknown time unit {unit!r} (expected one of {', '.join(TIME_UNITS)})", key="--by")
    out: list[datetime] = []
    t = _floor(start, unit)
    while t < until:
        out.append(t)
        if len(out) > MAX_BUCKETS:
            raise ConfigError(f"the period has more than {MAX_BUCKETS} {unit} buckets; group by a longer unit "
                              "or shorten the period (--since/--until)", key="--by")
        t = _next(t, unit)
    return tuple(out)


def auto_unit(start: datetime, until: datetime, *, most: int = 60) -> str:
    """The finest time unit that covers ``[start, until)`` in at most ``most`` buckets."""
    for unit in TIME_UNITS:
        t, n = _floor(start, unit), 0
        while t < until and n <= most:
            t, n = _next(t, unit), n + 1
        if n <= most:
            return unit
    return TIME_UNITS[-1]


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What a report covers.

    Attributes:
        until: End of the period (exclusive); default now.
        since: Start of the period (inclusive); default the first write.
        prefix: Only paths under this prefix.
        by: The grouping.
        market_factors: Market-based factors (gCO2e/kWh) by backend id, from ``[[backends]]``.
    """

    until: datetime = field(default_factory=utcnow)
    since: datetime | None = None
    prefix: str = ""
    by: Grouping = field(default_factory=lambda: Grouping("key", "backend"))
    market_factors: Mapping[str, float] = field(default_factory=dict)

    def query(self, *, keys: Sequence[str] = (), depth: int = 1,
              buckets: Sequence[datetime] = ()) -> LedgerQuery:
        """The catalog query for this request's period and prefix."""
        return LedgerQuery(until=self.until, since=self.since, prefix=self.prefix, keys=tuple(keys), depth=depth,
                           buckets=tuple(buckets), market_factors=dict(self.market_factors))


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One row of a report: the catalog's sums for one group, and what follows from them.

    Attributes:
        label: The group (a key's value, a bucket's start in ISO 8601, ``total``).
        totals: The sums.
        start: The bucket's start, for time groupings.
    """

    label: str
    totals: LedgerTotals
    start: datetime | None = None

    @property
    def total_gco2e(self) -> float:
        """Writes plus at-rest carbon accrued in the period."""
        return self.totals.write_gco2e + self.totals.at_rest_gco2e

    @property
    def saved_gco2e(self) -> float | None:
        """Baseline minus actual, over the objects that have a baseline; ``None`` when none has one."""
        t = self.totals
        return t.baseline_gco2e - t.compared_gco2e if t.baseline_objects else None

    @property
    def saved_pct(self) -> float | None:
        """The saving as a percentage of the baseline."""
        saved = self.saved_gco2e
        if saved is None or self.totals.baseline_gco2e <= 0:
            return None
        return 100.0 * saved / self.totals.baseline_gco2e

    @property
    def stale_or_fallback_pct(self) -> float | None:
        """Percentage of the objects whose estimate used stale or fallback grid data."""
        t = self.totals
        return 100.0 * t.stale_objects / t.objects if t.objects else None

    @property
    def mean_intensity_g_per_kwh(self) -> float | None:
        """The mean grid intensity the period's writes used."""
        t = self.totals
        return t.intensity_sum / t.writes if t.writes else None

    @property
    def signal(self) -> str:
        """``average``, ``marginal`` or ``mixed`` (the row sums both kinds: read it by signal)."""
        t = self.totals
        if t.marginal_objects == 0:
            return "average"
        return "marginal" if t.marginal_objects == t.objects else "mixed"

    @property
    def market_gco2e(self) -> float | None:
        """The market-based figure, over the objects on backends that declare a factor."""
        return self.totals.market_gco2e if self.totals.market_objects else None


@dataclass(frozen=True, slots=True)
class Report:
    """A ledger report: its rows, its total and what the figures rest on.

    Attributes:
        request: What was asked.
        generated_at: When the report was made.
        rows: One per group (or bucket), sorted by key or time.
        total: The whole period (``None`` when the ledger has nothing in scope).
        model_versions: The carbon models behind the figures.
        baselines: The baseline backends the writes were compared with.
        signals: The signal kinds behind the figures.
        sources: The grid data sources behind the figures.
        has_market: Some backend declares a market-based factor.
        buckets: The time buckets' starts, for time groupings.
    """

    request: ReportRequest
    generated_at: datetime
    rows: list[ReportRow]
    total: ReportRow | None
    model_versions: tuple[str, ...]
    baselines: tuple[str, ...]
    signals: tuple[str, ...]
    sources: tuple[str, ...]
    has_market: bool
    buckets: tuple[datetime, ...] = ()

    @property
    def since(self) -> datetime | None:
        """The period's start: the one asked for, else the first write."""
        if self.request.since is not None:
            return self.request.since
        return self.total.totals.first_write if self.total is not None else None


class Facets:
    """Sums grouped by some keys and then by model, baseline, signal and source: what the figures rest on.

    One query grouped this way gives a report's groups, its total and its labels at once: each entry
    is in exactly one row, so the rows of a group (or all of them) add up to its sums exactly.

    Args:
        rows: The catalog's rows, keyed by ``leading`` keys and then :attr:`KEYS`.
        leading: How many keys come before :attr:`KEYS`.
    """

    KEYS = ("model", "baseline", "signal", "source")

    def __init__(self, rows: Sequence[LedgerTotals], leading: int = 0) -> None:
        self.rows = rows
        self.leading = leading

    def values(self, key: str) -> tuple[str, ...]:
        """The distinct values of one of :attr:`KEYS`."""
        i = self.leading + self.KEYS.index(key)
        return tuple(sorted({v for r in self.rows if (v := r.key[i]) is not None}))

    def total(self) -> LedgerTotals | None:
        """The sum of all rows."""
        return sum_totals(self.rows)

    def groups(self, index: int = 0) -> list[ReportRow]:
        """One row per value of the leading key at ``index``, in key order."""
        found: dict[str | None, list[LedgerTotals]] = {}
        for r in self.rows:
            found.setdefault(r.key[index], []).append(r)
        rows = [ReportRow(_label(k), t) for k, group in found.items() if (t := sum_totals(group, key=(k,)))]
        return sorted(rows, key=lambda r: (r.totals.key[0] is not None, r.totals.key[0] or ""))

    def report(self, request: ReportRequest, rows: list[ReportRow], buckets: tuple[datetime, ...] = ()) -> Report:
        """The report with these rows, this total and these labels."""
        total = self.total()
        return Report(
            request=request, generated_at=utcnow(), rows=rows,
            total=ReportRow("total", total) if total is not None else None,
            model_versions=self.values("model"), baselines=self.values("baseline"), signals=self.values("signal"),
            sources=self.values("source"), has_market=bool(request.market_factors), buckets=buckets,
        )


def zero_totals() -> LedgerTotals:
    """Sums over nothing."""
    return LedgerTotals(key=(), bucket=None, objects=0, bytes=0, writes=0, write_gco2e=0.0, at_rest_gco2e=0.0,
                        gco2e_month=0.0, held_objects=0, baseline_objects=0, baseline_gco2e=0.0, compared_gco2e=0.0,
                        stale_objects=0, marginal_objects=0, market_objects=0, market_gco2e=0.0, intensity_sum=0.0)


def sum_totals(rows: Sequence[LedgerTotals], key: tuple[str | None, ...] = ()) -> LedgerTotals | None:
    """The sum of ``rows`` that partition a set of entries (``None`` for no rows)."""
    if not rows:
        return None
    firsts = [r.first_write for r in rows if r.first_write is not None]
    lasts = [r.last_write for r in rows if r.last_write is not None]
    return LedgerTotals(
        key=key, bucket=None, objects=sum(r.objects for r in rows), bytes=sum(r.bytes for r in rows),
        writes=sum(r.writes for r in rows), write_gco2e=sum(r.write_gco2e for r in rows),
        at_rest_gco2e=sum(r.at_rest_gco2e for r in rows), gco2e_month=sum(r.gco2e_month for r in rows),
        held_objects=sum(r.held_objects for r in rows), baseline_objects=sum(r.baseline_objects for r in rows),
        baseline_gco2e=sum(r.baseline_gco2e for r in rows), compared_gco2e=sum(r.compared_gco2e for r in rows),
        stale_objects=sum(r.stale_objects for r in rows), marginal_objects=sum(r.marginal_objects for r in rows),
        market_objects=sum(r.market_objects for r in rows), market_gco2e=sum(r.market_gco2e for r in rows),
        intensity_sum=sum(r.intensity_sum for r in rows), first_write=min(firsts) if firsts else None,
        last_write=max(lasts) if lasts else None,
    )


def facets(catalog: Catalog, request: ReportRequest) -> Facets:
    """The period's sums by model, baseline, signal and source (one catalog query)."""
    return Facets(catalog.aggregate(request.query(keys=Facets.KEYS)))


def build_report(catalog: Catalog, request: ReportRequest, *, progress: Progress = _quiet) -> Report:
    """Ask the catalog for ``request``'s sums and make the report.

    A grouping by key is one catalog query (by the key and the labels); time buckets take two (the
    total and labels, then the buckets). For ``--by object`` the rows are not built here: stream them
    with :func:`iter_objects`; the report then carries the total and the labels.
    """
    by = request.by
    if by.kind == "key":
        progress("summing the ledger", 0, 1)
        f = Facets(catalog.aggregate(request.query(keys=(str(by.key), *Facets.KEYS), depth=by.depth)), leading=1)
        progress("summing the ledger", 1, 1)
        return f.report(request, f.groups())
    steps = 2 if by.kind == "time" else 1
    progress("summing the ledger", 0, steps)
    f = facets(catalog, request)
    total = f.total()
    progress("summing the ledger", 1, steps)
    rows: list[ReportRow] = []
    buckets: tuple[datetime, ...] = ()
    if total is not None and by.kind == "time":
        start = request.since or total.first_write or request.until
        buckets = bucket_starts(start, request.until, str(by.unit))
        if buckets and request.since is not None:
            buckets = (request.since, *buckets[1:])  # the first bucket starts with the period
        if buckets:
            sums = catalog.aggregate(request.query(buckets=buckets))
            rows = [ReportRow(_iso(buckets[int(t.bucket or 0)]), t, buckets[int(t.bucket or 0)]) for t in sums]
        progress("summing the ledger", 2, steps)
    return f.report(request, rows, buckets)


def iter_objects(catalog: Catalog, request: ReportRequest, *, total: int | None = None,
                 progress: Progress = _quiet) -> Iterator[LedgerObject]:
    """Every ledger entry in the request's scope, oldest first, with its figures for the period."""
    done = 0
    for item in catalog.ledger(request.query()):
        yield item
        done += 1
        if done % 1000 == 0:
            progress("reading the ledger", done, total)
    progress("reading the ledger", done, total if total is not None else done)


def _label(value: str | None) -> str:
    return "(none)" if value is None else value if value else "(top level)"


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
