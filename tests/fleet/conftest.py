"""A fleet's shared world: two moto S3 servers (one per backend region) and one PostgreSQL catalog.

Each test gets fresh buckets on the session's two moto servers and a fresh schema in the run's
PostgreSQL database (see :mod:`tests.servers.postgres`), and writes ``greenroute.toml`` files in
``tmp_path`` that every process of the fleet reads. ``north`` (eu-north-1) is the greenest backend;
``east`` (us-east-1) is chosen only by a config that allows nothing else. :meth:`Fleet.stored` lists
the buckets with plain boto3, never through greenroute.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from tests.servers.fixtures import moto_server_factory  # noqa: F401
from tests.servers.local import MOTO_KEY, MOTO_SECRET, LocalServer, create_s3_bucket
from tests.servers.postgres import TestPostgres, pg_url, postgres_run  # noqa: F401

from greenroute.adapters.catalog.postgres import PostgresCatalog, PostgresSettings, from_url

REPO = Path(__file__).resolve().parents[2]
NORTH, EAST = "north", "east"
REGIONS = {NORTH: "eu-north-1", EAST: "us-east-1"}
PREFIX = "data"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


@dataclass
class Fleet:
    """Buckets, the catalog's database and schema, and config files for the fleet's processes."""

    tmp: Path
    servers: dict[str, LocalServer]
    postgres: TestPostgres
    schema: str
    buckets: dict[str, str] = field(default_factory=dict)
    _clients: dict[str, Any] = field(default_factory=dict)

    def config(self, name: str = "greenroute.toml", *, only: str | None = None, on_overwrite: str = "keep") -> Path:
        """Write a config over both backends (placement limited to backend ``only``, when given)."""
        lines = ["[placement]", 'sources = ["embedded"]']
        if only is not None:
            lines.append(f"allowed_regions = {_toml([REGIONS[only]])}")
        base = self.postgres.url.split("?", 1)[0]
        lines += ["", "[catalog]", f"url = {_toml(base)}", f"schema = {_toml(self.schema)}", "pool_size = 4",
                  "retry_seconds = 30", "", "[router]", f"on_overwrite = {_toml(on_overwrite)}", ""]
        for backend_id, region in REGIONS.items():
            options = {"endpoint_url": self.servers[backend_id].endpoint, "key": MOTO_KEY, "secret": MOTO_SECRET,
                       "client_kwargs": {"region_name": "us-east-1"}}
            lines += ["[[backends]]", f"id = {_toml(backend_id)}", 'provider = "s3"', f"region = {_toml(region)}",
                      f"root = {_toml(f's3://{self.buckets[backend_id]}/{PREFIX}')}",
                      f"renewable_pct = {100 if backend_id == NORTH else 0}", "pue = 1.15",
                      f"storage_options = {_toml(options)}", ""]
        path = self.tmp / name
        path.write_text("\n".join(lines))
        return path

    def catalog(self) -> PostgresCatalog:
        """The fleet's catalog, opened by the test itself (close it)."""
        return from_url(self.postgres.catalog_url(self.schema))

    def plain(self, backend_id: str) -> Any:
        """A plain boto3 client for a backend's moto server (one per backend; boto3 clients are thread-safe)."""
        client = self._clients.get(backend_id)
        if client is None:
            client = self._clients[backend_id] = boto3.client(
                "s3", endpoint_url=self.servers[backend_id].endpoint, aws_access_key_id=MOTO_KEY,
                aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
        return client

    def locate(self, url: str) -> tuple[str, str, str]:
        """``(backend_id, bucket, key)`` of a physical ``s3://`` URL in one of the fleet's buckets."""
        bucket, key = url.removeprefix("s3://").split("/", 1)
        backend_id = next(b for b, name in self.buckets.items() if name == bucket)
        return backend_id, bucket, key

    def stored(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every object on both backends, ``(backend_id, logical path) -> {"size", "etag"}``, listed directly."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for backend_id, bucket in self.buckets.items():
            client = self.plain(backend_id)
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    found[(backend_id, obj["Key"].removeprefix(PREFIX + "/"))] = {"size": obj["Size"],
                                                                                  "etag": obj["ETag"]}
        return found

    def head(self, url: str) -> dict[str, str]:
        """The user metadata of the object at a physical URL, read from its backend directly."""
        backend_id, bucket, key = self.locate(url)
        return dict(self.plain(backend_id).head_object(Bucket=bucket, Key=key)["Metadata"])

    def get(self, url: str) -> bytes:
        backend_id, bucket, key = self.locate(url)
        body: bytes = self.plain(backend_id).get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


@pytest.fixture(scope="session")
def fleet_servers(moto_server_factory: Callable[[], LocalServer]) -> dict[str, LocalServer]:  # noqa: F811
    """One moto server per backend region, for the whole session."""
    return {backend_id: moto_server_factory() for backend_id in REGIONS}


@pytest.fixture
def fleet(tmp_path: Path, fleet_servers: dict[str, LocalServer], postgres_run: TestPostgres,  # noqa: F811
          pg_url: str) -> Iterator[Fleet]:  # noqa: F811
    """Fresh buckets and a fresh catalog schema for one test."""
    setup = Fleet(tmp_path, fleet_servers, postgres_run, PostgresSettings.from_url(pg_url).schema)
    for backend_id, server in fleet_servers.items():
        name = f"gr-fleet-{backend_id}-{uuid.uuid4().hex[:10]}"
        create_s3_bucket(server.endpoint, name)
        setup.buckets[backend_id] = name
    yield setup
    setup.close()


def live_duplicates(fleet: Fleet) -> list[tuple[str, int]]:
    """Paths with more than one live entry, read with SQL straight from the catalog's table."""
    with fleet.postgres.connect() as conn:
        rows = conn.execute(f"SELECT path, count(*) FROM {fleet.schema}.entries WHERE state = 'committed' "
                            "GROUP BY path HAVING count(*) > 1").fetchall()
    return [(str(r[0]), int(r[1])) for r in rows]
