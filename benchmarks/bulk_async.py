"""Benchmark 11: greenroute://'s bulk calls (``cat`` of 100 paths, ``pipe`` of 100 paths) vs the sequential loop.

``GreenRouteFileSystem`` is an fsspec ``AsyncFileSystem``: ``fs.pipe({path: bytes, ...})`` and
``fs.cat([path, ...])`` run their objects concurrently (at most ``batch_size`` at once), each one
placed and committed on the router's worker threads while s3fs stores or reads it on its own event
loop. The baseline is what a caller gets without that: a loop of ``fs.pipe_file`` / ``fs.cat_file``,
one object at a time. For reference, s3fs's own bulk ``pipe``/``cat`` on the same moto server, with
no routing, is measured beside them.

The variants are interleaved round by round on one moto S3 server (two buckets, two backends), each
write round on fresh keys; reads read one set of objects written beforehand. The headline is
``speedup`` = median(sequential) / median(bulk), with ``ratio`` = median(bulk) / median(sequential).

    python benchmarks/bulk_async.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import (
    Context,
    KiB,
    Section,
    create_bucket,
    interleave,
    moto_options,
    section_main,
    size_label,
    temp_dir,
    write_config,
)

BUCKETS = ("gr-bench-bulk-north", "gr-bench-bulk-virginia", "gr-bench-bulk-direct")
#: (objects per call, object size, rounds) in a full run and in a smoke run.
FULL_PLAN = ((100, 1 * KiB, 15), (100, 256 * KiB, 7))
SMOKE_PLAN = ((10, 1 * KiB, 2),)


def _filesystems(tmp: Path, endpoint: str) -> tuple[Any, Any]:
    import s3fs

    from greenroute.adapters.fsspec.filesystem import GreenRouteFileSystem

    for bucket in BUCKETS:
        create_bucket(endpoint, bucket)
    options = moto_options(endpoint)
    config = write_config(tmp / "greenroute.toml", catalog_db=tmp / "catalog.db", backends=[
        {"id": "north", "provider": "s3", "region": "eu-north-1", "root": f"s3://{BUCKETS[0]}",
         "storage_options": options},
        {"id": "virginia", "provider": "s3", "region": "us-east-1", "root": f"s3://{BUCKETS[1]}",
         "storage_options": options}])
    return GreenRouteFileSystem(config=str(config)), s3fs.S3FileSystem(skip_instance_cache=True, **options)


def _measure(section: Section, fs: Any, direct: Any, count: int, size: int, rounds: int) -> None:
    label = size_label(size)
    data = {i: os.urandom(size) for i in range(count)}

    def paths(prefix: str, i: int) -> dict[str, bytes]:
        return {f"bench/{prefix}/{label.replace(' ', '')}/r{i + 10}/o{n:03d}.bin": data[n] for n in range(count)}

    writes: dict[str, Callable[[int], object]] = {
        "sequential pipe_file": lambda i: [fs.pipe_file(p, v) for p, v in paths("seq", i).items()],
        "fs.pipe (bulk)": lambda i: fs.pipe(paths("bulk", i)),
        "s3fs pipe (bulk, direct)": lambda i: direct.pipe({f"{BUCKETS[2]}/{p}": v
                                                           for p, v in paths("direct", i).items()}),
    }
    read_set = paths("read", 0)
    fs.pipe(read_set)
    direct.pipe({f"{BUCKETS[2]}/{p}": v for p, v in read_set.items()})
    names = list(read_set)
    reads: dict[str, Callable[[int], object]] = {
        "sequential cat_file": lambda i: [fs.cat_file(p) for p in names],
        "fs.cat (bulk)": lambda i: fs.cat(names),
        "s3fs cat (bulk, direct)": lambda i: direct.cat([f"{BUCKETS[2]}/{p}" for p in names]),
    }
    if fs.cat(names) != read_set:
        raise RuntimeError("greenroute:// bulk cat returned other bytes")
    for operation, variants, sequential, bulk, s3fs_bulk in (
            ("pipe", writes, "sequential pipe_file", "fs.pipe (bulk)", "s3fs pipe (bulk, direct)"),
            ("cat", reads, "sequential cat_file", "fs.cat (bulk)", "s3fs cat (bulk, direct)")):
        samples = interleave(variants, rounds, warmup=1)
        seq_ms = statistics.median(samples[sequential]) / 1e6
        bulk_ms = statistics.median(samples[bulk]) / 1e6
        direct_ms = statistics.median(samples[s3fs_bulk]) / 1e6
        section.rows.append({
            "operation": operation, "objects": count, "size": label, "size_bytes": size, "rounds": rounds,
            "sequential_ms": seq_ms, "bulk_ms": bulk_ms, "ratio": bulk_ms / seq_ms, "speedup": seq_ms / bulk_ms,
            "s3fs_bulk_ms": direct_ms, "bulk_vs_s3fs": bulk_ms / direct_ms,
        })
        print(f"  {operation} {count} x {label}: sequential {seq_ms:.1f} ms, bulk {bulk_ms:.1f} ms "
              f"({seq_ms / bulk_ms:.1f}x), s3fs bulk {direct_ms:.1f} ms", flush=True)


def run(ctx: Context) -> Section:
    section = Section("bulk_async", "greenroute:// bulk cat/pipe vs the sequential loop (moto S3)")
    section.table = [("operation", "call"), ("objects", "objects"), ("size", "size"),
                     ("sequential_ms", "sequential loop (ms)"), ("bulk_ms", "bulk call (ms)"),
                     ("ratio", "ratio bulk/loop"), ("speedup", "speedup"),
                     ("s3fs_bulk_ms", "s3fs bulk, direct (ms)"), ("bulk_vs_s3fs", "bulk / s3fs bulk")]
    plan = SMOKE_PLAN if ctx.smoke else FULL_PLAN
    section.params = {"plan": [{"objects": c, "size_bytes": s, "rounds": r} for c, s, r in plan],
                      "batch_size": "fsspec default", "cores": os.cpu_count()}
    if ctx.moto_endpoint is None:
        section.skip("moto S3", ctx.moto_reason or "no moto server")
        section.target("fs.cat/fs.pipe of 100 paths faster than the sequential loop", goal="speedup > 1",
                       measured="not run (no moto S3)", met=None)
        return section
    with temp_dir("bulk") as tmp:
        fs, direct = _filesystems(tmp, ctx.moto_endpoint)
        try:
            for count, size, rounds in plan:
                _measure(section, fs, direct, count, size, rounds)
        finally:
            fs.router.close()
    for row in section.rows:
        section.target(f"fs.{row['operation']} of {row['objects']} x {row['size']}: faster than the sequential loop",
                       goal="speedup > 1", measured=f"{row['speedup']:.1f}x (ratio {row['ratio']:.2f})",
                       met=None if ctx.smoke else bool(row["speedup"] > 1))
    section.notes.append("Requests run concurrently up to s3fs's connection pool (aiobotocore's default 10) "
                         "and fsspec's batch_size; placement and the catalog commit run on the router's worker "
                         "threads, so the 2-core machine shares its cores with the moto server.")
    return section


def main() -> int:
    return section_main(run, __doc__, "10 objects of 1 KiB, 2 rounds", needs_moto=True)


if __name__ == "__main__":
    raise SystemExit(main())
