"""Which SQL a bucketed query runs: arithmetic for even buckets and calendar months, the sweep otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenroute.adapters.catalog import _ledger
from greenroute.errors import ConfigError
from greenroute.ports import LedgerQuery

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _sql(buckets: list[datetime], until: datetime) -> str:
    return _ledger.totals_sql(LedgerQuery(until=until, buckets=tuple(buckets)), _ledger.SQLITE)[0]


@pytest.mark.parametrize("buckets", [
    [T0 + timedelta(days=i) for i in range(10)],                                    # days
    [T0 + timedelta(hours=5), *(T0 + timedelta(days=i) for i in range(1, 10))],     # a partial first day
    [T0 + timedelta(days=3), *(datetime(2026, m, 1, tzinfo=UTC) for m in range(2, 12))],  # months
    [T0],                                                                           # one bucket
])
def test_even_buckets_and_months_take_the_arithmetic_path(buckets: list[datetime]) -> None:
    sql = _sql(buckets, datetime(2026, 12, 15, tzinfo=UTC))
    assert "LEAD(" not in sql and "sb AS" in sql


def test_uneven_buckets_take_the_sweep() -> None:
    sql = _sql([T0, T0 + timedelta(days=1), T0 + timedelta(days=3), T0 + timedelta(days=4)], T0 + timedelta(days=9))
    assert "LEAD(" in sql


def test_buckets_must_ascend_inside_the_period() -> None:
    with pytest.raises(ConfigError):
        _sql([T0 + timedelta(days=1), T0], T0 + timedelta(days=3))
    with pytest.raises(ConfigError):
        _sql([T0, T0 + timedelta(days=5)], T0 + timedelta(days=3))
