"""GreenRouter's coroutines (awrite, aread, aread_entry, acopy) over real targets and a real SQLite catalog.

They drive the same write steps as the blocking entry points; these tests check that the results
are the same, that failover works when the target's own coroutine fails (an S3 backend whose
endpoint refuses connections), and that writers of one path, blocking and async at once, leave
the catalog naming the decision whose bytes the object holds.
"""

from __future__ import annotations

import asyncio
import io
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.servers.local import closed_port, s3_storage_options

from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog


def _memory(tag: str, id_: str, region: str, pue: float) -> Backend:
    return Backend(id=id_, provider=Provider.MEMORY, region=region, root=f"memory://{tag}/{id_}", pue=pue,
                   renewable_pct=100.0)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[GreenRouter]:
    tag = uuid.uuid4().hex[:12]
    backends = [_memory(tag, "north", "eu-north-1", 1.10), _memory(tag, "virginia", "us-east-1", 1.30)]
    with GreenRouter(GreenPlacementService(backends), SqliteCatalog(tmp_path / "catalog.db")) as r:
        yield r


def test_coroutines_do_what_the_blocking_entry_points_do(router: GreenRouter) -> None:
    async def main() -> None:
        written = await router.awrite("lake/a.bin", bytearray(b"0123456789"), metadata={"team": "data"},
                                      retention_days=30)
        streamed = await router.awrite("lake/s.bin", io.BytesIO(b"streamed"), candidates=["virginia"])
        assert (written.backend_id, written.size, streamed.backend_id, streamed.size) == ("north", 10, "virginia", 8)
        assert await router.aread("lake/a.bin") == b"0123456789"
        assert await router.aread("lake/a.bin", 2, 5) == b"234"
        entry = router.lookup("lake/s.bin")
        assert entry is not None and await router.aread_entry(entry) == b"streamed"
        copied = await router.acopy("lake/a.bin", "lake/copy.bin", candidates=["virginia"])
        assert copied.backend_id == "virginia" and await router.aread("lake/copy.bin") == b"0123456789"
        with pytest.raises(FileNotFoundError):
            await router.aread("lake/missing")
        with pytest.raises(FileExistsError):
            await router.awrite("lake/a.bin", b"x", exclusive=True)

    asyncio.run(main())
    blocking = router.write("lake/b.bin", b"0123456789", metadata={"team": "data"}, retention_days=30)
    a, b = router.stat("lake/a.bin"), router.stat("lake/b.bin")
    assert a.entry.decision_id == a.metadata["greenroute_decision"]
    assert a.metadata["team"] == "data" and a.metadata["greenroute_gco2e"] == b.metadata["greenroute_gco2e"]
    assert (a.entry.retention_days, a.entry.write_gco2e) == (b.entry.retention_days, blocking.write_gco2e)
    assert router.stat("lake/copy.bin").metadata["team"] == "data"


def test_awrite_fails_over_when_the_targets_coroutine_cannot_connect(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:12]
    dead = Backend(id="dead-s3", provider=Provider.S3, region="eu-north-1", root="s3://gr-dead/data", pue=1.05,
                   renewable_pct=100.0,
                   storage_options=s3_storage_options(f"http://127.0.0.1:{closed_port()}", retries=1))
    backends = [dead, _memory(tag, "virginia", "us-east-1", 1.30)]
    with GreenRouter(GreenPlacementService(backends), SqliteCatalog(tmp_path / "catalog.db")) as router:
        assert router.placement.select_greenest_backend(None, 1).backend_id == "dead-s3"
        result = asyncio.run(router.awrite("lake/x.bin", b"payload"))
        assert result.backend_id == "virginia"
        assert len(result.failovers) == 1 and result.failovers[0].startswith("dead-s3: ")
        entry = router.lookup("lake/x.bin")
        assert entry is not None and entry.failovers == result.failovers and router.catalog.pending() == []
        assert router.read("lake/x.bin") == b"payload"


def test_blocking_and_async_writers_of_one_path_leave_the_catalog_true(router: GreenRouter) -> None:
    def blocking(n: int) -> None:
        for i in range(20):
            router.write("lake/hot.bin", b"thread %d %d" % (n, i))

    async def main() -> None:
        await asyncio.gather(*(router.awrite("lake/hot.bin", b"task %d" % i) for i in range(40)))

    threads = [threading.Thread(target=blocking, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    asyncio.run(main())
    for t in threads:
        t.join()
    stat = router.stat("lake/hot.bin")
    assert stat.metadata["greenroute_decision"] == stat.entry.decision_id
    assert router.read("lake/hot.bin") in {b"task %d" % i for i in range(40)} | {
        b"thread %d %d" % (n, i) for n in range(3) for i in range(20)}
    history = [e for e in router.catalog.history("lake/hot.bin")]
    assert len(history) == 100  # every write was committed, then closed by the next
