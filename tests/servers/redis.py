"""Redis (or Valkey) for tests: which server to use, and throwaway servers a test may kill.

:func:`redis_for_tests` picks, in order:

1. ``$GREENROUTE_TEST_REDIS_URL``, as given;
2. a server already answering on 127.0.0.1:6379 (as on the project's machines), in database
   :data:`TEST_DB`;
3. a throwaway ``redis-server`` or ``valkey-server`` from the system, on a free loopback port, with
   nothing kept on disk (``--save "" --appendonly no``).

Every test run gets a unique key prefix, and :meth:`TestRedis.delete_keys` deletes only keys under
that prefix, so a shared server's other data is never touched. :func:`start_redis_server` always
starts a throwaway server, for tests that kill and restart it; a machine's shared server is never
stopped. Each raises :class:`~tests.servers.local.ServerUnavailable` saying why it could not.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from tests.servers.local import HOST, LocalServer, ServerUnavailable, free_port

__all__ = ["ENV_URL", "TEST_DB", "TestRedis", "redis_binary", "redis_for_tests", "start_redis_server"]

ENV_URL = "GREENROUTE_TEST_REDIS_URL"
#: The database used on a shared server on 127.0.0.1:6379 (keys are also under a per-run prefix).
TEST_DB = 13


@dataclass
class TestRedis:
    """The Redis a test run uses.

    Attributes:
        url: A ``redis://`` URL including the database.
        key_prefix: This run's prefix; everything the tests write is under it.
        how: Where the server came from, for messages.
        server: The throwaway server, when this run started one.
    """

    __test__ = False  # not a test class, despite its name

    url: str
    key_prefix: str
    how: str
    server: LocalServer | None = None

    def client(self) -> redis.Redis:
        """A plain redis-py client for assertions and clean-up."""
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def prefix(self, name: str) -> str:
        """A prefix for one test, under this run's."""
        return f"{self.key_prefix}{name}:"

    def delete_keys(self, prefix: str | None = None) -> int:
        """Delete the keys under ``prefix`` (this run's by default), and nothing else."""
        prefix = prefix or self.key_prefix
        if not prefix.startswith(self.key_prefix):
            raise ValueError(f"refusing to delete keys outside this run's prefix {self.key_prefix!r}")
        client = self.client()
        try:
            names = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=500))
            for i in range(0, len(names), 500):
                client.delete(*names[i:i + 500])
            return len(names)
        finally:
            client.close()

    def stop(self) -> None:
        """Delete this run's keys, and stop the server if this run started it."""
        with contextlib.suppress(redis.exceptions.RedisError):
            self.delete_keys()
        if self.server is not None:
            self.server.stop()


def redis_binary() -> str | None:
    """``redis-server`` or ``valkey-server`` from the venv or the system ``PATH``."""
    for name in ("redis-server", "valkey-server"):
        candidate = Path(sys.executable).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        found = shutil.which(name)
        if found:
            return found
    return None


def start_redis_server(port: int | None = None, timeout: float = 10.0) -> LocalServer:
    """Start a throwaway Redis/Valkey on ``port`` (a free one if ``None``) of 127.0.0.1, keeping nothing on disk."""
    exe = redis_binary()
    if exe is None:
        raise ServerUnavailable("neither redis-server nor valkey-server found: apt-get install redis-server "
                                "(or valkey-server), or set GREENROUTE_TEST_REDIS_URL")
    port = port or free_port()
    folder = Path(tempfile.mkdtemp(prefix="greenroute-redis-"))
    log = folder / "server.log"
    argv = [exe, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", str(folder),
            "--protected-mode", "no", "--daemonize", "no"]
    with open(log, "wb") as out:
        try:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        except OSError as exc:
            raise ServerUnavailable(f"cannot run {exe}: {exc}") from exc
    server = LocalServer("redis", port, process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise ServerUnavailable(f"{exe} exited with status {process.returncode}: {server.log_tail()}")
        if _pings(f"redis://{HOST}:{port}/0"):
            return server
        time.sleep(0.05)
    server.stop()
    raise ServerUnavailable(f"{exe} did not answer on port {port} within {timeout:g} s: {server.log_tail()}")


def redis_for_tests() -> TestRedis:
    """The Redis this test run uses (see the module docstring)."""
    prefix = f"greenroute-test-{secrets.token_hex(4)}:"
    url = os.environ.get(ENV_URL)
    if url:
        if not _pings(url):
            raise ServerUnavailable(f"${ENV_URL} is set but its server does not answer PING")
        return TestRedis(url, prefix, f"${ENV_URL}")
    if _listening(HOST, 6379) and _pings(f"redis://{HOST}:6379/{TEST_DB}"):
        return TestRedis(f"redis://{HOST}:6379/{TEST_DB}", prefix, f"the server on {HOST}:6379, db {TEST_DB}")
    server = start_redis_server()
    return TestRedis(f"redis://{HOST}:{server.port}/0", prefix, f"a throwaway server on port {server.port}", server)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pings(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
