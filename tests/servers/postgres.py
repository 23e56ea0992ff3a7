"""PostgreSQL for tests: which server to use, fresh schemas, and throwaway servers a test may restart.

:func:`postgres_for_tests` picks, in order, and says which in :attr:`TestPostgres.how`:

1. ``$GREENROUTE_TEST_POSTGRES_URL``, as given (a database the tests may create schemas in);
2. a server already answering on 127.0.0.1:5432 as user ``postgres`` (as on the project's machines,
   with trust authentication): the run creates a database of its own, ``greenroute_test_<random>``,
   and drops it at the end;
3. a throwaway server from the system's PostgreSQL binaries (``/usr/lib/postgresql/*/bin``:
   ``initdb`` and ``pg_ctl``), in a fresh temporary folder, on a free loopback port, with trust
   authentication on loopback only; stopped and its folder removed at the end. As root it runs as
   the ``postgres`` system user (PostgreSQL refuses to run as root).

Every test gets a fresh schema (``greenroute_test_<random>``) in that database, dropped afterwards.
Only databases and schemas this run created, all named with the ``greenroute_test_`` prefix, are
ever dropped. :func:`start_postgres_server` always starts a throwaway server, for tests that restart
or stop it; a machine's shared server is never restarted. Each raises
:class:`~tests.servers.local.ServerUnavailable` saying why it could not.

The pytest fixtures: ``postgres_run`` (the session's :class:`TestPostgres`), ``pg_url`` (a catalog
URL on a fresh schema) and ``postgres_server_factory`` (throwaway servers). Import them into a
``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from tests.servers.fixtures import require_integration
from tests.servers.local import HOST, ServerUnavailable, free_port

__all__ = [
    "ENV_URL",
    "PREFIX",
    "PostgresServer",
    "RoundTripCounter",
    "TestPostgres",
    "pg_url",
    "postgres_for_tests",
    "postgres_run",
    "postgres_server_factory",
    "start_postgres_server",
]

ENV_URL = "GREENROUTE_TEST_POSTGRES_URL"
#: Every database and schema the tests create starts with this; nothing else is ever dropped.
PREFIX = "greenroute_test_"


def unique_name() -> str:
    """A fresh database or schema name under :data:`PREFIX`."""
    return f"{PREFIX}{secrets.token_hex(6)}"


def with_params(url: str, **params: object) -> str:
    """``url`` with query parameters added (``schema=...``, ``pool_size=...``)."""
    parts = urlsplit(url)
    # %20, not "+", for spaces: libpq does not decode "+".
    added = urlencode({k: str(v) for k, v in params.items()}, quote_via=quote)
    query = parts.query + ("&" if parts.query and params else "") + added
    return urlunsplit(parts._replace(query=query))


def _base(url: str) -> str:
    """``url`` without its query (for psycopg, which refuses greenroute's own parameters)."""
    return urlunsplit(urlsplit(url)._replace(query=""))


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary folder, controlled with ``pg_ctl``.

    Attributes:
        port: Its loopback port.
        folder: The temporary folder (data directory, socket, log); removed by :meth:`destroy`.
        bindir: Where ``pg_ctl`` is.
        run_as: The system user the server runs as (``postgres`` when the tests run as root).
    """

    port: int
    folder: Path
    bindir: Path
    run_as: str | None = None
    _running: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://postgres@127.0.0.1:PORT/dbname``."""
        return f"postgresql://postgres@{HOST}:{self.port}/{dbname}"

    def _pg_ctl(self, *args: str, timeout: float = 60.0) -> None:
        argv = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.folder,
                              user=self.run_as, check=False)
        if done.returncode != 0:
            raise ServerUnavailable(f"pg_ctl {' '.join(args)} failed ({done.returncode}): "
                                    f"{(done.stderr or done.stdout).strip()[-500:]} {self.log_tail()}")

    def start(self) -> None:
        """Start (or start again) on the same port and data."""
        options = (f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c max_connections=200 -c shared_buffers=64MB")
        self._pg_ctl("-w", "-t", "60", "-l", str(self.log), "-o", options, "start")
        self._running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop it: ``fast`` (disconnects clients, shuts down cleanly) or ``immediate`` (as a crash)."""
        if self._running:
            self._pg_ctl("-w", "-m", mode, "stop")
            self._running = False

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> None:
        """Stop it, stay down for ``down_seconds``, and start it again on the same port."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def destroy(self) -> None:
        """Stop it and remove its temporary folder (which this module created)."""
        with contextlib.suppress(ServerUnavailable, subprocess.TimeoutExpired):
            self.stop("immediate")
        if self.folder.name.startswith("greenroute-postgres-"):
            shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines: int = 10) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    root = Path("/usr/lib/postgresql")
    found = [p / "bin" for p in root.glob("*") if (p / "bin" / "initdb").is_file() and (p / "bin" / "pg_ctl").is_file()]
    if not found:
        return None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def start_postgres_server(port: int | None = None, *, password: str | None = None) -> PostgresServer:
    """Start a throwaway cluster (``initdb`` + ``pg_ctl``) on a free loopback port, in a fresh temporary folder.

    Args:
        port: The port (a free one if ``None``).
        password: With one, TCP connections need it (``scram-sha-256``) for user ``postgres``; without, trust.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise ServerUnavailable("no PostgreSQL binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql, "
                                f"or set ${ENV_URL}")
    run_as: str | None = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise ServerUnavailable("running as root and there is no 'postgres' system user to run a server as "
                                    f"(PostgreSQL refuses root); set ${ENV_URL}") from None
        run_as = "postgres"
    folder = Path(tempfile.mkdtemp(prefix="greenroute-postgres-"))
    if run_as is not None:
        shutil.chown(folder, run_as, run_as)
    server = PostgresServer(port or free_port(), folder, bindir, run_as)
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n")
        if run_as is not None:
            shutil.chown(pwfile, run_as, run_as)
        auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
    done = subprocess.run([str(bindir / "initdb"), "-D", str(server.data), "-U", "postgres", *auth,
                           "--no-sync", "-E", "UTF8", "--locale=C"], capture_output=True, text=True, timeout=120,
                          cwd=folder, user=run_as, check=False)
    if password is not None:
        (folder / "pwfile").unlink()
    if done.returncode != 0:
        server.destroy()
        raise ServerUnavailable(f"initdb failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}")
    try:
        server.start()
    except (ServerUnavailable, subprocess.TimeoutExpired) as exc:
        server.destroy()
        raise ServerUnavailable(str(exc)) from exc
    return server


@dataclass
class TestPostgres:
    """The PostgreSQL a test run uses.

    Attributes:
        url: A ``postgresql://`` URL of the run's database (no password in it).
        how: Where the server came from, for messages.
        database: The database this run created (dropped by :meth:`stop`), if it created one.
        admin_url: Where that database is dropped from.
        server: The throwaway server, when this run started one.
    """

    __test__ = False  # not a test class, despite its name

    url: str
    how: str
    database: str | None = None
    admin_url: str | None = None
    server: PostgresServer | None = None
    schemas: list[str] = field(default_factory=list)

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A plain psycopg connection to the run's database (autocommit), for set-up and assertions."""
        return psycopg.connect(_base(self.url), autocommit=True, connect_timeout=10, **kwargs)

    def new_schema(self) -> str:
        """A fresh schema name for one test (the catalog creates it on first use)."""
        name = unique_name()
        self.schemas.append(name)
        return name

    def catalog_url(self, schema: str, **params: object) -> str:
        """The catalog URL of ``schema`` in the run's database."""
        return with_params(self.url, schema=schema, **params)

    def drop_schema(self, name: str) -> None:
        """Drop one schema this run created (``greenroute_test_*`` only)."""
        if not name.startswith(PREFIX) or name not in self.schemas:
            raise ValueError(f"refusing to drop schema {name!r}: this run did not create it")
        with self.connect() as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self.schemas.remove(name)

    def stop(self) -> None:
        """Drop what this run created, and stop the server if this run started it."""
        for name in list(self.schemas):
            with contextlib.suppress(psycopg.Error):
                self.drop_schema(name)
        if self.database is not None and self.admin_url is not None and self.database.startswith(PREFIX):
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if self.server is not None:
            self.server.destroy()


def _answers(url: str) -> str | None:
    """``None`` if a connection to ``url`` works, else why not."""
    try:
        with psycopg.connect(_base(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _own_database(admin_url: str, how: str, server: PostgresServer | None = None) -> TestPostgres:
    name = unique_name()
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    return TestPostgres(url, how, name, admin_url, server)


def postgres_for_tests() -> TestPostgres:
    """The PostgreSQL this test run uses (see the module docstring)."""
    url = os.environ.get(ENV_URL)
    if url:
        why = _answers(url)
        if why is not None:
            raise ServerUnavailable(f"${ENV_URL} is set but its server does not answer ({why})")
        shown = urlsplit(url)
        return TestPostgres(url, f"${ENV_URL} ({shown.hostname}:{shown.port or 5432}{shown.path})")
    shared = f"postgresql://postgres@{HOST}:5432/postgres"
    why_not = "nothing listens on 127.0.0.1:5432"
    if _listening(HOST, 5432):
        why = _answers(shared)
        if why is None:
            return _own_database(shared, f"the server on {HOST}:5432, in a database of the run's own")
        why_not = f"the server on 127.0.0.1:5432 refused user postgres ({why})"
    server = start_postgres_server()
    try:
        return _own_database(server.url(), f"a throwaway server from {server.bindir} on port {server.port} "
                                           f"({why_not})", server)
    except psycopg.Error as exc:
        server.destroy()
        raise ServerUnavailable(f"the throwaway server on port {server.port} did not accept a database: {exc}") \
            from exc


# -- counting round trips ---------------------------------------------------------------------------


class RoundTripCounter:
    """A loopback TCP relay in front of a PostgreSQL server that counts the client's round trips.

    A round trip is a burst of bytes from the client that follows the server's last answer (or the
    start): what a client must wait for before it may go on. Point a connection at :attr:`port`;
    :meth:`close` ends the relay and every connection through it.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((HOST, 0))
        self._listener.listen(16)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._last: dict[int, str] = {}
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.round_trips = 0
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def reset(self) -> None:
        """Start counting from zero."""
        with self._lock:
            self.round_trips = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = id(client)
            for args in ((client, server, key, "c"), (server, client, key, "s")):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, key: int, side: str) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    if side == "c" and self._last.get(key) != "c":
                        self.round_trips += 1
                    self._last[key] = side
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting, end every relayed connection, and close every socket."""
        self._listener.close()
        self._accepting.join(timeout=5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in sockets:
            sock.close()


# -- pytest fixtures ---------------------------------------------------------------------------------


def _unavailable(exc: ServerUnavailable) -> None:
    reason = f"PostgreSQL unavailable: {exc}"
    if require_integration():
        pytest.fail(reason + " (GREENROUTE_REQUIRE_INTEGRATION=1)")
    print(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_run(request: pytest.FixtureRequest) -> Iterator[TestPostgres]:
    """The run's PostgreSQL; what it created is dropped at the end, a throwaway server stopped."""
    try:
        target = postgres_for_tests()
    except ServerUnavailable as exc:
        _unavailable(exc)
        raise
    message = f"PostgreSQL for tests: {target.how}"
    print(message)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(message)
    yield target
    target.stop()


@pytest.fixture
def pg_url(postgres_run: TestPostgres) -> Iterator[str]:
    """A catalog URL on a fresh schema of the run's database; the schema is dropped afterwards."""
    schema = postgres_run.new_schema()
    yield postgres_run.catalog_url(schema)
    postgres_run.drop_schema(schema)


@pytest.fixture
def postgres_server_factory() -> Iterator[Callable[..., PostgresServer]]:
    """Start throwaway servers that a test may stop or restart; all are removed at the end of the test."""
    started: list[PostgresServer] = []

    def start(password: str | None = None) -> PostgresServer:
        try:
            server = start_postgres_server(password=password)
        except ServerUnavailable as exc:
            _unavailable(exc)
            raise
        started.append(server)
        return server

    yield start
    for server in started:
        server.destroy()
