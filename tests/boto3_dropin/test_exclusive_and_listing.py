"""``IfNoneMatch="*"`` is an exclusive create through the router, and listings cost no target calls.

Exactly one of several racing creates wins, across threads and across processes, on ``put_object``
and on ``complete_multipart_upload``; the others get S3's ``PreconditionFailed`` (412) and leave the
winner's object untouched. ``list_objects_v2`` answers from the catalog alone: a counting proxy
around every target sees no call while a bucket is listed page by page.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from tests.boto3_dropin.conftest import MB, NORTH, Fleet

from greenroute.adapters.boto3.client import GreenS3Client
from greenroute.config import load_config
from greenroute.model import Backend
from greenroute.ports import StorageTarget
from greenroute.router import GreenRouter, catalog_from_url, target_from_entry_point

PART = 5 * MB
WRITER = Path(__file__).with_name("exclusive_writer.py")


def precondition_failed(call: Callable[[], object]) -> ClientError:
    with pytest.raises(ClientError) as err:
        call()
    response = err.value.response
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == ("PreconditionFailed", 412)
    assert response["Error"]["Condition"] == "If-None-Match"
    return err.value


def multipart(s3: Any, key: str, body: bytes, **complete: Any) -> dict[str, Any]:
    """Create, send two parts and complete an upload of ``body`` (at least one part's size)."""
    upload_id = s3.create_multipart_upload(Bucket="race", Key=key)["UploadId"]
    parts = [body[:PART], body[PART:]]
    listed = [{"PartNumber": n, "ETag": s3.upload_part(Bucket="race", Key=key, UploadId=upload_id, PartNumber=n,
                                                       Body=part)["ETag"]} for n, part in enumerate(parts, 1)]
    try:
        done: dict[str, Any] = s3.complete_multipart_upload(Bucket="race", Key=key, UploadId=upload_id,
                                                            MultipartUpload={"Parts": listed}, **complete)
    except ClientError:
        s3.abort_multipart_upload(Bucket="race", Key=key, UploadId=upload_id)  # a failed completion stays open
        raise
    return done


def test_if_none_match_creates_and_answers_412_on_an_existing_key(fleet: Fleet) -> None:
    s3 = fleet.client()
    created = s3.put_object(Bucket="race", Key="once.txt", Body=b"first", IfNoneMatch="*", Metadata={"v": "1"})
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    precondition_failed(lambda: s3.put_object(Bucket="race", Key="once.txt", Body=b"second", IfNoneMatch="*"))
    body = b"m" * PART + b"tail"
    precondition_failed(lambda: multipart(s3, "once.txt", body, IfNoneMatch="*"))
    got = s3.get_object(Bucket="race", Key="once.txt")
    assert got["Body"].read() == b"first" and got["Metadata"]["v"] == "1"
    assert [(s.path, s.size) for s in fleet.stored()] == [("race/once.txt", 5)]
    assert fleet.plain(NORTH).list_multipart_uploads(Bucket=fleet.buckets[NORTH]).get("Uploads", []) == []
    assert s3.router.catalog.pending() == []
    # A new key completes; without the condition the key is overwritten, as on S3.
    assert multipart(s3, "fresh.bin", body, IfNoneMatch="*")["ResponseMetadata"]["HTTPStatusCode"] == 200
    s3.put_object(Bucket="race", Key="once.txt", Body=b"third")
    assert s3.get_object(Bucket="race", Key="once.txt")["Body"].read() == b"third"


@pytest.mark.parametrize("how", ["put_object", "complete_multipart_upload"])
def test_one_of_eight_threads_creates(fleet: Fleet, how: str) -> None:
    clients = [fleet.client(), fleet.client("west.toml", allowed_regions=["us-west-2"])]
    start = threading.Barrier(8)
    outcomes: dict[int, str] = {}
    bodies = {n: bytes([65 + n]) * (PART + 100 * n if how != "put_object" else 1000 + n) for n in range(8)}

    def racer(n: int) -> None:
        s3 = clients[n % 2]
        start.wait()
        try:
            if how == "put_object":
                s3.put_object(Bucket="race", Key="k.bin", Body=bodies[n], IfNoneMatch="*")
            else:
                multipart(s3, "k.bin", bodies[n], IfNoneMatch="*")
            outcomes[n] = "created"
        except ClientError as exc:
            outcomes[n] = exc.response["Error"]["Code"]

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(outcomes.values()) == {"created": 1, "PreconditionFailed": 7}
    winner = next(n for n, outcome in outcomes.items() if outcome == "created")
    assert clients[1].get_object(Bucket="race", Key="k.bin")["Body"].read() == bodies[winner]
    assert [(s.path, s.size) for s in fleet.stored()] == [("race/k.bin", len(bodies[winner]))]
    assert clients[0].router.catalog.pending() == []


def test_one_of_eight_processes_creates(fleet: Fleet) -> None:
    config = fleet.config()
    start_at = time.time() + 8.0  # every process has built its client by then
    procs = [subprocess.Popen([sys.executable, str(WRITER), str(config), str(n), str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(8)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert Counter((r["outcome"], r["status"]) for r in results) == {("created", 200): 1,
                                                                    ("PreconditionFailed", 412): 7}
    winner = next(r["process"] for r in results if r["outcome"] == "created")
    s3 = fleet.client("reader.toml")
    assert s3.get_object(Bucket="race", Key="key.bin")["Body"].read() == f"process {winner}".encode()
    assert [s.path for s in fleet.stored()] == ["race/key.bin"]


# -- listings ------------------------------------------------------------------------------------------


class CountingTarget:
    """A real target, every method call counted (the test's own proxy; nothing of greenroute's is patched)."""

    def __init__(self, inner: StorageTarget, calls: Counter[str]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if not callable(value):
            return value

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[f"{self._inner.backend.id}.{name}"] += 1
            return value(*args, **kwargs)

        return counted


def test_listings_ask_no_target(fleet: Fleet) -> None:
    extra = """[[backends]]
id = "memory-local"
provider = "memory"
region = "eu-north-1"
root = "memory://gr-listing-""" + str(time.time_ns()) + '"\n'
    memory = fleet.client("memory.toml", allowed_providers=["memory"], extra_backends=extra)
    s3 = fleet.client("s3.toml", extra_backends=extra)
    for i in range(12):  # memory targets return no ETag: the old listing stat-ed each such entry
        memory.put_object(Bucket="logs", Key=f"a/{i:02d}.txt", Body=b"m" * i)
        s3.put_object(Bucket="logs", Key=f"b/{i:02d}.txt", Body=b"s" * i)

    calls: Counter[str] = Counter()

    def factory(backend: Backend) -> StorageTarget:
        return CountingTarget(target_from_entry_point(backend), calls)  # type: ignore[return-value]

    cfg = load_config(fleet.config("counted.toml", extra_backends=extra))
    router = GreenRouter(cfg.build_service(), catalog_from_url(cfg.catalog_url), target_factory=factory)
    lister = GreenS3Client(router, owns_router=True)
    try:
        keys, etags = [], []
        for page in lister.get_paginator("list_objects_v2").paginate(Bucket="logs", PaginationConfig={"PageSize": 5}):
            keys += [o["Key"] for o in page.get("Contents", [])]
            etags += [o["ETag"] for o in page.get("Contents", [])]
        delimited = lister.list_objects_v2(Bucket="logs", Delimiter="/")
        assert calls == Counter()
        assert keys == [f"a/{i:02d}.txt" for i in range(12)] + [f"b/{i:02d}.txt" for i in range(12)]
        assert etags[:12] == ['""'] * 12  # the catalog has none for memory objects
        assert all(len(e.strip('"')) == 32 for e in etags[12:])  # S3's, as the catalog recorded them
        assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["a/", "b/"]
        # the proxy does count: a read goes to the target
        lister.get_object(Bucket="logs", Key="a/03.txt")["Body"].read()
        assert sum(calls.values()) >= 1
    finally:
        lister.close()
