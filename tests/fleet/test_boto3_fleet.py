"""Proof of a fleet (2): 8 processes x 4 threads write 2,000 objects through the boto3 drop-in.

Every process runs ``tests/fleet/boto3_writer.py`` with ``greenroute.boto3_client`` over one
PostgreSQL catalog and two moto S3 backends, with ``on_overwrite = "replace"``. Processes 0-3 may
place only on ``north``, processes 4-7 only on ``east``, and one write in five goes to one of 12 hot
keys that all of them write: hot keys move between the backends all the time, so each overwrite must
close the old entry and remove the old copy, and concurrent writers must resolve their races in the
catalog. At the end:

* every acknowledged write is in the ledger (2,000 committed or closed entries), and every key's
  object holds an acknowledged body: the only one for a key of its own, one of them for a hot key;
* no path has two live entries, and nothing is left pending;
* the catalog's live entries are exactly the union of the backends' own listings, and each object's
  ``greenroute_decision`` is the decision the catalog names.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .conftest import EAST, NORTH, REPO, Fleet, live_duplicates

PROCESSES = 8
OBJECTS = 2000
WRITER = Path(__file__).with_name("boto3_writer.py")


def test_eight_processes_of_four_threads_write_through_one_catalog(fleet: Fleet, tmp_path: Path) -> None:
    configs = {NORTH: fleet.config("north.toml", only=NORTH, on_overwrite="replace"),
               EAST: fleet.config("east.toml", only=EAST, on_overwrite="replace")}
    start_at = time.time() + 12.0  # every process has imported boto3 and greenroute by then
    procs = []
    for n in range(PROCESSES):
        config = configs[NORTH if n < PROCESSES // 2 else EAST]
        procs.append(subprocess.Popen([sys.executable, str(WRITER), str(config), str(n), str(OBJECTS // PROCESSES),
                                       str(start_at), str(tmp_path / f"out-{n}.json")], cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, [err[-1500:] for _, err in outputs]
    results = [json.loads((tmp_path / f"out-{n}.json").read_text()) for n in range(PROCESSES)]
    errors = [e for r in results for e in r["errors"]]
    assert errors == []
    acked: dict[str, list[str]] = {}
    for r in results:
        for a in r["acked"]:
            acked.setdefault(f"fleet/{a['key']}", []).append(a["body"])
    assert sum(len(bodies) for bodies in acked.values()) == OBJECTS
    hot = {path for path in acked if path.startswith("fleet/hot/")}
    assert len(hot) == 12 and all(len(acked[p]) > 1 for p in hot)
    used = {a["backend"] for r in results for a in r["acked"]}
    assert used == {NORTH, EAST}

    catalog = fleet.catalog()
    try:
        live = catalog.list("fleet/")
        ledger = list(catalog.history("fleet/"))
        pending = catalog.pending()
    finally:
        catalog.close()
    assert live_duplicates(fleet) == []
    assert pending == []
    assert len(ledger) == OBJECTS  # every acknowledged write is one entry: live, or closed by a later one
    assert {e.path for e in live} == set(acked)
    stored = fleet.stored()
    assert set(stored) == {(e.backend_id, e.path) for e in live}  # the catalog is the union of the listings

    by_path = {e.path: e for e in live}
    fleet.plain(NORTH), fleet.plain(EAST)  # made once, before the threads share them

    def check(entry_path: str) -> str | None:
        entry = by_path[entry_path]
        metadata = fleet.head(entry.url)
        body = fleet.get(entry.url).decode()
        if metadata.get("greenroute_decision") != entry.decision_id:
            return f"{entry.path}: object holds {metadata.get('greenroute_decision')}, catalog {entry.decision_id}"
        if body not in acked[entry.path]:
            return f"{entry.path}: holds an unacknowledged body {body!r}"
        return None

    with ThreadPoolExecutor(8) as pool:
        problems = [p for p in pool.map(check, sorted(acked)) if p is not None]
    assert problems == []
