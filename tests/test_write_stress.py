"""Many processes writing the same paths through one catalog: nothing acknowledged is lost or misdescribed.

8 processes write 2,000 objects over 50 keys to three local-directory backends that share one
SQLite catalog, half in keep mode and half in replace mode (each write picks its candidates at
random, so replace mode moves objects between backends). Each process logs every write it was
acknowledged. Afterwards: every live entry's size and decision match its object; every acknowledged
write is either the live entry of its path or was superseded by a later acknowledged write; there
are no orphan objects; and ``fsck`` finds nothing to do. Then 8 processes race one exclusive create.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.storage.file import FileTarget
from greenroute.model import EntryState

PROCESSES = 8
WRITES_PER_PROCESS = 250
KEYS = 50

_SETUP = """
import hashlib, json, random, sys, time
from pathlib import Path
from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.storage.file import FileTarget

root, n = Path(sys.argv[1]), int(sys.argv[2])
backends = [Backend(id=name, provider=Provider.FILE, region=region, root=f"file://{root / name}", pue=1.1,
                    renewable_pct=100.0)
            for name, region in (("a", "eu-north-1"), ("b", "us-west-2"), ("c", "us-east-1"))]

def router(mode):
    return GreenRouter(GreenPlacementService(backends), SqliteCatalog(root / "catalog.db"), target_factory=FileTarget,
                       on_overwrite=mode)
"""

_WRITER = _SETUP + """
writes, keys = int(sys.argv[3]), int(sys.argv[4])
mode = "keep" if n % 2 == 0 else "replace"
r = router(mode)
rng = random.Random(n)
ids = [b.id for b in backends]
with open(root / f"acks-{n}.jsonl", "w") as log:
    for i in range(writes):
        path = f"ns/key-{rng.randrange(keys):02d}"
        data = f"{n}:{i}:".encode() * rng.randint(1, 40)
        candidates = rng.sample(ids, rng.randint(1, 3))
        result = r.write(path, data, candidates=candidates)
        log.write(json.dumps({"path": path, "decision": result.decision.decision_id,
                              "sha": hashlib.sha256(data).hexdigest(), "size": len(data)}) + "\\n")
r.close()
"""

_CREATOR = _SETUP + """
start = float(sys.argv[3])
r = router("keep")
while time.time() < start:
    time.sleep(0.001)
try:
    result = r.write("ns/only-once", f"creator {n}".encode(), exclusive=True)
    print("created", result.decision.decision_id)
except FileExistsError:
    print("exists")
r.close()
"""


def _router(root: Path) -> GreenRouter:
    backends = [Backend(id=name, provider=Provider.FILE, region=region, root=f"file://{root / name}", pue=1.1,
                        renewable_pct=100.0)
                for name, region in (("a", "eu-north-1"), ("b", "us-west-2"), ("c", "us-east-1"))]
    return GreenRouter(GreenPlacementService(backends), SqliteCatalog(root / "catalog.db"), target_factory=FileTarget)


def test_eight_processes_two_modes_two_thousand_writes_lose_and_misdescribe_nothing(tmp_path: Path) -> None:
    _router(tmp_path).close()  # the schema exists before the processes start
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(n), str(WRITES_PER_PROCESS),
                               str(KEYS)], stderr=subprocess.PIPE, text=True) for n in range(PROCESSES)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCESSES, [err[-2000:] for err in errors if err]

    acks = [json.loads(line) for n in range(PROCESSES)
            for line in (tmp_path / f"acks-{n}.jsonl").read_text().splitlines()]
    assert len(acks) == PROCESSES * WRITES_PER_PROCESS

    router = _router(tmp_path)
    live = {e.path: e for e in router.list()}
    history = list(router.catalog.history())
    order = {e.decision_id: i for i, e in enumerate(history)}  # commit order
    by_decision = {a["decision"]: a for a in acks}

    # Every live entry describes its object exactly, and is an acknowledged write.
    for path, entry in live.items():
        info = router.target(entry.backend_id).stat(path)
        assert info.metadata["greenroute_decision"] == entry.decision_id, path
        assert info.size == entry.size, path
        ack = by_decision[entry.decision_id]
        assert hashlib.sha256(router.read(path)).hexdigest() == ack["sha"]

    # Every acknowledged write was committed, and is live or superseded by a later acknowledged write.
    for ack in acks:
        assert ack["decision"] in order, ack
        current = live[ack["path"]]
        assert current.decision_id in by_decision
        assert order[current.decision_id] >= order[ack["decision"]]
    assert sum(e.state is EntryState.COMMITTED for e in history) == len(live)

    # No orphan objects: the backends hold exactly the live entries.
    on_backends = sorted((b.id, info.path) for b in router.placement.backends for info in router.target(b.id).list(""))
    assert on_backends == sorted((e.backend_id, e.path) for e in live.values())
    report = router.fsck(older_than_seconds=0)
    assert (report.committed, report.repaired, report.orphans_deleted, report.unreachable) == ([], [], [], {})
    router.close()


def test_exactly_one_of_eight_concurrent_exclusive_creates_succeeds(tmp_path: Path) -> None:
    _router(tmp_path).close()
    import time

    start = time.time() + 3.0  # every process is up and waiting before any of them writes
    procs = [subprocess.Popen([sys.executable, "-c", _CREATOR, str(tmp_path), str(n), str(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(PROCESSES)]
    outs = [p.communicate(120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    lines = [out.strip() for out, _ in outs]
    created = [line for line in lines if line.startswith("created")]
    assert len(created) == 1 and lines.count("exists") == PROCESSES - 1
    router = _router(tmp_path)
    entry = router.lookup("ns/only-once")
    assert entry is not None and created[0] == f"created {entry.decision_id}"
    assert router.stat("ns/only-once").metadata["greenroute_decision"] == entry.decision_id
    assert router.catalog.pending() == []
    router.close()
