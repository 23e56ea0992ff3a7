"""Where objects land, checked on the concrete buckets, and how they read back through the catalog.

Placement variants share the fleet's buckets and catalog, so one reader sees objects on all four
backends as one logical bucket.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from tests.boto3_dropin.conftest import AZURE, EAST, NORTH, PREFIX, WEST, Fleet, make_fleet
from tests.servers.fixtures import azurite_server  # noqa: F401
from tests.servers.local import LocalServer

from greenroute.ports import METADATA_KEYS

OBJECTS = {  # key: (backend chosen by the writing client's placement, body)
    "2026/11/a.csv": (NORTH, b"alpha,1\n" * 100),
    "2026/11/b.csv": (WEST, b"bravo,2\n" * 200),
    "2026/12/c.csv": (EAST, b"charlie,3\n" * 300),
    "2026/12/d.csv": (AZURE, b"0123456789" * 50),
}


@pytest.fixture(scope="module")
def spread(tmp_path_factory: pytest.TempPathFactory, region_servers: dict[str, LocalServer],
           azurite_server: LocalServer) -> Iterator[Fleet]:  # noqa: F811
    """One object on each backend, written by clients whose placement may choose only that backend.

    Shared by the module's tests, which only read (the listing test writes under its own bucket).
    """
    fleet = make_fleet(tmp_path_factory.mktemp("spread"), region_servers, azurite_server)
    try:
        _spread(fleet)
        yield fleet
    finally:
        fleet.close()


def _spread(fleet: Fleet) -> None:
    writers = {NORTH: fleet.client("north.toml"), WEST: fleet.client("west.toml", allowed_regions=["us-west-2"]),
               EAST: fleet.client("east.toml", allowed_regions=["us-east-1"]),
               AZURE: fleet.client("azure.toml", allowed_providers=["azure"])}
    for key, (backend, body) in OBJECTS.items():
        response = writers[backend].put_object(Bucket="sales", Key=key, Body=body, Metadata={"owner": "finance"})
        meta = response["ResponseMetadata"]
        assert meta["GreenrouteBackend"] == backend
        assert meta["GreenrouteLocation"].endswith(f"/{PREFIX}/sales/{key}")
        assert meta["GreenrouteLocation"].split("/")[2] == fleet.buckets[backend]
        assert meta["GreenrouteWriteGco2e"] > 0
        assert response["ETag"].startswith('"') and response["ETag"].endswith('"')
    fleet.reader = fleet.client("reader.toml")


def test_each_object_is_on_its_backend_with_greenroute_metadata(spread: Fleet) -> None:
    stored = {s.path: s for s in spread.stored(with_metadata=True)}
    assert set(stored) == {f"sales/{k}" for k in OBJECTS}
    for key, (backend, body) in OBJECTS.items():
        obj = stored[f"sales/{key}"]
        assert obj.backend_id == backend
        assert obj.size == len(body)
        assert set(METADATA_KEYS) <= set(obj.metadata)
        assert obj.metadata["owner"] == "finance"
        assert obj.metadata["greenroute_backend"] == backend
        assert obj.metadata["greenroute_path"] == f"sales/{key}"
    # Carbon differs by region: the greenest grid got the smallest estimate per byte.
    per_byte = {b: float(stored[f"sales/{k}"].metadata["greenroute_gco2e"]) / len(body)
                for k, (b, body) in OBJECTS.items()}
    assert per_byte[NORTH] < per_byte[WEST] < per_byte[EAST]


def test_reads_find_every_backend_with_boto3_shapes(spread: Fleet) -> None:
    s3 = spread.reader
    for key, (backend, body) in OBJECTS.items():
        got = s3.get_object(Bucket="sales", Key=key)
        assert isinstance(got["Body"], StreamingBody)
        assert b"".join(got["Body"].iter_chunks(64)) == body
        got["Body"].close()
        assert got["ContentLength"] == len(body)
        assert isinstance(got["LastModified"], datetime) and got["LastModified"].tzinfo is not None
        assert got["ETag"].startswith('"') and got["ETag"].endswith('"')
        assert got["Metadata"]["owner"] == "finance"
        assert got["Metadata"]["greenroute_path"] == f"sales/{key}"
        meta = got["ResponseMetadata"]
        assert meta["HTTPStatusCode"] == 200
        assert meta["GreenrouteBackend"] == backend
        assert meta["GreenrouteLocation"] == f"{'az' if backend == AZURE else 's3'}://{spread.buckets[backend]}/" \
                                             f"{PREFIX}/sales/{key}"
        head = s3.head_object(Bucket="sales", Key=key)
        assert head["ContentLength"] == len(body)
        assert head["ETag"] == got["ETag"]
        assert head["Metadata"] == got["Metadata"]
        assert "Body" not in head


@pytest.mark.parametrize("key", ["2026/11/a.csv", "2026/12/d.csv"])  # S3 through boto3, Azure through the target
def test_ranges_and_conditions_behave_like_s3(spread: Fleet, key: str) -> None:
    s3 = spread.reader
    body = OBJECTS[key][1]
    part = s3.get_object(Bucket="sales", Key=key, Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["ContentLength"] == 10
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket="sales", Key=key, Range="bytes=-7")["Body"].read() == body[-7:]
    assert s3.get_object(Bucket="sales", Key=key, Range=f"bytes={len(body) - 3}-")["Body"].read() == body[-3:]
    with pytest.raises(ClientError) as beyond:
        s3.get_object(Bucket="sales", Key=key, Range=f"bytes={len(body) + 5}-")
    assert beyond.value.response["Error"]["Code"] == "InvalidRange"
    assert beyond.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416

    etag = s3.head_object(Bucket="sales", Key=key)["ETag"]
    assert s3.get_object(Bucket="sales", Key=key, IfMatch=etag)["Body"].read() == body
    with pytest.raises(ClientError) as stale:
        s3.get_object(Bucket="sales", Key=key, IfMatch='"not-the-etag"')
    assert stale.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as unchanged:
        s3.get_object(Bucket="sales", Key=key, IfNoneMatch=etag)
    assert unchanged.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_listing_merges_backends_in_key_order_with_prefixes_and_tokens(spread: Fleet) -> None:
    s3 = spread.reader
    every = s3.list_objects_v2(Bucket="sales")
    keys = [o["Key"] for o in every["Contents"]]
    assert keys == sorted(OBJECTS)
    assert every["KeyCount"] == 4 and every["IsTruncated"] is False and every["Name"] == "sales"
    for obj in every["Contents"]:
        assert obj["Size"] == len(OBJECTS[obj["Key"]][1])
        assert isinstance(obj["LastModified"], datetime)
        assert obj["ETag"] == s3.head_object(Bucket="sales", Key=obj["Key"])["ETag"]

    folders = s3.list_objects_v2(Bucket="sales", Prefix="2026/", Delimiter="/")
    assert folders["CommonPrefixes"] == [{"Prefix": "2026/11/"}, {"Prefix": "2026/12/"}]
    assert "Contents" not in folders and folders["KeyCount"] == 2

    # One key per page, following the continuation tokens by hand across all four backends.
    seen: list[str] = []
    kwargs: dict[str, object] = {"Bucket": "sales", "MaxKeys": 1}
    pages = 0
    while True:
        page = s3.list_objects_v2(**kwargs)
        pages += 1
        seen.extend(o["Key"] for o in page.get("Contents", []))
        assert page["KeyCount"] == 1
        if not page["IsTruncated"]:
            break
        kwargs["ContinuationToken"] = page["NextContinuationToken"]
    assert seen == keys and pages == 4

    # A page boundary right after a common prefix skips the rest of that prefix.
    first = s3.list_objects_v2(Bucket="sales", Delimiter="/", Prefix="2026/", MaxKeys=1)
    assert first["CommonPrefixes"] == [{"Prefix": "2026/11/"}] and first["IsTruncated"] is True
    second = s3.list_objects_v2(Bucket="sales", Delimiter="/", Prefix="2026/", MaxKeys=1,
                                ContinuationToken=first["NextContinuationToken"])
    assert second["CommonPrefixes"] == [{"Prefix": "2026/12/"}] and second["IsTruncated"] is False
    after = s3.list_objects_v2(Bucket="sales", StartAfter="2026/11/b.csv")
    assert [o["Key"] for o in after["Contents"]] == ["2026/12/c.csv", "2026/12/d.csv"]
    assert after["StartAfter"] == "2026/11/b.csv"

    # The paginator, with boto3's own MaxItems/StartingToken resumption on top of our tokens.
    paginator = s3.get_paginator("list_objects_v2")
    head = paginator.paginate(Bucket="sales", PaginationConfig={"PageSize": 1, "MaxItems": 2}).build_full_result()
    assert [o["Key"] for o in head["Contents"]] == keys[:2]
    rest = paginator.paginate(Bucket="sales", PaginationConfig={"PageSize": 1, "StartingToken": head["NextToken"]})
    assert [o["Key"] for o in rest.search("Contents[]")] == keys[2:]

    assert s3.list_objects_v2(Bucket="nothing-here")["KeyCount"] == 0
    with pytest.raises(ClientError) as bad:
        s3.list_objects_v2(Bucket="sales", ContinuationToken="not a token!")
    assert bad.value.response["Error"]["Code"] == "InvalidArgument"
