"""Benchmark 2: what routing adds to a write, routed vs direct, measured side by side.

For each backend kind (memory, local file, moto S3 as a server subprocess) and each object size
(1 KiB, 1 MiB, 16 MiB), the variants below are interleaved round by round, each writing a fresh
key:

* ``direct fsspec``: the backend's own fsspec filesystem, ``fs.pipe_file`` (the baseline);
* ``GreenRouter.write``: placement, the SQLite catalog's pending entry and commit, the target's
  write with the carbon metadata;
* ``greenroute:// pipe``: ``fsspec.filesystem("greenroute", config=...).pipe_file``, when the
  ``greenroute://`` filesystem imports and round-trips (otherwise skipped, with the reason);
* ``greenroute.boto3_client put_object``, when the drop-in client imports and round-trips, compared
  with ``GreenRouter.write`` (what the drop-in adds to the router) and, on S3, with ``boto3
  put_object`` (plain boto3);
* on memory and S3, the direct writes again **carrying the metadata the router stamps** (``direct
  fsspec + metadata``, ``boto3 put_object + metadata``): the issue's targets compare each routed
  front door with these, so what is measured is routing, not the metadata the design requires.
  (fsspec's memory filesystem has no metadata of its own: the direct write sets the same dict on
  the stored object, as the memory target does.)

Each router comes from a TOML config in a temporary directory with ``[placement] sources =
["embedded"]``, one backend of the kind, and ``[catalog] url = "sqlite:///<tmp>/catalog.db"``.
The headline per pair is median(routed) / median(direct) and the added time per write.

One extra measurement splits a routed write into placement, catalog and storage time (medians of
wall and thread CPU time), so a missed target says where the time goes; it runs once more on memory
with a pause before each write as long as a 1 MiB moto put, the same work run cold. Another is
throughput: 8 threads writing 1 KiB objects to a memory backend through one router, against 8
threads writing the memory filesystem directly, with one routed thread beside them, the process's
CPU time per second of wall time (what the GIL allows), and the time the threads spent inside
``catalog.commit``; then 8 processes (2 in a smoke run) instead of threads, on one catalog file.

    python benchmarks/write_overhead.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    Context,
    KiB,
    MiB,
    Section,
    boto3_kwargs,
    clock,
    compare,
    create_bucket,
    interleave,
    moto_options,
    section_main,
    size_label,
    summary,
    temp_dir,
    write_config,
)

from greenroute import GreenRouter

BUCKET = "gr-bench-writes"
TARGET_RATIO = 1.03
TARGET_ADDED_MS = 0.3
#: Throughput: threads, writes per thread in a full and a smoke run.
THREADS = 8
FULL_WRITES_PER_THREAD = 1500
SMOKE_WRITES_PER_THREAD = 20
#: Throughput from processes (no shared GIL): how many, and seconds of writing in a full and a smoke run.
PROCESSES = 8
FULL_PROCESS_SECONDS = 3.0
SMOKE_PROCESS_SECONDS = 0.3

#: (size, rounds for memory/file, rounds for S3) in a full run.
FULL_PLAN = ((1 * KiB, 1000, 150), (1 * MiB, 300, 200), (16 * MiB, 40, 20))
SMOKE_PLAN = ((1 * KiB, 3, 3), (16 * KiB, 3, 3), (64 * KiB, 3, 3))

Write = Callable[[int], object]


@dataclass
class Kind:
    """One backend kind: its router, its direct filesystem and the optional front doors."""

    name: str
    router: GreenRouter
    config: Path
    direct_fs: Any
    direct_root: str
    #: Metadata like the router stamps, for a direct write that carries it too (memory and S3).
    metadata: dict[str, str] | None = None


def _memory_kind(tmp: Path) -> Kind:
    from fsspec.implementations.memory import MemoryFileSystem

    config = write_config(tmp / "memory" / "greenroute.toml", catalog_db=tmp / "memory" / "catalog.db", backends=[
        {"id": "bench-memory", "provider": "memory", "region": "eu-north-1", "root": "memory://gr-bench-routed"}])
    router = GreenRouter.from_config(config)
    return Kind("memory", router, config, MemoryFileSystem(), "/gr-bench-direct", _stamped(router))


def _file_kind(tmp: Path) -> Kind:
    from fsspec.implementations.local import LocalFileSystem

    routed = tmp / "file" / "routed"
    config = write_config(tmp / "file" / "greenroute.toml", catalog_db=tmp / "file" / "catalog.db", backends=[
        {"id": "bench-file", "provider": "file", "region": "eu-north-1", "root": f"file://{routed}"}])
    return Kind("file", GreenRouter.from_config(config), config, LocalFileSystem(), str(tmp / "file" / "direct"))


def _s3_kind(tmp: Path, endpoint: str) -> Kind:
    import s3fs

    create_bucket(endpoint, BUCKET)
    options = moto_options(endpoint)
    config = write_config(tmp / "s3" / "greenroute.toml", catalog_db=tmp / "s3" / "catalog.db", backends=[
        {"id": "bench-s3", "provider": "s3", "region": "eu-north-1", "root": f"s3://{BUCKET}/routed",
         "storage_options": options}])
    router = GreenRouter.from_config(config)
    return Kind("s3", router, config, s3fs.S3FileSystem(**options), f"{BUCKET}/direct", _stamped(router))


def _stamped(router: GreenRouter) -> dict[str, str]:
    """The metadata the router stamps on a write (its values, at the benchmark's key length)."""
    router.write("probe/metadata.bin", b"x")
    metadata = dict(router.stat("probe/metadata.bin").metadata)
    router.delete("probe/metadata.bin")
    return metadata


# -- the optional front doors ----------------------------------------------------------------------


def greenroute_fs(config: Path) -> Any:
    """The ``greenroute://`` filesystem for ``config``, checked by a round trip.

    Raises:
        Exception: Whatever stops it (not built yet, import error, failed round trip).
    """
    import fsspec

    import greenroute.adapters.fsspec.filesystem  # noqa: F401 - fails clearly while it does not exist

    fs = fsspec.filesystem("greenroute", config=str(config))
    probe = "greenroute://grfs-probe/probe.bin"
    fs.pipe_file(probe, b"probe")
    if fs.cat_file(probe) != b"probe":
        raise RuntimeError("greenroute:// round trip returned other bytes")
    fs.rm_file(probe)
    return fs


def greenroute_boto3(config: Path) -> Any:
    """``greenroute.boto3_client(config=...)``, checked by a round trip."""
    import greenroute

    client: Any = greenroute.boto3_client(config=str(config))
    client.put_object(Bucket="grboto3-probe", Key="probe.bin", Body=b"probe")
    body = client.get_object(Bucket="grboto3-probe", Key="probe.bin")["Body"].read()
    if body != b"probe":
        raise RuntimeError("greenroute.boto3_client round trip returned other bytes")
    client.delete_object(Bucket="grboto3-probe", Key="probe.bin")
    return client


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


# -- one (kind, size) --------------------------------------------------------------------------------


def _variants(kind: Kind, size: int, data: bytes, gfs: Any, plain_s3: Any, gclient: Any
              ) -> tuple[dict[str, Write], Callable[[int], None]]:
    """The interleaved variants for one size, and the clean-up run after each round."""
    label = size_label(size).replace(" ", "")
    direct_dir = f"{kind.direct_root}/{label}"
    if kind.name == "file":
        os.makedirs(direct_dir, exist_ok=True)
    fs, router = kind.direct_fs, kind.router
    variants: dict[str, Write] = {
        "direct fsspec": lambda i: fs.pipe_file(f"{direct_dir}/{i}", data),
        "GreenRouter.write": lambda i: router.write(f"routed/{label}/{i}", data),
    }
    md = kind.metadata
    if md is not None and kind.name == "memory":
        def memory_with_metadata(i: int) -> None:
            fs.pipe_file(f"{direct_dir}-md/{i}", data)
            fs.store[f"{direct_dir}-md/{i}"].metadata = dict(md)

        variants["direct fsspec + metadata"] = memory_with_metadata
    elif md is not None:
        variants["direct fsspec + metadata"] = lambda i: fs.pipe_file(f"{direct_dir}-md/{i}", data, Metadata=md)
    if gfs is not None:
        variants["greenroute:// pipe"] = lambda i: gfs.pipe_file(f"greenroute://grfs/{label}/{i}", data)
    if plain_s3 is not None:
        variants["boto3 put_object"] = lambda i: plain_s3.put_object(Bucket=BUCKET, Key=f"boto3/{label}/{i}",
                                                                     Body=data)
        if md is not None:
            variants["boto3 put_object + metadata"] = lambda i: plain_s3.put_object(
                Bucket=BUCKET, Key=f"boto3-md/{label}/{i}", Body=data, Metadata=md)
    if gclient is not None:
        variants["greenroute.boto3_client put_object"] = lambda i: gclient.put_object(
            Bucket="grboto3", Key=f"{label}/{i}", Body=data)

    def clean(i: int) -> None:
        if size < MiB:
            return  # small objects may pile up; large ones would fill memory (memory fs, moto)
        with contextlib.suppress(Exception):
            fs.rm_file(f"{direct_dir}/{i}")
        if md is not None:
            with contextlib.suppress(Exception):
                fs.rm_file(f"{direct_dir}-md/{i}")
        with contextlib.suppress(Exception):
            router.delete(f"routed/{label}/{i}")
        if gfs is not None:
            with contextlib.suppress(Exception):
                gfs.rm_file(f"greenroute://grfs/{label}/{i}")
        if plain_s3 is not None:
            for key in (f"boto3/{label}/{i}", f"boto3-md/{label}/{i}"):
                with contextlib.suppress(Exception):
                    plain_s3.delete_object(Bucket=BUCKET, Key=key)
        if gclient is not None:
            with contextlib.suppress(Exception):
                gclient.delete_object(Bucket="grboto3", Key=f"{label}/{i}")

    return variants, clean


PAIRS = (("GreenRouter.write", "direct fsspec"), ("greenroute:// pipe", "direct fsspec"),
         ("greenroute.boto3_client put_object", "boto3 put_object"),
         ("GreenRouter.write", "direct fsspec + metadata"),
         ("greenroute:// pipe", "direct fsspec + metadata"),
         ("greenroute.boto3_client put_object", "boto3 put_object + metadata"),
         ("greenroute.boto3_client put_object", "GreenRouter.write"))
#: Each routed front door, and the direct write that carries the same metadata (the S3 target's pair).
WITH_METADATA = {"GreenRouter.write": "direct fsspec + metadata", "greenroute:// pipe": "direct fsspec + metadata",
                 "greenroute.boto3_client put_object": "boto3 put_object + metadata"}
WITHOUT_METADATA = {"GreenRouter.write": "direct fsspec", "greenroute:// pipe": "direct fsspec",
                    "greenroute.boto3_client put_object": "boto3 put_object"}


def _rows(kind: str, size: int, samples: dict[str, list[int]]) -> list[dict[str, Any]]:
    rows = []
    for routed, direct in PAIRS:
        if routed not in samples or direct not in samples:
            continue
        r, d = summary(samples[routed], "ms"), summary(samples[direct], "ms")
        headline = compare(samples[routed], samples[direct])
        rows.append({"backend": kind, "size": size_label(size), "size_bytes": size, "routed": routed,
                     "direct": direct, "n": r["n"], "direct_p50_ms": d["p50_ms"], "direct_p99_ms": d["p99_ms"],
                     "routed_p50_ms": r["p50_ms"], "routed_p99_ms": r["p99_ms"], **headline,
                     "readme": _in_readme(kind, size, routed, direct)})
    return rows


def _in_readme(kind: str, size: int, routed: str, direct: str) -> bool:
    """Whether a row is in the README's table (every row is in the results): the targets' pairs and a few more."""
    if kind == "s3":
        return WITH_METADATA.get(routed) == direct or (size == MiB and WITHOUT_METADATA.get(routed) == direct)
    if kind == "memory":
        return (routed, direct) == ("GreenRouter.write", "direct fsspec + metadata") or (
            size == KiB and WITH_METADATA.get(routed) == direct)
    return (routed, direct) == ("GreenRouter.write", "direct fsspec")


# -- where a routed write's time goes -------------------------------------------------------------


class _Tally:
    """Per-write time in wrapped methods: wall and this thread's CPU, summed per label for the current write."""

    def __init__(self) -> None:
        self.wall: dict[str, int] = {}
        self.cpu: dict[str, int] = {}

    def wrap(self, owner: Any, attr: str, label: str) -> Callable[[], None]:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = clock(), time.thread_time_ns()
            try:
                return original(*args, **kwargs)
            finally:
                self.wall[label] = self.wall.get(label, 0) + clock() - wall
                self.cpu[label] = self.cpu.get(label, 0) + time.thread_time_ns() - cpu

        setattr(owner, attr, timed)
        return lambda: delattr(owner, attr)


REST = "the rest (path checks, metadata, estimate and ledger baseline, catalog entry, WriteResult)"


def routed_breakdown(kind: Kind, size: int, rounds: int, *, pause_s: float = 0.0) -> dict[str, Any]:
    """Median µs per ``GreenRouter.write`` in placement, the catalog and the storage write (wall and thread CPU).

    ``pause_s`` sleeps before each write (outside the timing): how a write fares when it does not
    follow another at once, as on S3, where each waits a round trip for the store.
    """
    router = kind.router
    backend_id = router.placement.backends[0].id
    target = router.target(backend_id)
    data = os.urandom(size)
    label = f"breakdown-{size_label(size).replace(' ', '')}-{int(pause_s * 1000)}"
    for i in range(3):
        router.write(f"routed/{label}/w{i}", data)
    tally = _Tally()
    undo = [
        tally.wrap(router.placement, "select_greenest_backend", "placement decision"),
        tally.wrap(router.catalog, "placement", "catalog read of the live entry"),
        tally.wrap(router.catalog, "commit", "catalog commit (one transaction)"),
        tally.wrap(target, "write", "target.write (metadata + storage)"),
    ]
    wall: dict[str, list[int]] = {}
    cpu: dict[str, list[int]] = {}
    try:
        for i in range(rounds):
            if pause_s:
                time.sleep(pause_s)
            tally.wall.clear()
            tally.cpu.clear()
            start, start_cpu = clock(), time.thread_time_ns()
            router.write(f"routed/{label}/{i}", data)
            total, total_cpu = clock() - start, time.thread_time_ns() - start_cpu
            for part, into in ((tally.wall, wall), (tally.cpu, cpu)):
                for k, v in part.items():
                    into.setdefault(k, []).append(v)
            wall.setdefault("total", []).append(total)
            cpu.setdefault("total", []).append(total_cpu)
            wall.setdefault(REST, []).append(total - sum(tally.wall.values()))
            cpu.setdefault(REST, []).append(total_cpu - sum(tally.cpu.values()))
            if size >= MiB:
                with contextlib.suppress(Exception):
                    router.delete(f"routed/{label}/{i}")
    finally:
        for fn in undo:
            fn()
    return {"backend": kind.name, "size": size_label(size), "rounds": rounds, "pause_ms": pause_s * 1000,
            "p50_us": statistics.median(wall["total"]) / 1000, "cpu_p50_us": statistics.median(cpu["total"]) / 1000,
            "parts_us": {k: statistics.median(v) / 1000 for k, v in wall.items() if k != "total"},
            "parts_cpu_us": {k: statistics.median(v) / 1000 for k, v in cpu.items() if k != "total"}}


# -- throughput: threads writing through one router ---------------------------------------------------


def _threaded(write: Callable[[str], object], threads: int, per_thread: int, tag: str) -> dict[str, float]:
    """Writes per second from ``threads`` threads, each writing ``per_thread`` fresh keys, and CPU per wall second."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                write(f"{tag}/t{t}/{i}")
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,), name=f"gr-bench-{t}") for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if errors:
        raise errors[0]
    return {"per_s": threads * per_thread / wall, "cpu_per_wall": cpu / wall}


def throughput(kind: Kind, per_thread: int, rounds: int) -> dict[str, Any]:
    """8 threads routed vs 8 threads direct (1 KiB, memory), 1 routed thread beside them, interleaved rounds.

    A round of each; the medians are reported. The routed runs also time ``catalog.commit`` (its
    transaction, waits for SQLite's write lock and for the GIL included).
    """
    router, fs = kind.router, kind.direct_fs
    data = os.urandom(KiB)
    md = dict(kind.metadata or {})
    commit_ns: list[int] = []
    original = router.catalog.commit

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        begun = clock()
        try:
            return original(*args, **kwargs)
        finally:
            commit_ns.append(clock() - begun)

    def direct(key: str) -> None:
        path = f"{kind.direct_root}/threads/{key}"
        fs.pipe_file(path, data)
        fs.store[path].metadata = dict(md)

    samples: dict[str, list[dict[str, float]]] = {"direct": [], "routed": [], "routed, 1 thread": []}
    commits: dict[str, list[int]] = {"routed": [], "routed, 1 thread": []}
    for r in range(rounds + 1):  # round 0 warms up
        order = ["direct", "routed", "routed, 1 thread"]
        for name in order if r % 2 else order[::-1]:
            commit_ns.clear()
            router.catalog.commit = timed_commit  # type: ignore[method-assign]
            try:
                if name == "direct":
                    result = _threaded(direct, THREADS, per_thread, f"d{r}")
                elif name == "routed":
                    result = _threaded(lambda k: router.write(f"threads/{k}", data), THREADS, per_thread, f"r{r}")
                else:
                    result = _threaded(lambda k: router.write(f"thread/{k}", data), 1, per_thread * 2, f"s{r}")
            finally:
                del router.catalog.commit
            if r:
                samples[name].append(result)
                if name in commits:
                    commits[name].extend(commit_ns)
    out: dict[str, Any] = {"threads": THREADS, "writes_per_thread": per_thread, "rounds": rounds,
                           "switch_interval_ms": sys.getswitchinterval() * 1000}
    for name, runs in samples.items():
        out[name] = {"per_s": statistics.median(x["per_s"] for x in runs),
                     "cpu_per_wall": statistics.median(x["cpu_per_wall"] for x in runs)}
    for name, ns in commits.items():
        out[name].update({f"commit_{k}": v for k, v in summary(ns, "us").items() if k != "n"})
    return out


def worker(mode: str, config: str, start_at: float, seconds: float) -> None:
    """One process of the throughput part: write 1 KiB objects for ``seconds`` from ``start_at``; print the count.

    ``routed`` writes through a router on ``config`` (its memory backend is this process's own; the
    SQLite catalog file is shared by every process); ``direct`` writes fsspec's memory filesystem.
    """
    tag = f"procs-{uuid.uuid4().hex[:8]}"
    data = os.urandom(KiB)
    if mode == "routed":
        router = GreenRouter.from_config(config)
        for i in range(5):
            router.write(f"warm/{tag}/{i}", data)

        def write(i: int) -> None:
            router.write(f"procs/{tag}/{i}", data)
    else:
        from fsspec.implementations.memory import MemoryFileSystem

        fs = MemoryFileSystem()

        def write(i: int) -> None:
            fs.pipe_file(f"/gr-bench-procs/{tag}/{i}", data)

    time.sleep(max(0.0, start_at - time.time()))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        write(n)
        n += 1
    print(json.dumps({"writes": n}))


def processes_throughput(config: Path, processes: int, mode: str, seconds: float) -> float:
    """Writes per second in all from ``processes`` processes writing at once."""
    start_at = time.time() + 2.0 + 0.3 * processes  # every process has imported greenroute by then
    procs = [subprocess.Popen([sys.executable, __file__, "worker", mode, str(config), str(start_at), str(seconds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(processes)]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 120)
        if p.returncode != 0:
            raise RuntimeError(f"throughput worker failed: {err[-800:]}")
        total += json.loads(out.strip().splitlines()[-1])["writes"]
    return total / seconds


# -- the section ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _kinds(ctx: Context, tmp: Path, section: Section) -> Iterator[list[Kind]]:
    kinds = [_memory_kind(tmp), _file_kind(tmp)]
    if ctx.moto_endpoint is not None:
        try:
            kinds.append(_s3_kind(tmp, ctx.moto_endpoint))
        except Exception as exc:  # noqa: BLE001 - memory and file still run
            section.skip("moto S3 (all pairs)", _describe(exc))
    else:
        section.skip("moto S3 (all pairs)", ctx.moto_reason or "no moto server")
    try:
        yield kinds
    finally:
        for kind in kinds:
            kind.router.close()


def run(ctx: Context) -> Section:
    section = Section("write_overhead", "2. Routed vs direct writes (interleaved; ms per write)")
    plan = SMOKE_PLAN if ctx.smoke else FULL_PLAN
    section.params = {"plan": [{"size_bytes": s, "rounds_local": a, "rounds_s3": b} for s, a, b in plan],
                      "order": "interleaved, reversed every other round; fresh key per write"}
    with temp_dir("writes") as tmp, _kinds(ctx, tmp, section) as kinds:
        for kind in kinds:
            try:
                gfs = greenroute_fs(kind.config)
            except Exception as exc:  # noqa: BLE001 - reported as a skipped pair
                gfs = None
                section.skip(f"greenroute:// vs direct fsspec on {kind.name}", _describe(exc))
            plain_s3 = gclient = None
            try:
                gclient = greenroute_boto3(kind.config)
            except Exception as exc:  # noqa: BLE001 - reported as a skipped pair
                section.skip(f"greenroute.boto3_client put_object on {kind.name}", _describe(exc))
            if kind.name == "s3" and gclient is not None:  # the plain side alone compares nothing
                import boto3

                assert ctx.moto_endpoint is not None
                plain_s3 = boto3.client("s3", **boto3_kwargs(ctx.moto_endpoint))
            for size, local_rounds, s3_rounds in plan:
                rounds = s3_rounds if kind.name == "s3" else local_rounds
                data = os.urandom(size)
                variants, clean = _variants(kind, size, data, gfs, plain_s3, gclient)
                print(f"  {kind.name} {size_label(size)}: {rounds} rounds x {len(variants)} variants", flush=True)
                samples = interleave(variants, rounds, warmup=1 if ctx.smoke else 3, between=clean)
                section.rows.extend(_rows(kind.name, size, samples))
        section.extra["routed_breakdown"] = [
            routed_breakdown(kind, size, 3 if ctx.smoke else (100 if kind.name == "s3" else 300))
            for kind in kinds for size in ((plan[0][0], plan[1][0]) if kind.name == "s3" else (plan[0][0],))]
        # The same memory write after a pause as long as a 1 MiB moto put: the routing work is the
        # same, but it no longer runs right after the previous write (see the README).
        s3_1mib = _row(section, "s3", plan[1][0], "GreenRouter.write", "direct fsspec + metadata")
        pause = (s3_1mib["direct_p50_ms"] if s3_1mib is not None else 13.0) / 1000
        memory = next(k for k in kinds if k.name == "memory")
        section.extra["routed_breakdown"].append(routed_breakdown(memory, plan[0][0], 3 if ctx.smoke else 150,
                                                                  pause_s=pause))
        print(f"  throughput: {THREADS} threads, 1 KiB to memory", flush=True)
        section.extra["throughput"] = throughput(
            memory, SMOKE_WRITES_PER_THREAD if ctx.smoke else FULL_WRITES_PER_THREAD, 1 if ctx.smoke else 5)
        seconds = SMOKE_PROCESS_SECONDS if ctx.smoke else FULL_PROCESS_SECONDS
        count = 2 if ctx.smoke else PROCESSES
        print(f"  throughput: {count} processes, 1 KiB to memory", flush=True)
        section.extra["throughput"]["processes"] = {
            "processes": count, "seconds": seconds,
            "routed_per_s": processes_throughput(memory.config, count, "routed", seconds),
            "direct_per_s": processes_throughput(memory.config, count, "direct", seconds)}
    section.table = [("backend", "backend"), ("size", "size"), ("routed", "routed"), ("direct", "direct"),
                     ("n", "n"), ("direct_p50_ms", "direct p50"), ("direct_p99_ms", "direct p99"),
                     ("routed_p50_ms", "routed p50"), ("routed_p99_ms", "routed p99"), ("ratio", "ratio"),
                     ("added_ms", "added ms/write"), ("paired_added_ms", "paired added ms")]
    _targets(ctx, section, plan)
    for b in section.extra["routed_breakdown"]:
        parts = "; ".join(f"{k} {v:.0f} ({b['parts_cpu_us'][k]:.0f})"
                          for k, v in sorted(b["parts_us"].items(), key=lambda kv: -kv[1]))
        after = f", each after a {b['pause_ms']:.1f} ms pause" if b["pause_ms"] else ""
        section.notes.append(f"Where a routed write's time goes ({b['backend']}, {b['size']}{after}; median "
                             f"{b['p50_us']:.0f} µs, thread CPU {b['cpu_p50_us']:.0f} µs): {parts} (µs, medians; "
                             "thread CPU in brackets)")
    section.notes.append("ratio = median(routed) / median(direct); added = median(routed) - median(direct); "
                         "paired added = median of the per-round differences.")
    section.notes.append("On S3, 'direct fsspec + metadata' and 'boto3 put_object + metadata' are the same direct "
                         "put_object carrying the metadata the router stamps (9 x-amz-meta headers): the "
                         "routed-vs-them rows are routing's own cost, net of the metadata the design requires. "
                         "On memory, the direct write sets the same dict on the stored object.")
    t = section.extra["throughput"]
    section.notes.append(
        f"Throughput, {t['threads']} threads x {t['writes_per_thread']} writes of 1 KiB to memory (median of "
        f"{t['rounds']} interleaved rounds): direct {t['direct']['per_s']:,.0f}/s, "
        f"routed {t['routed']['per_s']:,.0f}/s "
        f"(1 routed thread: {t['routed, 1 thread']['per_s']:,.0f}/s); process CPU per wall second "
        f"{t['routed']['cpu_per_wall']:.2f} routed, {t['direct']['cpu_per_wall']:.2f} direct (2 would be both cores); "
        f"catalog.commit p50 {t['routed']['commit_p50_us']:.0f} µs / mean {t['routed']['commit_mean_us']:.0f} µs / "
        f"p99 {t['routed']['commit_p99_us']:.0f} µs with {t['threads']} threads, p50 "
        f"{t['routed, 1 thread']['commit_p50_us']:.0f} µs / mean {t['routed, 1 thread']['commit_mean_us']:.0f} µs "
        f"with one. {t['processes']['processes']} processes instead of threads (one GIL each, one SQLite catalog "
        f"file): routed {t['processes']['routed_per_s']:,.0f}/s, direct {t['processes']['direct_per_s']:,.0f}/s.")
    return section


def _row(section: Section, backend: str, size: int, routed: str, direct: str) -> dict[str, Any] | None:
    return next((r for r in section.rows if r["backend"] == backend and r["size_bytes"] == size
                 and r["routed"] == routed and r["direct"] == direct), None)


def _targets(ctx: Context, section: Section, plan: tuple[tuple[int, int, int], ...]) -> None:
    judged = not ctx.smoke
    small, size = plan[0][0], plan[1][0]
    r = _row(section, "memory", small, "GreenRouter.write", "direct fsspec + metadata")
    bare = _row(section, "memory", small, "GreenRouter.write", "direct fsspec")
    section.target(f"GreenRouter.write vs a direct memory pipe with the same metadata: ≤ 0.3 ms added, "
                   f"{size_label(small)}, catalog commit included (SQLite, synchronous=NORMAL)",
                   goal="added ≤ 0.3 ms",
                   measured="not run" if r is None else
                   f"added {r['added_ms']:.3f} ms (paired {r['paired_added_ms']:.3f} ms; {r['routed_p50_ms']:.3f} vs "
                   f"{r['direct_p50_ms']:.3f} ms p50)" + ("" if bare is None else
                                                        f"; vs without metadata {bare['added_ms']:.3f} ms"),
                   met=None if r is None or not judged else bool(r["added_ms"] <= TARGET_ADDED_MS))
    for routed, direct in WITH_METADATA.items():
        r = _row(section, "s3", size, routed, direct)
        bare = _row(section, "s3", size, routed, WITHOUT_METADATA[routed])
        if r is None:
            why = "no moto S3" if not any(x["backend"] == "s3" for x in section.rows) else "front door skipped"
            section.target(f"{routed} vs {direct}: ratio ≤ {TARGET_RATIO}, {size_label(size)} to moto S3",
                           goal=f"ratio ≤ {TARGET_RATIO}", measured=f"not run ({why})", met=None)
            continue
        section.target(f"{routed} vs {direct}: ratio ≤ {TARGET_RATIO}, {r['size']} to moto S3",
                       goal=f"ratio ≤ {TARGET_RATIO}",
                       measured=f"ratio {r['ratio']:.3f}, added {r['added_ms']:.2f} ms (paired "
                                f"{r['paired_added_ms']:.2f} ms)" + ("" if bare is None else
                                f"; vs {bare['direct']} without metadata: ratio {bare['ratio']:.3f}"),
                       met=None if not judged else bool(r["ratio"] <= TARGET_RATIO))
    t = section.extra["throughput"]
    section.target(f"throughput: {t['threads']} threads writing 1 KiB to memory through one router, writes/s vs "
                   "direct (a report: the issue sets no figure)",
                   goal="report, and what limits it",
                   measured=f"routed {t['routed']['per_s']:,.0f}/s vs direct {t['direct']['per_s']:,.0f}/s "
                            f"({t['routed']['per_s'] / t['direct']['per_s']:.3f}x); 1 routed thread "
                            f"{t['routed, 1 thread']['per_s']:,.0f}/s; CPU {t['routed']['cpu_per_wall']:.2f} s per "
                            f"wall s; {t['processes']['processes']} processes: routed "
                            f"{t['processes']['routed_per_s']:,.0f}/s (the GIL: see the README)",
                   met=None)


def main() -> int:
    return section_main(run, __doc__, "tiny sizes and counts", needs_moto=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        raise SystemExit(0)
    raise SystemExit(main())
