"""Benchmark 5: how the SQLite catalog's costs grow with its size (10^4 and 10^6 entries).

Each catalog is a file in a temporary directory. ``SqliteCatalog`` creates it (so the schema is
the adapter's own); the entries are then bulk-inserted with :mod:`sqlite3` directly, in one
transaction, with the secondary indexes dropped during the load and re-created from their own SQL
afterwards, which is far quicker than a million ``put`` calls. Every measurement then goes through
``SqliteCatalog``, interleaved between the two sizes:

* **commit cost per write**: ``begin(entry)`` (the pending entry) and ``commit(decision_id, ...)``
  for a new path, as ``GreenRouter.write`` does;
* **lookup cost per read**: ``lookup(path)`` of a random existing path.

The smoke run uses 10^3 and 10^4 entries.

    python benchmarks/catalog_scaling.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Context, Section, clock, section_main, summary, temp_dir

from greenroute.adapters.catalog._rows import COLUMNS, row_from_entry
from greenroute.adapters.catalog.sqlite import SqliteCatalog
from greenroute.model import CatalogEntry, EntryState, GridDataSource, SignalKind

GROWTH_LIMIT = 2.0


def _path(i: int) -> str:
    return f"ns{i % 50:02d}/part-{(i // 50) % 1000:03d}/obj-{i:08d}.parquet"


def _template() -> CatalogEntry:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return CatalogEntry(path="ns00/part-000/obj-00000000.parquet", backend_id="aws-eu-north-1",
                        url="s3://bucket-eu-north-1/data/ns00/part-000/obj-00000000.parquet", size=123_456,
                        etag="0123456789abcdef0123456789abcdef", write_gco2e=1.2e-5, gco2e_month=3.4e-6,
                        carbon_intensity_g_per_kwh=27.0, signal=SignalKind.AVERAGE,
                        source=GridDataSource.EMBEDDED, decision_id="0" * 32, state=EntryState.COMMITTED,
                        created_at=now, updated_at=now)


def build(path: Path, entries: int, seed: int = 7) -> float:
    """Create a catalog of ``entries`` committed entries at ``path``; returns the seconds it took."""
    started = time.monotonic()
    SqliteCatalog(path).close()  # the adapter's own schema
    template = list(row_from_entry(_template()))
    columns = ", ".join(COLUMNS)
    rng = random.Random(seed)

    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(entries):
            row = template.copy()
            # Decision ids sort in insertion order (fast appends) yet look random after the prefix.
            row[0] = f"{i:08x}{rng.getrandbits(96):024x}"
            row[1] = _path(i)
            row[4] = f"s3://bucket-eu-north-1/data/{row[1]}"
            yield tuple(row)

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        indexes = [sql for (sql,) in db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL")]
        names = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries' AND sql IS NOT NULL")]
        db.execute("BEGIN")
        for name in names:
            db.execute(f'DROP INDEX "{name}"')
        db.executemany(f"INSERT INTO entries ({columns}) VALUES ({', '.join('?' * len(template))})", rows())
        for sql in indexes:
            db.execute(sql)
        db.execute("COMMIT")
        db.execute("ANALYZE")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return time.monotonic() - started


def run(ctx: Context) -> Section:
    section = Section("catalog_scaling", "5. Catalog: commit and lookup cost vs size (SQLite, WAL)")
    sizes = (10**3, 10**4) if ctx.smoke else (10**4, 10**6)
    writes = 20 if ctx.smoke else 2000
    lookups = 200 if ctx.smoke else 20000
    section.params = {"sizes": list(sizes), "writes": writes, "lookups": lookups,
                      "order": "interleaved between the sizes, reversed every other round"}
    section.table = [("entries", "entries"), ("file_mb", "file (MB)"), ("build_s", "build (s)"),
                     ("lookup_p50_us", "lookup p50 (µs)"), ("lookup_p99_us", "lookup p99 (µs)"),
                     ("begin_p50_us", "placement p50 (µs)"), ("commit_p50_us", "commit p50 (µs)"),
                     ("write_p50_us", "placement+commit p50 (µs)"), ("write_p99_us", "placement+commit p99 (µs)")]
    with temp_dir("catalog") as tmp:
        catalogs: dict[int, SqliteCatalog] = {}
        built: dict[int, float] = {}
        for n in sizes:
            print(f"  building a catalog of {n:,} entries", flush=True)
            built[n] = build(tmp / f"catalog-{n}.db", n)
            catalogs[n] = SqliteCatalog(tmp / f"catalog-{n}.db")
        try:
            rng = random.Random(11)
            template = _template()
            for catalog in catalogs.values():  # warm the connection and the page cache a little
                for _ in range(50):
                    catalog.lookup(_path(rng.randrange(sizes[0])))
            lookup: dict[int, list[int]] = {n: [] for n in sizes}
            for i in range(lookups):
                for n in sizes if i % 2 == 0 else sizes[::-1]:
                    path = _path(rng.randrange(n))
                    start = clock()
                    entry = catalogs[n].lookup(path)
                    lookup[n].append(clock() - start)
                    if entry is None:
                        raise RuntimeError(f"lookup of an existing path found nothing: {path}")
            begin: dict[int, list[int]] = {n: [] for n in sizes}
            commit: dict[int, list[int]] = {n: [] for n in sizes}
            for i in range(writes):
                for n in sizes if i % 2 == 0 else sizes[::-1]:
                    decision_id = uuid.uuid4().hex
                    entry = replace(template, path=f"new/{i:08d}.bin", decision_id=decision_id, size=2048,
                                    url=f"s3://bucket-eu-north-1/data/new/{i:08d}.bin")
                    start = clock()
                    seen = catalogs[n].placement(entry.path)  # what a write reads before it places
                    middle = clock()
                    catalogs[n].commit(entry, expected=seen.decision_id if seen else None)
                    end = clock()
                    begin[n].append(middle - start)
                    commit[n].append(end - middle)
            for n in sizes:
                lk = summary(lookup[n], "us")
                bg, cm = summary(begin[n], "us"), summary(commit[n], "us")
                both = summary([b + c for b, c in zip(begin[n], commit[n], strict=True)], "us")
                section.rows.append({"entries": n, "file_mb": (tmp / f"catalog-{n}.db").stat().st_size / 1e6,
                                     "build_s": built[n], "lookup_p50_us": lk["p50_us"], "lookup_p99_us": lk["p99_us"],
                                     "begin_p50_us": bg["p50_us"], "commit_p50_us": cm["p50_us"],
                                     "write_p50_us": both["p50_us"], "write_p99_us": both["p99_us"]})
        finally:
            for catalog in catalogs.values():
                catalog.close()
    small, large = section.rows[0], section.rows[-1]
    growth = large["lookup_p50_us"] / small["lookup_p50_us"]
    section.extra["lookup_growth"] = growth
    section.extra["write_growth"] = large["write_p50_us"] / small["write_p50_us"]
    section.target(f"catalog lookup at {large['entries']:.0e} within 2x of {small['entries']:.0e}",
                   goal="≤ 2.0x", measured=f"{growth:.2f}x ({small['lookup_p50_us']:.1f} → "
                                             f"{large['lookup_p50_us']:.1f} µs p50)",
                   met=None if ctx.smoke else growth <= GROWTH_LIMIT)
    section.notes.append(f"Commit cost grows {section.extra['write_growth']:.2f}x from {small['entries']:,} to "
                         f"{large['entries']:,} entries (placement read + compare-and-set commit p50). "
                         "The fixture rows are written with sqlite3 directly (the adapter's schema and row layout).")
    return section


def main() -> int:
    return section_main(run, __doc__, "10^3 and 10^4 entries")


if __name__ == "__main__":
    raise SystemExit(main())
