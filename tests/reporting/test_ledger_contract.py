"""The ledger half of the Catalog contract, over every catalog the contract suite opens.

``aggregate`` and ``ledger`` must give the same sums in every database: exact microseconds (no
rounding of times to milliseconds), null-safe groups, prefixes by directory level, time buckets that
split an entry's accrual exactly, and pages that never drop or repeat an entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.catalog.conftest import make_entry

from greenroute.ports import MONTH_US, Catalog, LedgerQuery

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
REL = 1e-9


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_commit_and_remove_close_entries_at_the_time_given(catalog: Catalog) -> None:
    catalog.commit(make_entry("ns/a", "d1", created_at=at(0)), expected=None)
    catalog.commit(make_entry("ns/a", "d2", created_at=at(2)), expected="d1", at=at(2))
    catalog.remove("ns/a", at=at(3.5))
    first, second = catalog.decision("d1"), catalog.decision("d2")
    assert first is not None and first.closed_at == at(2) and first.closed_reason == "overwritten"
    assert second is not None and second.closed_at == at(3.5) and second.closed_reason == "deleted"


def test_accrual_is_exact_to_the_microsecond(catalog: Catalog) -> None:
    # Held 0.999999 s plus a day: SQLite would round .999999 s up to a whole second.
    start = T0 + timedelta(microseconds=999_999)
    catalog.commit(make_entry("ns/a", "d1", created_at=start, gco2e_month=7.3), expected=None)
    catalog.remove("ns/a", at=T0 + timedelta(days=1, microseconds=1_999_998))
    (t,) = catalog.aggregate(LedgerQuery(until=at(48)))
    held_us = (timedelta(days=1, microseconds=1_999_998) - timedelta(microseconds=999_999)) // timedelta(microseconds=1)
    assert t.at_rest_gco2e == pytest.approx(7.3 * held_us / MONTH_US, rel=1e-12)
    (o,) = catalog.ledger(LedgerQuery(until=at(48)))
    assert o.held_seconds == held_us / 1e6
    assert t.first_write == start and t.last_write == start


def test_groups_by_key_prefix_and_none(catalog: Catalog) -> None:
    catalog.commit(make_entry("lake/x/1.bin", "d1", backend="b1", created_at=at(0), region="r1", size=5),
                   expected=None)
    catalog.commit(make_entry("lake/y/2.bin", "d2", backend="b2", created_at=at(1), size=7), expected=None)
    catalog.commit(make_entry("top.bin", "d3", backend="b1", created_at=at(2), region="r1", size=11), expected=None)
    q = LedgerQuery(until=at(10))
    by_region = {t.key: t.objects for t in catalog.aggregate(LedgerQuery(until=at(10), keys=("region",)))}
    assert by_region == {(None,): 1, ("r1",): 2}
    by_prefix = {t.key[0]: t.bytes for t in catalog.aggregate(LedgerQuery(until=at(10), keys=("prefix",), depth=2))}
    assert by_prefix == {"": 11, "lake/x/": 5, "lake/y/": 7}
    by_namespace = {t.key[0]: t.objects for t in catalog.aggregate(LedgerQuery(until=at(10), keys=("namespace",)))}
    assert by_namespace == {"": 1, "lake": 2}
    two = catalog.aggregate(LedgerQuery(until=at(10), keys=("backend", "region")))
    assert [(t.key, t.objects) for t in two] == [(("b1", "r1"), 2), (("b2", None), 1)]
    assert [t.objects for t in catalog.aggregate(LedgerQuery(until=at(10), prefix="lake/"))] == [2]
    (total,) = catalog.aggregate(q)
    assert total.objects == 3 and total.bytes == 23 and total.held_objects == 3


def test_buckets_split_accrual_with_null_keys(catalog: Catalog) -> None:
    catalog.commit(make_entry("ns/a", "d1", created_at=at(0.5), gco2e_month=2.0, write_gco2e=0.25), expected=None)
    catalog.commit(make_entry("ns/b", "d2", created_at=at(1.25), gco2e_month=3.0, region="r"), expected=None)
    catalog.remove("ns/a", at=at(2.75))
    buckets = tuple(at(h) for h in range(4))
    rows = catalog.aggregate(LedgerQuery(until=at(4), keys=("region",), buckets=buckets))
    got = {(t.key, t.bucket): t for t in rows}
    month_h = MONTH_US / 3.6e9
    a = {0: 0.5, 1: 1.0, 2: 0.75, 3: 0.0}
    b = {0: 0.0, 1: 0.75, 2: 1.0, 3: 1.0}
    for i in range(4):
        assert got[((None,), i)].at_rest_gco2e == pytest.approx(2.0 * a[i] / month_h, rel=REL, abs=1e-15)
        assert got[(("r",), i)].at_rest_gco2e == pytest.approx(3.0 * b[i] / month_h, rel=REL, abs=1e-15)
    assert got[((None,), 0)].writes == 1 and got[((None,), 0)].write_gco2e == 0.25
    assert [got[((None,), i)].objects for i in range(4)] == [1, 1, 1, 0]
    assert [got[((None,), i)].gco2e_month for i in range(4)] == pytest.approx([2.0, 2.0, 0.0, 0.0])


def test_ledger_pages_through_every_entry_once(catalog: Catalog) -> None:
    n = 5003  # more than one page
    catalog.swap([make_entry(f"ns/{i:05d}", f"d{i:05d}", created_at=at(i / 1000)) for i in range(n)])
    seen = [o.entry.decision_id for o in catalog.ledger(LedgerQuery(until=at(100)))]
    assert seen == [f"d{i:05d}" for i in range(n)]
    # written before 3 h (and all still held): 3,000 of them, 1,000 written in the period
    inside = list(catalog.ledger(LedgerQuery(since=at(2), until=at(3))))
    assert [o.entry.decision_id for o in inside] == [f"d{i:05d}" for i in range(3000)]
    assert sum(o.written_in_period for o in inside) == 1000
    late = list(catalog.ledger(LedgerQuery(since=at(4.5), until=at(100))))  # the second page holds most of these
    assert [o.entry.decision_id for o in late] == [f"d{i:05d}" for i in range(n)]
    assert sum(o.written_in_period for o in late) == n - 4500


@pytest.mark.parametrize("unit", ["hour", "month"])
def test_bucket_arithmetic_and_the_event_sweep_agree(catalog: Catalog, unit: str) -> None:
    """Even buckets (and calendar months) are found by arithmetic; any other list runs the sweep."""
    import random

    rng = random.Random(3)
    span = timedelta(days=200) if unit == "month" else timedelta(hours=30)
    for i in range(60):
        start = T0 + span * rng.random()
        catalog.commit(make_entry(f"ns{i % 3}/{i}", f"d{i:03d}", backend=f"b{i % 2}", created_at=start,
                                  gco2e_month=rng.random(), write_gco2e=rng.random(), size=rng.randint(1, 99),
                                  region=None if i % 4 else "r", is_stale=i % 5 == 0,
                                  baseline_write_gco2e=rng.random() if i % 3 else None,
                                  baseline_gco2e_month=rng.random() if i % 3 else None), expected=None)
        if i % 2:
            catalog.remove(f"ns{i % 3}/{i}", at=start + span * rng.random() / 3)
    since, until = T0 + span / 7, T0 + span
    if unit == "month":
        starts = [since] + [datetime(2026, m, 1, tzinfo=UTC) for m in range(7, 12)]
    else:
        starts = [since] + [T0.replace(minute=0) + timedelta(hours=h) for h in range(5, 30)]
    even = LedgerQuery(until=until, since=since, keys=("backend", "region"), buckets=tuple(starts),
                       market_factors={"b1": 7.0})
    # the same buckets with one start nudged by a microsecond: not arithmetic, so the sweep runs
    odd_starts = [*starts[:3], starts[3] + timedelta(microseconds=1), *starts[4:]]
    odd = LedgerQuery(until=until, since=since, keys=("backend", "region"), buckets=tuple(odd_starts),
                      market_factors={"b1": 7.0})
    fast, sweep = catalog.aggregate(even), catalog.aggregate(odd)
    assert [(t.key, t.bucket) for t in fast] == [(t.key, t.bucket) for t in sweep]
    for a, b in zip(fast, sweep, strict=True):
        for field in ("objects", "bytes", "writes", "held_objects", "baseline_objects", "stale_objects",
                      "market_objects", "marginal_objects"):
            assert getattr(a, field) == getattr(b, field), (field, a, b)
        for field in ("write_gco2e", "at_rest_gco2e", "gco2e_month", "baseline_gco2e", "compared_gco2e",
                      "market_gco2e", "intensity_sum"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-4, abs=1e-9), (field, a, b)
    (whole,) = catalog.aggregate(LedgerQuery(until=until, since=since, market_factors={"b1": 7.0}))
    assert sum(t.at_rest_gco2e for t in fast) == pytest.approx(whole.at_rest_gco2e, rel=1e-9)
    assert sum(t.market_gco2e for t in fast) == pytest.approx(whole.market_gco2e, rel=1e-9)
    assert sum(t.writes for t in fast) == whole.writes
