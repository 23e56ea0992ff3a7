"""The break-even rule, computed by hand on three objects over a real S3 server (moto), then applied.

Three backends, all S3 (replication 6) with PUE 1.0, and pinned average intensities:
``s3-dirty`` (us-east-1, 500 g/kWh), ``s3-mid`` (us-west-2, 100) and ``s3-green`` (eu-north-1, 20).
Residency allows only the US, so ``s3-green`` is never a candidate. Every object is 1 MB (1e6 bytes).

* A on s3-dirty, retention 365 days: moves to s3-mid, paying back in about 24 days.
* B on s3-dirty, retention 10 days: the move costs more than 10 days at rest on s3-mid saves.
* C on s3-mid, retention 365 days: only s3-green is greener, and residency forbids it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import pytest
from tests.rebalance.helpers import s3_backend, write_config
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, create_s3_bucket

from greenroute import GreenRouter, load_config
from greenroute.cli import main
from greenroute.model import EntryState
from greenroute.rebalance import RebalancePlan

SIZE = 1_000_000
GB = SIZE / 1e9
TB = SIZE / 1e12

# -- by hand ------------------------------------------------------------------------------------------
# at rest = TB * 0.65 Wh/TB·h * hours * replication 6 * PUE 1.0 * intensity / 1000
A_HOURS = 365 * 24
A_REST_DIRTY = TB * 0.65 * A_HOURS * 6 * 500 / 1000     # 0.017082 g
A_REST_MID = TB * 0.65 * A_HOURS * 6 * 100 / 1000       # 0.0034164 g
A_SAVING = A_REST_DIRTY - A_REST_MID                    # 0.0136656 g
# read: 1e6 B * 1e-9 Wh/B * PUE 1.0 at 500 g/kWh; transfer: 1e6 B * 1e-9 Wh/B at (500 + 100) / 2;
# write: 1e6 B * 1e-9 Wh/B * PUE 1.0 at 100 g/kWh
READ = GB * 1.0 * 500 / 1000                            # 0.0005 g
TRANSFER = GB * (500 + 100) / 2 / 1000                  # 0.0003 g
WRITE = GB * 1.0 * 100 / 1000                           # 0.0001 g
MOVE = READ + TRANSFER + WRITE                          # 0.0009 g
A_NET = A_SAVING - MOVE                                 # 0.0127656 g
A_PAYBACK_DAYS = MOVE / (A_SAVING / 365)                # 24.04 days
B_SAVING = TB * 0.65 * 10 * 24 * 6 * (500 - 100) / 1000  # 0.0003744 g over 10 days < 0.0009 g


@pytest.fixture
def config(tmp_path: Path, moto_server: LocalServer) -> Path:
    run = uuid.uuid4().hex[:12]
    buckets = {name: f"gr-be-{name}-{run}" for name in ("dirty", "mid", "green")}
    for bucket in buckets.values():
        create_s3_bucket(moto_server.endpoint, bucket)
    backends = [s3_backend("s3-dirty", "us-east-1", moto_server.endpoint, buckets["dirty"]),
                s3_backend("s3-mid", "us-west-2", moto_server.endpoint, buckets["mid"]),
                s3_backend("s3-green", "eu-north-1", moto_server.endpoint, buckets["green"])]
    path = write_config(tmp_path, backends, {"us-east-1": 500.0, "us-west-2": 100.0, "eu-north-1": 20.0},
                        allowed_countries=["US"])
    with GreenRouter.from_config(path) as router:
        router.write("lake/a.bin", b"a" * SIZE, candidates=["s3-dirty"], retention_days=365, metadata={"team": "a"})
        router.write("lake/b.bin", b"b" * SIZE, candidates=["s3-dirty"], retention_days=10)
        router.write("lake/c.bin", b"c" * SIZE, candidates=["s3-mid"], retention_days=365)
    return path


def test_three_objects_break_even_by_hand(config: Path) -> None:
    with GreenRouter.from_config(config) as router:
        plan = router.rebalance_plan(prefix="lake/")
    assert plan.signal.value == "average" and plan.considered == 3
    assert [m.path for m in plan.moves] == ["lake/a.bin"]
    a = plan.moves[0]
    assert (a.from_backend, a.to_backend, a.size, a.horizon) == ("s3-dirty", "s3-mid", SIZE, "retention")
    assert a.remaining_days == pytest.approx(365, abs=0.01)  # less the seconds since the write
    assert a.at_rest_from_gco2e == pytest.approx(A_REST_DIRTY, rel=1e-4)
    assert a.at_rest_to_gco2e == pytest.approx(A_REST_MID, rel=1e-4)
    assert a.saving_gco2e == pytest.approx(A_SAVING, rel=1e-4)
    assert (a.read_gco2e, a.transfer_gco2e, a.write_gco2e) == pytest.approx((READ, TRANSFER, WRITE), rel=1e-9)
    assert a.move_gco2e == pytest.approx(MOVE, rel=1e-9)
    assert a.net_gco2e == pytest.approx(A_NET, rel=1e-4)
    assert a.payback_days == pytest.approx(A_PAYBACK_DAYS, rel=1e-4) and a.payback_days < a.remaining_days

    kept = {k.path: k for k in plan.kept}
    b = kept["lake/b.bin"]
    assert b.code == "costs_more" and b.best_backend == "s3-mid"
    assert b.net_gco2e == pytest.approx(B_SAVING - MOVE, rel=1e-3)
    c = kept["lake/c.bin"]
    assert c.code == "not_eligible" and "s3-green" in c.reason and "residency" in c.reason

    totals = plan.totals
    assert totals["moves"] == 1 and totals["bytes"] == SIZE
    assert totals["net_gco2e"] == pytest.approx(A_NET, rel=1e-4)


def test_min_saving_keeps_a_move_that_saves_too_little(config: Path) -> None:
    with GreenRouter.from_config(config) as router:
        plan = router.rebalance_plan(prefix="lake/", min_saving_g=0.02)  # A nets 0.0128 g
    assert plan.moves == ()
    assert {k.path: k.code for k in plan.kept}["lake/a.bin"] == "below_min_saving"


def test_apply_moves_a_and_records_the_move(config: Path, moto_server: LocalServer) -> None:
    with GreenRouter.from_config(config) as router:
        plan = router.rebalance_plan(prefix="lake/")
        old = router.lookup("lake/a.bin")
        assert old is not None
        report = router.rebalance_apply(plan)
        assert [o.path for o in report.moved] == ["lake/a.bin"] and not report.failed and not report.skipped
        assert report.moved[0].gco2e == pytest.approx(MOVE, rel=1e-9)

        assert router.read("lake/a.bin") == b"a" * SIZE
        live = router.lookup("lake/a.bin")
        assert live is not None and live.backend_id == "s3-mid" and live.decision_id == plan.moves[0].move_id
        # The copy's write is the move, so the ledger (and every report) counts the move's carbon.
        assert live.write_gco2e == pytest.approx(MOVE, rel=1e-9) and live.retention_days == 365
        written = sum(e.write_gco2e for e in router.catalog.history("lake/a.bin"))
        assert written == pytest.approx(old.write_gco2e + MOVE, rel=1e-9)
        (record,) = [json.loads(m) for m in live.moves]
        assert (record["from"], record["to"], record["bytes"]) == ("s3-dirty", "s3-mid", SIZE)
        assert record["gco2e"] == pytest.approx(MOVE, rel=1e-9) and record["decision"] == live.decision_id
        assert record["replaced"] == old.decision_id and record["window"] == "now"

        closed = router.catalog.decision(old.decision_id)
        assert closed is not None and closed.state is EntryState.CLOSED and closed.closed_reason == "moved"

        md = router.stat("lake/a.bin").metadata
        assert md["team"] == "a" and md["greenroute_backend"] == "s3-mid"
        assert md["greenroute_move_of"] == old.decision_id
        assert float(md["greenroute_gco2e"]) == pytest.approx(MOVE, rel=1e-5)
        assert [(m["from"], m["to"]) for m in json.loads(md["greenroute_moves"])] == [("s3-dirty", "s3-mid")]

        # B and C did not move; the old copy of A is gone from s3-dirty, and nothing else was touched.
        assert router.lookup("lake/b.bin").backend_id == "s3-dirty"  # type: ignore[union-attr]
        assert router.lookup("lake/c.bin").backend_id == "s3-mid"  # type: ignore[union-attr]
        cfg = load_config(config)
        dirty_bucket = next(b.root for b in cfg.backends if b.id == "s3-dirty").split("/")[2]
        s3 = boto3.client("s3", endpoint_url=moto_server.endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=dirty_bucket).get("Contents", [])]
        s3.close()
        assert keys == ["data/lake/b.bin"]
        fsck = router.fsck(older_than_seconds=0)
        assert not (fsck.committed or fsck.orphans_deleted or fsck.repaired)

        again = router.rebalance_apply(plan)  # a re-run changes nothing
        assert [o.path for o in again.moved] == ["lake/a.bin"] and "resumed" in again.moved[0].reason
        assert router.lookup("lake/a.bin").decision_id == live.decision_id  # type: ignore[union-attr]


def test_cli_plan_then_apply(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_file = tmp_path / "plans" / "p.json"
    assert main(["rebalance", "plan", "--config", str(config), "--prefix", "lake/", "--json",
                 "--output", str(plan_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"] == str(plan_file)
    assert [m["path"] for m in printed["moves"]] == ["lake/a.bin"]
    assert printed["totals"]["net_gco2e"] == pytest.approx(A_NET, rel=1e-4)
    assert printed["kept_by_code"] == {"costs_more": 1, "not_eligible": 1}
    assert RebalancePlan.load(plan_file).moves[0].payback_days == pytest.approx(A_PAYBACK_DAYS, rel=1e-4)

    assert main(["rebalance", "apply", str(plan_file), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "moved 1, skipped 0, failed 0" in out
    assert "rebalancing" not in out  # no progress bar when the output is not a terminal
    with GreenRouter.from_config(config) as router:
        assert router.lookup("lake/a.bin").backend_id == "s3-mid"  # type: ignore[union-attr]

    # --json prints one JSON document and nothing else (a re-run: the move is already done).
    assert main(["rebalance", "apply", str(plan_file), "--config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["moved"], report["skipped"], report["failed"]) == (1, 0, 0)


def test_a_bad_plan_file_is_a_config_error(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    assert main(["rebalance", "apply", str(bad), "--config", str(config)]) == 2
    assert "not a greenroute rebalance plan" in capsys.readouterr().err
