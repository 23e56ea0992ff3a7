"""Benchmark 9: the PostgreSQL catalog on loopback: commit cost, size scaling, and fleet throughput.

PostgreSQL comes from ``tests.servers.postgres``: ``$GREENROUTE_TEST_POSTGRES_URL``, else the server
on 127.0.0.1:5432 (in a database of the run's own, dropped at the end), else a throwaway server
from the system's binaries. The section says which.

* **Commit cost, SQLite vs PostgreSQL**: 1 KiB ``GreenRouter.write`` to a memory backend, one router
  with each catalog, interleaved; and the catalog's own share (``placement`` read + compare-and-set
  ``commit``), timed around the catalog calls alone. A third PostgreSQL catalog runs with
  ``synchronous_commit = off``, to show how much of a commit is the wait for the WAL flush. A relay
  that counts round trips confirms one per commit (two per routed write: the placement read and
  the commit).
* **Lookup and list at 10^4 and 10^6 entries** (PostgreSQL): each catalog is a schema created by
  the adapter, filled with ``COPY`` (indexes dropped during the load and re-created after), then
  ``ANALYZE``. ``lookup`` of a random existing path and a 100-entry ``list`` page that starts
  after a random path (keyset paging), interleaved between the sizes. Target: 10^6 within 2x of 10^4.
* **Throughput from 1, 4 and 8 processes** to one PostgreSQL catalog: each process writes 1 KiB
  objects to its own memory backend for a fixed time with ``GreenRouter.write``; the same
  processes then write the same objects with fsspec's memory filesystem directly (no routing, no
  catalog). Writes per second in all, both ways, phases alternating.

The smoke run uses 10^3 and 10^4 entries, one process and short phases.

    python benchmarks/catalog_postgres.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import json
import random
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from _common import REPO, Context, Section, clock, section_main, setup_paths, summary, temp_dir

GROWTH_LIMIT = 2.0
KIB = b"x" * 1024


def _path(i: int) -> str:
    return f"ns{i % 50:02d}/part-{(i // 50) % 1000:03d}/obj-{i:08d}.parquet"


def _template() -> Any:
    from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind

    now = datetime(2026, 11, 1, tzinfo=UTC)
    return CatalogEntry(path=_path(0), backend_id="aws-eu-north-1", url=f"s3://bucket-eu-north-1/data/{_path(0)}",
                        size=123_456, etag="0123456789abcdef0123456789abcdef", write_gco2e=1.2e-5,
                        gco2e_month=3.4e-6, carbon_intensity_g_per_kwh=27.0, signal=SignalKind.AVERAGE,
                        source=GridDataSource.EMBEDDED, decision_id="0" * 32, state=EntryState.COMMITTED,
                        created_at=now, updated_at=now)


def _memory_router(catalog: Any, tag: str) -> Any:
    from greenroute import GreenPlacementService, GreenRouter
    from greenroute.model import Backend, Provider

    backend = Backend(id="mem", provider=Provider.MEMORY, region="eu-north-1", root=f"memory://{tag}/mem",
                      renewable_pct=100.0, pue=1.1)
    return GreenRouter(GreenPlacementService([backend]), catalog)


def build(url: str, admin: Any, entries: int, seed: int = 7) -> float:
    """Fill the schema of catalog ``url`` with ``entries`` committed entries by COPY; returns the seconds taken."""
    from greenroute.adapters.catalog._rows import COLUMNS, row_from_entry
    from greenroute.adapters.catalog.postgres import from_url

    started = time.monotonic()
    catalog = from_url(url)  # the adapter's own schema
    schema = catalog.schema
    catalog.close()
    template = list(row_from_entry(_template(), timestamps_as_text=False))
    for i in (18, 19, 20):
        template[i] = bool(template[i])
    rng = random.Random(seed)
    indexes = admin.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = "
                            "'entries' AND indexname NOT LIKE '%%_pkey'", (schema,)).fetchall()
    with admin.transaction():
        for name, _ in indexes:
            admin.execute(f"DROP INDEX {schema}.{name}")
        with admin.cursor().copy(f"COPY {schema}.entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for i in range(entries):
                row = list(template)
                row[0] = f"{i:08x}{rng.getrandbits(96):024x}"
                row[1] = _path(i)
                row[4] = f"s3://bucket-eu-north-1/data/{row[1]}"
                copy.write_row(row)
        for _, definition in indexes:
            admin.execute(definition)
    admin.execute(f"ANALYZE {schema}.entries")
    return time.monotonic() - started


# -- processes for the throughput part ---------------------------------------------------------------


def worker(mode: str, url: str, start_at: float, seconds: float) -> None:
    """One process of the throughput part: write 1 KiB objects for ``seconds`` from ``start_at``; print the count."""
    tag = f"tput-{uuid.uuid4().hex[:8]}"
    if mode == "routed":
        from greenroute.adapters.catalog.postgres import from_url

        router = _memory_router(from_url(url), tag)
        for i in range(5):  # connection open, statements prepared
            router.write(f"warm/{tag}/{i}", KIB)

        def write(i: int) -> None:
            router.write(f"tput/{tag}/{i:07d}.bin", KIB)
    else:
        import fsspec

        fs = fsspec.filesystem("memory")

        def write(i: int) -> None:
            fs.pipe_file(f"/{tag}/tput/{i:07d}.bin", KIB)

    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        write(n)
        n += 1
    print(json.dumps({"writes": n, "seconds": seconds}))


def throughput(url: str, processes: int, mode: str, seconds: float) -> float:
    """Writes per second in all from ``processes`` processes writing at once."""
    start_at = time.time() + 2.0 + 0.4 * processes  # every process has imported greenroute and psycopg by then
    procs = [subprocess.Popen([sys.executable, __file__, "worker", mode, url, str(start_at), str(seconds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(processes)]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"throughput worker failed: {err[-800:]}")
        total += json.loads(out.strip().splitlines()[-1])["writes"]
    return total / seconds


# -- the section -------------------------------------------------------------------------------------


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@127.0.0.1:{port}"))


def run(ctx: Context) -> Section:
    setup_paths()
    from tests.servers.postgres import RoundTripCounter, postgres_for_tests, with_params

    from greenroute.adapters.catalog.postgres import from_url
    from greenroute.adapters.catalog.sqlite import SqliteCatalog

    section = Section("catalog_postgres", "9. Catalog: PostgreSQL on loopback (commit cost, size, fleet throughput)")
    sizes = (10**3, 10**4) if ctx.smoke else (10**4, 10**6)
    writes = 20 if ctx.smoke else 1000
    lookups = 100 if ctx.smoke else 10000
    fleet = (1,) if ctx.smoke else (1, 4, 8)
    seconds = 0.5 if ctx.smoke else 5.0
    postgres = postgres_for_tests()
    section.params = {"postgres": postgres.how, "sizes": list(sizes), "writes": writes, "lookups": lookups,
                      "processes": list(fleet), "phase_seconds": seconds, "object": "1 KiB, memory backend"}
    section.table = [("what", "what"), ("catalog", "catalog"), ("entries", "entries"), ("p50_us", "p50 (µs)"),
                     ("p99_us", "p99 (µs)"), ("per_s", "writes/s"), ("note", "")]
    print(f"  PostgreSQL: {postgres.how}", flush=True)
    schemas: list[str] = []

    def schema_url(**params: object) -> str:
        name = postgres.new_schema()
        schemas.append(name)
        return postgres.catalog_url(name, **params)

    try:
        with temp_dir("catalog-pg") as tmp:
            # 1. commit cost: SQLite vs PostgreSQL, interleaved
            # The third shows where PostgreSQL's time goes: the same commits without waiting for the WAL flush
            # (not a setting to run a fleet with: a server crash could then lose acknowledged writes).
            catalogs = {"sqlite": SqliteCatalog(tmp / "catalog.db"), "postgresql": from_url(schema_url()),
                        "postgresql, synchronous_commit off": from_url(schema_url(
                            options="-c synchronous_commit=off"))}
            routers = {name: _memory_router(cat, secrets.token_hex(4)) for name, cat in catalogs.items()}
            try:
                template = _template()
                for name, warming in routers.items():  # warm: connections open, statements prepared
                    for i in range(20):
                        warming.write(f"warm/{i}.bin", KIB)
                        catalogs[name].commit(replace(template, path=f"warm/c{i}", decision_id=uuid.uuid4().hex),
                                              expected=None)
                write_ns: dict[str, list[int]] = {n: [] for n in routers}
                catalog_ns: dict[str, list[int]] = {n: [] for n in routers}
                names = list(routers)
                for i in range(writes):
                    for name in names if i % 2 == 0 else names[::-1]:
                        start = clock()
                        routers[name].write(f"bench/{i:06d}.bin", KIB)
                        write_ns[name].append(clock() - start)
                        entry = replace(template, path=f"commit/{i:06d}.bin", decision_id=uuid.uuid4().hex)
                        start = clock()
                        seen = catalogs[name].placement(entry.path)
                        catalogs[name].commit(entry, expected=seen.decision_id if seen else None)
                        catalog_ns[name].append(clock() - start)
                for name in names:
                    w, c = summary(write_ns[name], "us"), summary(catalog_ns[name], "us")
                    section.rows.append({"what": "routed 1 KiB write", "catalog": name, "entries": "",
                                         "p50_us": w["p50_us"], "p99_us": w["p99_us"], "per_s": "", "note": ""})
                    section.rows.append({"what": "placement + commit", "catalog": name, "entries": "",
                                         "p50_us": c["p50_us"], "p99_us": c["p99_us"], "per_s": "",
                                         "note": "the catalog's share of a write"})
            finally:
                for router in routers.values():
                    router.close()
            # round trips per commit and per routed write, through a counting relay
            upstream = urlsplit(postgres.url)
            counter = RoundTripCounter(upstream.hostname or "127.0.0.1", upstream.port or 5432)
            counted = from_url(with_params(_via(schema_url(), counter.port), pool_size=1))
            router = _memory_router(counted, secrets.token_hex(4))
            try:
                for i in range(10):  # psycopg prepares a statement (once per connection and shape) on its 6th use
                    router.write(f"warm/{i}.bin", KIB)
                    counted.commit(replace(template, path=f"warm/rt{i}", decision_id=uuid.uuid4().hex), expected=None)
                counter.reset()
                for i in range(50):
                    counted.commit(replace(template, path=f"rt/{i}", decision_id=uuid.uuid4().hex), expected=None)
                per_commit = counter.round_trips / 50
                counter.reset()
                for i in range(50):
                    router.write(f"rt/w{i}.bin", KIB)
                per_write = counter.round_trips / 50
            finally:
                router.close()
                counter.close()
            section.extra["round_trips_per_commit"] = per_commit
            section.extra["round_trips_per_routed_write"] = per_write
            p50 = {(r["what"], r["catalog"]): r["p50_us"] for r in section.rows}
            ratio = p50[("routed 1 KiB write", "postgresql")] / p50[("routed 1 KiB write", "sqlite")]
            section.extra["postgres_vs_sqlite_write_p50"] = ratio
            section.target("round trips to the database per commit", goal="1", measured=f"{per_commit:g} "
                           f"(a routed write: {per_write:g}, the placement read and the commit)",
                           met=None if ctx.smoke else per_commit == 1.0)

            # 2. lookup and list at two sizes
            admin = postgres.connect()
            try:
                urls: dict[int, str] = {}
                built: dict[int, float] = {}
                for n in sizes:
                    print(f"  building a PostgreSQL catalog of {n:,} entries (COPY)", flush=True)
                    urls[n] = schema_url()
                    built[n] = build(urls[n], admin, n)
            finally:
                admin.close()
            opened = {n: from_url(urls[n]) for n in sizes}
            try:
                rng = random.Random(11)
                for cat in opened.values():
                    for _ in range(100):
                        cat.lookup(_path(rng.randrange(sizes[0])))
                        cat.list("ns01/", start_after=_path(rng.randrange(sizes[0])), limit=100)
                lookup_ns: dict[int, list[int]] = {n: [] for n in sizes}
                list_ns: dict[int, list[int]] = {n: [] for n in sizes}
                for i in range(lookups):
                    for n in sizes if i % 2 == 0 else sizes[::-1]:
                        path = _path(rng.randrange(n))
                        start = clock()
                        found = opened[n].lookup(path)
                        lookup_ns[n].append(clock() - start)
                        if found is None:
                            raise RuntimeError(f"lookup of an existing path found nothing: {path}")
                        if i % 4 == 0:
                            # A page of one namespace after a key with 100 or more after it (at both sizes),
                            # so both sizes return full pages.
                            rank = rng.randrange(max(1, n // 50 - 100))
                            after = _path(50 * rank + rng.randrange(50))
                            start = clock()
                            page = opened[n].list(after.split("/", 1)[0] + "/", start_after=after, limit=100)
                            list_ns[n].append(clock() - start)
                            if not page and n > 10**3:
                                raise RuntimeError(f"an empty page after {after}")
                for n in sizes:
                    lk, ls = summary(lookup_ns[n], "us"), summary(list_ns[n], "us")
                    section.rows.append({"what": "lookup", "catalog": "postgresql", "entries": n,
                                         "p50_us": lk["p50_us"], "p99_us": lk["p99_us"], "per_s": "",
                                         "note": f"built by COPY in {built[n]:.1f} s"})
                    section.rows.append({"what": "list 100 after a key", "catalog": "postgresql", "entries": n,
                                         "p50_us": ls["p50_us"], "p99_us": ls["p99_us"], "per_s": "",
                                         "note": "keyset page"})
            finally:
                for cat in opened.values():
                    cat.close()
            by = {(r["what"], r["entries"]): r for r in section.rows}
            for what in ("lookup", "list 100 after a key"):
                small, large = by[(what, sizes[0])], by[(what, sizes[-1])]
                growth = large["p50_us"] / small["p50_us"]
                section.extra[f"{what.split()[0]}_growth"] = growth
                section.target(f"PostgreSQL {what.split()[0]} at {sizes[-1]:.0e} within 2x of {sizes[0]:.0e}",
                               goal="≤ 2.0x", measured=f"{growth:.2f}x ({small['p50_us']:.0f} → "
                                                       f"{large['p50_us']:.0f} µs p50)",
                               met=None if ctx.smoke else growth <= GROWTH_LIMIT)

            # 3. throughput from several processes to one catalog, routed vs direct
            url = schema_url(pool_size=2)
            from_url(url).close()  # the schema exists before the processes start
            for n in fleet:
                print(f"  throughput: {n} process(es)", flush=True)
                routed = throughput(url, n, "routed", seconds)
                direct = throughput(url, n, "direct", seconds)
                section.rows.append({"what": f"{n} process(es) writing", "catalog": "postgresql", "entries": "",
                                     "p50_us": "", "p99_us": "", "per_s": routed, "note": "GreenRouter.write"})
                section.rows.append({"what": f"{n} process(es) writing", "catalog": "none (direct)", "entries": "",
                                     "p50_us": "", "p99_us": "", "per_s": direct,
                                     "note": "fsspec memory pipe_file, no routing"})
                section.extra[f"throughput_{n}"] = {"routed_per_s": routed, "direct_per_s": direct}
    finally:
        postgres.stop()
    section.notes.append(
        f"PostgreSQL for this run: {postgres.how}. A routed write costs {per_write:g} round trips to the database "
        f"(the placement read and the one-round-trip commit); its p50 is {ratio:.2f}x SQLite's on this machine. "
        "The shared server commits with synchronous_commit on, so each commit waits for a WAL flush.")
    return section


def main() -> int:
    return section_main(run, __doc__, "10^3 and 10^4 entries, one process, 0.5 s phases")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        raise SystemExit(0)
    raise SystemExit(main())
