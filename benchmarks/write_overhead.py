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
  put_object`` (plain boto3).

Each router comes from a TOML config in a temporary directory with ``[placement] sources =
["embedded"]``, one backend of the kind, and ``[catalog] url = "sqlite:///<tmp>/catalog.db"``.
The headline per pair is median(routed) / median(direct) and the added time per write.

One extra measurement splits a routed write into placement, catalog and storage time, so a missed
target says where the time goes.

    python benchmarks/write_overhead.py [--smoke] [--out benchmarks/results]
"""

from __future__ import annotations

import contextlib
import os
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
    #: Metadata like the router stamps, for a direct write that carries it too (S3 only).
    metadata: dict[str, str] | None = None


def _memory_kind(tmp: Path) -> Kind:
    from fsspec.implementations.memory import MemoryFileSystem

    config = write_config(tmp / "memory" / "greenroute.toml", catalog_db=tmp / "memory" / "catalog.db", backends=[
        {"id": "bench-memory", "provider": "memory", "region": "eu-north-1", "root": "memory://gr-bench-routed"}])
    return Kind("memory", GreenRouter.from_config(config), config, MemoryFileSystem(), "/gr-bench-direct")


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
    router.write("probe/metadata.bin", b"x")
    metadata = dict(router.stat("probe/metadata.bin").metadata)
    router.delete("probe/metadata.bin")
    return Kind("s3", router, config, s3fs.S3FileSystem(**options), f"{BUCKET}/direct", metadata)


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
    if md is not None:
        variants["direct fsspec + metadata"] = lambda i: fs.pipe_file(f"{direct_dir}-md/{i}", data, Metadata=md)
    if gfs is not None:
        variants["greenroute:// pipe"] = lambda i: gfs.pipe_file(f"greenroute://grfs/{label}/{i}", data)
    if plain_s3 is not None:
        variants["boto3 put_object"] = lambda i: plain_s3.put_object(Bucket=BUCKET, Key=f"boto3/{label}/{i}",
                                                                     Body=data)
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
            with contextlib.suppress(Exception):
                plain_s3.delete_object(Bucket=BUCKET, Key=f"boto3/{label}/{i}")
        if gclient is not None:
            with contextlib.suppress(Exception):
                gclient.delete_object(Bucket="grboto3", Key=f"{label}/{i}")

    return variants, clean


PAIRS = (("GreenRouter.write", "direct fsspec"), ("greenroute:// pipe", "direct fsspec"),
         ("greenroute.boto3_client put_object", "boto3 put_object"),
         ("GreenRouter.write", "direct fsspec + metadata"),
         ("greenroute.boto3_client put_object", "GreenRouter.write"))


def _rows(kind: str, size: int, samples: dict[str, list[int]]) -> list[dict[str, Any]]:
    rows = []
    for routed, direct in PAIRS:
        if routed not in samples or direct not in samples:
            continue
        r, d = summary(samples[routed], "ms"), summary(samples[direct], "ms")
        headline = compare(samples[routed], samples[direct])
        rows.append({"backend": kind, "size": size_label(size), "size_bytes": size, "routed": routed,
                     "direct": direct, "n": r["n"], "direct_p50_ms": d["p50_ms"], "direct_p99_ms": d["p99_ms"],
                     "routed_p50_ms": r["p50_ms"], "routed_p99_ms": r["p99_ms"], **headline})
    return rows


# -- where a routed write's time goes -------------------------------------------------------------


class _Tally:
    def __init__(self) -> None:
        self.ns: dict[str, int] = {}

    def wrap(self, owner: Any, attr: str, label: str) -> Callable[[], None]:
        original = getattr(owner, attr)
        self.ns.setdefault(label, 0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return original(*args, **kwargs)
            finally:
                self.ns[label] += clock() - start

        setattr(owner, attr, timed)
        return lambda: delattr(owner, attr)


def routed_breakdown(kind: Kind, size: int, rounds: int) -> dict[str, Any]:
    """Mean µs per ``GreenRouter.write`` spent in placement, the catalog and the storage write."""
    router = kind.router
    backend_id = router.placement.backends[0].id
    target = router.target(backend_id)
    data = os.urandom(size)
    label = f"breakdown-{size_label(size).replace(' ', '')}"
    for i in range(3):
        router.write(f"routed/{label}/w{i}", data)
    tally = _Tally()
    undo = [
        tally.wrap(router.placement, "select_greenest_backend", "placement decision"),
        tally.wrap(router.catalog, "lookup", "catalog lookup (on_overwrite=keep)"),
        tally.wrap(router.catalog, "begin", "catalog begin (pending entry)"),
        tally.wrap(router.catalog, "commit", "catalog commit"),
        tally.wrap(target, "write", "target.write (metadata + storage)"),
    ]
    total = 0
    try:
        for i in range(rounds):
            start = clock()
            router.write(f"routed/{label}/{i}", data)
            total += clock() - start
            if size >= MiB:
                with contextlib.suppress(Exception):
                    router.delete(f"routed/{label}/{i}")
    finally:
        for fn in undo:
            fn()
    parts = {k: v / rounds / 1000 for k, v in tally.ns.items()}
    mean_us = total / rounds / 1000
    parts["the rest of GreenRouter.write (paths, metadata dict, estimate, WriteResult)"] = max(
        0.0, mean_us - sum(parts.values()))
    return {"backend": kind.name, "size": size_label(size), "rounds": rounds, "mean_us": mean_us,
            "parts_us": parts}


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
    section.table = [("backend", "backend"), ("size", "size"), ("routed", "routed"), ("direct", "direct"),
                     ("n", "n"), ("direct_p50_ms", "direct p50"), ("direct_p99_ms", "direct p99"),
                     ("routed_p50_ms", "routed p50"), ("routed_p99_ms", "routed p99"), ("ratio", "ratio"),
                     ("added_ms", "added ms/write"), ("paired_added_ms", "paired added ms")]
    _targets(ctx, section, plan)
    for b in section.extra["routed_breakdown"]:
        parts = "; ".join(f"{k} {v:.0f}" for k, v in sorted(b["parts_us"].items(), key=lambda kv: -kv[1]))
        section.notes.append(f"Where a routed write's time goes ({b['backend']}, {b['size']}, mean "
                             f"{b['mean_us']:.0f} µs): {parts} (µs)")
    section.notes.append("ratio = median(routed) / median(direct); added = median(routed) - median(direct); "
                         "paired added = median of the per-round differences.")
    section.notes.append("On S3, 'direct fsspec + metadata' is the same direct put_object carrying the metadata the "
                         "router stamps (9 x-amz-meta headers): the routed-vs-it row is routing's own cost, net of "
                         "the metadata the design requires.")
    return section


def _targets(ctx: Context, section: Section, plan: tuple[tuple[int, int, int], ...]) -> None:
    size = plan[1][0]
    rows = [r for r in section.rows
            if r["backend"] == "s3" and r["size_bytes"] == size and r["direct"] != "direct fsspec + metadata"]
    if not rows:
        section.target("routed/direct ≤ 1.03 and ≤ 0.3 ms added, 1 MiB to moto S3",
                       goal="ratio ≤ 1.03, added ≤ 0.3 ms", measured="not run (no moto S3)", met=None)
    for r in rows:
        section.target(f"{r['routed']} vs {r['direct']}: ratio ≤ 1.03 and ≤ 0.3 ms added, {r['size']} to moto S3",
                       goal="ratio ≤ 1.03, added ≤ 0.3 ms",
                       measured=f"ratio {r['ratio']:.3f}, added {r['added_ms']:.2f} ms "
                                f"(paired {r['paired_added_ms']:.2f} ms)",
                       met=None if ctx.smoke else bool(r["ratio"] <= TARGET_RATIO and r["added_ms"] <= TARGET_ADDED_MS))


def main() -> int:
    return section_main(run, __doc__, "tiny sizes and counts", needs_moto=True)


if __name__ == "__main__":
    raise SystemExit(main())
