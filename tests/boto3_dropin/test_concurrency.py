"""Sixteen threads ``put_object`` at once through shared clients: nothing is lost, and afterwards the
catalog matches what every backend holds, object for object (listed from the backends directly).
"""

from __future__ import annotations

import threading
from typing import Any

from tests.boto3_dropin.conftest import ALL_IDS, AZURE, NORTH, WEST, Fleet

THREADS = 16
PER_THREAD = 8


def test_sixteen_threads_lose_nothing_and_the_catalog_matches_the_backends(fleet: Fleet) -> None:
    # Three shared clients over one catalog: placement sends their writes to three different backends.
    clients = [fleet.client(), fleet.client("west.toml", allowed_regions=["us-west-2"]),
               fleet.client("azure.toml", allowed_providers=["azure"])]
    acknowledged: dict[str, tuple[str, bytes]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def writer(n: int) -> None:
        s3: Any = clients[n % len(clients)]
        start.wait()
        for i in range(PER_THREAD):
            key = f"t{n:02d}/obj-{i}.json"
            body = f'{{"thread": {n}, "i": {i}}}'.encode() * (n + 1)
            try:
                response = s3.put_object(Bucket="events", Key=key, Body=body, Metadata={"thread": str(n)})
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                continue
            with lock:
                acknowledged[f"events/{key}"] = (response["ResponseMetadata"]["GreenrouteBackend"], body)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert len(acknowledged) == THREADS * PER_THREAD
    assert {backend for backend, _ in acknowledged.values()} == {NORTH, WEST, AZURE}

    stored = {(s.backend_id, s.path): s for s in fleet.stored(with_metadata=True)}
    catalog = {(e.backend_id, e.path): e for e in clients[0].router.list("")}
    assert set(stored) == set(catalog) == {(b, p) for p, (b, _) in acknowledged.items()}
    assert clients[0].router.catalog.pending() == []
    for where, entry in catalog.items():
        obj = stored[where]
        assert obj.size == entry.size == len(acknowledged[entry.path][1])
        assert obj.metadata["greenroute_decision"] == entry.decision_id
        assert obj.metadata["greenroute_path"] == entry.path
        assert obj.metadata["thread"] == str(int(entry.path.split("/")[1].removeprefix("t")))
    assert {backend for backend, _ in stored} <= set(ALL_IDS)

    # Every acknowledged write reads back, byte for byte, through any of the clients.
    reader = clients[1]
    listed = [o["Key"] for page in reader.get_paginator("list_objects_v2").paginate(Bucket="events")
              for o in page.get("Contents", [])]
    assert listed == sorted(p.removeprefix("events/") for p in acknowledged)
    for path, (backend, body) in acknowledged.items():
        got = reader.get_object(Bucket="events", Key=path.removeprefix("events/"))
        assert got["Body"].read() == body
        assert got["ResponseMetadata"]["GreenrouteBackend"] == backend
