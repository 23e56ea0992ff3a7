"""Each state a crash can leave between a move's steps, and what ``fsck`` and a re-run make of it.

The steps are run one at a time with :class:`greenroute.rebalance.Mover` (its public steps), on real
local folders, to stand for a process killed between them. A dead backend is a moto server
killed with SIGKILL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tests.rebalance.helpers import s3_backend, write_config
from tests.servers.local import LocalServer, create_s3_bucket

from greenroute import GreenRouter, load_config
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.errors import ConfigError
from greenroute.model import Backend, EntryState, Provider
from greenroute.placement import GreenPlacementService
from greenroute.rebalance import Mover, RebalancePlan
from greenroute.signals import GridSignals, ManualGridSource

DATA = b"0123456789" * 20_000


@pytest.fixture
def router(tmp_path: Path) -> Iterator[GreenRouter]:
    backends = [Backend(id="dirty", provider=Provider.FILE, region="us-east-1", root=(tmp_path / "dirty").as_uri(),
                        pue=1.2),
                Backend(id="clean", provider=Provider.FILE, region="eu-north-1", root=(tmp_path / "clean").as_uri(),
                        pue=1.1)]
    signals = GridSignals([ManualGridSource({"us-east-1": 450.0, "eu-north-1": 20.0})])
    with GreenRouter(GreenPlacementService(backends, signals=signals), SqliteCatalog(tmp_path / "cat.db")) as r:
        yield r


def _plan(router: GreenRouter, path: str = "ns/obj.bin", data: bytes = DATA) -> RebalancePlan:
    router.write(path, data, candidates=["dirty"], retention_days=365)
    plan = router.rebalance_plan()
    assert [(m.path, m.to_backend) for m in plan.moves] == [(path, "clean")]
    return plan


def _exists(router: GreenRouter, backend: str, path: str) -> bool:
    try:
        router.target(backend).stat(path)
    except FileNotFoundError:
        return False
    return True


def test_an_uncommitted_copy_is_removed_by_fsck_never_adopted(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    copied = Mover(router, plan).copy(move)  # then the process dies
    assert copied.info.metadata["greenroute_move_of"] == move.decision_id and not copied.reused
    assert router.lookup(move.path).decision_id == move.decision_id  # type: ignore[union-attr]

    assert router.fsck(older_than_seconds=300).skipped_recent == [move.path]  # may be in flight: left alone
    report = router.fsck(older_than_seconds=0)
    assert report.orphans_deleted == [router.target("clean").url(move.path)] and not report.committed
    assert not _exists(router, "clean", move.path)
    assert router.lookup(move.path).backend_id == "dirty" and router.read(move.path) == DATA  # type: ignore[union-attr]


def test_a_path_deleted_after_the_copy_stays_deleted(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    Mover(router, plan).copy(move)
    router.delete(move.path)  # the owner deletes the object while the move is half done
    report = router.fsck(older_than_seconds=0)
    assert not report.committed and report.orphans_deleted == [router.target("clean").url(move.path)]
    assert router.lookup(move.path) is None and not _exists(router, "clean", move.path)
    rerun = router.rebalance_apply(plan)
    assert [o.reason for o in rerun.skipped] == ["deleted since the plan"] and router.lookup(move.path) is None


def test_a_rerun_reuses_a_recent_copy_that_verifies(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    Mover(router, plan).copy(move)
    copied_at = router.target("clean").stat(move.path).modified
    report = router.rebalance_apply(plan)
    (outcome,) = report.moved
    assert outcome.reason.startswith("reused the copy of an interrupted run")
    assert router.target("clean").stat(move.path).modified == copied_at  # not written again
    assert router.read(move.path) == DATA and not _exists(router, "dirty", move.path)


def test_a_copy_that_does_not_verify_is_written_again(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    # A copy of this move with the wrong bytes (a torn or corrupted earlier attempt).
    md = dict(router.target("dirty").stat(move.path).metadata, greenroute_decision=move.move_id)
    router.target("clean").write(move.path, b"not the same bytes", md)
    report = router.rebalance_apply(plan)
    assert len(report.moved) == 1 and "reused" not in report.moved[0].reason
    assert router.read(move.path) == DATA


def test_a_crash_after_the_commit_leaves_the_old_copy_to_the_rerun(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    mover = Mover(router, plan)
    entry = mover.commit(move, mover.copy(move))  # then the process dies before deleting the old copy
    assert entry is not None and entry.backend_id == "clean"
    assert _exists(router, "dirty", move.path)  # the old copy, no longer catalogued
    assert [e.decision_id for e in router.list("ns/")] == [move.move_id]  # one live entry
    closed = router.catalog.decision(move.decision_id)
    assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "moved"

    report = router.rebalance_apply(plan)
    assert report.moved[0].reason == "resumed after the commit; old copy deleted"
    assert report.moved[0].gco2e == pytest.approx(json.loads(entry.moves[-1])["gco2e"])
    assert not _exists(router, "dirty", move.path) and router.read(move.path) == DATA


def test_a_crash_after_the_commit_leaves_the_old_copy_to_fsck(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    mover = Mover(router, plan)
    mover.commit(move, mover.copy(move))
    report = router.fsck(older_than_seconds=0)
    assert report.orphans_deleted == [router.target("dirty").url(move.path)]
    assert not report.committed and not report.repaired
    assert router.read(move.path) == DATA and router.lookup(move.path).backend_id == "clean"  # type: ignore[union-attr]


def test_a_path_written_since_the_plan_is_skipped_and_the_copy_removed(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    Mover(router, plan).copy(move)
    router.write(move.path, b"newer bytes")  # kept on its backend, under a new decision
    report = router.rebalance_apply(plan)
    assert len(report.skipped) == 1 and report.skipped[0].reason.startswith("changed since the plan")
    assert not _exists(router, "clean", move.path)
    assert router.read(move.path) == b"newer bytes"


def test_a_commit_that_loses_to_a_writer_leaves_the_writer_live(router: GreenRouter) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    mover = Mover(router, plan)
    copied = mover.copy(move)
    router.write(move.path, b"newer bytes")  # lands between the verify and the commit
    assert mover.commit(move, copied) is None
    assert router.read(move.path) == b"newer bytes" and router.lookup(move.path).backend_id == "dirty"  # type: ignore[union-attr]


def test_a_foreign_object_at_the_target_is_left_alone(router: GreenRouter, tmp_path: Path) -> None:
    plan = _plan(router)
    (move,) = plan.moves
    foreign = tmp_path / "clean" / move.path
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"someone else's file")
    report = router.rebalance_apply(plan)
    assert len(report.skipped) == 1 and "greenroute did not write" in report.skipped[0].reason
    assert foreign.read_bytes() == b"someone else's file"
    assert router.lookup(move.path).backend_id == "dirty"  # type: ignore[union-attr]


def test_retention_and_the_default_horizon(router: GreenRouter) -> None:
    router.write("ns/kept-forever.bin", DATA, candidates=["dirty"])  # no retention: the default horizon
    router.write("ns/short.bin", DATA, candidates=["dirty"], retention_days=0.0)
    router.rebalance_horizon_days = 200.0  # what [rebalance] default_horizon_days sets
    plan = router.rebalance_plan()
    (move,) = plan.moves
    assert move.path == "ns/kept-forever.bin" and move.horizon == "default" and move.remaining_days == 200.0
    assert 0 < move.payback_days < 200
    assert {k.path: k.code for k in plan.kept} == {"ns/short.bin": "retention_ended"}
    short = router.rebalance_plan(horizon_days=move.payback_days / 2)  # too short to pay the move back
    assert short.moves == () and {k.code for k in short.kept} == {"costs_more", "retention_ended"}


def test_read_only_sources_stay_and_candidates_narrow_the_targets(tmp_path: Path) -> None:
    backends = [Backend(id="dirty", provider=Provider.FILE, region="us-east-1", root=(tmp_path / "dirty").as_uri(),
                        pue=1.2),
                Backend(id="clean", provider=Provider.FILE, region="eu-north-1", root=(tmp_path / "clean").as_uri(),
                        pue=1.1)]
    manual = ManualGridSource({"us-east-1": 450.0, "eu-north-1": 20.0})
    with GreenRouter(GreenPlacementService(backends, signals=GridSignals([manual])),
                     SqliteCatalog(tmp_path / "cat.db")) as router:
        router.write("ns/a.bin", DATA, candidates=["dirty"], retention_days=365)
        narrowed = router.rebalance_plan(candidates=["dirty"])
        assert narrowed.moves == () and narrowed.kept[0].code == "not_eligible"
        assert "not among the candidates" in narrowed.kept[0].reason
    read_only = [Backend(id="dirty", provider=Provider.FILE, region="us-east-1", root=(tmp_path / "dirty").as_uri(),
                         pue=1.2, read_only=True), backends[1]]
    with GreenRouter(GreenPlacementService(read_only, signals=GridSignals([manual])),
                     SqliteCatalog(tmp_path / "cat.db")) as router:
        plan = router.rebalance_plan()
        assert plan.moves == () and [k.code for k in plan.kept] == ["read_only"]


def test_age_counts_from_the_first_commit_across_moves(tmp_path: Path) -> None:
    manual = ManualGridSource({"us-east-1": 450.0, "eu-north-1": 20.0})
    backends = [Backend(id="dirty", provider=Provider.FILE, region="us-east-1", root=(tmp_path / "dirty").as_uri(),
                        pue=1.2),
                Backend(id="clean", provider=Provider.FILE, region="eu-north-1", root=(tmp_path / "clean").as_uri(),
                        pue=1.1)]
    with GreenRouter(GreenPlacementService(backends, signals=GridSignals([manual])),
                     SqliteCatalog(tmp_path / "cat.db")) as router:
        router.write("ns/old.bin", DATA, candidates=["dirty"], retention_days=365)
        entry = router.lookup("ns/old.bin")
        assert entry is not None
        born = entry.created_at - timedelta(days=100)
        router.catalog.put(replace(entry, created_at=born))  # as if written 100 days ago
        first = router.rebalance_plan()
        assert first.moves[0].remaining_days == pytest.approx(265, abs=0.01)
        assert len(router.rebalance_apply(first).moved) == 1
        moved = router.lookup("ns/old.bin")
        assert moved is not None and json.loads(moved.moves[0])["since"] == born.isoformat()
        manual.set("eu-north-1", 900.0)  # the grids change: now the move back pays
        manual.set("us-east-1", 10.0)
        back = router.rebalance_plan()
        assert [m.to_backend for m in back.moves] == ["dirty"]
        assert back.moves[0].remaining_days == pytest.approx(265, abs=0.01)  # not 365 from the move's commit
        assert len(router.rebalance_apply(back).moved) == 1
        history = [json.loads(m) for m in router.lookup("ns/old.bin").moves]  # type: ignore[union-attr]
        assert [(h["from"], h["to"]) for h in history] == [("dirty", "clean"), ("clean", "dirty")]
        assert router.read("ns/old.bin") == DATA


def test_a_dead_backend_is_skipped_and_reported(tmp_path: Path,
                                                moto_server_factory: Callable[[], LocalServer]) -> None:
    doomed = moto_server_factory()
    create_s3_bucket(doomed.endpoint, "gr-rebalance-doomed")
    config = write_config(tmp_path, [s3_backend("s3-doomed", "us-east-2", doomed.endpoint, "gr-rebalance-doomed")],
                          {"us-east-1": 500.0, "us-east-2": 500.0, "eu-north-1": 20.0}, extra=f"""
[[backends]]
id = "file-dirty"
provider = "file"
region = "us-east-1"
root = "{(tmp_path / 'dirty').as_uri()}"

[[backends]]
id = "file-clean"
provider = "file"
region = "eu-north-1"
root = "{(tmp_path / 'clean').as_uri()}"
""")
    with GreenRouter.from_config(config) as router:
        for i in range(6):
            router.write(f"ns/s3-{i}.bin", DATA, candidates=["s3-doomed"], retention_days=365)
            router.write(f"ns/file-{i}.bin", DATA, candidates=["file-dirty"], retention_days=365)
        plan = router.rebalance_plan()
        assert {m.to_backend for m in plan.moves} == {"file-clean"} and len(plan.moves) == 12
        doomed.kill()
        report = router.rebalance_apply(plan, workers=2)
        assert sorted(o.path for o in report.moved) == [f"ns/file-{i}.bin" for i in range(6)]
        assert sorted(o.path for o in report.skipped) == [f"ns/s3-{i}.bin" for i in range(6)]
        assert all("s3-doomed unreachable" in o.reason for o in report.skipped) and not report.failed
        assert list(report.unreachable) == ["s3-doomed"]
        assert {router.lookup(f"ns/s3-{i}.bin").backend_id for i in range(6)} == {"s3-doomed"}  # type: ignore[union-attr]
        assert all(router.read(f"ns/file-{i}.bin") == DATA for i in range(6))


def test_the_default_horizon_comes_from_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, [], {"us-west-2": 100.0}, horizon_days=42)
    with GreenRouter.from_config(config) as router:
        assert router.rebalance_horizon_days == 42.0
    assert load_config(write_config(tmp_path, [], {}, horizon_days=None)).rebalance_default_horizon_days == 365.0
    bad = tmp_path / "bad.toml"
    bad.write_text("[rebalance]\ndefault_horizon = 30\n")
    with pytest.raises(ConfigError, match="did you mean 'default_horizon_days'"):
        load_config(bad)
    bad.write_text("[rebalance]\ndefault_horizon_days = -1\n")
    with pytest.raises(ConfigError, match=r"rebalance\.default_horizon_days"):
        load_config(bad)
