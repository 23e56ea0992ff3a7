"""``greenroute catalog migrate``: a SQLite catalog copied into PostgreSQL, history included, idempotent, verified.

The source is a real SQLite file with committed, overwritten (closed), deleted (closed) and pending
entries; the target is a fresh schema of the run's PostgreSQL. The command runs in-process through
``greenroute.cli.main`` with its output captured (so not a terminal: no progress bar).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from greenroute.adapters.catalog.postgres import PostgresCatalog, from_url
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.catalog_migrate import canonical, migrate
from greenroute.cli import main
from greenroute.model import EntryState, utcnow

from .conftest import make_entry


def _source(path: Path) -> SqliteCatalog:
    """A ledger with every kind of entry: 40 written, 10 of them overwritten, 5 deleted, 1 reservation: 51 entries."""
    cat = SqliteCatalog(path)
    t0 = utcnow() - timedelta(days=3)
    for i in range(40):
        cat.commit(make_entry(f"lake/day-{i % 4}/part-{i:03d}.parquet", f"d{i:04d}", size=1000 + i,
                              created_at=t0 + timedelta(minutes=i), region="eu-north-1", grid_zone="SE-SE1",
                              observed_at=t0, is_estimated=i % 2 == 0, retention_days=30.0,
                              moves=('{"from": "b0"}',) if i == 27 else ()), expected=None)
    for i in range(10):
        cat.commit(make_entry(f"lake/day-{i % 4}/part-{i:03d}.parquet", f"o{i:04d}", backend="b2"),
                   expected=f"d{i:04d}")
    for i in range(10, 15):
        cat.remove(f"lake/day-{i % 4}/part-{i:03d}.parquet")
    cat.begin(make_entry("lake/exclusive.json", "r0001"))
    return cat


def test_migrate_copies_every_entry_with_its_history_and_is_idempotent(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path / "old.db")
    target = from_url(pg_url)
    try:
        first = migrate(source, target, batch=16)  # several batches
        assert first.verified, first.to_dict()
        assert (first.source_entries, first.copied, first.already_present, first.target_entries) == (51, 51, 0, 51)
        assert first.source_checksum == first.target_checksum
        # The target answers exactly as the source does: live entries, history, reservations.
        assert target.list() == source.list()
        assert list(target.history()) == list(source.history())
        assert target.pending() == source.pending()
        moved = target.decision("d0027")
        assert moved is not None and moved.moves == ('{"from": "b0"}',) and moved.state is EntryState.COMMITTED
        closed = target.decision("d0003")
        assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "overwritten"

        second = migrate(source, target)
        assert second.verified
        assert (second.copied, second.already_present, second.target_entries) == (0, 51, 51)
        assert second.source_checksum == first.source_checksum
    finally:
        source.close()
        target.close()


def test_migrate_names_entries_the_target_cannot_take(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path / "old.db")
    target = from_url(pg_url)
    try:
        # A fleet already wrote one of the source's live paths to the target under another decision.
        target.commit(make_entry("lake/day-0/part-020.parquet", "fleet-1"), expected=None)
        report = migrate(source, target)
        assert not report.verified
        assert report.missing == ["d0020"] and report.missing_count == 1
        assert report.target_entries == 51  # 50 of the source's, and the fleet's own
        live = target.lookup("lake/day-0/part-020.parquet")
        assert live is not None and live.decision_id == "fleet-1"  # the target's live entry is never replaced
    finally:
        source.close()
        target.close()


def test_migrate_detects_an_entry_the_target_holds_differently(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path / "old.db")
    target = from_url(pg_url)
    try:
        original = source.decision("d0030")
        assert original is not None
        target.commit(make_entry(original.path, "d0030", size=1), expected=None)  # same id, other contents
        report = migrate(source, target)
        assert report.different == ["d0030"] and not report.verified
        assert report.source_checksum != report.target_checksum
        assert canonical(original) != canonical(target.decision("d0030"))  # type: ignore[arg-type]
    finally:
        source.close()
        target.close()


def test_migrate_back_from_postgresql_to_sqlite(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path / "old.db")
    middle = from_url(pg_url)
    back = SqliteCatalog(tmp_path / "back.db")
    try:
        assert migrate(source, middle).verified
        report = migrate(middle, back)
        assert report.verified and report.copied == 51
        assert list(back.history()) == list(source.history())
    finally:
        for cat in (source, middle, back):
            cat.close()


def test_the_command_says_what_it_did_and_a_second_run_changes_nothing(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no greenroute.toml here: the command needs none
    _source(tmp_path / "old.db").close()
    argv = ["catalog", "migrate", "--from", f"sqlite:///{tmp_path / 'old.db'}", "--to", pg_url]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "copied 51 of 51 entries" in out.out and "verified" in out.out
    assert "copying" not in out.err  # not a terminal: no progress bar
    assert main(argv) == 0
    assert "copied 0 of 51 entries" in capsys.readouterr().out
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verified"] is True and report["copied"] == 0 and report["already_present"] == 51
    check = from_url(pg_url)
    try:
        assert isinstance(check, PostgresCatalog) and check.count_all() == 51
    finally:
        check.close()


def test_the_command_refuses_a_password_in_the_url_without_showing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _source(tmp_path / "old.db").close()
    code = main(["catalog", "migrate", "--from", f"sqlite:///{tmp_path / 'old.db'}", "--to",
                 "postgresql://greenroute:Sup3rSecret@127.0.0.1:5432/db"])
    out = capsys.readouterr()
    assert code == 2
    assert "must not contain a password" in out.err
    assert "Sup3rSecret" not in out.out + out.err
