"""``GreenRouter.open_multipart`` itself, on memory backends: what the drop-in's multipart calls rest on.

An exclusive upload reserves its path when it is opened; an exclusive completion reserves it before the
parts are joined; a completed upload commits once through the compare-and-set, with the carbon values of
its real size; an abort releases everything.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from greenroute import GreenPlacementService, GreenRouter
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.model import Backend, Provider


@pytest.fixture
def router() -> Iterator[GreenRouter]:
    backends = [Backend(id=f"mem-{region}", provider=Provider.MEMORY, region=region, pue=1.1,
                        root=f"memory://gr-router-mp-{uuid.uuid4().hex[:12]}/{region}")
                for region in ("eu-north-1", "us-east-1")]
    with GreenRouter(GreenPlacementService(backends), SqliteCatalog(":memory:")) as router:
        yield router


def test_parts_from_threads_commit_once_with_the_real_sizes_carbon(router: GreenRouter) -> None:
    upload = router.open_multipart("media/a.bin", size_hint=10, metadata={"team": "a"})
    parts = {n: bytes([n]) * (1000 * n) for n in range(1, 9)}
    threads = [threading.Thread(target=upload.upload_part, args=(n, parts[n])) for n in reversed(parts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert router.lookup("media/a.bin") is None  # nothing committed before completion
    result = upload.complete(list(parts))
    data = b"".join(parts[n] for n in sorted(parts))
    assert router.read("media/a.bin") == data and result.size == len(data)
    entry = router.lookup("media/a.bin")
    assert entry is not None and entry.decision_id == result.decision.decision_id
    assert entry.write_gco2e == pytest.approx(router._estimate(result.decision, len(data), None).write_gco2e)
    stat = router.stat("media/a.bin")
    assert stat.metadata["team"] == "a" and float(stat.metadata["greenroute_gco2e"]) == pytest.approx(
        entry.write_gco2e, rel=1e-5)
    with pytest.raises(FileNotFoundError):
        upload.upload_part(9, b"late")


def test_an_exclusive_upload_reserves_the_path_when_opened(router: GreenRouter) -> None:
    first = router.open_multipart("media/x.bin", exclusive=True)
    assert [e.path for e in router.catalog.pending()] == ["media/x.bin"]
    with pytest.raises(FileExistsError):
        router.open_multipart("media/x.bin", exclusive=True)
    with pytest.raises(FileExistsError):
        router.write("media/x.bin", b"other", exclusive=True)
    first.abort()
    assert router.catalog.pending() == []
    second = router.open_multipart("media/x.bin", exclusive=True)
    second.upload_part(1, b"mine")
    second.complete([1])
    assert router.read("media/x.bin") == b"mine" and router.catalog.pending() == []
    with pytest.raises(FileExistsError):
        router.open_multipart("media/x.bin", exclusive=True)


def test_an_exclusive_completion_leaves_an_existing_object_alone(router: GreenRouter) -> None:
    router.write("media/y.bin", b"existing")
    upload = router.open_multipart("media/y.bin")  # keep mode: placed where the existing object is
    upload.upload_part(1, b"replacement")
    with pytest.raises(FileExistsError):
        upload.complete([1], exclusive=True)
    assert router.read("media/y.bin") == b"existing" and router.catalog.pending() == []
    assert not upload.closed  # as on S3, a failed completion leaves the upload to abort or complete
    result = upload.complete([1])  # without the condition it overwrites, as S3 does
    assert router.read("media/y.bin") == b"replacement" and result.size == 11

