"""Multipart uploads of 20 MiB and more keep their metadata; the catalog commits only on complete.

Parts arrive out of order and from several threads, as they do from real uploaders; aborting
leaves nothing on any backend or in the catalog.
"""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from tests.boto3_dropin.conftest import AZURE, MB, NORTH, Fleet

from greenroute.ports import METADATA_KEYS

PART = 5 * MB


def parts_of(data: bytes, size: int = PART) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def upload_out_of_order(s3: Any, bucket: str, key: str, parts: list[bytes], upload_id: str) -> list[dict[str, Any]]:
    """Upload ``parts`` last-first from four threads; return the part list for completion, in order."""

    def one(number: int) -> dict[str, Any]:
        response = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                  Body=io.BytesIO(parts[number - 1]))
        return {"PartNumber": number, "ETag": response["ETag"]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(one, reversed(range(1, len(parts) + 1))))
    return sorted(done, key=lambda p: p["PartNumber"])


def test_explicit_multipart_out_of_order_keeps_metadata_and_commits_on_complete(fleet: Fleet) -> None:
    s3 = fleet.client()
    data = os.urandom(4 * PART + 3 * MB)  # 23 MiB: four full parts and a short last one
    parts = parts_of(data)
    created = s3.create_multipart_upload(Bucket="media", Key="video/raw.mp4", Metadata={"camera": "cam_7"})
    upload_id = created["UploadId"]
    assert (created["Bucket"], created["Key"]) == ("media", "video/raw.mp4")

    # A part uploaded twice: the second upload replaces the first, as on S3.
    s3.upload_part(Bucket="media", Key="video/raw.mp4", UploadId=upload_id, PartNumber=2, Body=b"x" * PART)
    listed = upload_out_of_order(s3, "media", "video/raw.mp4", parts, upload_id)
    assert [p["ETag"] for p in listed] == [f'"{hashlib.md5(p).hexdigest()}"' for p in parts]

    # Before completion nothing is visible: not to readers, not in the catalog, not on any backend.
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="media", Key="video/raw.mp4")
    assert missing.value.response["Error"]["Code"] == "404"
    assert s3.router.catalog.pending() == []
    assert s3.router.lookup("media/video/raw.mp4") is None
    assert fleet.stored() == []

    done = s3.complete_multipart_upload(Bucket="media", Key="video/raw.mp4", UploadId=upload_id,
                                        MultipartUpload={"Parts": listed})
    assert done["ResponseMetadata"]["GreenrouteBackend"] == NORTH
    assert done["Key"] == "video/raw.mp4" and done["ETag"].startswith('"')

    size, raw = fleet.head(NORTH, "media/video/raw.mp4")
    assert size == len(data)
    assert raw["camera"] == "cam_7"
    assert set(METADATA_KEYS) <= set(raw)
    assert raw["greenroute_path"] == "media/video/raw.mp4"
    entry = s3.router.lookup("media/video/raw.mp4")
    assert entry is not None and entry.size == len(data) and entry.decision_id == raw["greenroute_decision"]
    body = s3.get_object(Bucket="media", Key="video/raw.mp4")["Body"]
    assert hashlib.sha256(body.read()).digest() == hashlib.sha256(data).digest()
    body.close()

    # The upload is finished: its id is gone.
    with pytest.raises(s3.exceptions.NoSuchUpload):
        s3.upload_part(Bucket="media", Key="video/raw.mp4", UploadId=upload_id, PartNumber=1, Body=b"late")


def test_managed_multipart_to_azure_keeps_metadata_and_downloads_ranged(fleet: Fleet, tmp_path: Path) -> None:
    reader = fleet.client()
    azure_only = fleet.client("azure.toml", allowed_providers=["azure"])
    data = os.urandom(20 * MB + 777)
    config = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=4)
    sent: list[int] = []
    azure_only.upload_fileobj(io.BytesIO(data), "archive", "2026/backup.tar",
                              ExtraArgs={"Metadata": {"retention": "p90d"}}, Config=config, Callback=sent.append)
    assert sum(sent) == len(data)

    size, raw = fleet.head(AZURE, "archive/2026/backup.tar")
    assert size == len(data)
    assert raw["retention"] == "p90d"
    assert set(METADATA_KEYS) <= set(raw)
    assert raw["greenroute_backend"] == AZURE

    # Any client over the same catalog finds it; boto3's ranged download runs through routed reads.
    head = reader.head_object(Bucket="archive", Key="2026/backup.tar")
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["retention"] == "p90d"
    assert head["ResponseMetadata"]["GreenrouteBackend"] == AZURE
    target = tmp_path / "restored.tar"
    got: list[int] = []
    reader.download_file("archive", "2026/backup.tar", str(target), Config=config, Callback=got.append)
    assert target.read_bytes() == data
    assert sum(got) == len(data)
    sink = io.BytesIO()
    reader.download_fileobj("archive", "2026/backup.tar", sink)
    assert sink.getvalue() == data


def test_abort_leaves_nothing_anywhere(fleet: Fleet) -> None:
    s3 = fleet.client()
    upload_id = s3.create_multipart_upload(Bucket="tmp", Key="big.bin", Metadata={"a": "b"})["UploadId"]
    s3.upload_part(Bucket="tmp", Key="big.bin", UploadId=upload_id, PartNumber=1, Body=os.urandom(PART))
    s3.upload_part(Bucket="tmp", Key="big.bin", UploadId=upload_id, PartNumber=2, Body=b"tail")

    aborted = s3.abort_multipart_upload(Bucket="tmp", Key="big.bin", UploadId=upload_id)

    assert aborted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert fleet.stored() == []
    assert s3.router.lookup("tmp/big.bin") is None
    assert s3.router.catalog.pending() == []
    assert s3.list_objects_v2(Bucket="tmp")["KeyCount"] == 0
    for call in (lambda: s3.upload_part(Bucket="tmp", Key="big.bin", UploadId=upload_id, PartNumber=3, Body=b"x"),
                 lambda: s3.complete_multipart_upload(Bucket="tmp", Key="big.bin", UploadId=upload_id,
                                                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"x"'}]}),
                 lambda: s3.abort_multipart_upload(Bucket="tmp", Key="big.bin", UploadId=upload_id)):
        with pytest.raises(s3.exceptions.NoSuchUpload) as err:
            call()
        assert err.value.response["Error"]["Code"] == "NoSuchUpload"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_completion_checks_parts_like_s3(fleet: Fleet) -> None:
    s3 = fleet.client()
    upload_id = s3.create_multipart_upload(Bucket="tmp", Key="parts.bin")["UploadId"]
    small = s3.upload_part(Bucket="tmp", Key="parts.bin", UploadId=upload_id, PartNumber=1, Body=b"tiny")["ETag"]
    last = s3.upload_part(Bucket="tmp", Key="parts.bin", UploadId=upload_id, PartNumber=2, Body=b"end")["ETag"]

    def complete(parts: list[dict[str, Any]]) -> str:
        with pytest.raises(ClientError) as err:
            s3.complete_multipart_upload(Bucket="tmp", Key="parts.bin", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        return str(err.value.response["Error"]["Code"])

    assert complete([{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": '"0000"'}]) == "InvalidPart"
    assert complete([{"PartNumber": 2, "ETag": last}, {"PartNumber": 1, "ETag": small}]) == "InvalidPartOrder"
    assert complete([{"PartNumber": 1, "ETag": small}, {"PartNumber": 2, "ETag": last}]) == "EntityTooSmall"
    assert complete([{"PartNumber": 3, "ETag": last}]) == "InvalidPart"
    # A failed completion keeps the upload, as S3 does: a corrected part list completes it.
    done = s3.complete_multipart_upload(Bucket="tmp", Key="parts.bin", UploadId=upload_id,
                                        MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last}]})
    assert done["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket="tmp", Key="parts.bin")["Body"].read() == b"end"
    with pytest.raises(ClientError) as bad_number:
        s3.upload_part(Bucket="tmp", Key="parts.bin", UploadId="nope", PartNumber=1, Body=b"x")
    assert bad_number.value.response["Error"]["Code"] == "NoSuchUpload"
