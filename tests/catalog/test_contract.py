"""The Catalog contract: every catalog (SQLite here, server databases where configured) passes it.

One live entry per path, compare-and-set commits, reservations for exclusive creates, closed
entries kept as the ledger's history, and the reindex swap that keeps unreachable backends' entries.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from greenroute.errors import CommitConflictError
from greenroute.model import EntryState, utcnow
from greenroute.ports import Catalog, Placement

from .conftest import CatalogFactory, make_entry


def test_commit_makes_the_one_live_entry_and_placement_answers_briefly(catalog: Catalog) -> None:
    assert catalog.placement("ns/a") is None and catalog.lookup("ns/a") is None
    committed, replaced = catalog.commit(make_entry("ns/a", "d1", size=42, etag="e1"), expected=None)
    assert replaced is None
    assert committed.state is EntryState.COMMITTED and committed.size == 42 and committed.etag == "e1"
    assert committed.failovers == ("b0: refused",)
    assert catalog.lookup("ns/a") == committed
    assert catalog.placement("ns/a") == Placement("d1", "b1", "memory://b1/ns/a")
    assert catalog.decision("d1") == committed


def test_commit_replaces_the_expected_entry_and_closes_it(catalog: Catalog) -> None:
    catalog.commit(make_entry("ns/a", "d1", backend="b1"), expected=None)
    new, old = catalog.commit(make_entry("ns/a", "d2", backend="b2"), expected="d1")
    assert old is not None and old.backend_id == "b1" and old.decision_id == "d1"
    assert new.backend_id == "b2"
    assert [e.backend_id for e in catalog.list("ns/")] == ["b2"]  # never two live copies
    closed = catalog.decision("d1")
    assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "overwritten"
    assert closed.closed_at is not None


def test_commit_closes_the_replaced_entry_with_the_given_reason(catalog: Catalog) -> None:
    # A rebalance move is one compare-and-set commit that closes the old entry as "moved".
    catalog.commit(make_entry("ns/a", "d1", backend="b1"), expected=None)
    moved = make_entry("ns/a", "d2", backend="b2", moves=('{"from": "b1", "to": "b2", "gco2e": 0.5}',))
    catalog.commit(moved, expected="d1", reason="moved")
    closed = catalog.decision("d1")
    assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "moved"
    live = catalog.lookup("ns/a")
    assert live is not None and live.moves == moved.moves and live.backend_id == "b2"


@pytest.mark.parametrize("expected", [None, "d0", "someone-else"])
def test_commit_against_a_stale_expectation_conflicts_and_changes_nothing(catalog: Catalog,
                                                                           expected: str | None) -> None:
    catalog.commit(make_entry("ns/a", "d1"), expected=None)
    with pytest.raises(CommitConflictError) as info:
        catalog.commit(make_entry("ns/a", "d2", backend="b2"), expected=expected)
    assert info.value.current == Placement("d1", "b1", "memory://b1/ns/a")
    assert catalog.placement("ns/a") == Placement("d1", "b1", "memory://b1/ns/a")
    assert catalog.decision("d2") is None


def test_committing_the_live_decision_again_with_no_expectation_conflicts(catalog: Catalog) -> None:
    committed, _ = catalog.commit(make_entry("ns/a", "d1", size=1), expected=None)
    with pytest.raises(CommitConflictError) as info:
        catalog.commit(make_entry("ns/a", "d1", size=2), expected=None)
    assert info.value.current == Placement("d1", "b1", "memory://b1/ns/a")
    assert catalog.lookup("ns/a") == committed


def test_a_reserved_create_conflicts_with_a_writer_that_committed_the_path_meanwhile(catalog: Catalog) -> None:
    catalog.begin(make_entry("ns/r", "r1"))
    other, _ = catalog.commit(make_entry("ns/r", "d2", backend="b2"), expected=None)
    with pytest.raises(CommitConflictError) as info:
        catalog.commit(make_entry("ns/r", "r1"), expected=None)
    assert info.value.current == Placement("d2", "b2", "memory://b2/ns/r")
    assert catalog.lookup("ns/r") == other


def test_commit_on_an_absent_path_that_expected_one_conflicts(catalog: Catalog) -> None:
    with pytest.raises(CommitConflictError) as info:
        catalog.commit(make_entry("ns/a", "d2"), expected="d1")
    assert info.value.current is None


def test_reservations_make_exclusive_creates_exclusive(catalog: Catalog) -> None:
    catalog.begin(make_entry("ns/x", "r1"))
    assert catalog.lookup("ns/x") is None and catalog.list() == []
    assert [e.decision_id for e in catalog.pending()] == ["r1"]
    with pytest.raises(FileExistsError):
        catalog.begin(make_entry("ns/x", "r2"))
    committed, _ = catalog.commit(make_entry("ns/x", "r1"), expected=None)
    assert committed.state is EntryState.COMMITTED and catalog.pending() == []
    with pytest.raises(FileExistsError):
        catalog.begin(make_entry("ns/x", "r3"))
    catalog.begin(make_entry("ns/y", "r4"))
    catalog.abort("r4")
    catalog.abort("unknown")
    assert catalog.pending() == [] and catalog.lookup("ns/y") is None


def test_remove_closes_the_entry_and_keeps_it_as_history(catalog: Catalog) -> None:
    catalog.commit(make_entry("ns/a", "d1"), expected=None)
    with pytest.raises(CommitConflictError):
        catalog.remove("ns/a", expected="other")
    removed = catalog.remove("ns/a", expected="d1")
    assert removed is not None and removed.decision_id == "d1"
    assert catalog.lookup("ns/a") is None and catalog.remove("ns/a") is None
    closed = catalog.decision("d1")
    assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "deleted"
    assert [e.decision_id for e in catalog.history()] == ["d1"]


def test_history_keeps_every_committed_version_in_time_order(catalog: Catalog) -> None:
    t0 = utcnow() - timedelta(hours=3)
    catalog.commit(make_entry("ns/a", "d1", created_at=t0), expected=None)
    catalog.commit(make_entry("ns/a", "d2", created_at=t0 + timedelta(hours=1)), expected="d1")
    catalog.commit(make_entry("ns/b", "d3", created_at=t0 + timedelta(hours=2)), expected=None)
    assert [e.decision_id for e in catalog.history()] == ["d1", "d2", "d3"]
    assert [e.decision_id for e in catalog.history("ns/b")] == ["d3"]
    assert [e.decision_id for e in catalog.history(until=t0 + timedelta(minutes=90))] == ["d1", "d2"]
    # d1 was closed just now (by d2's commit), so it overlaps any window up to now
    assert [e.decision_id for e in catalog.history(since=utcnow() - timedelta(minutes=1))] == ["d1", "d2", "d3"]


def test_prefix_listing_is_exact(catalog: Catalog) -> None:
    for i, path in enumerate(["a/x", "a/y/z", "ab/c", "b/d", "a0/e"]):
        catalog.commit(make_entry(path, f"d{i}"), expected=None)
    assert [e.path for e in catalog.list("a/")] == ["a/x", "a/y/z"]
    assert [e.path for e in catalog.list("a")] == ["a/x", "a/y/z", "a0/e", "ab/c"]
    assert [e.path for e in catalog.list()] == ["a/x", "a/y/z", "a0/e", "ab/c", "b/d"]
    assert catalog.remove("a/x") is not None
    assert [e.path for e in catalog.list()] == ["a/y/z", "a0/e", "ab/c", "b/d"]


def test_paging_with_start_after_and_limit(catalog: Catalog) -> None:
    for i in range(25):
        catalog.commit(make_entry(f"ns/{i:02d}", f"d{i}"), expected=None)
    pages: list[list[str]] = []
    after = None
    while True:
        page = [e.path for e in catalog.list("ns/", start_after=after, limit=10)]
        pages.append(page)
        if len(page) < 10:
            break
        after = page[-1]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [p for page in pages for p in page] == [f"ns/{i:02d}" for i in range(25)]
    assert [e.path for e in catalog.list(start_after="ns/23")] == ["ns/24"]


def test_put_adopts_unconditionally_and_clear_drops_everything(catalog: Catalog) -> None:
    catalog.put(make_entry("ns/a", "d1"))
    catalog.put(make_entry("ns/a", "d2", backend="b9"))
    entry = catalog.lookup("ns/a")
    assert entry is not None and entry.backend_id == "b9" and entry.state is EntryState.COMMITTED
    catalog.clear()
    assert catalog.list() == [] and list(catalog.history()) == []


def test_swap_rebuilds_live_entries_and_keeps_those_of_unreachable_backends(catalog: Catalog) -> None:
    catalog.commit(make_entry("ns/live", "d1", backend="up"), expected=None)
    catalog.commit(make_entry("ns/dead", "d2", backend="down"), expected=None)
    catalog.commit(make_entry("ns/gone", "d3", backend="up"), expected=None)
    rebuilt = [make_entry("ns/live", "d1", backend="up"), make_entry("ns/new", "d4", backend="up"),
               make_entry("ns/dead", "d5", backend="up")]  # an older copy of a path the dead backend holds
    left_out = catalog.swap(rebuilt, keep_backends=["down"])
    assert left_out == ["ns/dead"]
    assert {e.path: e.backend_id for e in catalog.list()} == {"ns/dead": "down", "ns/live": "up", "ns/new": "up"}
    assert catalog.decision("d3").state is EntryState.CLOSED  # type: ignore[union-attr]


def test_ledger_fields_round_trip(catalog: Catalog) -> None:
    observed = utcnow() - timedelta(minutes=5)
    entry = make_entry("ns/l", "d1", region="eu-north-1", grid_zone="SE-SE1", observed_at=observed,
                       is_estimated=True, is_stale=True, fallback=True, model_version="ccf-1", retention_days=30.0,
                       baseline_backend="aws-us-east-1", baseline_write_gco2e=0.5, baseline_gco2e_month=1.5,
                       baseline_note=None, moves=('{"from": "a"}',))
    committed, _ = catalog.commit(entry, expected=None)
    assert catalog.lookup("ns/l") == committed
    got = catalog.lookup("ns/l")
    assert got is not None and got.observed_at == observed and got.moves == ('{"from": "a"}',)
    assert (got.is_estimated, got.is_stale, got.fallback, got.retention_days) == (True, True, True, 30.0)


def test_concurrent_compare_and_set_writers_leave_one_live_entry_per_path(catalog_factory: CatalogFactory) -> None:
    """8 threads with their own catalog objects race on 10 paths; every commit is a clean CAS."""
    errors: list[BaseException] = []
    wins: list[str] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        catalog = catalog_factory()
        try:
            for i in range(40):
                path = f"ns/{i % 10}"
                while True:
                    seen = catalog.placement(path)
                    try:
                        catalog.commit(make_entry(path, f"t{n}-{i}", size=n),
                                       expected=seen.decision_id if seen else None)
                        break
                    except CommitConflictError:
                        continue
                with lock:
                    wins.append(f"t{n}-{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    catalog = catalog_factory()
    live = catalog.list()
    assert [e.path for e in live] == [f"ns/{i}" for i in range(10)]
    history = list(catalog.history())
    assert len(history) == len(wins) == 320
    assert sum(e.state is EntryState.COMMITTED for e in history) == 10
