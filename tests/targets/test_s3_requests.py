"""What the S3 target asks of S3, request by request, counted on the botocore client's own events.

A streamed write with no size hint binds its late values (the carbon of its real size) as object
tags right after CompleteMultipartUpload, never with a self-copy; reads find them through ``stat``
and ``list`` at one extra request for such objects only; a copy is the CopyObject alone. The
counts come from a ``before-call.s3`` handler registered on the s3fs client's event system, so no
greenroute code is patched. Two tests make moto's answers unusual the same way (a 501 for tagging,
as stores without tagging give; a 412 for a conditional copy, which moto does not check).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, create_s3_bucket, s3_storage_options
from tests.targets.conftest import build_target, cloud_target, unique_name

from greenroute import Backend, GreenPlacementService, GreenRouter, Provider
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.adapters.storage.s3 import LATE_KEY, S3Target

MiB = 2**20
BLOCK = 5 * MiB
SIZE = 12 * MiB + 345  # three parts of 5 MiB blocks


def _late(size: int) -> dict[str, str]:
    """Metadata whose carbon values depend on the size, as the router's do."""
    return {"greenroute_decision": "d-stream", "greenroute_path": "ns/big.bin",
            "greenroute_gco2e": f"{size * 1e-9:.6g}", "greenroute_gco2e_month": f"{size * 3e-12:.6g}", "team": "data"}


@contextlib.contextmanager
def requests(target: S3Target, respond: Callable[[str, dict[str, Any]], Any] | None = None
             ) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every S3 operation ``target`` sends inside the block, with its request headers, in order.

    ``respond(name, headers)`` may return ``(http, parsed)`` to answer a request instead of S3.
    """
    target.fs.connect()  # the client whose events are watched
    client = target.fs.s3
    seen: list[tuple[str, dict[str, Any]]] = []

    def record(model: Any, params: dict[str, Any], **_: Any) -> Any:
        headers = {str(k).lower(): v for k, v in (params.get("headers") or {}).items()}
        seen.append((model.name, headers))
        return respond(model.name, headers) if respond is not None else None

    client.meta.events.register("before-call.s3", record, unique_id="greenroute-test-count")
    try:
        yield seen
    finally:
        client.meta.events.unregister("before-call.s3", unique_id="greenroute-test-count")


def _names(seen: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in seen]


class _Status:
    """The part of an HTTP response aiobotocore looks at when a handler answers for S3."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}


def _error(status: int, code: str) -> tuple[_Status, dict[str, Any]]:
    return _Status(status), {"Error": {"Code": code, "Message": f"{code} (from the test)"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}


@pytest.fixture
def s3(moto_server: LocalServer) -> Iterator[Any]:
    client = boto3.client("s3", endpoint_url=moto_server.endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    yield client
    client.close()


def _where(target: S3Target, path: str) -> dict[str, str]:
    bucket, key, _ = target.fs.split_path(target._full(path))
    return {"Bucket": bucket, "Key": key}


def _stream(target: S3Target, path: str, size: int = SIZE, hint: int | None = None) -> Any:
    stream = target.open_write(path, _late, block_size=BLOCK, size_hint=hint)
    chunk = b"s" * MiB
    left = size
    while left:
        n = min(left, MiB)
        stream.write(chunk[:n])
        left -= n
    stream.close()
    return stream.info


def test_a_stream_without_a_hint_binds_its_late_values_as_tags_not_with_a_copy(moto_server: LocalServer,
                                                                                 s3: Any) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)
    with requests(target) as seen:
        info = _stream(target, "ns/big.bin")
    assert _names(seen) == ["CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart",
                            "CompleteMultipartUpload", "PutObjectTagging"]
    assert info.etag.endswith("-3") and dict(info.metadata) == _late(SIZE)
    # On the wire: the upload was created with the values for size 0, the decision and the marker;
    # the tags hold what changed, under the marker's token.
    head = s3.head_object(**_where(target, "ns/big.bin"))
    token = head["Metadata"].pop(LATE_KEY)
    assert head["Metadata"] == _late(0) and head["ETag"].strip('"') == info.etag
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(**_where(target, "ns/big.bin"))["TagSet"]}
    assert tags == {"greenroute_gco2e": _late(SIZE)["greenroute_gco2e"],
                    "greenroute_gco2e_month": _late(SIZE)["greenroute_gco2e_month"], LATE_KEY: token}
    # Reads see the final values, never the marker.
    with requests(target) as seen:
        stat = target.stat("ns/big.bin")
    assert _names(seen) == ["HeadObject", "GetObjectTagging"]
    assert (stat.size, stat.etag, dict(stat.metadata)) == (SIZE, info.etag, _late(SIZE))


def test_list_costs_a_tagging_request_only_for_objects_bound_with_tags(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)
    for i in range(3):
        target.write(f"ns/small-{i}.bin", b"x" * i, _late(i))
    _stream(target, "ns/big.bin")
    with requests(target) as seen:
        listed = {info.path: dict(info.metadata) for info in target.list("ns/")}
    assert sorted(_names(seen)) == sorted(["ListObjectsV2"] + ["HeadObject"] * 4 + ["GetObjectTagging"])
    assert listed == {"ns/big.bin": _late(SIZE), **{f"ns/small-{i}.bin": _late(i) for i in range(3)}}


def test_tags_bound_for_another_upload_of_the_key_never_describe_the_object(moto_server: LocalServer,
                                                                           s3: Any) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    _stream(target, "ns/big.bin")
    # Another upload of the key tagging this object late (its token is not this object's).
    s3.put_object_tagging(**_where(target, "ns/big.bin"), Tagging={"TagSet": [
        {"Key": "greenroute_gco2e", "Value": "999"}, {"Key": LATE_KEY, "Value": "0123456789ab"}]})
    assert dict(target.stat("ns/big.bin").metadata) == _late(0)
    assert [dict(i.metadata) for i in target.list("ns/")] == [_late(0)]


def test_a_decision_is_on_the_object_from_its_first_request(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    _stream(target, "ns/big.bin")
    assert target.delete_if("ns/big.bin", "another-decision") is False
    assert target.delete_if("ns/big.bin", "d-stream") is True
    with pytest.raises(FileNotFoundError):
        target.stat("ns/big.bin")


def test_late_metadata_copy_binds_with_the_self_copy(moto_server: LocalServer, s3: Any) -> None:
    bucket = unique_name()
    create_s3_bucket(moto_server.endpoint, bucket)
    target = build_target("s3", f"s3://{bucket}/pre", {**s3_storage_options(moto_server.endpoint),
                                                      "late_metadata": "copy"})
    assert isinstance(target, S3Target)
    with requests(target) as seen:
        info = _stream(target, "ns/big.bin")
    assert "CopyObject" in _names(seen) and "PutObjectTagging" not in _names(seen)
    assert "-" not in info.etag  # the copy is a new single-part object
    head = s3.head_object(**_where(target, "ns/big.bin"))
    assert head["Metadata"] == _late(SIZE)  # no marker
    assert dict(target.stat("ns/big.bin").metadata) == _late(SIZE)


def test_late_metadata_must_be_tags_or_copy(moto_server: LocalServer) -> None:
    from greenroute.errors import ConfigError

    with pytest.raises(ConfigError, match="late_metadata"):
        build_target("s3", "s3://bucket/pre", {**s3_storage_options(moto_server.endpoint), "late_metadata": "xattr"})


def test_a_store_without_tagging_gets_the_self_copy(moto_server: LocalServer, s3: Any) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)

    def no_tagging(name: str, headers: dict[str, Any]) -> Any:
        return _error(501, "NotImplemented") if name == "PutObjectTagging" else None

    with requests(target, no_tagging) as seen:
        info = _stream(target, "ns/big.bin")
    names = _names(seen)
    assert names.index("CompleteMultipartUpload") < names.index("PutObjectTagging") < names.index("CopyObject")
    assert dict(info.metadata) == _late(SIZE) and "-" not in info.etag
    head = s3.head_object(**_where(target, "ns/big.bin"))
    assert head["Metadata"] == _late(SIZE) and head["ETag"].strip('"') == info.etag


def test_a_failed_tagging_leaves_no_object_with_wrong_values(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)

    def denied(name: str, headers: dict[str, Any]) -> Any:
        return _error(403, "AccessDenied") if name == "PutObjectTagging" else None

    with requests(target, denied), pytest.raises(PermissionError):
        _stream(target, "ns/big.bin")
    with pytest.raises(FileNotFoundError):
        target.stat("ns/big.bin")


def test_a_copy_after_a_stat_is_the_copy_alone(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)
    target.write("ns/a.bin", b"a" * 1000, _late(1000))
    source = target.stat("ns/a.bin")  # as the router's copy does, for the caller's metadata
    with requests(target) as seen:
        copied = target.copy("ns/a.bin", "ns/b.bin", _late(7))
    assert _names(seen) == ["CopyObject"]
    assert seen[0][1]["x-amz-copy-source-if-match"].strip('"') == source.etag  # conditional on what was seen
    stat = target.stat("ns/b.bin")
    assert (copied.size, copied.etag, dict(copied.metadata)) == (stat.size, stat.etag, dict(stat.metadata))
    assert copied.modified == stat.modified and copied.url == stat.url
    assert target.read("ns/b.bin") == b"a" * 1000


def test_a_copy_of_an_unseen_source_looks_once(moto_server: LocalServer) -> None:
    writer = cloud_target("s3", moto_server.endpoint)
    writer.write("ns/a.bin", b"a" * 1000, _late(1000))
    target = build_target("s3", writer.backend.root, writer.backend.storage_options)  # knows nothing yet
    assert isinstance(target, S3Target)
    with requests(target) as seen:
        copied = target.copy("ns/a.bin", "ns/b.bin", _late(7))
    assert _names(seen) == ["HeadObject", "CopyObject"]
    assert copied.size == 1000 and copied.etag == target.stat("ns/b.bin").etag


def test_a_copy_whose_source_changed_since_it_was_seen_looks_again(moto_server: LocalServer) -> None:
    target = cloud_target("s3", moto_server.endpoint)
    assert isinstance(target, S3Target)
    target.write("ns/a.bin", b"a" * 1000, _late(1000))
    target.stat("ns/a.bin")
    target.write("ns/a.bin", b"b" * 10, _late(10))  # S3 would refuse the copy on the stale ETag
    refused: list[str] = []

    def stale(name: str, headers: dict[str, Any]) -> Any:
        if name == "CopyObject" and not refused:
            refused.append(headers["x-amz-copy-source-if-match"])
            return _error(412, "PreconditionFailed")
        return None

    with requests(target, stale) as seen:
        copied = target.copy("ns/a.bin", "ns/b.bin", _late(7))
    assert _names(seen) == ["CopyObject", "HeadObject", "CopyObject"]
    assert seen[-1][1]["x-amz-copy-source-if-match"] != refused[0]
    assert copied.size == 10 and target.read("ns/b.bin") == b"b" * 10


# -- through the router -------------------------------------------------------------------------------


@pytest.fixture
def router(tmp_path: Path, moto_server: LocalServer) -> Iterator[GreenRouter]:
    bucket = f"gr-{uuid.uuid4().hex[:12]}"
    create_s3_bucket(moto_server.endpoint, bucket)
    backend = Backend(id="s3-a", provider=Provider.S3, region="eu-north-1", root=f"s3://{bucket}/data", pue=1.15,
                      storage_options=s3_storage_options(moto_server.endpoint))
    router = GreenRouter(GreenPlacementService([backend]), SqliteCatalog(tmp_path / "catalog.db"))
    yield router
    router.close()


def test_router_copy_on_s3_is_one_stat_and_the_copy(router: GreenRouter) -> None:
    router.write("ns/a.bin", b"a" * 5000, metadata={"team": "data"})
    target = router.target("s3-a")
    assert isinstance(target, S3Target)
    with requests(target) as seen:
        result = router.copy("ns/a.bin", "ns/b.bin")
    # The stat is the router's own, for the caller's metadata; the target's copy is CopyObject alone.
    assert _names(seen) == ["HeadObject", "CopyObject"]
    assert router.read("ns/b.bin") == b"a" * 5000
    stat = target.stat("ns/b.bin")
    entry = router.catalog.lookup("ns/b.bin")
    assert entry is not None and (entry.size, entry.etag) == (5000, stat.etag) == (result.size, stat.etag)
    assert stat.metadata["team"] == "data" and stat.metadata["greenroute_decision"] == entry.decision_id


def test_recovery_sees_the_decision_and_final_values_of_a_stream_bound_with_tags(router: GreenRouter) -> None:
    with router.open("ns/big.bin", "wb", block_size=BLOCK) as f:
        for _ in range(12):
            f.write(b"r" * MiB)
    entry = router.catalog.lookup("ns/big.bin")
    assert entry is not None and entry.size == 12 * MiB and entry.etag is not None and entry.etag.endswith("-3")
    metadata = router.target("s3-a").stat("ns/big.bin").metadata
    assert metadata["greenroute_decision"] == entry.decision_id
    assert metadata["greenroute_gco2e"] == f"{entry.write_gco2e:.6g}" and float(metadata["greenroute_gco2e"]) > 0

    router.catalog.clear()
    report = router.reindex()
    rebuilt = router.catalog.lookup("ns/big.bin")
    assert report.entries == 1 and rebuilt is not None
    assert (rebuilt.decision_id, rebuilt.size, rebuilt.etag) == (entry.decision_id, entry.size, entry.etag)
    assert f"{rebuilt.write_gco2e:.6g}" == f"{entry.write_gco2e:.6g}"

    router.catalog.clear()
    probed = router.probe("ns/big.bin")
    assert probed is not None and probed.decision_id == entry.decision_id
    assert f"{probed.write_gco2e:.6g}" == f"{entry.write_gco2e:.6g}"

    router.catalog.clear()
    fsck = router.fsck(older_than_seconds=0)
    assert fsck.committed == ["ns/big.bin"]
    adopted = router.catalog.lookup("ns/big.bin")
    assert adopted is not None and adopted.decision_id == entry.decision_id

    router.delete("ns/big.bin")
    with pytest.raises(FileNotFoundError):
        router.target("s3-a").stat("ns/big.bin")
