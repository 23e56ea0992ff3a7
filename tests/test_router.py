"""GreenRouter over real memory and local-directory targets and a real SQLite catalog.

Faults are injected with ``FlakyTarget``, a ``StorageTarget`` that wraps a real target and fails
on demand, the way a cloud endpoint would; greenroute's own code runs unpatched.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import pytest

from greenroute import (
    AllBackendsFailedError,
    Backend,
    GreenPlacementService,
    GreenRouter,
    GridSignals,
    InvalidPathError,
    ManualGridSource,
    NoEligibleBackendError,
    Provider,
    StorageError,
    TargetUnavailableError,
)
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.storage.file import FileTarget
from greenroute.adapters.storage.memory import MemoryTarget
from greenroute.errors import InvalidMetadataError
from greenroute.ports import METADATA_KEYS, ObjectInfo, StorageTarget
from greenroute.router import target_from_entry_point


class FlakyTarget:
    """A real target that fails on demand, counting write attempts."""

    def __init__(self, inner: StorageTarget) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.max_path_bytes = inner.max_path_bytes
        self.fail_with: BaseException | None = None
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, path: str, data: bytes | IO[bytes], metadata: Mapping[str, str]) -> ObjectInfo:
        self.writes += 1
        if self.fail_with is not None:
            raise self.fail_with
        return self.inner.write(path, data, metadata)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)


def _backends(tag: str) -> list[Backend]:
    def b(id_: str, region: str, pue: float) -> Backend:
        return Backend(id=id_, provider=Provider.MEMORY, region=region, root=f"memory://{tag}/{id_}", pue=pue,
                       renewable_pct=100.0)

    return [b("north", "eu-north-1", 1.10), b("oregon", "us-west-2", 1.12), b("virginia", "us-east-1", 1.15)]


Factory = Callable[..., tuple[GreenRouter, dict[str, FlakyTarget]]]


@pytest.fixture
def make_router(tmp_path: Path) -> Iterator[Factory]:
    routers: list[GreenRouter] = []

    def make(*, signals: GridSignals | None = None, on_overwrite: str = "keep",
             backends: list[Backend] | None = None) -> tuple[GreenRouter, dict[str, FlakyTarget]]:
        targets: dict[str, FlakyTarget] = {}

        def factory(backend: Backend) -> StorageTarget:
            targets[backend.id] = FlakyTarget(target_from_entry_point(backend))
            return targets[backend.id]  # type: ignore[return-value]

        service = GreenPlacementService(backends or _backends(uuid.uuid4().hex), signals=signals)
        router = GreenRouter(service, SqliteCatalog(tmp_path / f"catalog-{len(routers)}.db"),
                             target_factory=factory, on_overwrite=on_overwrite)  # type: ignore[arg-type]
        routers.append(router)
        for backend in service.backends:
            router.target(backend.id)
        return router, targets

    yield make
    for r in routers:
        r.close()


def test_write_read_stat_list_delete(make_router: Factory) -> None:
    router, _ = make_router()
    result = router.write("lake/sales/2026-11.csv", b"a,b\n1,2\n", metadata={"team": "data"}, retention_days=30)
    assert result.backend_id == "north"
    assert result.url.endswith("/north/lake/sales/2026-11.csv")
    assert result.size == 8
    assert result.write_gco2e == pytest.approx(8 * 1e-9 * 1.10 * 21 / 1000)
    assert router.read("lake/sales/2026-11.csv") == b"a,b\n1,2\n"
    assert router.read("lake/sales/2026-11.csv", 2, 5) == b"b\n1"
    stat = router.stat("lake/sales/2026-11.csv")
    md = stat.metadata
    assert set(METADATA_KEYS) <= set(md) and md["team"] == "data"
    assert md["greenroute_backend"] == "north" and md["greenroute_path"] == "lake/sales/2026-11.csv"
    assert md["greenroute_decision"] == result.decision.decision_id
    assert float(md["greenroute_gco2e"]) == pytest.approx(result.write_gco2e, rel=1e-5)
    assert md["greenroute_signal"] == "average" and md["greenroute_source"] == "embedded"
    assert stat.entry.size == 8
    router.write("lake/sales/2026-12.csv", b"x")
    router.write("lake/other.txt", b"y")
    assert [e.path for e in router.list("lake/sales")] == ["lake/sales/2026-11.csv", "lake/sales/2026-12.csv"]
    assert [e.path for e in router.list("lake", recursive=False)] == ["lake/other.txt"]
    router.delete("lake/other.txt")
    assert not router.exists("lake/other.txt")
    with pytest.raises(FileNotFoundError):
        router.read("lake/other.txt")
    with pytest.raises(FileNotFoundError):
        router.delete("lake/other.txt")


@pytest.mark.parametrize(("path", "why"), [
    ("", "empty path"), ("/abs/path", "absolute"), ("s3://bucket/key", "absolute"), ("a/../b", "'..'"),
    ("a/b\x00c", "NUL"), ("a//b", "empty or '.' segment"), ("a/./b", "empty or '.' segment"),
    ("a/b/", "ends with '/'"), ("single", "namespace/key"), ("a/b\nc", "control character"),
    ("ns/" + "k" * 1100, "too long for every candidate target"),
])
def test_bad_paths_are_rejected_before_anything_is_written(make_router: Factory, path: str, why: str) -> None:
    router, targets = make_router()
    with pytest.raises(InvalidPathError, match=why):
        router.write(path, b"data")
    assert all(t.writes == 0 for t in targets.values())
    assert router.catalog.pending() == [] and router.list() == []


@pytest.mark.parametrize("metadata", [{"Team": "x"}, {"greenroute_gco2e": "0"}, {"bad-key": "x"}, {"k": 1},
                                      {"k": "v" * 3000}])
def test_bad_user_metadata_is_rejected(make_router: Factory, metadata: dict[str, Any]) -> None:
    router, targets = make_router()
    with pytest.raises(InvalidMetadataError, match="invalid metadata") as info:
        router.write("ns/key", b"data", metadata=metadata)
    assert isinstance(info.value, ValueError) and not isinstance(info.value, InvalidPathError)
    assert router.list() == [] and router.catalog.pending() == []
    assert all(t.writes == 0 for t in targets.values())


def test_streamed_write_binds_carbon_values_at_close(make_router: Factory) -> None:
    router, _ = make_router()
    with router.open("ns/stream.bin", "wb") as f:  # no size hint: placed for 0 bytes
        for _ in range(10):
            f.write(b"z" * 100_000)
    stat = router.stat("ns/stream.bin")
    assert stat.entry.size == 1_000_000
    expected = 1_000_000 * 1e-9 * 1.10 * 21 / 1000
    assert float(stat.metadata["greenroute_gco2e"]) == pytest.approx(expected, rel=1e-5)
    assert stat.entry.write_gco2e == pytest.approx(expected)
    with router.open("ns/stream.bin", "rb") as r:
        assert r.read() == b"z" * 1_000_000


def test_a_failed_stream_commits_nothing(make_router: Factory) -> None:
    router, _ = make_router()
    with pytest.raises(RuntimeError), router.open("ns/broken.bin", "wb") as f:
        f.write(b"partial")
        raise RuntimeError("producer died")
    assert not router.exists("ns/broken.bin")
    assert router.catalog.pending() == []
    assert list(router.target("north").list("ns/")) == []


def test_overwrite_keeps_the_current_backend_by_default(make_router: Factory) -> None:
    pinned = ManualGridSource({"eu-north-1": 21.0, "us-west-2": 197.0, "us-east-1": 403.0})
    router, _ = make_router(signals=GridSignals([pinned], cache_ttl_seconds=0))
    assert router.write("ns/k", b"v1").backend_id == "north"
    pinned.set("eu-north-1", 900.0)  # now Oregon is greenest
    assert router.write("ns/other", b"x").backend_id == "oregon"
    rewrite = router.write("ns/k", b"v2")
    assert rewrite.backend_id == "north"
    assert router.read("ns/k") == b"v2"


def test_overwrite_replace_moves_the_object_and_deletes_the_old_copy(make_router: Factory) -> None:
    pinned = ManualGridSource({"eu-north-1": 21.0, "us-west-2": 197.0, "us-east-1": 403.0})
    router, _ = make_router(signals=GridSignals([pinned], cache_ttl_seconds=0), on_overwrite="replace")
    router.write("ns/k", b"v1")
    pinned.set("eu-north-1", 900.0)
    result = router.write("ns/k", b"v2")
    assert result.backend_id == "oregon"
    assert router.read("ns/k") == b"v2"
    assert [e.backend_id for e in router.list("ns/")] == ["oregon"]  # never two live copies
    assert [o.path for o in router.target("north").list("ns/")] == []


def test_failover_to_the_next_best_backend_is_recorded(make_router: Factory) -> None:
    router, targets = make_router()
    targets["north"].fail_with = TargetUnavailableError("connection refused", backend_id="north")
    result = router.write("ns/k", io.BytesIO(b"payload"))
    assert result.backend_id == "oregon"
    assert result.failovers == ("north: connection refused",)
    entry = router.lookup("ns/k")
    assert entry is not None and entry.failovers == ("north: connection refused",)
    assert router.read("ns/k") == b"payload"
    assert router.stat("ns/k").metadata["greenroute_backend"] == "oregon"
    # The breaker is open: the next write does not even try north.
    assert router.write("ns/k2", b"x").backend_id == "oregon"
    assert targets["north"].writes == 1
    assert router.catalog.pending() == []


def test_when_every_backend_fails_nothing_is_left_behind(make_router: Factory) -> None:
    router, targets = make_router()
    for t in targets.values():
        t.fail_with = TargetUnavailableError("503 Slow Down", backend_id=t.backend.id)
    with pytest.raises(AllBackendsFailedError) as info:
        router.write("ns/k", b"data")
    assert set(info.value.failures) == {"north", "oregon", "virginia"}
    assert isinstance(info.value, OSError)
    assert router.catalog.pending() == [] and router.list() == []
    assert all(list(t.inner.list("")) == [] for t in targets.values())


def test_client_errors_are_not_failed_over(make_router: Factory) -> None:
    router, targets = make_router()
    denied = PermissionError(13, "AccessDenied", "north/ns/k")
    targets["north"].fail_with = denied
    with pytest.raises(PermissionError) as info:
        router.write("ns/k", b"data")
    assert info.value is denied
    assert targets["oregon"].writes == 0
    assert router.catalog.pending() == [] and router.list() == []


def test_copy_and_move(make_router: Factory) -> None:
    router, _ = make_router()
    router.write("ns/src", b"content", metadata={"owner": "ana"})
    copied = router.copy("ns/src", "ns/dst")
    assert router.read("ns/dst") == b"content"
    md = router.stat("ns/dst").metadata
    assert md["owner"] == "ana" and md["greenroute_path"] == "ns/dst"
    assert md["greenroute_decision"] == copied.decision.decision_id
    router.move("ns/dst", "ns/moved")
    assert not router.exists("ns/dst") and router.read("ns/moved") == b"content"


def test_concurrent_writers_all_land(make_router: Factory) -> None:
    router, _ = make_router()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                router.write(f"ns/t{n}/{i}", f"{n}-{i}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(router.list("ns/")) == 200
    assert router.read("ns/t3/7") == b"3-7"


def test_no_eligible_backend(make_router: Factory) -> None:
    router, _ = make_router()
    with pytest.raises(NoEligibleBackendError):
        router.write("ns/k", b"x", candidates=["nowhere"])


# -- crash recovery and reindex, on local directories -----------------------------------------

_CRASHING_WRITER = """
import os, sys
from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.storage.file import FileTarget
from greenroute.adapters.catalog.sqlite import SqliteCatalog

root, db = sys.argv[1], sys.argv[2]

class CrashAfterWrite(FileTarget):
    def write(self, path, data, metadata):
        info = super().write(path, data, metadata)
        if path.endswith("crash.bin"):
            os._exit(137)  # the process dies between the object write and the catalog commit
        return info

backend = Backend(id="disk", provider=Provider.FILE, region="eu-north-1", root=f"file://{root}", pue=1.1)
router = GreenRouter(GreenPlacementService([backend]), SqliteCatalog(db), target_factory=CrashAfterWrite)
router.write("ns/ok.bin", b"fine")
router.write("ns/crash.bin", b"written but never committed")
"""


def _disk_router(root: Path, db: Path) -> GreenRouter:
    backend = Backend(id="disk", provider=Provider.FILE, region="eu-north-1", root=f"file://{root}", pue=1.1)
    return GreenRouter(GreenPlacementService([backend]), SqliteCatalog(db), target_factory=FileTarget)


def test_a_crash_between_write_and_commit_is_repaired_by_fsck(tmp_path: Path) -> None:
    root, db = tmp_path / "disk", tmp_path / "catalog.db"
    proc = subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(root), str(db)], check=False)
    assert proc.returncode == 137
    router = _disk_router(root, db)
    assert not router.exists("ns/crash.bin")  # invisible, not lost
    assert router.catalog.pending() == []  # no pending record on the hot path: the object describes itself
    assert router.fsck().skipped_recent == ["ns/crash.bin"]  # might still be in flight
    report = router.fsck(older_than_seconds=0)
    assert report.committed == ["ns/crash.bin"] and report.dropped == []
    assert router.read("ns/crash.bin") == b"written but never committed"
    assert router.lookup("ns/crash.bin").size == 27  # type: ignore[union-attr]
    assert router.catalog.pending() == []
    router.close()


def test_fsck_drops_pending_entries_whose_object_is_missing(tmp_path: Path) -> None:
    router = _disk_router(tmp_path / "disk", tmp_path / "catalog.db")
    router.write("ns/a", b"a")
    decision = router.placement.select_greenest_backend(None, 1)
    router.catalog.begin(router._pending("ns/ghost", decision, router.target("disk")))
    report = router.fsck(older_than_seconds=0)
    assert report.dropped == ["ns/ghost"] and report.committed == []
    assert not router.exists("ns/ghost") and router.exists("ns/a")
    router.close()


def test_reindex_rebuilds_a_wiped_catalog(tmp_path: Path) -> None:
    router = _disk_router(tmp_path / "disk", tmp_path / "catalog.db")
    for i in range(12):
        router.write(f"ns/dir{i % 3}/obj{i}", bytes([i]) * (i + 1), metadata={"n": str(i)})
    before = {e.path: e for e in router.list()}
    router.catalog.clear()
    assert router.list() == []
    report = router.reindex()
    assert report.entries == 12 and report.duplicates == [] and report.foreign == []
    after = {e.path: e for e in router.list()}
    assert after.keys() == before.keys()
    for path, old in before.items():
        new = after[path]
        assert (new.backend_id, new.url, new.size, new.decision_id, new.signal, new.source) == (
            old.backend_id, old.url, old.size, old.decision_id, old.signal, old.source)
        assert new.write_gco2e == pytest.approx(old.write_gco2e, rel=1e-5)
        assert new.gco2e_month == pytest.approx(old.gco2e_month, rel=1e-5)
    assert router.read("ns/dir1/obj4") == bytes([4]) * 5
    router.close()


def test_memory_target_class_is_what_the_entry_point_builds() -> None:
    backend = Backend(id="m", provider=Provider.MEMORY, region="eu-north-1", root="memory://ep-check/m", pue=1.0)
    assert isinstance(target_from_entry_point(backend), MemoryTarget)


def test_concurrent_writes_of_one_path_leave_catalog_and_object_agreeing(make_router: Factory) -> None:
    router, _ = make_router()
    barrier = threading.Barrier(16)

    def writer(n: int) -> None:
        barrier.wait()
        router.write("ns/hot-key", f"writer-{n}".encode() * 1000)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entry = router.lookup("ns/hot-key")
    assert entry is not None
    stat = router.stat("ns/hot-key")
    assert stat.metadata["greenroute_decision"] == entry.decision_id  # the object is the committed write
    assert router.catalog.pending() == []


def test_a_dropped_stream_commits_nothing(make_router: Factory) -> None:
    import gc

    router, _ = make_router()
    stream = router.open("ns/dropped.bin", "wb")
    stream.write(b"half")
    del stream
    gc.collect()
    assert not router.exists("ns/dropped.bin")
    assert router.catalog.pending() == []


def test_probe_finds_an_uncatalogued_object_and_repairs_the_catalog(make_router: Factory) -> None:
    router, _ = make_router()
    written = router.write("ns/lost", b"still here")
    router.catalog.remove("ns/lost")
    assert not router.exists("ns/lost")
    entry = router.probe("ns/lost")
    assert entry is not None and entry.backend_id == written.backend_id
    assert entry.decision_id == written.decision.decision_id
    assert router.read("ns/lost") == b"still here"
    assert router.probe("ns/never-written") is None


def test_an_entry_on_an_unconfigured_backend_is_a_storage_error(make_router: Factory, tmp_path: Path) -> None:
    router, _ = make_router()
    router.write("ns/k", b"v")
    other = GreenRouter(GreenPlacementService(_backends("elsewhere")[2:]), router.catalog)
    with pytest.raises(StorageError, match="not configured"):
        other.read("ns/k")
