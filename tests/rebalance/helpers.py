"""Helpers for the rebalance tests: configs over the local S3 (moto) and Azure (Azurite) servers.

A config is written as a real TOML file so that the CLI, a subprocess and the Python API all read
the same one. Grid values are pinned with the manual source, so every number is known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers.local import AZURITE_ACCOUNT, AZURITE_KEY, MOTO_KEY, MOTO_SECRET

__all__ = ["BackendSpec", "azure_backend", "s3_backend", "write_config"]


@dataclass(frozen=True)
class BackendSpec:
    """One ``[[backends]]`` table."""

    id: str
    provider: str
    region: str
    root: str
    options: Mapping[str, object]
    pue: float = 1.0


def s3_backend(backend_id: str, region: str, endpoint: str, bucket: str, *, pue: float = 1.0) -> BackendSpec:
    """A backend in ``bucket`` on the moto server at ``endpoint`` (one attempt per request)."""
    return BackendSpec(backend_id, "s3", region, f"s3://{bucket}/data", {
        "endpoint_url": endpoint, "key": MOTO_KEY, "secret": MOTO_SECRET, "retries": 1,
        "client_kwargs": {"region_name": "us-east-1"},
        "config_kwargs": {"connect_timeout": 2, "read_timeout": 5, "retries": {"max_attempts": 1, "mode": "standard"}},
    }, pue)


def azure_backend(backend_id: str, region: str, endpoint: str, container: str, *, pue: float = 1.0) -> BackendSpec:
    """A backend in ``container`` on the Azurite server at ``endpoint``."""
    connection = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
                  f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};")
    return BackendSpec(backend_id, "azure", region, f"az://{container}/data",
                       {"connection_string": connection, "retries": 1, "connection_timeout": 2}, pue)


def _toml(value: object) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_config(tmp_path: Path, backends: Sequence[BackendSpec], intensities: Mapping[str, float], *,
                 allowed_countries: Sequence[str] | None = None, horizon_days: float | None = None,
                 extra: str = "") -> Path:
    """A greenroute.toml with these backends, the manual source pinned to ``intensities`` and a SQLite catalog."""
    lines = ['[placement]', 'sources = ["manual"]']
    if allowed_countries is not None:
        lines.append(f"allowed_countries = {_toml(list(allowed_countries))}")
    lines += ["", "[sources.manual]", 'signal = "average"', f"intensities = {_toml(dict(intensities))}", "",
              "[catalog]", f'url = "sqlite:///{tmp_path}/catalog.db"', ""]
    if horizon_days is not None:
        lines += ["[rebalance]", f"default_horizon_days = {horizon_days}", ""]
    for b in backends:
        lines += ["[[backends]]", f'id = "{b.id}"', f'provider = "{b.provider}"', f'region = "{b.region}"',
                  f'root = "{b.root}"', f"pue = {b.pue}", "[backends.storage_options]"]
        lines += [f"{k} = {_toml(v)}" for k, v in b.options.items()]
        lines.append("")
    path = tmp_path / "greenroute.toml"
    path.write_text("\n".join(lines) + extra)
    return path
