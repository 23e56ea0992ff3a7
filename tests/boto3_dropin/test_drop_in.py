"""Existing boto3 code runs unchanged against ``greenroute.boto3_client(...)``.

``existing_service_code`` is written the way services already use ``boto3.client("s3")``: a JSON
report with ``put_object``, a large export with ``upload_file`` in 5 MiB multipart chunks, many
small event objects listed with the ``list_objects_v2`` paginator, a streamed ``get_object``, and
a settings file that may be missing (``except ClientError`` on ``NoSuchKey``). It runs against a
plain boto3 client on one moto server (to show the snippet itself is right) and, unchanged,
against greenroute's client over three moto "regions" and Azurite; both must report the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from tests.boto3_dropin.conftest import AZURE, EAST, MB, NORTH, WEST, Fleet, create_bucket, plain_client, unique

from greenroute.ports import METADATA_KEYS

EXPORT_BYTES = 21 * MB + 12_345
EVENTS = 30


def make_export(path: Path) -> bytes:
    """A deterministic, incompressible-looking export file of ``EXPORT_BYTES``."""
    block = hashlib.sha256(b"greenroute").digest() * 4096
    data = (block * (EXPORT_BYTES // len(block) + 1))[:EXPORT_BYTES]
    path.write_bytes(data)
    return data


def existing_service_code(s3: Any, bucket: str, workdir: Path) -> dict[str, Any]:
    """Service code as written for ``boto3.client("s3")``; it must not change for greenroute."""
    report = {"quarter": "2026-q3", "rows": 1204}
    s3.put_object(Bucket=bucket, Key="reports/2026/q3.json", Body=json.dumps(report).encode(),
                  ContentType="application/json", Metadata={"team": "analytics"})

    progress: list[int] = []
    config = TransferConfig(multipart_threshold=5 * MB, multipart_chunksize=5 * MB, max_concurrency=4)
    s3.upload_file(str(workdir / "export.bin"), bucket, "exports/2026-11-27.bin",
                   ExtraArgs={"Metadata": {"source": "nightly"}}, Config=config, Callback=progress.append)

    for i in range(EVENTS):
        s3.put_object(Bucket=bucket, Key=f"events/2026-11-27/{i:04d}.json", Body=json.dumps({"i": i}).encode())

    listed: list[str] = []
    pages = 0
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix="events/", PaginationConfig={"PageSize": 7}):
        pages += 1
        listed.extend(obj["Key"] for obj in page.get("Contents", []))

    digest = hashlib.sha256()
    streamed = 0
    obj = s3.get_object(Bucket=bucket, Key="exports/2026-11-27.bin")
    for chunk in obj["Body"].iter_chunks(chunk_size=MB):
        digest.update(chunk)
        streamed += len(chunk)
    obj["Body"].close()

    def load_settings(key: str) -> dict[str, Any]:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
            return dict(json.loads(body.read()))
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchKey":
                return {"defaults": True}
            raise

    head = s3.head_object(Bucket=bucket, Key="exports/2026-11-27.bin")
    return {
        "report": load_settings("reports/2026/q3.json"),
        "settings": load_settings("config/settings.json"),
        "listed": listed,
        "pages": pages,
        "uploaded_bytes": sum(progress),
        "streamed_bytes": streamed,
        "content_length": obj["ContentLength"],
        "sha256": digest.hexdigest(),
        "etag_is_quoted": obj["ETag"].startswith('"') and obj["ETag"].endswith('"'),
        "last_modified": type(obj["LastModified"]).__name__,
        "export_metadata": {k: v for k, v in head["Metadata"].items() if not k.startswith("greenroute_")},
    }


def expected_summary(export: bytes) -> dict[str, Any]:
    return {
        "report": {"quarter": "2026-q3", "rows": 1204},
        "settings": {"defaults": True},
        "listed": [f"events/2026-11-27/{i:04d}.json" for i in range(EVENTS)],
        "pages": (EVENTS + 6) // 7,
        "uploaded_bytes": EXPORT_BYTES,
        "streamed_bytes": EXPORT_BYTES,
        "content_length": EXPORT_BYTES,
        "sha256": hashlib.sha256(export).hexdigest(),
        "etag_is_quoted": True,
        "last_modified": "datetime",
        "export_metadata": {"source": "nightly"},
    }


def test_the_snippet_itself_is_right_on_plain_boto3(fleet: Fleet, tmp_path: Path) -> None:
    export = make_export(tmp_path / "export.bin")
    bucket = unique("plain")
    endpoint = fleet.server(EAST).endpoint
    create_bucket(endpoint, bucket, "us-east-1")
    s3 = plain_client(endpoint)
    try:
        assert existing_service_code(s3, bucket, tmp_path) == expected_summary(export)
    finally:
        s3.close()


def test_the_snippet_runs_unchanged_on_greenroute(fleet: Fleet, tmp_path: Path) -> None:
    export = make_export(tmp_path / "export.bin")
    s3 = fleet.client()

    assert existing_service_code(s3, "lake", tmp_path) == expected_summary(export)

    # Every object went to the greenest region, under its logical path, with greenroute's metadata.
    stored = {s.path: s for s in fleet.stored(with_metadata=True)}
    assert set(stored) == {"lake/reports/2026/q3.json", "lake/exports/2026-11-27.bin",
                           *(f"lake/events/2026-11-27/{i:04d}.json" for i in range(EVENTS))}
    assert {s.backend_id for s in stored.values()} == {NORTH}
    assert not any(s.backend_id in (WEST, EAST, AZURE) for s in stored.values())
    export_md = stored["lake/exports/2026-11-27.bin"].metadata
    assert stored["lake/exports/2026-11-27.bin"].size == EXPORT_BYTES
    assert set(METADATA_KEYS) <= set(export_md)
    assert export_md["source"] == "nightly"
    assert export_md["greenroute_backend"] == NORTH
    assert export_md["greenroute_path"] == "lake/exports/2026-11-27.bin"
    assert float(export_md["greenroute_gco2e"]) > 0
    assert stored["lake/reports/2026/q3.json"].metadata["team"] == "analytics"

    # The catalog agrees with the bucket, object by object.
    catalog = {e.path: e for e in s3.router.list("lake/")}
    assert set(catalog) == set(stored)
    for path, entry in catalog.items():
        assert entry.backend_id == NORTH
        assert entry.size == stored[path].size
        assert entry.decision_id == stored[path].metadata["greenroute_decision"]
