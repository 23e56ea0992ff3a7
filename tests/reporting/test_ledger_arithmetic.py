"""The ledger's arithmetic, checked by hand on a frozen clock: three writes, one overwrite, one delete.

Every expected number below is computed here from the carbon model's published coefficients (CCF:
1e-9 Wh per byte written, 0.65 Wh per TB-hour at rest, 730 h a month, replication 1 in memory) and
the pinned grid intensities, then compared with the objects' own metadata, the catalog entries and
the reports the catalog sums in SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from greenroute.model import EntryState, SignalKind
from greenroute.ports import Catalog, LedgerObject, LedgerQuery
from greenroute.reporting.ledger import Grouping, ReportRequest, build_report, iter_objects
from greenroute.router import GreenRouter

from .conftest import BASELINE, INTENSITY, PUE, REGION, T0, FrozenClock, make_router

REL = 1e-9


@pytest.fixture
def router(catalog: Catalog, clock: FrozenClock) -> Iterator[GreenRouter]:
    """The scenario's router over every catalog the contract suite opens (SQLite and PostgreSQL)."""
    r = make_router(catalog, clock)
    yield r
    r.placement.signals.close()  # the catalog fixture closes the catalog


def write_g(size: int, backend: str) -> float:
    """gCO2e of writing ``size`` bytes to ``backend``: bytes x 1e-9 Wh x PUE x g/kWh / 1000."""
    return size * 1e-9 * PUE[backend] * INTENSITY[REGION[backend]] / 1000


def month_g(size: int, backend: str) -> float:
    """gCO2e per 730 h at rest: TB x 0.65 Wh/TB-h x 730 h x replication 1 x PUE x g/kWh / 1000."""
    return size / 1e12 * 0.65 * 730 * 1 * PUE[backend] * INTENSITY[REGION[backend]] / 1000


def accrued(size: int, backend: str, hours: float) -> float:
    return month_g(size, backend) * hours / 730


def scenario(router: GreenRouter, clock: FrozenClock) -> str:
    """Three writes, an overwrite and a delete; returns where ``logs/c.bin`` went."""
    clock.at(0)
    router.write("lake/a.bin", b"a" * 1_000_000, candidates=["green-north"])
    clock.at(1)
    router.write("lake/b.bin", b"b" * 2_000_000, candidates=["mid-west"])
    clock.at(2)
    c = router.write("logs/c.bin", b"c" * 3_000_000, candidates=[BASELINE, "green-north"])
    clock.at(5)
    router.write("lake/a.bin", b"A" * 4_000_000)  # overwrite, kept on its backend
    clock.at(7)
    router.delete("lake/b.bin")
    return c.backend_id


#: (path, size, backend, start hour, end hour or None) of each ledger entry; C's backend is filled in.
def entries(c_backend: str) -> list[tuple[str, int, str, float, float | None]]:
    return [("lake/a.bin", 1_000_000, "green-north", 0, 5), ("lake/b.bin", 2_000_000, "mid-west", 1, 7),
            ("logs/c.bin", 3_000_000, c_backend, 2, None), ("lake/a.bin", 4_000_000, "green-north", 5, None)]


def held(start: float, end: float | None, since: float, until: float) -> float:
    return max(0.0, min(end if end is not None else until, until) - max(start, since))


def test_entries_close_at_the_overwrite_and_delete_and_carry_their_inputs(router: GreenRouter,
                                                                          clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    history = list(router.catalog.history())
    assert [(e.path, e.size) for e in history] == [(p, s) for p, s, *_ in entries(c_backend)]
    for entry, (_path, size, backend, start, end) in zip(history, entries(c_backend), strict=True):
        assert entry.backend_id == backend and entry.region == REGION[backend]
        assert entry.created_at == T0 + timedelta(hours=start)
        assert entry.closed_at == (T0 + timedelta(hours=end) if end is not None else None)
        assert entry.write_gco2e == pytest.approx(write_g(size, backend), rel=1e-12)
        assert entry.gco2e_month == pytest.approx(month_g(size, backend), rel=1e-12)
        assert entry.carbon_intensity_g_per_kwh == INTENSITY[REGION[backend]]
        assert entry.signal is SignalKind.AVERAGE and entry.source.value == "manual"
        assert entry.model_version == router.placement.carbon_model.version
        # the baseline, priced at write time on the same signal kind and model
        assert entry.baseline_backend == BASELINE and entry.baseline_note is None
        assert entry.baseline_write_gco2e == pytest.approx(write_g(size, BASELINE), rel=1e-12)
        assert entry.baseline_gco2e_month == pytest.approx(month_g(size, BASELINE), rel=1e-12)
    assert [e.closed_reason for e in history] == ["overwritten", "deleted", None, None]
    assert history[0].state is EntryState.CLOSED and history[1].state is EntryState.CLOSED
    # the numbers stamped on the objects themselves (6 significant digits) agree
    for path in ("lake/a.bin", "logs/c.bin"):
        stat = router.stat(path)
        assert float(stat.info.metadata["greenroute_gco2e"]) == pytest.approx(stat.entry.write_gco2e, rel=1e-5)
        assert float(stat.info.metadata["greenroute_gco2e_month"]) == pytest.approx(stat.entry.gco2e_month, rel=1e-5)


def test_report_totals_match_the_hand_computed_ledger(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    until = T0 + timedelta(hours=10)
    report = build_report(router.catalog, ReportRequest(until=until, by=Grouping("total")))
    assert report.total is not None
    t, rows = report.total.totals, entries(c_backend)
    hours = [held(start, end, 0, 10) for _, _, _, start, end in rows]
    assert hours == [5, 6, 8, 5]
    assert (t.objects, t.writes, t.held_objects, t.baseline_objects) == (4, 4, 2, 4)
    assert t.bytes == 10_000_000
    assert t.write_gco2e == pytest.approx(sum(write_g(s, b) for _, s, b, *_ in rows), rel=REL)
    expected_rest = sum(accrued(s, b, h) for (_, s, b, *_), h in zip(rows, hours, strict=True))
    assert t.at_rest_gco2e == pytest.approx(expected_rest, rel=REL)
    assert t.gco2e_month == pytest.approx(month_g(3_000_000, c_backend) + month_g(4_000_000, "green-north"), rel=REL)
    baseline = sum(write_g(s, BASELINE) + accrued(s, BASELINE, h) for (_, s, *_), h in zip(rows, hours, strict=True))
    assert t.baseline_gco2e == pytest.approx(baseline, rel=REL)
    actual = t.write_gco2e + t.at_rest_gco2e
    assert report.total.saved_gco2e == pytest.approx(baseline - actual, rel=REL)
    assert report.total.saved_pct == pytest.approx(100 * (baseline - actual) / baseline, rel=REL)
    assert report.total.stale_or_fallback_pct == 0.0
    assert report.model_versions == (router.placement.carbon_model.version,)
    assert report.baselines == (BASELINE,) and report.signals == ("average",) and report.sources == ("manual",)


def test_report_by_backend_and_namespace_partition_the_total(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    until = T0 + timedelta(hours=10)
    rows = entries(c_backend)
    by_backend = build_report(router.catalog, ReportRequest(until=until, by=Grouping("key", "backend")))
    got = {r.label: r.totals for r in by_backend.rows}
    for backend in {b for _, _, b, *_ in rows}:
        mine = [(s, start, end) for _, s, b, start, end in rows if b == backend]
        assert got[backend].objects == len(mine)
        assert got[backend].at_rest_gco2e == pytest.approx(
            sum(accrued(s, backend, held(a, e, 0, 10)) for s, a, e in mine), rel=REL)
    by_namespace = build_report(router.catalog, ReportRequest(until=until, by=Grouping("key", "namespace")))
    assert {r.label: r.totals.objects for r in by_namespace.rows} == {"lake": 3, "logs": 1}
    assert by_namespace.total is not None and by_backend.total is not None
    assert sum(r.total_gco2e for r in by_namespace.rows) == pytest.approx(by_backend.total.total_gco2e, rel=REL)


def test_a_period_counts_writes_in_it_and_accrues_only_inside_it(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    since, until = T0 + timedelta(hours=3), T0 + timedelta(hours=6)
    report = build_report(router.catalog, ReportRequest(since=since, until=until, by=Grouping("total")))
    assert report.total is not None
    t, rows = report.total.totals, entries(c_backend)
    assert (t.objects, t.writes, t.held_objects) == (4, 1, 3)  # only A2 was written; B is deleted at 7 h
    assert t.write_gco2e == pytest.approx(write_g(4_000_000, "green-north"), rel=REL)
    hours = [held(start, end, 3, 6) for _, _, _, start, end in rows]
    assert hours == [2, 3, 3, 1]
    assert t.at_rest_gco2e == pytest.approx(
        sum(accrued(s, b, h) for (_, s, b, *_), h in zip(rows, hours, strict=True)), rel=REL)
    # B is deleted exactly at the end of this period: no longer held then
    edge = build_report(router.catalog, ReportRequest(since=since, until=T0 + timedelta(hours=7), by=Grouping("total")))
    assert edge.total is not None and edge.total.totals.held_objects == 2


def test_object_rows_keep_deleted_objects_and_sum_to_the_report(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    request = ReportRequest(until=T0 + timedelta(hours=10), by=Grouping("object"))
    objects: list[LedgerObject] = list(iter_objects(router.catalog, request))
    assert [(o.entry.path, o.entry.closed_reason) for o in objects] == [
        ("lake/a.bin", "overwritten"), ("lake/b.bin", "deleted"), ("logs/c.bin", None), ("lake/a.bin", None)]
    for o, (_, size, backend, start, end) in zip(objects, entries(c_backend), strict=True):
        assert o.held_seconds == held(start, end, 0, 10) * 3600
        assert o.at_rest_gco2e == pytest.approx(accrued(size, backend, held(start, end, 0, 10)), rel=REL)
        assert o.written_in_period
        assert o.baseline_gco2e == pytest.approx(
            write_g(size, BASELINE) + accrued(size, BASELINE, held(start, end, 0, 10)), rel=REL)
        assert o.market_gco2e is None
    report = build_report(router.catalog, ReportRequest(until=T0 + timedelta(hours=10), by=Grouping("total")))
    assert report.total is not None
    assert sum(o.at_rest_gco2e for o in objects) == pytest.approx(report.total.totals.at_rest_gco2e, rel=REL)


def test_hourly_buckets_split_the_accrual_exactly(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    until = T0 + timedelta(hours=10)
    report = build_report(router.catalog, ReportRequest(until=until, by=Grouping("time", unit="hour")))
    assert [r.start for r in report.rows] == [T0 + timedelta(hours=h) for h in range(10)]
    rows = entries(c_backend)
    for h, row in enumerate(report.rows):
        expected = sum(accrued(s, b, held(start, end, h, h + 1)) for _, s, b, start, end in rows)
        assert row.totals.at_rest_gco2e == pytest.approx(expected, rel=REL, abs=1e-18)
        assert row.totals.writes == sum(1 for *_, start, _ in rows if start == h)
        assert row.totals.objects == sum(1 for *_, start, end in rows if held(start, end, h, h + 1) > 0)
        held_at_end = [(s, b) for _, s, b, start, end in rows if start < h + 1 and (end is None or end > h + 1)]
        assert row.totals.gco2e_month == pytest.approx(sum(month_g(s, b) for s, b in held_at_end), rel=REL)
    assert [r.totals.objects for r in report.rows][5:8] == [3, 3, 2]  # B is gone from 7 h on
    assert report.total is not None
    assert sum(r.totals.at_rest_gco2e for r in report.rows) == pytest.approx(report.total.totals.at_rest_gco2e,
                                                                              rel=REL)


def test_a_write_placed_on_the_baseline_saves_exactly_nothing(router: GreenRouter, clock: FrozenClock) -> None:
    clock.at(0)
    router.write("x/on-baseline.bin", b"z" * 5_000, candidates=[BASELINE])
    (o,) = iter_objects(router.catalog, ReportRequest(until=T0 + timedelta(hours=3), by=Grouping("object")))
    assert o.entry.backend_id == BASELINE
    assert o.entry.baseline_write_gco2e == o.entry.write_gco2e
    assert o.baseline_gco2e == o.entry.write_gco2e + o.at_rest_gco2e


def test_the_saving_is_empty_when_the_baseline_has_another_signal_kind(tmp_path: Path, clock: FrozenClock) -> None:
    # Marginal values for the candidates' regions only: the baseline region resolves to the embedded
    # annual average, which is never compared with a marginal figure.
    router = make_router(tmp_path / "m.db", clock, signal=SignalKind.MARGINAL,
                         intensities={"eu-north-1": 30.0, "us-west-2": 500.0})
    try:
        clock.at(0)
        result = router.write("m/a.bin", b"m" * 10_000, candidates=["green-north"])
        assert result.decision.signal is SignalKind.MARGINAL
        entry = router.lookup("m/a.bin")
        assert entry is not None and entry.baseline_backend == BASELINE
        assert entry.baseline_write_gco2e is None and entry.baseline_gco2e_month is None
        assert entry.baseline_note is not None and "average" in entry.baseline_note \
            and "marginal" in entry.baseline_note
        report = build_report(router.catalog, ReportRequest(until=T0 + timedelta(hours=1), by=Grouping("total")))
        assert report.total is not None
        assert report.total.totals.baseline_objects == 0
        assert report.total.saved_gco2e is None and report.total.saved_pct is None
        assert report.total.totals.write_gco2e == pytest.approx(10_000 * 1e-9 * 1.1 * 30.0 / 1000, rel=REL)
    finally:
        router.close()


def test_market_based_factors_are_reported_apart(router: GreenRouter, clock: FrozenClock) -> None:
    c_backend = scenario(router, clock)
    until = T0 + timedelta(hours=10)
    plain = build_report(router.catalog, ReportRequest(until=until, by=Grouping("total")))
    market = build_report(router.catalog, ReportRequest(until=until, by=Grouping("total"),
                                                        market_factors={"green-north": 5.0}))
    assert plain.total is not None and market.total is not None
    # location-based figures never change
    assert market.total.totals.write_gco2e == plain.total.totals.write_gco2e
    assert market.total.totals.at_rest_gco2e == plain.total.totals.at_rest_gco2e
    north = [(s, start, end) for _, s, b, start, end in entries(c_backend) if b == "green-north"]
    expected = sum((write_g(s, "green-north") + accrued(s, "green-north", held(a, e, 0, 10))) * 5.0 / 20.0
                   for s, a, e in north)
    assert market.total.totals.market_objects == len(north)
    assert market.total.market_gco2e == pytest.approx(expected, rel=REL)
    assert plain.total.market_gco2e is None


def test_the_catalog_query_refuses_unknown_keys(router: GreenRouter) -> None:
    from greenroute.errors import ConfigError

    with pytest.raises(ConfigError):
        router.catalog.aggregate(LedgerQuery(until=T0, keys=("colour",)))
