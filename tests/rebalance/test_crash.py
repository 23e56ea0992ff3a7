"""Crash safety: ``greenroute rebalance apply`` killed with SIGKILL three times, then run to completion.

200 objects (100 on an S3 bucket in moto, 100 on an Azure container in Azurite, both on dirty
grids) move to an Azurite container on a clean grid. The apply runs as a subprocess and is killed at
random points (after a random number of moves, plus a random delay, so the kill lands inside any
step of a move), three times; a fourth run completes. Then every object is readable through the
router with its bytes unchanged, no path has two live entries, every old entry is closed once as
"moved", no copy is left on any backend besides the live ones, and ``fsck`` finds nothing to do.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.rebalance.helpers import azure_backend, s3_backend, write_config
from tests.servers.local import LocalServer, create_azure_container, create_s3_bucket

from greenroute import GreenRouter
from greenroute.adapters.catalog.sqlite import SqliteCatalog

OBJECTS = 200


def test_apply_killed_three_times_then_completed(tmp_path: Path, moto_server: LocalServer,
                                                 azurite_server: LocalServer) -> None:
    seed = int(os.environ.get("GREENROUTE_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (GREENROUTE_TEST_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:12]
    create_s3_bucket(moto_server.endpoint, f"gr-rb-s3-{run}")
    create_azure_container(azurite_server.endpoint, f"gr-rb-dirty-{run}")
    create_azure_container(azurite_server.endpoint, f"gr-rb-clean-{run}")
    config = write_config(tmp_path, [
        s3_backend("s3-dirty", "us-east-1", moto_server.endpoint, f"gr-rb-s3-{run}", pue=1.15),
        azure_backend("az-dirty", "eastus", azurite_server.endpoint, f"gr-rb-dirty-{run}", pue=1.18),
        azure_backend("az-clean", "swedencentral", azurite_server.endpoint, f"gr-rb-clean-{run}", pue=1.18),
    ], {"us-east-1": 420.0, "eastus": 450.0, "swedencentral": 20.0})

    originals: dict[str, bytes] = {}
    with GreenRouter.from_config(config) as router:
        for i in range(OBJECTS):
            source = "s3-dirty" if i % 2 == 0 else "az-dirty"
            path = f"archive/{source}/{i:03d}.bin"
            originals[path] = rng.randbytes(rng.randrange(1, 48_000))
            router.write(path, originals[path], candidates=[source], retention_days=3650, metadata={"seq": str(i)})
        plan = router.rebalance_plan(prefix="archive/")
    assert len(plan.moves) == OBJECTS and {m.to_backend for m in plan.moves} == {"az-clean"}
    plan_file = plan.save(tmp_path / "plan.json")

    catalog = SqliteCatalog(tmp_path / "catalog.db")

    def moved() -> int:
        return sum(1 for e in catalog.list("archive/") if e.backend_id == "az-clean")

    command = [sys.executable, "-m", "greenroute.cli", "rebalance", "apply", str(plan_file), "--config",
               str(config), "--json", "--workers", "4"]
    thresholds = sorted(rng.sample(range(10, OBJECTS - 30), 3))
    kills = []
    for threshold in thresholds:
        process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while moved() < threshold:
            assert process.poll() is None, f"apply ended before it was killed: {process.communicate()}"
            assert time.monotonic() < deadline, "apply made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.08))  # land anywhere inside a move
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        assert process.returncode == -signal.SIGKILL
        kills.append(moved())
    print(f"killed after {kills} moves (thresholds {thresholds})")
    assert kills == sorted(kills) and kills[-1] < OBJECTS

    final = subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=300, check=False)
    assert final.returncode == 0, final.stderr.decode()
    report = json.loads(final.stdout)
    assert (report["moved"], report["skipped"], report["failed"]) == (OBJECTS, 0, 0)

    with GreenRouter.from_config(config) as router:
        # Every object is readable through the router, with its bytes unchanged, on the clean backend.
        for path, data in originals.items():
            assert router.read(path) == data, path
            assert router.lookup(path).backend_id == "az-clean"  # type: ignore[union-attr]
        # No orphan copies: the dirty backends are empty and the clean one holds exactly the live objects.
        for backend in ("s3-dirty", "az-dirty"):
            assert list(router.target(backend).list("")) == [], backend
        live = {e.path: e for e in router.list("archive/")}
        found = {info.path: info for info in router.target("az-clean").list("")}
        assert sorted(found) == sorted(originals)
        assert all(found[p].metadata["greenroute_decision"] == live[p].decision_id for p in found)
        fsck = router.fsck(older_than_seconds=0)
        assert (fsck.committed, fsck.repaired, fsck.orphans_deleted, fsck.dropped, fsck.unreachable) == \
            ([], [], [], [], {})

    # The ledger: one live entry per path, each old entry closed once as "moved", each move recorded once.
    db = sqlite3.connect(tmp_path / "catalog.db")
    try:
        assert db.execute("SELECT path FROM entries WHERE state = 'committed' GROUP BY path "
                          "HAVING COUNT(*) > 1").fetchall() == []
        assert db.execute("SELECT COUNT(*) FROM entries WHERE state = 'committed'").fetchone() == (OBJECTS,)
        assert db.execute("SELECT COUNT(*) FROM entries WHERE closed_reason = 'moved'").fetchone() == (OBJECTS,)
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone() == (2 * OBJECTS,)
    finally:
        db.close()
    for entry in live.values():
        (record,) = [json.loads(m) for m in entry.moves]
        assert record["decision"] == entry.decision_id and record["to"] == "az-clean"
        assert record["bytes"] == len(originals[entry.path]) and record["gco2e"] > 0
    catalog.close()
