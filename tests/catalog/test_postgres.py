"""What only the PostgreSQL catalog has to prove: round trips, passwords, faults, schema creation, settings.

The contract suite (test_contract.py) already runs against PostgreSQL; these tests cover the rest.
Tests that stop or restart a server, or need password authentication, start a throwaway server of
their own (``postgres_server_factory``); the machine's shared server is never restarted.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from tests.servers.local import closed_port
from tests.servers.postgres import PostgresServer, RoundTripCounter, TestPostgres, with_params

from greenroute import GreenPlacementService, GreenRouter
from greenroute.adapters.catalog.postgres import SCHEMA_VERSION, PostgresCatalog, PostgresSettings, from_url
from greenroute.config import parse_config
from greenroute.errors import CatalogError, CatalogUnavailableError, CommitConflictError, ConfigError, GreenrouteError
from greenroute.model import Backend, Provider
from greenroute.router import catalog_from_url

from .conftest import make_entry

REPO = Path(__file__).resolve().parents[2]


def _via(url: str, port: int) -> str:
    """``url`` pointed at 127.0.0.1:``port`` (the round-trip counter) instead of its own server."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


def _memory_router(catalog: PostgresCatalog, tag: str) -> GreenRouter:
    backend = Backend(id="mem", provider=Provider.MEMORY, region="eu-north-1", root=f"memory://{tag}/mem",
                      renewable_pct=100.0, pue=1.1)
    return GreenRouter(GreenPlacementService([backend]), catalog)


# -- cost ------------------------------------------------------------------------------------------


def test_a_commit_is_one_round_trip_and_a_routed_write_two(postgres_run: TestPostgres, pg_url: str) -> None:
    upstream = urlsplit(postgres_run.url)
    counter = RoundTripCounter(upstream.hostname or "127.0.0.1", upstream.port or 5432)
    catalog = from_url(with_params(_via(pg_url, counter.port), pool_size=1))
    try:
        for i in range(8):  # the connection is open and psycopg has prepared its statements
            catalog.commit(make_entry(f"warm/{i}", f"w{i}"), expected=None)
            catalog.placement(f"warm/{i}")
        counter.reset()
        for i in range(20):
            catalog.commit(make_entry(f"ns/{i}", f"d{i}"), expected=None)
        assert counter.round_trips == 20
        counter.reset()
        for i in range(20):  # a replacing commit (close the old entry, insert the new) is still one
            catalog.commit(make_entry(f"ns/{i}", f"e{i}"), expected=f"d{i}")
        assert counter.round_trips == 20
        counter.reset()
        with pytest.raises(CommitConflictError):
            catalog.commit(make_entry("ns/0", "f0"), expected="d0")
        assert counter.round_trips == 1
        router = _memory_router(catalog, secrets.token_hex(4))
        for i in range(8):
            router.write(f"warm/r{i}", b"x" * 1024)
        counter.reset()
        for i in range(10):
            router.write(f"lake/{i}.bin", b"x" * 1024)
        assert counter.round_trips == 20  # the placement read, and the commit
    finally:
        catalog.close()
        counter.close()


# -- passwords -------------------------------------------------------------------------------------


def test_the_password_comes_from_the_environment_and_never_shows(
        postgres_server_factory: Callable[..., PostgresServer], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    secret = "pw-" + secrets.token_hex(12)
    wrong = "pw-" + secrets.token_hex(12)
    server = postgres_server_factory(password=secret)
    for var in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))
    caplog.set_level(logging.DEBUG)
    base = f"postgresql://postgres@127.0.0.1:{server.port}/postgres?schema=pw&connect_timeout_seconds=3"
    seen: list[str] = []

    with pytest.raises(CatalogUnavailableError) as none_given:  # the server asks, nothing supplies one
        from_url(base)
    assert f"127.0.0.1:{server.port}/postgres" in str(none_given.value)
    seen.append(str(none_given.value))

    monkeypatch.setenv("GR_TEST_PG_PASSWORD", wrong)
    with pytest.raises(CatalogUnavailableError) as refused:
        from_url(base + "&password_env=GR_TEST_PG_PASSWORD")
    assert "password authentication failed" in str(refused.value)
    seen.append(str(refused.value))

    monkeypatch.setenv("GR_TEST_PG_PASSWORD", secret)
    catalog = from_url(base + "&password_env=GR_TEST_PG_PASSWORD")
    try:
        catalog.commit(make_entry("ns/a", "d1"), expected=None)
        assert catalog.lookup("ns/a") is not None
        with pytest.raises(CatalogError) as failed:  # a statement the server rejects
            catalog.lookup("ns/\x00nul")
        assert not isinstance(failed.value, psycopg.Error)
        seen += [str(failed.value), repr(catalog), str(catalog.settings)]
    finally:
        catalog.close()

    monkeypatch.delenv("GR_TEST_PG_PASSWORD")
    with pytest.raises(ConfigError) as unset:
        from_url(base + "&password_env=GR_TEST_PG_PASSWORD")
    assert "GR_TEST_PG_PASSWORD" in str(unset.value)

    monkeypatch.setenv("PGPASSWORD", secret)  # libpq's own variable works as it always does
    catalog = from_url(base)
    try:
        assert catalog.lookup("ns/a") is not None
    finally:
        catalog.close()

    for url in (f"postgresql://postgres:{secret}@127.0.0.1:{server.port}/postgres",
                f"postgresql://postgres@127.0.0.1:{server.port}/postgres?password={secret}"):
        with pytest.raises(ConfigError) as in_url:
            from_url(url)
        seen.append(str(in_url.value))
        with pytest.raises(ConfigError) as in_config:
            parse_config({"catalog": {"url": url}})
        seen.append(str(in_config.value))
    with pytest.raises(ConfigError) as in_file:
        parse_config({"catalog": {"url": base, "password": secret}})
    seen.append(str(in_file.value))

    everything = "\n".join(seen) + caplog.text
    assert secret not in everything and wrong not in everything


# -- faults ----------------------------------------------------------------------------------------


def test_an_unreachable_database_at_startup_names_host_and_port() -> None:
    port = closed_port()
    started = time.monotonic()
    with pytest.raises(CatalogUnavailableError) as info:
        from_url(f"postgresql://greenroute@127.0.0.1:{port}/fleet?connect_timeout_seconds=2")
    assert f"127.0.0.1:{port}/fleet" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)  # kept as the cause, never raised
    assert time.monotonic() - started < 10


def test_a_statement_past_the_timeout_is_a_catalog_unavailable_error(postgres_run: TestPostgres,
                                                                      pg_url: str) -> None:
    catalog = from_url(with_params(pg_url, statement_timeout_ms=300))
    try:
        catalog.commit(make_entry("ns/a", "d1"), expected=None)
        schema = catalog.schema
        with postgres_run.connect() as holder, holder.transaction():
            holder.execute(f"SELECT 1 FROM {schema}.entries WHERE path = 'ns/a' FOR UPDATE")  # another writer's lock
            started = time.monotonic()
            with pytest.raises(CatalogUnavailableError, match="statement timeout of 300 ms"):
                catalog.commit(make_entry("ns/a", "d2"), expected="d1")
            assert time.monotonic() - started < 5
        committed, _ = catalog.commit(make_entry("ns/a", "d2"), expected="d1")  # the lock is gone: it goes through
        assert committed.decision_id == "d2"
    finally:
        catalog.close()


def test_pool_size_bounds_the_connections_of_a_process(postgres_run: TestPostgres, pg_url: str) -> None:
    app = f"gr_pool_{secrets.token_hex(4)}"
    catalog = from_url(with_params(pg_url, pool_size=2, application_name=app))
    catalog.commit(make_entry("ns/a", "d1"), expected=None)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                catalog.lookup("ns/a")
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    most = 0
    try:
        with postgres_run.connect() as watcher:
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                row = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                      (app,)).fetchone()
                most = max(most, int(row[0]) if row else 0)
                time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
        catalog.close()
    assert errors == []
    assert 1 <= most <= 2


def test_a_restart_mid_run_loses_no_acknowledged_write(postgres_server_factory: Callable[..., PostgresServer]) -> None:
    server = postgres_server_factory()
    catalog = from_url(server.url() + "?schema=restart&retry_seconds=30&connect_timeout_seconds=2")
    router = _memory_router(catalog, secrets.token_hex(4))
    acknowledged: dict[str, str] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()
    phase = {"n": 0}
    after_restarts: list[str] = []

    def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            path = f"restart/w{n}/{i:05d}"
            try:
                result = router.write(path, f"{n}-{i}".encode())
            except BaseException as exc:
                errors.append(exc)
            else:
                with lock:
                    acknowledged[path] = result.decision.decision_id
                    if phase["n"] == 2:
                        after_restarts.append(path)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        server.restart("fast")  # sessions terminated, in-flight transactions rolled back
        time.sleep(1.0)
        server.restart("immediate", down_seconds=1.0)  # as a crash, and down for a second
        phase["n"] = 2
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    try:
        assert errors == [], [f"{type(e).__name__}: {e}" for e in errors[:3]]
        assert len(acknowledged) > len(after_restarts) > 0  # writes before, across and after the restarts
        for path, decision_id in acknowledged.items():
            entry = catalog.lookup(path)
            assert entry is not None and entry.decision_id == decision_id, path
            assert router.read(path) == f"{path.split('/')[1][1:]}-{int(path.rsplit('/', 1)[1])}".encode()
        assert len(catalog.list("restart/")) == len(acknowledged)
    finally:
        router.close()


def test_without_retries_a_write_in_a_down_database_fails_with_a_greenroute_error_then_recovers(
        postgres_server_factory: Callable[..., PostgresServer]) -> None:
    server = postgres_server_factory()
    catalog = from_url(server.url() + "?schema=down&retry_seconds=0&connect_timeout_seconds=1")
    router = _memory_router(catalog, secrets.token_hex(4))
    try:
        router.write("down/before.txt", b"before")
        server.stop("fast")
        with pytest.raises(CatalogUnavailableError) as info:
            router.write("down/during.txt", b"during")
        assert f"127.0.0.1:{server.port}/postgres" in str(info.value)
        assert isinstance(info.value, GreenrouteError) and not isinstance(info.value, psycopg.Error)
        server.start()
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects in the background; the first calls may still fail fast
            try:
                router.write("down/after.txt", b"after")
                break
            except CatalogUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert router.read("down/before.txt") == b"before" and router.read("down/after.txt") == b"after"
        assert catalog.lookup("down/during.txt") is None  # never acknowledged, never catalogued
    finally:
        router.close()


# -- schema ----------------------------------------------------------------------------------------

_OPEN_AND_COMMIT = """
import sys, time
sys.path.insert(0, sys.argv[4])
from tests.catalog.conftest import make_entry
from greenroute.adapters.catalog.postgres import from_url
url, start_at, n = sys.argv[1], float(sys.argv[2]), sys.argv[3]
time.sleep(max(0.0, start_at - time.time()))
catalog = from_url(url)
catalog.commit(make_entry(f"ns/p{n}", f"p{n}"), expected=None)
catalog.close()
print("ok")
"""


def test_processes_starting_at_once_create_the_schema_once(postgres_run: TestPostgres) -> None:
    schema = postgres_run.new_schema()
    try:
        url = postgres_run.catalog_url(schema)
        start_at = time.time() + 4.0  # every process has imported psycopg by then, and they open together
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_COMMIT, url, str(start_at), str(n), str(REPO)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(5)]
        outputs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 5, [err[-800:] for _, err in outputs]
        with postgres_run.connect() as conn:
            versions = [r[0] for r in conn.execute(f"SELECT version FROM {schema}.schema_version ORDER BY version")]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
        catalog = from_url(url)
        try:
            assert [e.path for e in catalog.list()] == [f"ns/p{n}" for n in range(5)]
        finally:
            catalog.close()
    finally:
        postgres_run.drop_schema(schema)


def test_schema_creation_waits_for_the_advisory_lock(postgres_run: TestPostgres) -> None:
    schema = postgres_run.new_schema()
    opened: list[PostgresCatalog] = []
    try:
        with postgres_run.connect() as holder:
            with holder.transaction():
                holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (0x67726E, schema))
                opener = threading.Thread(target=lambda: opened.append(from_url(postgres_run.catalog_url(schema))))
                opener.start()
                opener.join(timeout=1.5)
                assert opener.is_alive() and opened == []  # it waits for the lock rather than racing
                exists = holder.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
                assert exists is None
            opener.join(timeout=30)  # the lock is released with the transaction
        assert len(opened) == 1 and opened[0].placement("ns/x") is None
    finally:
        for cat in opened:
            cat.close()
        postgres_run.drop_schema(schema)


def test_a_schema_newer_than_this_greenroute_is_refused(postgres_run: TestPostgres, pg_url: str) -> None:
    from_url(pg_url).close()
    schema = PostgresSettings.from_url(pg_url).schema
    with postgres_run.connect() as conn:
        conn.execute(f"INSERT INTO {schema}.schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(CatalogError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        from_url(pg_url)


# -- configuration ---------------------------------------------------------------------------------


def test_catalog_keys_of_the_config_reach_the_adapter() -> None:
    cfg = parse_config({"catalog": {"url": "postgres://greenroute@db.internal:6432/fleet", "schema": "lake",
                                    "pool_size": 12, "statement_timeout_ms": 1500, "connect_timeout_seconds": 3,
                                    "retry_seconds": 20, "password_env": "FLEET_PG_PASSWORD"}})
    settings = PostgresSettings.from_url(cfg.catalog_url)
    assert (settings.schema, settings.pool_size, settings.statement_timeout_ms, settings.connect_timeout_seconds,
            settings.retry_seconds, settings.password_env) == ("lake", 12, 1500, 3.0, 20.0, "FLEET_PG_PASSWORD")
    assert settings.where() == "db.internal:6432/fleet"
    assert "schema" not in settings.conninfo and "pool_size" not in settings.conninfo  # libpq never sees ours
    defaults = PostgresSettings.from_url("postgresql://greenroute@db/fleet")
    assert (defaults.schema, defaults.pool_size, defaults.statement_timeout_ms, defaults.retry_seconds) == \
        ("greenroute", 4, 5000, 10.0)
    for bad in ({"url": "sqlite:///x.db", "pool_size": 2}, {"url": "postgresql://h/db", "pool_size": 0},
                {"url": "postgresql://h/db", "schema": "no way"}):
        with pytest.raises(ConfigError):
            parse_config({"catalog": bad})
    with pytest.raises(ConfigError):
        PostgresSettings.from_url("postgresql://h/db?schema=Robert');DROP")


def test_both_schemes_open_through_the_entry_point(pg_url: str) -> None:
    for scheme in ("postgresql", "postgres"):
        catalog = catalog_from_url(scheme + pg_url[len("postgresql"):])
        try:
            assert isinstance(catalog, PostgresCatalog)
        finally:
            catalog.close()


def test_a_forked_child_opens_its_own_connections(pg_url: str) -> None:
    catalog = from_url(pg_url)
    try:
        catalog.commit(make_entry("ns/parent", "d1"), expected=None)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                catalog.commit(make_entry("ns/child", "d2"), expected=None)
                code = 0 if catalog.lookup("ns/parent") is not None else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [e.path for e in catalog.list()] == ["ns/child", "ns/parent"]  # the parent's pool still works
    finally:
        catalog.close()
