"""Real storage servers on free loopback ports, run as subprocesses and stopped by PID.

* S3: moto (``moto_server``, pip ``moto[server]``).
* GCS: gcp-storage-emulator (pip ``gcp-storage-emulator``).
* Azure Blob: Azurite (``azurite-blob``, npm ``azurite``, installed under ``.tools/``).

Each ``start_*`` returns a :class:`LocalServer` once the server answers HTTP, or raises
:class:`ServerUnavailable` saying why it could not (not installed, exited, not ready in time).
The ``*_storage_options`` helpers give the matching greenroute ``storage_options``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "MOTO_KEY",
    "MOTO_SECRET",
    "LocalServer",
    "ServerUnavailable",
    "azure_connection_string",
    "azure_storage_options",
    "closed_port",
    "create_azure_container",
    "create_gcs_bucket",
    "create_s3_bucket",
    "free_port",
    "gcs_storage_options",
    "s3_storage_options",
    "start_azurite",
    "start_gcs_emulator",
    "start_moto",
]

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
#: Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: Credentials for moto: any non-empty values work.
MOTO_KEY = "greenroute-test-access-key"
MOTO_SECRET = "greenroute-test-secret-key-do-not-leak"


class ServerUnavailable(RuntimeError):
    """A local server could not be installed, started or reached."""


@dataclass
class LocalServer:
    """One running server process.

    Attributes:
        name: ``moto``, ``gcs`` or ``azurite``.
        port: Its loopback port.
        process: The subprocess (stopped by its PID).
        log: Where its stdout and stderr go.
    """

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return HOST

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.running():
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        else:
            self.process.wait(timeout=timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port that refuses connections (for "unreachable endpoint" tests)."""
    return free_port()


def _executable(name: str, *extra_dirs: Path) -> str | None:
    for folder in (Path(sys.executable).parent, *extra_dirs):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def _start(name: str, argv: Sequence[str], port: int, ready_path: str, timeout: float) -> LocalServer:
    log_dir = Path(tempfile.mkdtemp(prefix=f"greenroute-{name}-"))
    log = log_dir / "server.log"
    with open(log, "wb") as out:
        try:
            process = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        except OSError as exc:
            raise ServerUnavailable(f"cannot run {argv[0]}: {exc}") from exc
    server = LocalServer(name, port, process, log)
    deadline = time.monotonic() + timeout
    url = f"{server.endpoint}{ready_path}"
    while time.monotonic() < deadline:
        if not server.running():
            raise ServerUnavailable(f"{name} exited with status {process.returncode}: {server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return server
        except urllib.error.HTTPError:
            return server  # it answers HTTP: ready
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    server.stop()
    raise ServerUnavailable(f"{name} did not answer on {url} within {timeout:g} s: {server.log_tail()}")


def start_moto(port: int | None = None, timeout: float = 20.0) -> LocalServer:
    """Start ``moto_server`` on a free loopback port."""
    exe = _executable("moto_server")
    if exe is None:
        raise ServerUnavailable("moto_server not found: pip install 'moto[server]==5.2.5'")
    port = port or free_port()
    return _start("moto", [exe, "-H", HOST, "-p", str(port)], port, "/moto-api/", timeout)


def start_gcs_emulator(port: int | None = None, timeout: float = 20.0) -> LocalServer:
    """Start gcp-storage-emulator, in memory, on a free loopback port."""
    exe = _executable("gcp-storage-emulator")
    if exe is None:
        raise ServerUnavailable("gcp-storage-emulator not found: pip install gcp-storage-emulator==2026.7.19")
    port = port or free_port()
    return _start("gcs", [exe, "start", "--host", HOST, "--port", str(port), "--in-memory"], port,
                  "/storage/v1/b", timeout)


def start_azurite(port: int | None = None, timeout: float = 30.0) -> LocalServer:
    """Start Azurite's blob service, in memory, on a free loopback port."""
    exe = os.environ.get("AZURITE_BLOB") or _executable("azurite-blob", REPO / ".tools" / "node_modules" / ".bin")
    if exe is None:
        raise ServerUnavailable("azurite-blob not found: npm install --prefix .tools azurite@3.35.0")
    if shutil.which("node") is None:
        raise ServerUnavailable("azurite-blob needs node on PATH")
    port = port or free_port()
    argv = [exe, "--blobHost", HOST, "--blobPort", str(port), "--inMemoryPersistence", "--silent",
            "--disableTelemetry", "--skipApiVersionCheck"]
    return _start("azurite", argv, port, "/", timeout)


# -- storage options and buckets ------------------------------------------------------------------


def s3_storage_options(endpoint: str, *, retries: int | None = None) -> dict[str, Any]:
    """greenroute ``storage_options`` for moto at ``endpoint``."""
    options: dict[str, Any] = {"endpoint_url": endpoint, "key": MOTO_KEY, "secret": MOTO_SECRET,
                               "client_kwargs": {"region_name": "us-east-1"}}
    if retries is not None:
        options["retries"] = retries
        options["config_kwargs"] = {"connect_timeout": 2, "read_timeout": 5,
                                    "retries": {"max_attempts": 1, "mode": "standard"}}
    return options


def gcs_storage_options(endpoint: str, *, retries: int | None = None) -> dict[str, Any]:
    """greenroute ``storage_options`` for the GCS emulator at ``endpoint``."""
    options: dict[str, Any] = {"endpoint_url": endpoint, "token": "anon", "project": "greenroute-test"}
    if retries is not None:
        options["retries"] = retries
        options["requests_timeout"] = 5
    return options


def azure_connection_string(endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};")


def azure_storage_options(endpoint: str, *, retries: int | None = None) -> dict[str, Any]:
    """greenroute ``storage_options`` for Azurite at ``endpoint``."""
    options: dict[str, Any] = {"connection_string": azure_connection_string(endpoint)}
    if retries is not None:
        options["retries"] = retries
        options["connection_timeout"] = 2
    return options


def create_s3_bucket(endpoint: str, name: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=MOTO_KEY,
                          aws_secret_access_key=MOTO_SECRET, region_name="us-east-1")
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()


def create_gcs_bucket(endpoint: str, name: str) -> None:
    import json

    body = json.dumps({"name": name}).encode()
    request = urllib.request.Request(f"{endpoint}/storage/v1/b?project=greenroute-test", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def create_azure_container(endpoint: str, name: str) -> None:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(azure_connection_string(endpoint)) as client:
        client.create_container(name)
